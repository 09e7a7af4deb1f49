"""The timed steps a benchmark script runs as its own fresh interpreter.

A benchmark times "the Python way" of a job as a whole process (imports included) by
calling its own script with `--NAME ARG ...`. `run_step` dispatches such a call; it
imports nothing heavy, so the timed process loads only what the step itself needs.
"""
import sys
from typing import Callable


def run_step(argv: list[str], steps: dict[str, tuple[Callable[..., None], str]]) -> bool:
    """Runs `steps[argv[0]]` with the rest of `argv` when `argv` names one; `steps` maps
    `--NAME` to (function, "ARG ..." usage). Returns whether it did."""
    if not argv or argv[0] not in steps:
        return False
    function, usage = steps[argv[0]]
    if len(argv) - 1 != len(usage.split()):
        raise SystemExit(f"usage: {sys.argv[0]} {argv[0]} {usage}")
    function(*argv[1:])
    return True
