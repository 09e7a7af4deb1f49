#!/usr/bin/env python3
"""Benchmark pare's tokenizer against the `tokenizers` library, single-threaded, side by side.

The text is 1 MB of English from CPython's `pydoc_data.topics` (all topics sorted by key,
joined with blank lines, repeated to 1,000,000 bytes), encoded as ONE document, as
tools/interop/test_tokenize.py checks it. For every tokenizer kind in
Tests/Fixtures/tokenizers/ and the real all-MiniLM-L6-v2 (if ~/.cache/pare/minilm has it),
rounds alternate A/B on this shared machine:
  A: `tokenizers` in this process, TOKENIZERS_PARALLELISM=false, RAYON_NUM_THREADS=1,
     `Tokenizer.encode(text)` with truncation and padding off;
  B: `pare tokenize` (release build): its own `encode_seconds` (the same work: text in
     memory to ids) and the whole process's wall time (reading the tokenizer.json and the
     file, writing the ids).
Prints MB/s (best and median of the rounds) and the ratio pare / tokenizers, as a markdown
table for BENCHMARKS.md. Also checks that both give the same ids.

Usage: .venv/bin/python tools/bench/bench_tokenize.py [--rounds 5] [--pare .build/release/pare]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

from safetensors.numpy import load_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "Tests" / "Fixtures" / "tokenizers"
MINILM = Path(os.environ.get("PARE_VENV_CACHE") or Path.home() / ".cache" / "pare") / "minilm" / "model"


def english_megabyte() -> str:
    import pydoc_data.topics as topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    while len(text.encode()) < 1_000_000:
        text = text + "\n\n" + text
    return text.encode()[:1_000_000].decode("utf-8", errors="ignore")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pare", default=str(REPO / ".build" / "release" / "pare"))
    args = parser.parse_args()

    text = english_megabyte()
    size = len(text.encode())
    work = Path(tempfile.mkdtemp(prefix="pare-bench-tokenize-"))
    path = work / "english.txt"
    path.write_bytes(text.encode())
    folders = [(p.name, p) for p in sorted(FIXTURES.iterdir()) if (p / "tokenizer.json").is_file()]
    if (MINILM / "tokenizer.json").is_file():
        folders.append(("all-MiniLM-L6-v2", MINILM))
    print(f"text: {size:,} bytes of pydoc_data.topics; {args.rounds} alternating rounds; pare {args.pare}", file=sys.stderr)

    rows = []
    for name, folder in folders:
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        lib, own, wall = [], [], []
        ids = None
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            ids = tok.encode(text).ids
            lib.append(time.perf_counter() - t0)
            out = work / "ids.safetensors"
            t0 = time.perf_counter()
            proc = subprocess.run([args.pare, "tokenize", str(folder), "--text", str(path), "-o", str(out), "--force", "--json"],
                                  capture_output=True, text=True)
            wall.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                print(proc.stderr, file=sys.stderr)
                return 1
            own.append(json.loads(proc.stdout)["encode_seconds"])
        got = load_file(str(work / "ids.safetensors"))["input_ids"][0].tolist()
        same = "yes" if got == ids else "NO"
        mbs = lambda ts: (size / min(ts) / 1e6, size / statistics.median(ts) / 1e6)  # noqa: E731
        (lb, lm), (ob, om), (wb, wm) = mbs(lib), mbs(own), mbs(wall)
        rows.append((name, len(ids), lb, lm, ob, om, wb, wm, om / lm, same))
        print(f"{name}: tokenizers {lm:.2f} MB/s, pare {om:.2f} MB/s (process {wm:.2f})", file=sys.stderr)

    print("| tokenizer | tokens | tokenizers MB/s (best / median) | pare encode MB/s (best / median) | pare process MB/s (best / median) | pare / tokenizers (median) | same ids |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, n, lb, lm, ob, om, wb, wm, ratio, same in rows:
        print(f"| {name} | {n:,} | {lb:.2f} / {lm:.2f} | {ob:.2f} / {om:.2f} | {wb:.2f} / {wm:.2f} | {ratio:.1f}× | {same} |")
    return 0 if all(r[-1] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
