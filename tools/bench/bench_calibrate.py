#!/usr/bin/env python3
"""Benchmark pare calibrate against pare eval, and NAEE's expert-subset search against one
calibration pass.

1. On the 1.2B bench model (bench-data/scale1, made by make_model.py), `pare eval` and
   `pare calibrate` run alternately on the same tokens (A/B/A/B: the machine is shared), and
   the script prints tokens/s, the ratio calibrate/eval and the peak RSS of each. The goal
   is calibrate within 15 % of eval (llama.cpp's imatrix costs 10-12 % over a forward).
2. On an MoE bench model (Mixtral layout, 8 experts, top-2; made here with transformers,
   random weights, fixed seed), `pare calibrate` alternates with
   `pare trim --experts 6 --score reconstruction --calibrate --dry-run` (one pass that
   collects the statistics and runs the search) and the script prints the ratio of their
   times. The goal is the search within 2x one calibration pass.

Usage: .venv/bin/python tools/bench/bench_calibrate.py [--reps 2] [--settle 30] [--skip-dense] [--skip-moe]
Needs a release build (swift build -c release).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import bench_eval  # noqa: E402  (run_json, settle, token_file, ensure_models)

MiB = 1 << 20
MOE_SEQUENCES, MOE_SEQ_LEN = 8, 256


def make_moe(folder: str) -> None:
    """A Mixtral-layout model with 8 experts, top-2, ~0.3B parameters, bf16, fixed seed."""
    if os.path.exists(os.path.join(folder, "config.json")):
        return
    import torch
    from transformers import MixtralConfig, MixtralForCausalLM

    torch.manual_seed(0)
    config = MixtralConfig(
        vocab_size=32000, hidden_size=768, intermediate_size=1536, num_hidden_layers=8,
        num_attention_heads=12, num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2,
        max_position_embeddings=1024, tie_word_embeddings=False,
    )
    model = MixtralForCausalLM(config).to(torch.bfloat16)
    tmp = folder + ".tmp"
    model.save_pretrained(tmp, safe_serialization=True)
    os.replace(tmp, folder)


def moe_tokens(data: str) -> str:
    import numpy as np
    from safetensors.numpy import save_file

    path = os.path.join(data, "eval", f"tokens-moe-{MOE_SEQUENCES}x{MOE_SEQ_LEN}.safetensors")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        ids = np.random.default_rng(1).integers(0, 32000, size=(MOE_SEQUENCES, MOE_SEQ_LEN), dtype=np.int64)
        save_file({"input_ids": ids}, path + ".tmp")
        os.replace(path + ".tmp", path)
    return path


def run(cmd: list[str]) -> dict:
    r = bench_eval.run_json(cmd)
    return r


def alternate(named: list[tuple[str, list[str]]], reps: int) -> dict[str, list[dict]]:
    results: dict[str, list[dict]] = {name: [] for name, _ in named}
    for rep in range(reps):
        for name, cmd in named:
            r = run(cmd)
            results[name].append(r)
            print(f"  rep {rep + 1} {name}: {r['wall']:.2f} s wall, peak RSS {r.get('peak_rss_bytes', 0) / MiB:,.0f} MiB", flush=True)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(REPO, "bench-data"))
    ap.add_argument("--pare", default=os.path.join(REPO, ".build", "release", "pare"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--settle", type=float, default=30.0)
    ap.add_argument("--skip-dense", action="store_true")
    ap.add_argument("--skip-moe", action="store_true")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    bench_eval.SETTLE = args.settle
    tmp = os.path.join(args.data, "calibrate-tmp")
    os.makedirs(tmp, exist_ok=True)
    raw: dict = {}
    threads = ["--threads", str(args.threads)]

    if not args.skip_dense:
        folder = bench_eval.ensure_models(args.data, ["scale1"])["scale1"]
        ids = bench_eval.token_file(args.data, 128256)
        stats = os.path.join(tmp, "scale1-stats.safetensors")
        print(f"dense: {folder}, {bench_eval.SEQUENCES} x {bench_eval.SEQ_LEN} tokens", flush=True)
        res = alternate([
            ("eval", [args.pare, "eval", folder, "--tokens", ids, "--json", "--quiet", *threads]),
            ("calibrate", [args.pare, "calibrate", folder, "--tokens", ids, "-o", stats, "--force", "--json", "--quiet", *threads]),
        ], args.reps)
        raw["dense"] = res
        tps = {k: statistics.median(r["tokens_per_second"] for r in v) for k, v in res.items()}
        rss = {k: max(r["peak_rss_bytes"] for r in v) for k, v in res.items()}
        print("\n| command | tokens/s (median) | peak RSS |\n|---|---|---|")
        for k in tps:
            print(f"| pare {k} | {tps[k]:.1f} | {rss[k] / MiB:,.0f} MiB |")
        print(f"calibrate / eval throughput: {tps['calibrate'] / tps['eval']:.3f}", flush=True)

    if not args.skip_moe:
        folder = os.path.join(args.data, "moe8", "model")
        os.makedirs(os.path.dirname(folder), exist_ok=True)
        make_moe(folder)
        ids = moe_tokens(args.data)
        stats = os.path.join(tmp, "moe8-stats.safetensors")
        print(f"\nMoE: {folder}, {MOE_SEQUENCES} x {MOE_SEQ_LEN} tokens, 8 experts keep 6", flush=True)
        res = alternate([
            ("calibrate", [args.pare, "calibrate", folder, "--tokens", ids, "-o", stats, "--force", "--json", "--quiet", *threads]),
            ("search", [args.pare, "trim", folder, "--experts", "6", "--score", "reconstruction", "--calibrate", "--tokens", ids,
                        "--dry-run", "--json", "--threads", str(args.threads)]),
        ], args.reps)
        raw["moe"] = res
        wall = {k: statistics.median(r["wall"] for r in v) for k, v in res.items()}
        print("\n| command | wall (median) |\n|---|---|")
        for k in wall:
            print(f"| {k} | {wall[k]:.2f} s |")
        print(f"search (statistics + subset search in one pass) / calibration pass: {wall['search'] / wall['calibrate']:.2f}x", flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
