#!/usr/bin/env python3
"""Benchmark `pare trim` against cp and the transformers way of doing the same trim.

    python tools/bench/bench_trim.py [--data DIR] [--runs 3] [--scale 1 2] [--cache auto|cold|warm]
                                     [--pare .build/release/pare] [--json FILE]

For each scale the synthetic Llama-3.2-1B-shaped bf16 checkpoint of make_model.py is
generated once under DIR/scale<S>/model (shared with bench_convert.py). Then, run after
run, alternating the methods:

  cp            cp -r IN OUT                                               (I/O floor)
  pare          pare trim IN OUT --drop-layers 12-15 --ffn 6144 --quiet
  transformers  a fresh interpreter running `bench_trim.py --hf-trim IN OUT`, timed whole
                (torch/transformers import included): AutoModelForCausalLM.from_pretrained(
                IN, dtype=torch.bfloat16); del model.model.layers[12:16] and fix
                config.num_hidden_layers; in every remaining layer keep the 6144 MLP channels
                with the highest group magnitude (float64 sum of squares of the gate_proj row
                + up_proj row + down_proj column; ties to the lower index; kept indices sorted
                ascending), slicing gate/up rows and down columns, and set
                config.intermediate_size; model.save_pretrained(OUT).

The same absolute layers 12-15 are dropped at every scale (scale 2 has 32 layers).

Before each timed run (untimed): OUT is removed, `sync`, and with cold cache the page
cache is dropped (needs root); with warm cache IN is read once instead. `wall` is the
command alone, `wall+sync` the command followed by a global `sync` (pare fsyncs its own
files; cp and save_pretrained do not). Ratios use wall+sync unless noted. Peak RssAnon
(anonymous memory, excluding mmap'd/page-cache file pages) and peak VmRSS of the process
tree are sampled from /proc every ~10 ms (bench_convert.timed_run).

Correctness, once per scale, untimed, on the first run's outputs: `pare validate` on pare's
output, then pare's and the transformers output must hold the same tensors (names, dtypes,
shapes, bytes); a mismatch is reported with the tensor name and the first differing
element index. Both configs must say num_hidden_layers = layers - 4, intermediate_size 6144.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
METHODS = ["cp", "pare", "transformers"]
DROP = (12, 16)  # layers 12-15, absolute, at every scale
FFN = 6144


# ---------------------------------------------------------------- the transformers way

def hf_trim(src: str, dst: str) -> None:
    """What a user would write with transformers: load, edit the modules, save."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()  # keeps the benchmark log readable; no effect on the work done
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16)

    # Drop layers 12-15 (ModuleList renumbers the rest, so the saved names are contiguous).
    del model.model.layers[DROP[0]:DROP[1]]
    model.config.num_hidden_layers = len(model.model.layers)

    # Keep the FFN channels with the largest group magnitude in every remaining layer.
    with torch.no_grad():
        for layer in model.model.layers:
            mlp = layer.mlp
            gate, up, down = mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight
            score = (gate.double().square().sum(dim=1)
                     + up.double().square().sum(dim=1)
                     + down.double().square().sum(dim=0))
            # stable descending sort: equal scores keep index order, i.e. ties to the lower index
            order = torch.sort(score, descending=True, stable=True).indices
            keep = torch.sort(order[:FFN]).values
            mlp.gate_proj.weight = torch.nn.Parameter(gate[keep].contiguous(), requires_grad=False)
            mlp.up_proj.weight = torch.nn.Parameter(up[keep].contiguous(), requires_grad=False)
            mlp.down_proj.weight = torch.nn.Parameter(down[:, keep].contiguous(), requires_grad=False)
            mlp.gate_proj.out_features = mlp.up_proj.out_features = FFN
            mlp.down_proj.in_features = FFN
            mlp.intermediate_size = FFN
    model.config.intermediate_size = FFN

    model.save_pretrained(dst)


# ---------------------------------------------------------------- verification

