#!/usr/bin/env python3
"""Time commands against each other with a cold page cache, alternating them run by run.

    python tools/bench/alternate.py RUNS NAME=COMMAND [NAME=COMMAND ...]

Each COMMAND is a shell command; the word OUT in it is replaced by a scratch path
(/tmp/alternate-out, removed before every run). Before every run: the scratch output is
removed, `sync`, and the page cache dropped (needs root). Timed: the command and a global
`sync` after it. Printed: the median and every run, per name.

Alternating (A B C A B C ...) rather than batching (A A A B B B) spreads this VM's slow
and fast disk phases over all commands: a single timing of a 2.5 GB job here moves by
a factor of 2 from minute to minute. Used for the A/B figures in BENCHMARKS.md.
"""
import os
import shutil
import statistics
import subprocess
import sys
import time

SCRATCH = "/tmp/alternate-out"


def remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit() or any("=" not in a for a in argv[1:]):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    runs = int(argv[0])
    commands = [a.split("=", 1) for a in argv[1:]]
    times: dict[str, list[float]] = {name: [] for name, _ in commands}
    for _ in range(runs):
        for name, command in commands:
            remove(SCRATCH)
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f:
                f.write("3\n")
            start = time.monotonic()
            subprocess.run(command.replace("OUT", SCRATCH), shell=True, stderr=subprocess.DEVNULL, check=True)
            os.sync()
            times[name].append(time.monotonic() - start)
    remove(SCRATCH)
    for name, values in times.items():
        print(f"{name:14s} median {statistics.median(values):5.2f}  " + " ".join(f"{v:.2f}" for v in values))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
