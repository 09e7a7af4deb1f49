#!/usr/bin/env python3
"""How well each selection criterion chooses what to cut: held-out perplexity after the
same trim chosen by weight magnitude, from calibration data, and at random.

    python3 tools/bench/quality_table.py [--models trained-llama trained-moe] [--seeds 5]
                                         [--markdown] [--pare PATH] [--work DIR] [--threads 1]

For each model (a folder under Tests/Fixtures/models, with its calibration windows in
Tests/Fixtures/calibration/<name>.safetensors and held-out windows in
Tests/Fixtures/heldout/<name>.safetensors) the script calibrates once:

    pare calibrate MODEL --tokens CALIBRATION -o WORK/<model>/stats.safetensors

and then, for each row (what is cut), trims the model several ways and measures every
output with `pare eval OUT --tokens HELDOUT --json --quiet`:

    row                     request                 data-free         data-aware
    FFN 50 %                --ffn 0.5               --score magnitude --stats S (activation)
    query heads 50 %        --heads H/2             --score magnitude --stats S (activation)
    kv heads 50 %           --kv-heads KV/2         --score magnitude --stats S (activation)
    drop 25 % of layers     --drop-layers auto:N    --score last      --stats S (bi)
    experts 50 % (MoE)      --experts E/2           --score magnitude --stats S (activation),
                                                                      --stats S --score frequency,
                                                                      --calibrate --tokens CALIBRATION
                                                                        --score reconstruction
    hidden 75 %             --hidden 0.75           --score magnitude --stats S (activation)

(on an MoE model `--ffn 0.5` is each expert's FFN; N = max(1, round(layers / 4)), so the
3-layer MoE drops 1; `reconstruction` only where `pare trim --help` lists it).

Random: for seed s in 0..SEEDS-1, every keep list of the magnitude trim's plan (read from
its pare-trim.json, so the sizes are exactly pare's) is replaced by a uniformly random one
of the same size from the same range (random channels per layer, and per expert; random
query heads inside each kv group; random kv heads, experts, hidden channels, layers to
drop), written as a recipe `{"plan": ...}` and trimmed with `pare trim MODEL OUT --recipe
R`; the plan pare records is checked to be the recipe's. The table gives the mean and the
min-max over the seeds. The random generator is seeded with "<model>/<row>/<seed>", so
the table is the same on every run for the same seeds and binary (pare's calibrate and
eval run with --threads 1, so it does not depend on the core count either).

Output: the commands used, then one table per model (rows = what is cut, columns =
criteria, the lowest perplexity of a row marked), plain text or Markdown (--markdown).
Progress goes to stderr. WORK is a temporary folder, removed at the end unless --work is
given (then every recipe, trimmed model and pare-trim.json stays there).
Runtime: about 30 s on 2 cores for both fixtures with 5 seeds (about a minute with 20).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "Tests", "Fixtures")

# Columns, in table order: (key, header).
COLUMNS = [
    ("magnitude", "magnitude / last"),
    ("data", "activation / bi"),
    ("frequency", "frequency"),
    ("reconstruction", "reconstruction"),
    ("random", "random"),
]


# --------------------------------------------------------------------------- running pare


class Pare:
    def __init__(self, binary: str, threads: int, work: str):
        self.binary = binary
        self.threads = threads
        self.work = work
        self.commands: list[list[str]] = []  # as run, for the report

    def run(self, args: list[str], record: bool = True) -> str:
        cmd = [self.binary, *args]
        if record:
            self.commands.append(cmd)
        # The binary is rebuilt from time to time: wait for it rather than fail.
        for attempt in range(60):
            if os.access(self.binary, os.X_OK):
                try:
                    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                except OSError:  # replaced while starting ("text file busy")
                    proc = None
                if proc is not None:
                    if proc.returncode != 0:
                        sys.exit(f"failed: {shlex.join(cmd)}\n{proc.stderr.strip()}")
                    return proc.stdout
            print(f"waiting for {self.binary} ...", file=sys.stderr)
            time.sleep(5)
        sys.exit(f"{self.binary} did not appear")

    def help_lists(self, word: str) -> bool:
        return word in self.run(["trim", "--help"], record=False)

    def version(self) -> str:
        return self.run(["--version"], record=False).strip()

    def calibrate(self, model: str, tokens: str, out: str) -> None:
        self.run(["calibrate", model, "--tokens", tokens, "-o", out, "--threads", str(self.threads), "--quiet"])

    def trim(self, model: str, out: str, args: list[str]) -> dict:
        self.run(["trim", model, out, *args, "--quiet"])
        with open(os.path.join(out, "pare-trim.json")) as f:
            return json.load(f)

    def perplexity(self, model: str, heldout: str) -> float:
        out = self.run(["eval", model, "--tokens", heldout, "--json", "--quiet", "--threads", str(self.threads)],
                       record=False)
        return float(json.loads(out)["perplexity"])


# --------------------------------------------------------------------------- random plans


def axis_sizes(config: dict) -> dict:
    heads = config["num_attention_heads"]
    kv = config.get("num_key_value_heads", heads)
    return {
        "layers": config["num_hidden_layers"],
        "kv_heads": kv,
        "group": heads // kv,
        "ffn": config.get("intermediate_size"),
        # Mixtral's experts are intermediate_size wide; Qwen's MoE say moe_intermediate_size.
        "expert_ffn": config.get("moe_intermediate_size", config.get("intermediate_size")),
        "shared_expert_ffn": config.get("shared_expert_intermediate_size"),
        "experts": config.get("num_local_experts", config.get("num_experts")),
        "hidden": config["hidden_size"],
    }


def randomize(plan: dict, sizes: dict, rng: random.Random) -> dict:
    """The plan with every keep list replaced by a uniformly random one of the same length
    from the axis's full range (ascending, as pare-trim.json lists them)."""

    def pick(n: int, k: int) -> list[int]:
        assert 0 < k <= n, (n, k)
        return sorted(rng.sample(range(n), k))

    out: dict = {"version": 1}
    for key, value in plan.items():
        if key == "version":
            continue
        if key == "drop_layers":
            out[key] = pick(sizes["layers"], len(value))
        elif key == "hidden":
            out[key] = pick(sizes["hidden"], len(value))
        elif key == "attention":
            out[key] = {}
            for layer, a in value.items():
                kv = pick(sizes["kv_heads"], len(a["kv_heads"]))
                out[key][layer] = {"kv_heads": kv,
                                   "query_heads": [pick(sizes["group"], len(q)) for q in a["query_heads"]]}
        elif key in ("ffn", "experts", "shared_expert_ffn"):
            out[key] = {layer: pick(sizes[key], len(kept)) for layer, kept in value.items()}
        elif key == "expert_ffn":
            out[key] = {layer: {expert: pick(sizes[key], len(kept)) for expert, kept in by_expert.items()}
                        for layer, by_expert in value.items()}
        else:
            sys.exit(f"no random counterpart for plan key {key!r}")
    return out