def compare_outputs(pare_out: str, hf_out: str, layers_in: int) -> dict:
    """Tensor by tensor: names, dtypes, shapes, bytes; first differing element on mismatch."""
    import numpy as np
    from bench_convert import _bytes, folder_tensors

    t0 = time.perf_counter()
    a, b = folder_tensors(pare_out), folder_tensors(hf_out)
    problems = []
    if set(a) != set(b):
        problems.append(f"tensor names differ: only in pare {sorted(set(a) - set(b))[:5]}, "
                        f"only in transformers {sorted(set(b) - set(a))[:5]}")
    itemsize = {"BF16": 2, "F16": 2, "F32": 4, "F64": 8, "I64": 8, "I32": 4, "U8": 1, "I8": 1, "BOOL": 1}
    npview = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
    checked = differ = 0
    for k in sorted(set(a) & set(b)):
        ea, eb = a[k], b[k]
        if ea[1] != eb[1]:
            problems.append(f"{k}: dtype pare {ea[1]} != transformers {eb[1]}")
            continue
        if ea[2] != eb[2]:
            problems.append(f"{k}: shape pare {ea[2]} != transformers {eb[2]}")
            continue
        checked += 1
        xa, xb = _bytes(ea), _bytes(eb)
        if np.array_equal(xa, xb):
            continue
        differ += 1
        w = itemsize.get(ea[1], 1)
        va, vb = xa.view(npview[w]), xb.view(npview[w])
        flat = int(np.flatnonzero(va != vb)[0])
        idx = np.unravel_index(flat, ea[2]) if ea[2] else ()
        n = int(np.count_nonzero(va != vb))
        problems.append(f"{k}: bytes differ, first at element {tuple(int(i) for i in idx)} (flat {flat}): "
                        f"pare 0x{int(va[flat]):0{2 * w}x} transformers 0x{int(vb[flat]):0{2 * w}x}; "
                        f"{n} of {va.size} elements differ")
    cfgs = {}
    for who, folder in (("pare", pare_out), ("transformers", hf_out)):
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        cfgs[who] = {k: cfg.get(k) for k in ("num_hidden_layers", "intermediate_size")}
        if cfg.get("num_hidden_layers") != layers_in - (DROP[1] - DROP[0]):
            problems.append(f"{who} config.json num_hidden_layers {cfg.get('num_hidden_layers')} "
                            f"!= {layers_in - (DROP[1] - DROP[0])}")
        if cfg.get("intermediate_size") != FFN:
            problems.append(f"{who} config.json intermediate_size {cfg.get('intermediate_size')} != {FFN}")
    return {"ok": not problems, "tensors": len(a), "tensors_compared": checked, "tensors_differing": differ,
            "problems": problems[:20], "configs": cfgs, "seconds": round(time.perf_counter() - t0, 1)}


