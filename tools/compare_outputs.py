#!/usr/bin/env python3
"""Runs a matrix of pare commands with two binaries and reports every difference in
exit codes, stdout, stderr and output files (sha256). The proof that a refactoring kept
every output byte-identical:

    python3 tools/compare_outputs.py --base OLD/pare --new .build/debug/pare
    python3 tools/compare_outputs.py --base OLD/pare --new NEW/pare --fixtures bert gpt2

Covers, on each fixture: inspect, validate, convert (casts, re-sharding, .pare and back,
--force, refused destinations), sparsify in every layout and pattern (refusals included),
and trims (drops, merges, heads, kv heads, FFN, experts, chained, with --sparsify,
--format pare, --in-place on a copy, dry runs as JSON). Commands run in a scratch folder
with fixed names, so the command lines recorded in provenance files are equal. A
developer tool, not part of the test suite; the exit status is 1 when anything differs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "Fixtures" / "models"


def cases_for(p: str) -> list[list[list[str]]]:
    """Command sequences for the fixture at path `p`; OUT names are relative to the scratch folder."""
    cases = [
        [["inspect", p, "--json", "--tensors"]],
        [["validate", p]],
        [["convert", p, "out"]],
        [["convert", p, "out", "--dtype", "bf16"]],
        [["convert", p, "out", "--dtype", "f16", "--max-shard-size", "100KB"]],
        [["convert", p, "out", "--format", "pare"], ["convert", "out", "back"]],
        [["convert", p, "out", "--format", "pare", "--dtype", "bf16", "--max-shard-size", "100KB"],
         ["convert", "out", "back", "--max-shard-size", "50KB"]],
        [["convert", p, "out"], ["convert", p, "out"], ["convert", p, "out", "--force", "--dtype", "f16"]],
        [["convert", p, p], ["convert", p, p + "/inner"], ["convert", p, "missing/out"]],
        [["sparsify", p, "out", "--pattern", "2:4", "--dry-run", "--json"]],
        [["sparsify", p, "out", "--pattern", "2:4", "--format", "pare", "--targets", "weight", "--ignore", "embed"]],
    ]
    trims = [
        ["--drop-layers", "1"], ["--ffn", "0.5", "--sparsify", "2:4"],
        ["--ffn", "0.5", "--format", "pare", "--max-shard-size", "100KB"], ["--merge-layers", "0-1", "--json"],
        ["--kv-heads", "1"], ["--experts", "2"], ["--heads", "2", "--ffn", "48"],
        ["--drop-layers", "0", "--experts", "2", "--ffn", "0.5", "--heads", "2"],
        ["--experts", "3", "--shared-expert-ffn", "20", "--expert-ffn", "16"],
        ["--merge-layers", "0-1", "--merge-norms", "merge", "--kv-heads", "1"],
        ["--kv-heads", "1", "--ffn", "0.5", "--drop-layers", "1", "--dry-run", "--json"],
    ]
    cases += [[["trim", p, "out", *flags]] for flags in trims]
    for layout in ["dense", "compressed-tensors", "cutlass", "pare", "bogus"]:
        for pattern in ["2:4", "4:8", "1:4"]:
            cases.append([["sparsify", p, "out", "--pattern", pattern, "--format", layout]])
    cases.append([["cp", p], ["trim", "copy", "--in-place", "--drop-layers", "1"]])
    return cases


def snapshot(root: Path) -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            full = Path(folder) / name
            out[str(full.relative_to(root))] = hashlib.sha256(full.read_bytes()).hexdigest()
    return out


def run(binary: str, case: list[list[str]], work: Path):
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    results = []
    for args in case:
        if args[0] == "cp":
            shutil.copytree(args[1], work / "copy")
            continue
        r = subprocess.run([binary, *args], cwd=work, capture_output=True, env={**os.environ, "COLUMNS": "100"})
        results.append((r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")))
    return results, snapshot(work)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="the binary before the change")
    ap.add_argument("--new", required=True, help="the binary after it")
    ap.add_argument("--fixtures", nargs="*", help="fixture names (default: every fixture both binaries know)")
    args = ap.parse_args()
    names = args.fixtures or sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    cases = [case for name in names for case in cases_for(str(FIXTURES / name))]
    scratch = Path(tempfile.mkdtemp(prefix="pare-compare-"))
    differing = 0
    try:
        for case in cases:
            a = run(args.base, case, scratch / "a")
            b = run(args.new, case, scratch / "b")
            if a == b:
                continue
            differing += 1
            print("DIFF", " ; ".join(" ".join(step) for step in case))
            for x, y in zip(a[0], b[0]):
                if x != y:
                    print("  base:", x, "\n  new: ", y)
            if a[1] != b[1]:
                print("  files:", sorted(k for k in set(a[1]) | set(b[1]) if a[1].get(k) != b[1].get(k)))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{len(cases)} cases, {differing} differ")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
