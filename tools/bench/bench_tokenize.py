#!/usr/bin/env python3
"""Benchmark pare's tokenizer against the `tokenizers` library, single-threaded, side by side.

The text is 1 MB of English from CPython's `pydoc_data.topics` (all topics sorted by key,
joined with blank lines, repeated to 1,000,000 bytes), encoded as ONE document, as
tools/interop/test_tokenize.py checks it. For every tokenizer kind in
Tests/Fixtures/tokenizers/ and the real all-MiniLM-L6-v2 (if ~/.cache/pare/minilm has it),
rounds alternate A/B on this shared machine:
  A: `tokenizers` in this process, TOKENIZERS_PARALLELISM=false, RAYON_NUM_THREADS=1,
     `Tokenizer.encode(text)` with truncation and padding off;
  B: `pare tokenize` (release build): the whole process's wall time, nothing subtracted
     (reading the tokenizer.json and the file, writing the ids), and, when its --json
     summary has `encode_seconds`, its own encoding time (the same work as A: text in
     memory to ids).
Prints MB/s (best and median of the rounds) and the ratios pare / tokenizers of the
medians, as a markdown table for BENCHMARKS.md. Also checks that both give the same ids.

With `--text mixed` the megabyte is instead seeded random words in eight scripts (accented
Latin, Greek, Cyrillic, Arabic, Devanagari, CJK, Hangul, emoji), which takes every scalar
through the Unicode tables rather than the ASCII fast path.

Usage: .venv/bin/python tools/bench/bench_tokenize.py [--rounds 5] [--text english|mixed] [--pare .build/release/pare]
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


SCRIPTS = [(0xC0, 0x17F), (0x391, 0x3C9), (0x410, 0x44F), (0x627, 0x64A), (0x915, 0x939), (0x4E00, 0x9FA5),
           (0xAC00, 0xD7A3), (0x1F600, 0x1F64F)]


def mixed_megabyte() -> str:
    import random

    r = random.Random(14)
    words, size = [], 0
    while size < 1_000_000:
        lo, hi = r.choice(SCRIPTS)
        word = "".join(chr(r.randint(lo, hi)) for _ in range(r.randint(1, 8))) + r.choice([" ", " ", " ", ", ", ". ", "\n"])
        words.append(word)
        size += len(word.encode())
    return "".join(words).encode()[:1_000_000].decode("utf-8", errors="ignore")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pare", default=str(REPO / ".build" / "release" / "pare"))
    parser.add_argument("--text", choices=["english", "mixed"], default="english")
    args = parser.parse_args()

    text = english_megabyte() if args.text == "english" else mixed_megabyte()
    size = len(text.encode())
    work = Path(tempfile.mkdtemp(prefix="pare-bench-tokenize-"))
    path = work / "english.txt"
    path.write_bytes(text.encode())
    folders = [(p.name, p) for p in sorted(FIXTURES.iterdir()) if (p / "tokenizer.json").is_file()]
    if (MINILM / "tokenizer.json").is_file():
        folders.append(("all-MiniLM-L6-v2", MINILM))
    source = "pydoc_data.topics" if args.text == "english" else "random words in eight scripts"
    print(f"text: {size:,} bytes of {source}; {args.rounds} alternating rounds; pare {args.pare}", file=sys.stderr)

    rows = []
    for name, folder in folders:
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        tok.no_truncation()
        tok.no_padding()
        lib, own, wall = [], [], []
        ids = tok.encode(text).ids  # warm-up, untimed: the first call builds caches
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
            seconds = json.loads(proc.stdout).get("encode_seconds")
            if seconds is not None:
                own.append(seconds)
        got = load_file(str(work / "ids.safetensors"))["input_ids"][0].tolist()
        same = "yes" if got == ids else "NO"
        mbs = lambda ts: (size / min(ts) / 1e6, size / statistics.median(ts) / 1e6) if ts else (None, None)  # noqa: E731
        (lb, lm), (ob, om), (wb, wm) = mbs(lib), mbs(own), mbs(wall)
        rows.append((name, len(ids), lb, lm, ob, om, wb, wm, same))
        encode = f"pare {om:.2f} MB/s, " if om is not None else ""
        print(f"{name}: tokenizers {lm:.2f} MB/s, {encode}pare process {wm:.2f} MB/s", file=sys.stderr)

    pair = lambda b, m: f"{b:.2f} / {m:.2f}" if m is not None else "n/a"  # noqa: E731
    ratio = lambda a, b: f"{a / b:.1f}×" if a is not None else "n/a"  # noqa: E731
    print("| tokenizer | tokens | tokenizers MB/s (best / median) | pare encode MB/s (best / median) | pare process MB/s (best / median) "
          "| pare encode / tokenizers (median) | pare process / tokenizers (median) | same ids |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for name, n, lb, lm, ob, om, wb, wm, same in rows:
        print(f"| {name} | {n:,} | {pair(lb, lm)} | {pair(ob, om)} | {pair(wb, wm)} | {ratio(om, lm)} | {ratio(wm, lm)} | {same} |")
    return 0 if all(r[-1] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
