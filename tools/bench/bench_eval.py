#!/usr/bin/env python3
"""Benchmark `pare eval` (the native CPU forward) against transformers and the sgemm peak.

    python tools/bench/bench_eval.py [--data DIR] [--pare .build/release/pare] [--threads 2]
                                     [--models small scale1 scale2] [--reps-small 3] [--reps-big 2]
                                     [--reps-sweep 3] [--settle 60] [--hf-scale2] [--coretype SkylakeX]
                                     [--sweep] [--json FILE]

Models (generated once under DIR, which is gitignored):
  small   DIR/small/model: a ~0.11B llama (hidden 768, 12 layers, 12 heads, 4 kv heads,
          ffn 2048, vocab 32000, untied head), initialised by transformers from a config
          with torch.manual_seed(0) and saved in bf16 (`bench_eval.py --make-small OUT`).
  scale1  DIR/scale1/model: make_model.py's Llama-3.2-1B-shaped bf16 model (1.24B, 16 layers).
  scale2  DIR/scale2/model: the same at --scale 2 (32 layers), for the depth test: pare's
          peak RSS must not grow with depth.
Input: 4 x 512 random token ids (numpy seed 0, below the vocabulary), a safetensors file
with `input_ids` [4, 512] I64, one per vocabulary size (DIR/eval/tokens-v<vocab>.safetensors).

Run by run, alternating (pare, transformers, pare, transformers, ...):
  pare          pare eval MODEL --tokens IDS --threads N --json --quiet
  pare-<core>   the same with OPENBLAS_CORETYPE=<core> in the environment (--coretype).
                "default" rows run the kernels the environment gives: on this machine
                OPENBLAS_CORETYPE=Haswell is set on purpose, because older OpenBLAS builds
                compute wrong results or crash on its CPU; a --coretype row is an
                experiment, not a supported configuration, and its numbers are not proof.
  transformers  a fresh interpreter running `bench_eval.py --hf-worker MODEL IDS N`:
                AutoModelForCausalLM.from_pretrained(MODEL, dtype=torch.float32),
                torch.set_num_threads(N), one forward under torch.inference_mode() with
                labels=input_ids (the loss: mean next-token NLL, what pare's perplexity is the
                exp of). It prints the forward's seconds, load+forward seconds and its own peak
                RSS (getrusage RUSAGE_SELF ru_maxrss).
pare's seconds are its JSON `seconds` (Evaluation.run: executor, embedding, every layer, head
and scoring; not opening the folder); its peak RSS is its JSON `peak_rss_bytes` (getrusage
inside pare). Both processes are also sampled from /proc every 10 ms (RssAnon, VmRSS) and
timed whole (wall, process start to exit, imports included).

FLOPs of one forward, from config.json (N sequences of T tokens, n = N*T tokens):
  linear     2 * n * layers * (q + k + v + o params + 3 * hidden * ffn)
  attention  2 * 2 * n * layers * heads * head_dim * (T + 1) / 2   (q.k^T and p.v, counting the
             causal half: the mean context of a position is (T + 1) / 2)
  head       2 * n * hidden * vocab
Achieved GFLOP/s = FLOPs / seconds; "% peak" divides by the best GFLOP/s of
tools/bench/sgemm_peak.c (OpenBLAS cblas_sgemm, square 2048 and 4096, OpenBLAS's default
threads and 1 thread; the best of runs before each model and at the end; the row's
OPENBLAS_CORETYPE's peak for pare-<core> rows).

This VM is shared: before every run (and every peak measurement) the script waits, up to
--settle seconds, until the rest of the machine uses < 0.3 cores over 2 s, and it records
the CPU seconds other processes used during each run ("other CPU s"). Medians are
reported; the best run of each is printed beside them.

Peak-RSS formula (bytes) for pare, as the issue states it: one layer's weights in f32 +
the batch's hidden states + the attention and MLP workspace, + the LM head in f32:
  4 * (layer params) + 4 * vocab * hidden
  + 4 * n * (hidden [residual] + hidden [final] + hidden [normed] + hidden [branch]
             + 2 * heads * head_dim [q, attention out] + 2 * kv_heads * head_dim [k, v]
             + 2 * ffn [gate, up])
  + 4 * threads * T^2 [attention scores] + 4 * vocab * min(256, 64 MiB / (4 * vocab)) [logits slice]
The target is peak RSS <= formula + 256 MiB, and flat from scale1 to scale2.

--sweep also runs pare on scale1 with 128, 512 and 2048 tokens (alternated) and fits
seconds = fixed + per_token * tokens: the fixed part is what does not scale with the batch
(casting every layer's bf16 weights to f32, the head's cast), the per-token part the matrix
products, attention and the vocabulary softmax.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

SEQUENCES, SEQ_LEN, SEED = 4, 512, 0
MiB = 1 << 20
SETTLE = 60.0  # --settle

SMALL_CONFIG = dict(
    architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=768, intermediate_size=2048,
    num_hidden_layers=12, num_attention_heads=12, num_key_value_heads=4, head_dim=64, vocab_size=32000,
    max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0, hidden_act="silu",
    tie_word_embeddings=False, attention_bias=False, mlp_bias=False, initializer_range=0.02,
    bos_token_id=1, eos_token_id=2,
)


# ---------------------------------------------------------------- subprocess modes

def make_small(out: str) -> None:
    """The ~0.11B llama: transformers' own init with a fixed seed, saved in bf16."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    stamp = os.path.join(out, ".bench_eval_stamp.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            if json.load(f) == SMALL_CONFIG:
                print(f"{out}: up to date, skipping", file=sys.stderr)
                return
    torch.manual_seed(0)
    config = LlamaConfig(**{k: v for k, v in SMALL_CONFIG.items() if k != "architectures"})
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    shutil.rmtree(out, ignore_errors=True)
    model.save_pretrained(out)
    with open(stamp, "w") as f:
        json.dump(SMALL_CONFIG, f, indent=2)
    n = sum(p.numel() for p in model.parameters())
    print(f"{out}: {n / 1e9:.3f}B parameters", file=sys.stderr)


