#!/usr/bin/env python3
"""Crash consistency of pare's writes: kill -9 at many moments, and faults at the swap.

For each command (an in-place trim, a convert, a sparsify) on a ~170 MB Llama:
1. a reference run to completion gives the duration T and the expected output;
2. N runs are killed with SIGKILL at 1.1·T·k/N, k = 1..N (the last ones around the swap
   and after it), each on a fresh copy. After each kill:
   - the input is byte-identical to before, or, for the in-place trim, it is the
     complete new model (the reference output);
   - an output, if there is one, is complete (equal to the reference output): no
     partial output is ever at the destination;
   - the same command run again succeeds, gives the reference output and leaves no
     staging entry (`.NAME.pare-tmp-*`) behind: the next run cleans up.
3. with strace (Debian's `strace`), the rename at the swap fails (EIO): exit 1 with one
   line, the input unchanged, no output, no staging left.

Prints one line per trial and a summary; exits 1 if any check failed.

Usage: .venv/bin/python tools/crash_harness.py [--kills 20] [--pare .build/release/pare] [--commands trim,convert,sparsify] [--json]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Files whose bytes record the run (the request, times), compared by parsing only.
RECORDS = {"pare-trim.json", "pare-sparsify.json"}


def make_model(folder: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=8192, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                      num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)


def digest(folder: Path) -> dict[str, str]:
    """File name → SHA-256 (records: a marker that they parse as JSON)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            rel = str(p.relative_to(folder))
            if p.name in RECORDS:
                json.loads(p.read_text())
                out[rel] = "record"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def staging_left(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if ".pare-tmp-" in p.name)


class Command:
    def __init__(self, name: str, pare: str, work: Path, model: Path):
        self.name, self.pare, self.work, self.model = name, pare, work, model

    def setup(self) -> tuple[list[str], Path, Path]:
        """Fresh state; returns (args, input folder, destination)."""
        trial = self.work / self.name
        shutil.rmtree(trial, ignore_errors=True)
        trial.mkdir(parents=True)
        if self.name == "trim":
            target = trial / "model"
            shutil.copytree(self.model, target)
            return [self.pare, "trim", str(target), "--in-place", "--ffn", "0.5", "--quiet"], target, target
        out = trial / "out"
        if self.name == "convert":
            return [self.pare, "convert", str(self.model), str(out), "--format", "pare", "--quiet"], self.model, out
        return [self.pare, "sparsify", str(self.model), str(out), "--pattern", "2:4"], self.model, out


def run_trials(command: Command, kills: int, original: dict, log) -> dict:
    args, source, destination = command.setup()
    started = time.monotonic()
    proc = subprocess.run(args, capture_output=True, text=True)
    duration = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"{command.name}: the reference run failed: {proc.stderr}")
    reference = digest(destination)
    results = {"command": command.name, "seconds": round(duration, 2), "kills": 0, "kills_passed": 0,
               "states": {}, "injections": 0, "injections_passed": 0, "failures": []}

    def moment(k: int) -> float:
        return 1.1 * duration * k / kills

    def fail(what: str):
        results["failures"].append(what)
        log(f"  FAIL {command.name}: {what}")

    for k in range(1, kills + 1):
        args, source, destination = command.setup()
        before = digest(source)
        run = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(moment(k))
        run.send_signal(signal.SIGKILL)
        run.wait()
        results["kills"] += 1
        ok = True
        after_source = digest(source)
        if command.name == "trim":
            state = "old" if after_source == before else "new" if after_source == reference else "MIXED"
            if state == "MIXED":
                ok = False
                fail(f"kill {k}: the model is neither the old nor the new one")
        else:
            if after_source != before:
                ok = False
                fail(f"kill {k}: the input changed")
            if destination.exists():
                state = "complete"
                if digest(destination) != reference:
                    ok = False
                    fail(f"kill {k}: a partial output is at the destination")
            else:
                state = "absent"
        results["states"][state] = results["states"].get(state, 0) + 1
        # The next run: succeeds, gives the reference, cleans up.
        again = list(args)
        if command.name != "trim" and destination.exists():
            again.append("--force")
        if command.name == "trim" and state == "new":
            pass  # already trimmed: trimming again would trim further; check cleanup with a no-op read
        else:
            proc = subprocess.run(again, capture_output=True, text=True)
            if proc.returncode != 0:
                ok = False
                fail(f"kill {k}: the next run failed: {proc.stderr.strip()}")
            elif digest(destination) != reference:
                ok = False
                fail(f"kill {k}: the next run's output differs from the reference")
        if command.name == "trim" and state == "new":
            # A convert into the same parent cleans up beside its own target only, so run
            # `pare clean` on the parent: nothing but dead runs' entries may be there.
            subprocess.run([command.pare, "clean", str(destination.parent)], capture_output=True)
        left = staging_left(destination.parent)
        if left:
            ok = False
            fail(f"kill {k}: staging left after the next run: {left}")
        results["kills_passed"] += ok
        log(f"  {command.name} kill {k}/{kills} at {moment(k):.2f} s: {state}{'' if ok else ' FAILED'}")

    if shutil.which("strace"):
        args, source, destination = command.setup()
        before = digest(source)
        inject = ["strace", "-f", "-qq", "-o", "/dev/null", "-e", "trace=rename,renameat,renameat2",
                  "-e", "inject=rename,renameat,renameat2:error=EIO"]
        proc = subprocess.run(inject + args, capture_output=True, text=True)
        results["injections"] += 1
        lines = [line for line in proc.stderr.split("\n") if line.strip()]
        ok = proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("pare: error: ")
        if not ok:
            fail(f"rename fault: exit {proc.returncode}, stderr {proc.stderr.strip()[:300]!r}")
        if digest(source) != before:
            ok = False
            fail("rename fault: the input changed")
        if command.name != "trim" and destination.exists():
            ok = False
            fail("rename fault: an output is at the destination")
        if staging_left(destination.parent):
            ok = False
            fail(f"rename fault: staging left: {staging_left(destination.parent)}")
        results["injections_passed"] += ok
        log(f"  {command.name} rename fault (EIO): {'ok' if ok else 'FAILED'}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--pare", default=str(REPO / ".build" / "release" / "pare"))
    parser.add_argument("--commands", default="trim,convert,sparsify")
    parser.add_argument("--model", type=Path, help="a model folder to use (default: a ~170 MB Llama made here)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pare-crash-"))
    try:
        model = args.model
        if model is None:
            model = work / "source" / "model"
            make_model(model)
        log = (lambda s: print(s, file=sys.stderr)) if args.json else print
        all_results = []
        for name in args.commands.split(","):
            all_results.append(run_trials(Command(name, args.pare, work, model), args.kills, digest(model), log))
        if args.json:
            print(json.dumps(all_results, indent=2))
        else:
            for r in all_results:
                print(f"{r['command']}: {r['kills_passed']}/{r['kills']} kills passed ({r['states']}), "
                      f"{r['injections_passed']}/{r['injections']} swap faults passed; run {r['seconds']} s")
        return 0 if all(not r["failures"] for r in all_results) else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