def busy_seconds() -> float:
    """CPU time spent by the whole machine (all CPUs, excluding idle and iowait), from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def pare_validate(pare: str, folder: str) -> dict:
    p = subprocess.run([pare, "validate", folder], capture_output=True, text=True)
    return {"ok": p.returncode == 0, "exit": p.returncode,
            "output": (p.stdout + p.stderr).strip().splitlines()[-5:]}


# ---------------------------------------------------------------- report

def commands(method: str, pare: str, src: str, dst: str) -> list[str]:
    return {
        "cp": ["cp", "-r", src, dst],
        "pare": [pare, "trim", src, dst, "--drop-layers", f"{DROP[0]}-{DROP[1] - 1}", "--ffn", str(FFN), "--quiet"],
        "transformers": [sys.executable, os.path.abspath(__file__), "--hf-trim", src, dst],
    }[method]


def fmt_table(scales: list[dict], cache: str) -> str:
    hdr = (f"{'scale':>5} {'method':<12} {'wall s':>7} {'+sync s':>8} {'best s':>7} {'x cp':>6} {'hf/this':>8} "
           f"{'cpu s':>6} {'other':>6} {'RssAnon MiB':>11} {'VmRSS MiB':>9} {'out GB':>7}")
    lines = [hdr, "-" * len(hdr)]
    runs = 0
    for sr in scales:
        ms = sr["methods"]
        med = {m: ms[m]["median_wall_sync_s"] for m in ms}
        for m, r in ms.items():
            runs = len(r["runs"])
            x_cp = f"{med[m] / med['cp']:.2f}" if "cp" in med else "-"
            hf = f"{med['transformers'] / med[m]:.2f}" if "transformers" in med and m == "pare" else "-"
            lines.append(f"{sr['scale']:>5g} {m:<12} {r['median_wall_s']:>7.2f} {r['median_wall_sync_s']:>8.2f} "
                         f"{min(x['wall_sync_s'] for x in r['runs']):>7.2f} {x_cp:>6} {hf:>8} "
                         f"{r['median_cpu_s']:>6.2f} {r.get('median_other_cpu_s', float('nan')):>6.2f} {r['peak_rss_anon_mib']:>11.1f} {r['peak_rss_total_mib']:>9.0f} "
                         f"{r['out_bytes'] / 1e9:>7.2f}")
    lines.append(f"(medians of {runs} run(s); best = fastest wall+sync; 'x cp' and 'hf/this' (transformers / pare) "
                 f"on wall+sync; cpu = the command's user+sys; other = CPU the rest of the machine used meanwhile "
                 f"(incl. kernel writeback); RssAnon/VmRSS = max over runs; cache: {cache})")
    return "\n".join(lines)


def compute_targets(scales: list[dict]) -> dict:
    t = {}
    for s in scales:
        k, ms = f"scale{s['scale']:g}", s["methods"]
        if "pare" in ms and "cp" in ms:
            for key, label in (("median_wall_s", "wall"), ("median_wall_sync_s", "wall+sync")):
                r = ms["pare"][key] / ms["cp"][key]
                t[f"{k}: pare {label} <= cp ({r:.2f}x)"] = r <= 1.0
        if "pare" in ms and "transformers" in ms:
            r = ms["transformers"]["median_wall_sync_s"] / ms["pare"]["median_wall_sync_s"]
            t[f"{k}: transformers >= 8x pare time ({r:.1f}x)"] = r >= 8
        if "pare" in ms:
            p = ms["pare"]["peak_rss_anon_mib"]
            t[f"{k}: pare peak RssAnon <= 256 MiB ({p:.1f})"] = p <= 256
        if s.get("verify") is not None:
            t[f"{k}: pare output == transformers output"] = s["verify"]["ok"]
        if s.get("validate") is not None:
            t[f"{k}: pare validate OUT"] = s["validate"]["ok"]
    return t


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from helper_steps import run_step
    if run_step(argv, {"--hf-trim": (hf_trim, "IN OUT")}):
        return 0

    sys.path.insert(0, HERE)
    from bench_convert import build_notes, drop_caches, du_bytes, finish_results, machine_notes, print_report, resolve_pare_and_cache, timed_run, warm

    ap = argparse.ArgumentParser(description="Benchmark pare trim vs cp and the transformers way.")
    ap.add_argument("--data", default=os.path.join(REPO, "bench-data"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--pare", default=os.path.join(REPO, ".build", "release", "pare"))
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--cache", choices=["auto", "cold", "warm"], default="auto",
                    help="cold: drop the page cache before every run (root); warm: read IN first; "
                         "auto: cold if possible, else warm")
    ap.add_argument("--no-verify", action="store_true", help="skip the pare-vs-transformers comparison")
    ap.add_argument("--json", default=None, help="results file (default DATA/results-trim.json)")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="only re-print an earlier results file")
    args = ap.parse_args(argv)

    if args.report:
        with open(args.report) as f:
            results = json.load(f)
        print_report(results)
        return 0

    pare, cache, cache_note = resolve_pare_and_cache(args.pare, args.cache)
    print(f"# cache: {cache_note}", flush=True)
    started = time.time()

    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "command": " ".join([os.path.basename(sys.executable), os.path.relpath(__file__, REPO)] + argv),
               "pare": pare, "cache": cache_note, "runs": args.runs,
               "trim": {"drop_layers": f"{DROP[0]}-{DROP[1] - 1}", "ffn": FFN},
               "machine": machine_notes(args.data), "scales": []}
    try:
        import torch
        import transformers
        results["machine"].update(torch=torch.__version__, transformers=transformers.__version__,
                                  torch_threads=torch.get_num_threads())
        del torch, transformers
    except ImportError:
        pass
    results.update(build_notes(pare))

    all_ok = True
    for scale in args.scale:
        sdir = os.path.join(args.data, f"scale{scale:g}")
        src = os.path.join(sdir, "model")
        work = os.path.join(sdir, "trim-work")
        keep = os.path.join(sdir, "trim-verify")
        dst = os.path.join(work, "out")
        t0 = time.time()
        subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), src, "--scale", str(scale)], check=True)
        with open(os.path.join(src, ".make_model_stamp.json")) as f:
            stamp = json.load(f)
        # (the stamp's params["layers"] is BASE's 16 at every scale: make_model merges **BASE last)
        with open(os.path.join(src, "config.json")) as f:
            layers = json.load(f)["num_hidden_layers"]
        if layers < DROP[1]:
            raise SystemExit(f"scale {scale:g} has {layers} layers; layers {DROP[0]}-{DROP[1] - 1} do not exist")
        in_bytes = du_bytes(src)
        print(f"# scale {scale:g}: {layers} layers, {stamp['num_parameters'] / 1e9:.3f}B params, "
              f"{in_bytes / 1e9:.2f} GB in {stamp['shards']} shards (ready in {time.time() - t0:.0f}s)", flush=True)
        sr = {"scale": scale, "layers": layers, "num_parameters": stamp["num_parameters"],
              "input_bytes": in_bytes, "input_shards": stamp["shards"], "methods": {},
              "verify": None, "validate": None}
        runs = {m: [] for m in args.methods}
        shutil.rmtree(keep, ignore_errors=True)
        try:
            for r in range(args.runs):
                for m in args.methods:
                    shutil.rmtree(work, ignore_errors=True)
                    os.makedirs(work)
                    if cache == "cold":
                        drop_caches()
                    else:
                        warm(src)
                        os.sync()
                    busy0 = busy_seconds()
                    res = timed_run(commands(m, pare, src, dst))
                    # CPU the rest of the machine used meanwhile (other processes, kernel writeback
                    # threads): a noisy-neighbour indicator.
                    res["other_cpu_s"] = max(0.0, busy_seconds() - busy0 - res["cpu_user_s"] - res["cpu_sys_s"])
                    res["out_bytes"] = du_bytes(dst)
                    res["loadavg_1m_after"] = os.getloadavg()[0]
                    runs[m].append(res)
                    print(f"  scale {scale:g} run {r + 1}/{args.runs} {m:<12} wall {res['wall_s']:6.2f}s "
                          f"+sync {res['wall_sync_s']:6.2f}s  RssAnon {res['peak_rss_anon_mib']:7.1f} MiB  "
                          f"VmRSS {res['peak_rss_total_mib']:6.0f} MiB  "
                          f"cpu {res['cpu_user_s'] + res['cpu_sys_s']:6.2f}s  other cpu {res['other_cpu_s']:5.2f}s",
                          flush=True)
                    if r == 0 and m in ("pare", "transformers") and not args.no_verify:
                        os.makedirs(keep, exist_ok=True)
                        os.rename(dst, os.path.join(keep, m))  # untimed; kept for the comparison
                if r == 0 and not args.no_verify:
                    if os.path.isdir(os.path.join(keep, "pare")):
                        sr["validate"] = pare_validate(pare, os.path.join(keep, "pare"))
                        print(f"  pare validate: {'ok' if sr['validate']['ok'] else 'FAIL'}"
                              + ("" if sr["validate"]["ok"] else "\n    " + "\n    ".join(sr["validate"]["output"])),
                              flush=True)
                    if all(os.path.isdir(os.path.join(keep, m)) for m in ("pare", "transformers")):
                        v = sr["verify"] = compare_outputs(os.path.join(keep, "pare"),
                                                           os.path.join(keep, "transformers"), layers)
                        print(f"  verify pare == transformers: {'ok' if v['ok'] else 'FAIL'} "
                              f"({v['tensors_compared']}/{v['tensors']} tensors compared, "
                              f"{v['tensors_differing']} differing, {v['seconds']}s)", flush=True)
                        for p in v["problems"]:
                            print(f"    ! {p}", flush=True)
                    shutil.rmtree(keep, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
            shutil.rmtree(keep, ignore_errors=True)
        for m in args.methods:
            rs = runs[m]
            sr["methods"][m] = {
                "command": " ".join(commands(m, os.path.relpath(pare, REPO) if pare.startswith(REPO) else pare,
                                             "IN", "OUT")),
                "median_wall_s": statistics.median(x["wall_s"] for x in rs),
                "median_wall_sync_s": statistics.median(x["wall_sync_s"] for x in rs),
                "median_cpu_s": statistics.median(x["cpu_user_s"] + x["cpu_sys_s"] for x in rs),
                "median_other_cpu_s": statistics.median(x["other_cpu_s"] for x in rs),
                "peak_rss_anon_mib": max(x["peak_rss_anon_mib"] for x in rs),
                "peak_rss_total_mib": max(x["peak_rss_total_mib"] for x in rs),
                "out_bytes": rs[0]["out_bytes"],
                "runs": rs,
            }
        all_ok &= all(x is None or x["ok"] for x in (sr["verify"], sr["validate"]))
        results["scales"].append(sr)

    finish_results(results, started, compute_targets(results["scales"]), fmt_table(results["scales"], cache),
                   args.json or os.path.join(args.data, "results-trim.json"))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