def hf_worker(folder: str, ids_path: str, threads: int) -> None:
    """One transformers forward, f32, N threads; prints one JSON line."""
    t0 = time.perf_counter()
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch.set_num_threads(threads)
    ids = load_file(ids_path)["input_ids"]
    t1 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    t2 = time.perf_counter()
    with torch.inference_mode():
        out = model(input_ids=ids, labels=ids)
        loss = float(out.loss)
    t3 = time.perf_counter()
    print(json.dumps({
        "import_seconds": t1 - t0, "load_seconds": t2 - t1, "forward_seconds": t3 - t2,
        "load_forward_seconds": t3 - t1, "loss": loss, "perplexity": math.exp(loss),
        "threads": torch.get_num_threads(), "tokens": int(ids.numel()),
        "attention": getattr(model.config, "_attn_implementation", None),
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }), flush=True)


# ---------------------------------------------------------------- data

def ensure_models(data: str, names: list[str]) -> dict[str, str]:
    folders = {}
    for name in names:
        folder = os.path.join(data, name, "model")
        if name == "small":
            cmd = [sys.executable, os.path.abspath(__file__), "--make-small", folder]
        else:
            scale = {"scale1": "1", "scale2": "2"}[name]
            cmd = [sys.executable, os.path.join(HERE, "make_model.py"), folder, "--scale", scale]
        subprocess.run(cmd, check=True)
        folders[name] = folder
    return folders


