#!/usr/bin/env python3
"""Benchmark `pare convert` against cp and a Python safetensors round trip.

    python tools/bench/bench_convert.py [--data DIR] [--runs 3] [--scale 1.0 2.0]
                                        [--pare .build/release/pare] [--cache auto|cold|warm]

For each scale, a synthetic Llama-3.2-1B-shaped bf16 checkpoint is generated (once,
see make_model.py) under DIR/scale<S>/model (DIR defaults to bench-data/ at the repo
root). Then, run after run, alternating the methods:

  cp          cp -r IN OUT                                        (I/O floor)
  reshard     pare convert IN OUT --max-shard-size 1GB --quiet    (same dtype)
  f32         pare convert IN OUT --dtype f32 --quiet             (bf16 -> f32, 2x bytes out)
  python      py_roundtrip.py IN OUT: safetensors.torch load_file + save_file per shard,
              same sharding, a fresh interpreter timed whole (torch import included)
  python_f32  py_roundtrip.py IN OUT --f32: the same with .float() on every tensor
              (the Python counterpart of `f32`)

Before each timed run (untimed): OUT is removed, `sync`, and with cold cache the page
cache is dropped (echo 3 > /proc/sys/vm/drop_caches; needs root). If dropping fails, IN
is read once beforehand and the numbers are warm-cache numbers (the output says which).

Two times are recorded per run: `wall` (the command alone) and `wall+sync` (the command
followed by a global `sync`, so every method pays for getting its bytes to disk; pare
fsyncs its files itself, cp and save_file do not). Ratios use wall+sync unless noted.

Peak RssAnon (anonymous resident memory, i.e. excluding the mmap'd/page-cache file
pages) of the measured process and its descendants is sampled from /proc every ~10 ms.
Peak VmRSS (incl. file-backed pages) is sampled the same way; user+sys CPU comes from wait4.

Correctness is checked once per scale, untimed, on the first run's output: reshard and
python outputs must be byte-equal to the input tensor by tensor (with shards <= 1 GB for
reshard); every f32 tensor must equal the bf16 input widened exactly.

Results are printed as a table and written as JSON (default DIR/results.json).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
METHODS = ["cp", "reshard", "f32", "python", "python_f32"]
# which Python run each method is compared with in the "py/this" column
PY_BASELINE = {"reshard": "python", "f32": "python_f32"}
F32_METHODS = ("f32", "python_f32")
RESHARD_LIMIT = 10**9  # --max-shard-size 1GB


# ---------------------------------------------------------------- process sampling

def _descendants(pid: int) -> list[int]:
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                try:
                    with open(f"/proc/{p}/task/{tid}/children") as f:
                        stack.extend(int(c) for c in f.read().split())
                except OSError:
                    pass
        except OSError:
            pass
    return out


def _rss_kib(pid: int) -> tuple[int, int]:
    """(RssAnon, VmRSS) in KiB; zeros if the process is gone."""
    anon = total = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    anon = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    total = int(line.split()[1])
    except OSError:
        pass
    return anon, total


class PeakSampler(threading.Thread):
    def __init__(self, pid: int, interval: float = 0.01):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.peak_kib, self.peak_total_kib, self.samples = 0, 0, 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            vals = [_rss_kib(p) for p in _descendants(self.pid)]
            self.peak_kib = max(self.peak_kib, sum(v[0] for v in vals))
            self.peak_total_kib = max(self.peak_total_kib, sum(v[1] for v in vals))
            self.samples += 1
            self.stop.wait(self.interval)


def timed_run(cmd: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
    sampler = PeakSampler(proc.pid)
    sampler.start()
    _, status, ru = os.wait4(proc.pid, 0)
    t1 = time.perf_counter()
    sampler.stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    os.sync()
    t2 = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    return {
        "wall_s": t1 - t0,
        "wall_sync_s": t2 - t0,
        "peak_rss_anon_mib": sampler.peak_kib / 1024,
        "rss_samples": sampler.samples,
        # VmRSS includes the file-backed (mmap'd input, page cache) pages. ru_maxrss is not used:
        # Linux carries the forking parent's high-water mark into the child across execve.
        "peak_rss_total_mib": sampler.peak_total_kib / 1024,
        "cpu_user_s": ru.ru_utime,
        "cpu_sys_s": ru.ru_stime,
    }


# ---------------------------------------------------------------- cache control

def drop_caches() -> bool:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def warm(path: str):
    for name in sorted(os.listdir(path)):
        p = os.path.join(path, name)
        if os.path.isfile(p):
            with open(p, "rb", buffering=0) as f:
                while f.read(1 << 24):
                    pass


# ---------------------------------------------------------------- safetensors checks

def st_header(path: str):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return h, 8 + n


def folder_tensors(folder: str) -> dict:
    """name -> (file, dtype, shape, absolute byte start, byte end)"""
    out = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors"):
            continue
        path = os.path.join(folder, name)
        h, base = st_header(path)
        for k, v in h.items():
            a, b = v["data_offsets"]
            out[k] = (path, v["dtype"], v["shape"], base + a, base + b)
    return out


def _bytes(entry) -> np.ndarray:
    path, _, _, a, b = entry
    return np.memmap(path, dtype=np.uint8, mode="r", offset=a, shape=(b - a,)) if b > a else np.zeros(0, np.uint8)


def verify(method: str, src: str, out: str) -> dict:
    t0 = time.perf_counter()
    inp, got = folder_tensors(src), folder_tensors(out)
    problems = []
    if set(inp) != set(got):
        problems.append(f"tensor names differ: missing {sorted(set(inp) - set(got))[:3]}, "
                        f"extra {sorted(set(got) - set(inp))[:3]}")
    idx_path = os.path.join(out, "model.safetensors.index.json")
    shard_files = sorted(n for n in os.listdir(out) if n.endswith(".safetensors"))
    if len(shard_files) > 1:
        with open(idx_path) as f:
            wm = json.load(f)["weight_map"]
        for k, (path, *_rest) in got.items():
            if wm.get(k) != os.path.basename(path):
                problems.append(f"index maps {k} to {wm.get(k)}, found in {os.path.basename(path)}")
                break
    if method == "reshard":
        for fname in shard_files:
            h, _ = st_header(os.path.join(out, fname))
            size = max((v["data_offsets"][1] for v in h.values()), default=0)
            if size > RESHARD_LIMIT and len(h) > 1:
                problems.append(f"{fname}: {size} tensor bytes > 1GB")
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)
    want_dtype = "float32" if method in F32_METHODS else "bfloat16"
    if cfg.get("torch_dtype", cfg.get("dtype")) != want_dtype:
        problems.append(f"config.json torch_dtype {cfg.get('torch_dtype')} != {want_dtype}")
    checked = 0
    for k in sorted(set(inp) & set(got)):
        a, b = inp[k], got[k]
        if a[2] != b[2]:
            problems.append(f"{k}: shape {b[2]} != {a[2]}")
            continue
        if method in F32_METHODS:
            if b[1] != "F32":
                problems.append(f"{k}: dtype {b[1]} != F32")
                continue
            src16 = _bytes(a).view(np.uint16)
            dst32 = _bytes(b).view(np.uint32)
            ok = np.array_equal(src16.astype(np.uint32) << 16, dst32)
        else:
            ok = a[1] == b[1] and np.array_equal(_bytes(a), _bytes(b))
        if not ok:
            problems.append(f"{k}: bytes differ")
        checked += 1
    return {"ok": not problems, "tensors_checked": checked, "output_shards": len(shard_files),
            "problems": problems[:10], "seconds": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------- main

def du_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
               if os.path.isfile(os.path.join(path, n)))


def commands(method: str, pare: str, src: str, dst: str) -> list[str]:
    return {
        "cp": ["cp", "-r", src, dst],
        "reshard": [pare, "convert", src, dst, "--max-shard-size", "1GB", "--quiet"],
        "f32": [pare, "convert", src, dst, "--dtype", "f32", "--quiet"],
        "python": [sys.executable, os.path.join(HERE, "py_roundtrip.py"), src, dst],
        "python_f32": [sys.executable, os.path.join(HERE, "py_roundtrip.py"), src, dst, "--f32"],
    }[method]


def build_notes(pare: str) -> dict:
    """The repository commit (flagged when Sources/ has local changes) and `pare --version`
    of the binary measured, for the results file."""
    notes = {}
    try:
        head = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "Sources", "Package.swift"],
                               capture_output=True, text=True).stdout.strip()
        notes["git_head"] = head + (" (Sources/ modified)" if dirty else "")
    except OSError:
        pass
    try:
        notes["pare_version"] = subprocess.run([pare, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return notes


def machine_notes(data: str) -> dict:
    st = os.statvfs(data)
    notes = {"host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
             "mem_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
             "disk_free_gb": round(st.f_bavail * st.f_frsize / 1e9, 1)}
    try:
        notes["filesystem"] = subprocess.run(["findmnt", "-n", "-o", "SOURCE,FSTYPE", "--target", data],
                                             capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    return notes


def fmt_table(scales_res: list[dict], cache: str) -> str:
    lines = []
    hdr = (f"{'scale':>5} {'method':<10} {'wall s':>7} {'+sync s':>8} {'best s':>7} {'x cp':>6} {'py/this':>8} "
           f"{'GB/s':>6} {'cpu s':>6} {'RssAnon MiB':>11} {'VmRSS MiB':>9}  verified")
    lines.append(hdr)
    lines.append("-" * len(hdr))
    for sr in scales_res:
        med = {m: sr["methods"][m]["median_wall_sync_s"] for m in sr["methods"]}
        for m, r in sr["methods"].items():
            ratio_cp = med[m] / med["cp"] if "cp" in med else float("nan")
            base = PY_BASELINE.get(m)
            py = f"{med[base] / med[m]:.2f}" if base in med else "-"
            v = r.get("verify")
            vs = "-" if v is None else ("ok" if v["ok"] else "FAIL")
            lines.append(f"{sr['scale']:>5} {m:<10} {r['median_wall_s']:>7.2f} {r['median_wall_sync_s']:>8.2f} "
                         f"{min(x['wall_sync_s'] for x in r['runs']):>7.2f} {ratio_cp:>6.2f} {py:>8} {sr['input_bytes'] / 1e9 / r['median_wall_sync_s']:>6.2f} "
                         f"{r['median_cpu_s']:>6.2f} {r['peak_rss_anon_mib']:>11.1f} {r['peak_rss_total_mib']:>9.0f}  {vs}")
    lines.append(f"(medians of {sr['runs']} runs, best = fastest wall+sync; 'x cp' and 'py/this' on wall+sync; py/this compares "
                 f"reshard with python, f32 with python_f32; GB/s = input GB / wall+sync; cache: {cache})")
    return "\n".join(lines)


def compute_targets(sc: list[dict]) -> dict:
    t = {}

    def med(s, m, key="median_wall_sync_s"):
        return s["methods"][m][key] if m in s["methods"] else None

    for s in sc:
        k = f"scale{s['scale']:g}"
        if med(s, "reshard") and med(s, "cp"):
            t[f"{k}: reshard <= 1.3x cp (wall+sync)"] = med(s, "reshard") / med(s, "cp") <= 1.3
            t[f"{k}: reshard <= 1.3x cp (wall)"] = (med(s, "reshard", "median_wall_s")
                                                   / med(s, "cp", "median_wall_s") <= 1.3)
        if med(s, "reshard") and med(s, "python"):
            t[f"{k}: python >= 2x reshard time"] = med(s, "python") / med(s, "reshard") >= 2
        if med(s, "f32") and med(s, "python_f32"):
            t[f"{k}: python_f32 >= 2x f32 time"] = med(s, "python_f32") / med(s, "f32") >= 2
        for m in ("reshard", "f32"):
            if m in s["methods"]:
                t[f"{k}: {m} peak RssAnon <= 256 MiB"] = s["methods"][m]["peak_rss_anon_mib"] <= 256
    if len(sc) >= 2:
        for m in ("reshard", "f32"):
            if all(m in s["methods"] for s in sc):
                peaks = [s["methods"][m]["peak_rss_anon_mib"] for s in sc]
                # flat: largest within 10% (or 16 MiB) of the smallest
                t[f"{m} peak RssAnon flat across scales ({' / '.join(f'{p:.0f}' for p in peaks)} MiB)"] = \
                    max(peaks) - min(peaks) <= max(16.0, 0.1 * min(peaks))
    return t


def print_report(results: dict) -> None:
    """Re-prints an earlier results file: the command, the cache, the tables and targets."""
    print(f"# {results['command']}  ({results['date']}, repo {results.get('git_head', '?')})")
    print(f"# cache: {results['cache']}")
    print_summary(results)


def print_summary(results: dict):
    print()
    print(results["table"])
    print()
    for name, ok in results["targets"].items():
        print(f"  [{'met' if ok else 'MISSED'}] {name}")
    lo, hi = results.get("loadavg_1m_range") or (float("nan"), float("nan"))
    print(f"\n# total {results['elapsed_s']:.0f}s; 1-min loadavg after runs {lo:.2f}..{hi:.2f}; "
          f"machine: {json.dumps(results['machine'])}")


def resolve_pare_and_cache(pare_path: str, requested: str) -> tuple[str, str, str]:
    """The pare binary to time, and the cache mode actually used, with a note saying so."""
    pare = os.path.abspath(pare_path)
    if not os.access(pare, os.X_OK):
        raise SystemExit(f"pare binary not found: {pare} (swift build -c release)")
    cache = requested
    if cache in ("auto", "cold"):
        if drop_caches():
            cache = "cold"
        elif requested == "cold":
            raise SystemExit("cannot write /proc/sys/vm/drop_caches (need root)")
        else:
            cache = "warm"
    cache_note = ("cold: page cache dropped before every run (sync; echo 3 > /proc/sys/vm/drop_caches)"
                  if cache == "cold" else
                  "warm: IN read once before each run" + (" (--cache warm)" if requested == "warm" else
                                                          " (page cache could not be dropped)"))
    return pare, cache, cache_note


def finish_results(results: dict, started: float, targets: dict, table: str, out_json: str) -> None:
    """Adds the run's totals, targets and table to `results`, prints them and saves the JSON."""
    results["elapsed_s"] = round(time.time() - started, 1)
    loads = [x["loadavg_1m_after"] for s in results["scales"] for m in s["methods"].values() for x in m["runs"]]
    results["loadavg_1m_range"] = [min(loads), max(loads)] if loads else None
    results["targets"] = targets
    results["table"] = table
    print_summary(results)
    with open(out_json, "w") as f:
        json.dump(results, f, indent=2)
    print(f"# results: {out_json}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark pare convert vs cp and a Python round trip.")
    ap.add_argument("--data", default=os.path.join(REPO, "bench-data"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--pare", default=os.path.join(REPO, ".build", "release", "pare"))
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--cache", choices=["auto", "cold", "warm"], default="auto",
                    help="cold: drop the page cache before every run (root); warm: read IN first; "
                         "auto: cold if possible, else warm")
    ap.add_argument("--json", default=None, help="results file (default DATA/results.json)")
    ap.add_argument("--report", metavar="RESULTS_JSON",
                    help="only re-print the table and targets of an earlier results file")
    args = ap.parse_args(argv)

    if args.report:
        with open(args.report) as f:
            results = json.load(f)
        cache = "cold" if results["cache"].startswith("cold") else "warm"
        results["table"] = fmt_table(results["scales"], cache)
        results["targets"] = compute_targets(results["scales"])
        print_report(results)
        return 0

    os.makedirs(args.data, exist_ok=True)
    pare, cache, cache_note = resolve_pare_and_cache(args.pare, args.cache)
    print(f"# cache: {cache_note}", flush=True)
    started = time.time()

    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
               "pare": pare, "cache": cache_note, "runs": args.runs,
               "machine": machine_notes(args.data), "scales": []}
    results.update(build_notes(pare))

    for scale in args.scale:
        sdir = os.path.join(args.data, f"scale{scale:g}")
        src = os.path.join(sdir, "model")
        work = os.path.join(sdir, "work")
        dst = os.path.join(work, "out")
        t0 = time.time()
        subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), src, "--scale", str(scale)],
                       check=True)
        with open(os.path.join(src, ".make_model_stamp.json")) as f:
            stamp = json.load(f)
        in_bytes = du_bytes(src)
        print(f"# scale {scale:g}: {stamp['num_parameters'] / 1e9:.3f}B params, "
              f"{in_bytes / 1e9:.2f} GB in {stamp['shards']} shards (ready in {time.time() - t0:.0f}s)",
              flush=True)
        sr = {"scale": scale, "runs": args.runs, "layers": stamp["params"]["layers"], "num_parameters": stamp["num_parameters"],
              "input_bytes": in_bytes, "input_shards": stamp["shards"], "methods": {}}
        runs = {m: [] for m in args.methods}
        verified = {}
        for r in range(args.runs):
            for m in args.methods:
                shutil.rmtree(work, ignore_errors=True)
                os.makedirs(work)
                if cache == "cold":
                    drop_caches()
                else:
                    warm(src)
                    os.sync()
                res = timed_run(commands(m, pare, src, dst))
                res["out_bytes"] = du_bytes(dst)
                res["loadavg_1m_after"] = os.getloadavg()[0]
                runs[m].append(res)
                line = (f"  scale {scale:g} run {r + 1}/{args.runs} {m:<10} wall {res['wall_s']:6.2f}s "
                        f"+sync {res['wall_sync_s']:6.2f}s  RssAnon {res['peak_rss_anon_mib']:7.1f} MiB  "
                        f"cpu {res['cpu_user_s'] + res['cpu_sys_s']:5.2f}s")
                if m not in verified and m != "cp":
                    verified[m] = verify(m, src, dst)
                    v = verified[m]
                    line += (f"  verify: {'ok' if v['ok'] else 'FAIL'} ({v['tensors_checked']} tensors, "
                             f"{v['output_shards']} shards)")
                    for p in v["problems"]:
                        line += f"\n    ! {p}"
                print(line, flush=True)
        shutil.rmtree(work, ignore_errors=True)
        for m in args.methods:
            rs = runs[m]
            sr["methods"][m] = {
                "command": " ".join(commands(m, os.path.relpath(pare, REPO) if pare.startswith(REPO) else pare,
                                             "IN", "OUT")),
                "median_wall_s": statistics.median(x["wall_s"] for x in rs),
                "median_wall_sync_s": statistics.median(x["wall_sync_s"] for x in rs),
                "median_cpu_s": statistics.median(x["cpu_user_s"] + x["cpu_sys_s"] for x in rs),
                "peak_rss_anon_mib": max(x["peak_rss_anon_mib"] for x in rs),
                "peak_rss_total_mib": max(x["peak_rss_total_mib"] for x in rs),
                "out_bytes": rs[0]["out_bytes"],
                "runs": rs,
                "verify": verified.get(m),
            }
        results["scales"].append(sr)

    finish_results(results, started, compute_targets(results["scales"]), fmt_table(results["scales"], cache),
                   args.json or os.path.join(args.data, "results.json"))
    return 0 if all(v.get("verify") is None or v["verify"]["ok"]
                    for s in results["scales"] for v in s["methods"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