# --------------------------------------------------------------------------- rows


def rows_for(config: dict) -> list[dict]:
    sizes = axis_sizes(config)
    layers, heads, kv = sizes["layers"], config["num_attention_heads"], sizes["kv_heads"]
    experts = sizes["experts"]
    moe = experts is not None
    drop = max(1, round(layers / 4))
    ffn = sizes["expert_ffn"] if moe else sizes["ffn"]
    rows = [
        {"key": "ffn", "label": f"{'expert ' if moe else ''}FFN 50 % ({ffn} -> {ffn // 2})",
         "args": ["--ffn", "0.5"]},
        {"key": "heads", "label": f"query heads 50 % ({heads} -> {heads // 2})",
         "args": ["--heads", str(heads // 2)]},
        {"key": "kv_heads", "label": f"kv heads 50 % ({kv} -> {kv // 2}, with their query heads)",
         "args": ["--kv-heads", str(kv // 2)]},
        {"key": "depth", "label": f"layers: drop {drop} of {layers}",
         "args": ["--drop-layers", f"auto:{drop}"], "depth": True},
    ]
    if moe:
        rows.append({"key": "experts", "label": f"experts 50 % ({experts} -> {experts // 2})",
                     "args": ["--experts", str(experts // 2)], "experts": True})
    hidden = sizes["hidden"]
    rows.append({"key": "hidden", "label": f"hidden 75 % ({hidden} -> {int(hidden * 0.75)})",
                 "args": ["--hidden", "0.75"]})
    return rows


def measure_model(pare: Pare, name: str, seeds: int, reconstruction: bool, fixtures: str = FIXTURES,
                  only: list[str] | None = None) -> dict:
    """Every row of `rows_for` (or those whose key is in `only`) for the model `name` under
    `fixtures` (models/NAME, calibration/NAME.safetensors, heldout/NAME.safetensors)."""
    model = os.path.relpath(os.path.join(fixtures, "models", name), REPO)
    calibration = os.path.relpath(os.path.join(fixtures, "calibration", f"{name}.safetensors"), REPO)
    heldout = os.path.relpath(os.path.join(fixtures, "heldout", f"{name}.safetensors"), REPO)
    for p in (model, calibration, heldout):
        if not os.path.exists(os.path.join(REPO, p)):
            sys.exit(f"missing {p}")
    with open(os.path.join(REPO, model, "config.json")) as f:
        config = json.load(f)
    sizes = axis_sizes(config)
    work = os.path.join(pare.work, name)
    os.makedirs(work)
    stats = os.path.join(work, "stats.safetensors")

    print(f"{name}: calibrating", file=sys.stderr)
    pare.calibrate(model, calibration, stats)
    result = {"name": name, "model": model, "calibration": calibration, "heldout": heldout,
              "untrimmed": pare.perplexity(model, heldout), "rows": []}

    for row in rows_for(config):
        if only is not None and row["key"] not in only:
            continue
        print(f"{name}: {row['label']}", file=sys.stderr)
        folder = os.path.join(work, row["key"])
        os.makedirs(folder)
        cells: dict = {}
        criteria: dict = {}

        def trimmed(column: str, args: list[str]) -> dict:
            out = os.path.join(folder, column)
            record = pare.trim(model, out, args)
            cells[column] = pare.perplexity(out, heldout)
            return record

        free = "last" if row.get("depth") else "magnitude"
        base = trimmed("magnitude", [*row["args"], "--score", free])
        criteria["magnitude"] = free
        record = trimmed("data", [*row["args"], "--stats", stats])
        same = {"data"} if record["plan"] == base["plan"] else set()
        crit = record["selection"].get("criteria", {})
        criteria["data"] = (record["selection"]["layers"]["drop"]["criterion"] if row.get("depth")
                            else crit.get("experts") if row.get("experts") else crit.get("widths"))
        if row.get("experts"):
            extra = {"frequency": ["--stats", stats, "--score", "frequency"]}
            if reconstruction:
                extra["reconstruction"] = ["--calibrate", "--tokens", calibration, "--threads", str(pare.threads),
                                           "--score", "reconstruction"]
            for column, args in extra.items():
                if trimmed(column, [*row["args"], *args])["plan"] == base["plan"]:
                    same.add(column)
                criteria[column] = column

        # Random keep lists of the magnitude plan's sizes.
        samples, seen = [], {}
        for seed in range(seeds):
            rng = random.Random(f"{name}/{row['key']}/{seed}")
            plan = randomize(base["plan"], sizes, rng)
            key = json.dumps(plan, sort_keys=True)
            if key in seen:  # the same draw again (few layers to choose from): same model
                samples.append(seen[key])
                continue
            recipe = os.path.join(folder, f"random-{seed}.json")
            with open(recipe, "w") as f:
                json.dump({"plan": plan}, f)
            out = os.path.join(folder, f"random-{seed}")
            got = pare.trim(model, out, ["--recipe", recipe])
            if got["plan"] != plan:
                sys.exit(f"{out}: pare's plan is not the recipe's:\n{json.dumps(got['plan'])}\n{json.dumps(plan)}")
            seen[key] = pare.perplexity(out, heldout)
            samples.append(seen[key])
        cells["random"] = samples
        result["rows"].append({**row, "cells": cells, "criteria": criteria, "same": same})
    return result


# --------------------------------------------------------------------------- output


def fmt(x: float) -> str:
    return f"{x:.2f}"


def render_cells(row: dict, markdown: bool) -> list[str]:
    cells = row["cells"]
    scalar = {k: v for k, v in cells.items() if k != "random"}
    rnd = cells["random"]
    mean = sum(rnd) / len(rnd)
    best = min([*scalar.values(), mean])
    out = []
    for key, _ in COLUMNS:
        if key == "random":
            text = f"{fmt(mean)} ({fmt(min(rnd))}-{fmt(max(rnd))})"
            value = mean
        elif key in scalar:
            value = scalar[key]
            text = fmt(value)
            # Name the criterion where the column header's first name is not the one used.
            if key in ("magnitude", "data") and row.get("depth"):
                text = f"{row['criteria'][key]} {text}"
            elif key == "data" and row["criteria"].get(key) not in (None, "activation"):
                text = f"{row['criteria'][key]} {text}"
            if key in row["same"]:
                text = f"{text} (same)"
        else:
            out.append("-")
            continue
        if value == best:
            text = f"**{text}**" if markdown else f"{text} *"
        out.append(text)
    return out


def table(result: dict, seeds: int, markdown: bool) -> str:
    header = ["what is cut", *[h for _, h in COLUMNS]]
    header[-1] = f"random: mean (min-max), {seeds} seeds"
    body = [[row["label"], *render_cells(row, markdown)] for row in result["rows"]]
    title = f"{result['name']}: held-out perplexity (untrimmed {fmt(result['untrimmed'])}), lower is better"
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r):
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip()

    return "\n".join([title, "", line(header), line(["-" * w for w in widths]), *map(line, body)])


def command_lines(pare: Pare, seeds: int) -> list[str]:
    """The commands run, with WORK for the work folder and the random recipes folded."""
    lines, folded = [], set()
    for cmd in pare.commands:
        text = shlex.join(["pare", *cmd[1:]]).replace(pare.work, "WORK")
        if "--recipe" in cmd:
            i = cmd.index("--recipe")
            stem = os.path.dirname(cmd[i + 1]).replace(pare.work, "WORK")
            if stem in folded:
                continue
            folded.add(stem)
            text = (f"pare trim {shlex.quote(cmd[2])} {stem}/random-S --recipe {stem}/random-S.json --quiet"
                    f"    # S = 0..{seeds - 1}, random keep lists")
        lines.append(text)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["trained-llama", "trained-moe"])
    ap.add_argument("--seeds", type=int, default=5, help="random keep lists per row (default 5)")
    ap.add_argument("--markdown", action="store_true", help="print Markdown tables")
    ap.add_argument("--pare", default=os.environ.get("PARE_BIN", os.path.join(REPO, ".build", "debug", "pare")))
    ap.add_argument("--work", help="keep the statistics, recipes and trimmed models here (a new folder)")
    ap.add_argument("--threads", type=int, default=1, help="pare calibrate/eval threads (default 1)")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")

    os.chdir(REPO)  # the commands name the fixtures relative to the repository
    binary = os.path.abspath(args.pare)
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="pare-quality.")
    if args.work:
        os.makedirs(work, exist_ok=False)
    pare = Pare(binary, args.threads, work)
    try:
        reconstruction = pare.help_lists("reconstruction")
        results = [measure_model(pare, name, args.seeds, reconstruction) for name in args.models]
        version = pare.version()
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    eval_line = f"pare eval OUT --tokens HELDOUT --json --quiet --threads {args.threads}"
    intro = [
        f"pare selection quality ({version}, {os.path.relpath(binary, REPO)}): held-out perplexity of the same "
        f"trim chosen by each criterion; random = {args.seeds} seeded draws of keep lists of the same sizes.",
        f"WORK = {work if args.work else 'a temporary folder (--work DIR keeps it)'}. Every OUT below, and "
        f"each model untrimmed, is measured with `{eval_line}` (HELDOUT = Tests/Fixtures/heldout/<model>.safetensors).",
    ]
    cmds = command_lines(pare, args.seeds)
    notes = ("Columns: magnitude / last = data-free (`--score magnitude`; `--score last` for the layer drop); "
             "activation / bi = `--stats` with the default criteria (activation for widths and experts, "
             "bi for `--drop-layers auto:N`); frequency and reconstruction only for experts; "
             "(same) = the same keep lists as magnitude / last. "
             + ("The lowest of each row is in bold." if args.markdown else "* marks the lowest of each row."))
    if args.markdown:
        print("\n\n".join([" ".join(intro), "```sh\n" + "\n".join(cmds) + "\n```", notes]))
        for r in results:
            print()
            print(table(r, args.seeds, True))
    else:
        print("\n".join(intro))
        print()
        print("\n".join("  " + c for c in cmds))
        print()
        print(notes)
        for r in results:
            print()
            print(table(r, args.seeds, False))


if __name__ == "__main__":
    main()