def token_file(data: str, vocab: int) -> str:
    import numpy as np
    from safetensors.numpy import save_file

    path = os.path.join(data, "eval", f"tokens-v{vocab}.safetensors")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ids = np.random.default_rng(SEED).integers(0, vocab, size=(SEQUENCES, SEQ_LEN), dtype=np.int64)
        save_file({"input_ids": ids}, path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def shapes(folder: str) -> dict:
    with open(os.path.join(folder, "config.json")) as f:
        c = json.load(f)
    heads = c["num_attention_heads"]
    return {
        "layers": c["num_hidden_layers"], "hidden": c["hidden_size"], "ffn": c["intermediate_size"],
        "heads": heads, "kv_heads": c.get("num_key_value_heads", heads),
        "head_dim": c.get("head_dim") or c["hidden_size"] // heads, "vocab": c["vocab_size"],
    }


def layer_params(s: dict) -> int:
    h, q, kv = s["hidden"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    return h * q + 2 * h * kv + q * h + 3 * h * s["ffn"] + 2 * h


def flops(s: dict, sequences: int, seq_len: int) -> dict:
    n = sequences * seq_len
    h, q, kv = s["hidden"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"]
    linear = 2 * n * s["layers"] * (h * q + 2 * h * kv + q * h + 3 * h * s["ffn"])
    attention = 2 * 2 * n * s["layers"] * s["heads"] * s["head_dim"] * (seq_len + 1) / 2
    head = 2 * n * h * s["vocab"]
    return {"linear": linear, "attention": attention, "head": head, "total": linear + attention + head}


def formula_bytes(s: dict, sequences: int, seq_len: int, threads: int) -> dict:
    n = sequences * seq_len
    h, q, kv, v = s["hidden"], s["heads"] * s["head_dim"], s["kv_heads"] * s["head_dim"], s["vocab"]
    parts = {
        "layer_weights": 4 * layer_params(s),
        "head": 4 * v * h,
        "hidden_states": 4 * n * 2 * h,
        "workspace": 4 * n * (2 * h + 2 * q + 2 * kv + 2 * s["ffn"]) + 4 * threads * seq_len * seq_len
                     + 4 * v * max(1, min(256, (64 * MiB) // (4 * v))),
    }
    parts["total"] = sum(parts.values())
    return parts


# ---------------------------------------------------------------- sgemm peak

def sgemm_peak(tmp: str, coretype: str | None = None) -> list[dict]:
    exe = os.path.join(tmp, "sgemm_peak")
    if not os.path.exists(exe):
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "openblas"], capture_output=True, text=True,
                               check=True).stdout.split()
        subprocess.run(["gcc", "-O2", os.path.join(HERE, "sgemm_peak.c"), *flags, "-o", exe], check=True)
    env = dict(os.environ)
    env.pop("OPENBLAS_NUM_THREADS", None)
    if coretype:
        env["OPENBLAS_CORETYPE"] = coretype
    rows = []
    for threads in ("0", "1"):
        out = subprocess.run([exe, threads, "5", "2048", "4096"], capture_output=True, text=True, check=True, env=env).stdout
        for line in out.split("\n"):
            if line.startswith("n="):
                kv = dict(x.split("=") for x in line.split())
                rows.append({"n": int(kv["n"]), "threads": int(kv["threads"]), "coretype": coretype or "default",
                             "best_gflops": float(kv["best_gflops"]), "median_gflops": float(kv["median_gflops"])})
    return rows


# ---------------------------------------------------------------- runs

def busy_seconds() -> float:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")


def settle(max_wait: float, threshold: float = 0.3) -> dict:
    """Waits (up to max_wait s) until the rest of the machine uses < threshold cores over 2 s."""
    t0 = time.perf_counter()
    while True:
        b0 = busy_seconds()
        time.sleep(2)
        busy = (busy_seconds() - b0) / 2
        waited = time.perf_counter() - t0
        if busy < threshold or waited >= max_wait:
            return {"settle_busy_cores": busy, "settle_seconds": waited}


def run_json(cmd: list[str], env: dict | None = None) -> dict:
    """Runs cmd, samples its RSS, parses the JSON it prints (the last {...} of stdout)."""
    from bench_convert import PeakSampler

    before = settle(SETTLE)
    busy0 = busy_seconds()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env)
    sampler = PeakSampler(proc.pid)
    sampler.start()
    stdout = proc.stdout.read()
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"command failed ({code}): {' '.join(cmd)}")
    text = stdout.decode()
    result = json.loads(text[text.index("{"):] if text.lstrip().startswith("{") else text.strip().splitlines()[-1])
    cpu = ru.ru_utime + ru.ru_stime
    result.update({
        "wall": wall, "cpu_seconds": cpu, "other_cpu_seconds": max(0.0, busy_seconds() - busy0 - cpu),
        "sampled_peak_rss_anon_bytes": sampler.peak_kib * 1024, "sampled_peak_rss_bytes": sampler.peak_total_kib * 1024,
        "loadavg_1m_after": os.getloadavg()[0], **before,
    })
    return result


def pare_cmd(pare: str, folder: str, ids: str, threads: int, extra: list[str] = ()) -> list[str]:
    return [pare, "eval", folder, "--tokens", ids, "--threads", str(threads), "--json", "--quiet", *extra]


def hf_cmd(folder: str, ids: str, threads: int) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), "--hf-worker", folder, ids, str(threads)]


