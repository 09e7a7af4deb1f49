#!/usr/bin/env python3
"""Cost per tensor: pare on one file holding 1k to 1M tensors.

Each model is the llama-gqa-f32 fixture (config and its 21 tensors) plus N tiny stray
tensors (F32 [4]) in the same model.safetensors. For each N the script times, in one
process each: `convert` (a copy), `convert --format pare`, `inspect`, `validate` (which
reports N problems: exit 1, first 20 lines; timed all the same), `trim --ffn 80
--keep-unknown` and `sparsify --pattern 2:4` (which copies the stray tensors), and prints
the wall time, the time per tensor and the peak RSS. Linear cost shows as a flat time per
tensor; the ratio of the 40k and 4k rows is printed (linear is 10×, the goal at most 20×).

Usage: .venv/bin/python tools/bench/bench_tensors.py [--sizes 1000,4000,10000,40000,100000,1000000] [--pare .build/release/pare]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

REPO = Path(__file__).resolve().parents[2]
LLAMA = REPO / "Tests" / "Fixtures" / "models" / "llama-gqa-f32"


def make(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    shutil.copy(LLAMA / "config.json", folder / "config.json")
    tensors = load_file(str(LLAMA / "model.safetensors"))
    tensors.update({f"stray.{i}": np.full(4, i, dtype=np.float32) for i in range(n)})
    save_file(tensors, str(folder / "model.safetensors"))


def timed(args: list[str]) -> tuple[float, int, int]:
    """Wall seconds, exit status and peak RSS (KiB) of one run. The peak comes from
    /usr/bin/time: a child's ru_maxrss starts at the RSS of this process when it forked,
    which after building a million-tensor model here is larger than pare's."""
    with tempfile.NamedTemporaryFile(mode="r") as report:
        started = time.perf_counter()
        status = subprocess.run(["/usr/bin/time", "-o", report.name, "-f", "%M", *args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        elapsed = time.perf_counter() - started
        peak = int(report.read().split()[-1])
    return elapsed, status, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,4000,10000,40000,100000,1000000")
    parser.add_argument("--pare", default=str(REPO / ".build" / "release" / "pare"))
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="pare-bench-tensors-"))
    commands = {
        "convert": lambda m, o: ["convert", m, o, "--quiet"],
        "convert pare": lambda m, o: ["convert", m, o, "--format", "pare", "--quiet"],
        "inspect": lambda m, o: ["inspect", m],
        "validate": lambda m, o: ["validate", m],
        "trim": lambda m, o: ["trim", m, o, "--ffn", "80", "--keep-unknown", "--quiet"],
        "sparsify": lambda m, o: ["sparsify", m, o, "--pattern", "2:4"],
    }
    results: dict[str, dict[int, float]] = {name: {} for name in commands}
    print("| command | tensors | seconds | µs per tensor | peak RSS MiB | exit |")
    print("|---|---:|---:|---:|---:|---:|")
    for n in sizes:
        model = work / f"m{n}"
        make(model, n)
        header = int.from_bytes((model / "model.safetensors").open("rb").read(8), "little")
        for name, build in commands.items():
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            seconds, code, rss = timed([args.pare, *map(str, build(model, out))])
            results[name][n] = seconds
            print(f"| {name} | {n + 21:,} | {seconds:.2f} | {seconds / (n + 21) * 1e6:.1f} | {rss / 1024:.0f} | {code} |", flush=True)
        print(f"|   (header {header / 2**20:.1f} MiB) | | | | | |", flush=True)
        shutil.rmtree(model)
    if 4000 in sizes and 40000 in sizes:
        print()
        for name in commands:
            print(f"{name}: 40k / 4k = {results[name][40000] / results[name][4000]:.1f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