def methods_for(name: str, args) -> list[str]:
    ms = ["pare"]
    if args.coretype:
        ms.append("pare-" + args.coretype)
    if name != "scale2" or args.hf_scale2:
        ms.append("transformers")
    return ms


def run_method(method: str, args, folder: str, ids: str) -> dict:
    if method == "transformers":
        r = run_json(hf_cmd(folder, ids, args.threads))
        r["seconds"] = r["forward_seconds"]
        return r
    env = dict(os.environ)
    if method != "pare":
        env["OPENBLAS_CORETYPE"] = method.split("-", 1)[1]
    return run_json(pare_cmd(args.pare, folder, ids, args.threads), env)


def fmt_mib(b: float | None) -> str:
    return "" if b is None else f"{b / MiB:,.0f}"


def summarize(model_runs: dict, peaks: dict) -> list[dict]:
    rows = []
    for name, m in model_runs.items():
        fl = m["flops"]["total"]
        tf = m["runs"].get("transformers")
        tf_fwd = statistics.median(r["forward_seconds"] for r in tf) if tf else None
        tf_lf = statistics.median(r["load_forward_seconds"] for r in tf) if tf else None
        for method, runs in m["runs"].items():
            if method == "transformers":
                continue
            s = statistics.median(r["seconds"] for r in runs)
            peak = peaks[method.split("-", 1)[1] if "-" in method else "default"]
            rows.append({
                "model": name, "method": method, "tokens": m["tokens"], "threads": runs[0]["threads"],
                "pare_s": s, "pare_wall_s": statistics.median(r["wall"] for r in runs),
                "pare_runs_s": [r["seconds"] for r in runs],
                "tf_forward_s": tf_fwd, "tf_load_forward_s": tf_lf,
                "tf_runs_s": [r["forward_seconds"] for r in tf] if tf else None,
                "pare_tokens_per_s": m["tokens"] / s, "tf_tokens_per_s": m["tokens"] / tf_fwd if tf else None,
                "ratio": tf_fwd / s if tf else None,
                "gflops": fl / s / 1e9, "pct_peak": 100 * fl / s / 1e9 / peak, "peak_gflops": peak,
                "best_pare_s": min(r["seconds"] for r in runs),
                "best_tf_forward_s": min(r["forward_seconds"] for r in tf) if tf else None,
                "other_cpu_s": statistics.median(r["other_cpu_seconds"] for r in runs),
                "tf_other_cpu_s": statistics.median(r["other_cpu_seconds"] for r in tf) if tf else None,
                "tf_gflops": fl / tf_fwd / 1e9 if tf else None,
                "pare_peak_rss": max(r["peak_rss_bytes"] for r in runs),
                "pare_peak_rss_anon": max(r["sampled_peak_rss_anon_bytes"] for r in runs),
                "pare_resident": max(r["resident_bytes"] for r in runs),
                "formula": m["formula"]["total"],
                "tf_peak_rss": max(r["peak_rss_bytes"] for r in tf) if tf else None,
                "perplexity": runs[0]["perplexity"],
                "tf_perplexity": tf[0]["perplexity"] if tf else None,
                "ppl_rel_diff": abs(runs[0]["perplexity"] / tf[0]["perplexity"] - 1) if tf else None,
            })
    return rows


def fmt_table(rows: list[dict], peaks: dict) -> str:
    def f(x, spec):
        return "" if x is None else format(x, spec)
    lines = [
        "sgemm peak (best OpenBLAS cblas_sgemm, this machine): "
        + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in peaks.items()) + "; % peak is of the row's coretype",
        "",
        "| model | method | tokens | threads | pare s | tf fwd s | tf load+fwd s | pare tok/s | tf tok/s "
        "| tf/pare | pare GFLOP/s | % peak | pare peak RSS MiB | (RssAnon) | formula MiB | formula+256 | tf peak RSS MiB | ppl rel diff "
        "| best pare s | best tf s | other CPU s pare / tf |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['tokens']} | {r['threads']} | {r['pare_s']:.2f} | {f(r['tf_forward_s'], '.2f')} "
            f"| {f(r['tf_load_forward_s'], '.2f')} | {r['pare_tokens_per_s']:.1f} | {f(r['tf_tokens_per_s'], '.1f')} "
            f"| {f(r['ratio'], '.2f')} | {r['gflops']:.1f} | {r['pct_peak']:.0f} % | {fmt_mib(r['pare_peak_rss'])} "
            f"| {fmt_mib(r['pare_peak_rss_anon'])} | {fmt_mib(r['formula'])} | {fmt_mib(r['formula'] + 256 * MiB)} "
            f"| {fmt_mib(r['tf_peak_rss'])} | {f(r['ppl_rel_diff'], '.1e')} | {r['best_pare_s']:.2f} "
            f"| {f(r['best_tf_forward_s'], '.2f')} | {r['other_cpu_s']:.0f} / {f(r['tf_other_cpu_s'], '.0f')} |")
    return "\n".join(lines)


def sweep(args, folder: str, ids: str) -> dict:
    """pare on 128, 512 and 2048 tokens, alternated; fits seconds = fixed + per_token * tokens."""
    sizes = [("128", ["--seq-len", "128", "--samples", "1"]), ("512", ["--samples", "1"]), ("2048", [])]
    runs = {k: [] for k, _ in sizes}
    for rep in range(args.reps_sweep):
        for k, extra in sizes:
            r = run_json(pare_cmd(args.pare, folder, ids, args.threads, extra))
            runs[k].append(r)
            print(f"  sweep rep {rep + 1} {int(k):5d} tokens: {r['seconds']:7.2f} s  "
                  f"peak RSS {fmt_mib(r['peak_rss_bytes'])} MiB", flush=True)
    xs = [int(k) for k in runs]
    ys = [statistics.median(r["seconds"] for r in runs[k]) for k in runs]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {"tokens": xs, "median_seconds": ys, "fixed_seconds": my - slope * mx, "seconds_per_token": slope,
            "peak_rss_bytes": {k: max(r["peak_rss_bytes"] for r in v) for k, v in runs.items()}, "runs": runs}


# ---------------------------------------------------------------- main

def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--hf-worker"]:
        hf_worker(argv[1], argv[2], int(argv[3]))
        return 0
    if argv[:1] == ["--make-small"]:
        make_small(argv[1])
        return 0
    ap = argparse.ArgumentParser(description="Benchmark pare eval against transformers and the sgemm peak.")
    ap.add_argument("--data", default=os.path.join(REPO, "bench-data"))
    ap.add_argument("--pare", default=os.path.join(REPO, ".build", "release", "pare"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["small", "scale1", "scale2"], choices=["small", "scale1", "scale2"])
    ap.add_argument("--reps-small", type=int, default=3)
    ap.add_argument("--reps-big", type=int, default=2)
    ap.add_argument("--reps-sweep", type=int, default=3)
    ap.add_argument("--settle", type=float, default=60.0,
                    help="before each run, wait up to this many seconds for the rest of the machine to use < 0.3 cores")
    ap.add_argument("--hf-scale2", action="store_true", help="also run transformers on scale2 (~9 GB)")
    ap.add_argument("--coretype", default=None, help="also run pare with OPENBLAS_CORETYPE=this (e.g. SkylakeX)")
    ap.add_argument("--sweep", action="store_true", help="pare on scale1 at 128/512/2048 tokens: fixed vs per-token time")
    ap.add_argument("--json", default=None, help="results file (default DATA/results-eval.json)")
    args = ap.parse_args(argv)
    args.pare = os.path.abspath(args.pare)
    global SETTLE
    SETTLE = args.settle

    started = time.time()
    folders = ensure_models(args.data, args.models)
    results = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "argv": argv,
               "machine": {"cpus": os.cpu_count(), "kernel": platform.release(),
                           "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                                        if l.startswith("model name")), "?")},
               "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE"),
               "pare": args.pare, "models": {}}
    tmp = tempfile.mkdtemp(prefix="bench-eval-")
    try:
        peaks = []
        for name, folder in folders.items():
            settle(SETTLE)
            peaks += sgemm_peak(tmp)
            if args.coretype:
                peaks += sgemm_peak(tmp, args.coretype)
            s = shapes(folder)
            ids = token_file(args.data, s["vocab"])
            reps = args.reps_small if name == "small" else args.reps_big
            m = results["models"][name] = {
                "folder": folder, "shapes": s, "tokens": SEQUENCES * SEQ_LEN, "ids": ids,
                "flops": flops(s, SEQUENCES, SEQ_LEN), "formula": formula_bytes(s, SEQUENCES, SEQ_LEN, args.threads),
                "runs": {k: [] for k in methods_for(name, args)},
            }
            print(f"{name}: {s['layers']} layers, hidden {s['hidden']}, ffn {s['ffn']}, vocab {s['vocab']}; "
                  f"{m['flops']['total'] / 1e12:.2f} TFLOP per forward", flush=True)
            for rep in range(reps):
                for method in m["runs"]:
                    r = run_method(method, args, folder, ids)
                    m["runs"][method].append(r)
                    print(f"  rep {rep + 1}/{reps} {method:<16} {r['seconds']:7.2f} s (wall {r['wall']:6.1f} s)  "
                          f"ppl {r['perplexity']:.4f}  peak RSS {fmt_mib(r['peak_rss_bytes'])} MiB  "
                          f"RssAnon {fmt_mib(r['sampled_peak_rss_anon_bytes'])} MiB  "
                          f"other cpu {r['other_cpu_seconds']:.1f} s"
                          + (f"  blas {r['blas_core']}" if "blas_core" in r else ""), flush=True)
        if args.sweep and "scale1" in folders:
            results["sweep"] = sweep(args, folders["scale1"], results["models"]["scale1"]["ids"])
        settle(SETTLE)
        peaks += sgemm_peak(tmp)
        if args.coretype:
            peaks += sgemm_peak(tmp, args.coretype)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    results["sgemm"] = peaks
    peak = {c: max(p["best_gflops"] for p in peaks if p["coretype"] == c) for c in dict.fromkeys(p["coretype"] for p in peaks)}
    results["sgemm_peak_gflops"] = peak
    results["rows"] = summarize(results["models"], peak)
    print()
    for p in peaks:
        print(f"sgemm n={p['n']} threads={p['threads']} coretype={p['coretype']}: best {p['best_gflops']:.1f} "
              f"median {p['median_gflops']:.1f} GFLOP/s")
    print()
    print(fmt_table(results["rows"], peak))
    if "sweep" in results:
        sw = results["sweep"]
        print(f"\nsweep (scale1, pare): median seconds {dict(zip(sw['tokens'], [round(y, 2) for y in sw['median_seconds']]))}; "
              f"fit: fixed {sw['fixed_seconds']:.2f} s + {sw['seconds_per_token'] * 1000:.2f} ms/token; "
              f"peak RSS MiB {({k: round(v / MiB) for k, v in sw['peak_rss_bytes'].items()})}")
    for name, m in results["models"].items():
        fm = m["formula"]
        print(f"formula {name}: " + ", ".join(f"{k} {v / MiB:,.0f} MiB" for k, v in fm.items())
              + f"; FLOPs: " + ", ".join(f"{k} {v / 1e12:.3f} T" for k, v in m["flops"].items()))
    results["seconds"] = time.time() - started
    out = args.json or os.path.join(args.data, "results-eval.json")
    with open(out, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nresults: {out} ({results['seconds'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
