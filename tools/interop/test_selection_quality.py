"""Data-aware selection chooses better than weight magnitude and than chance, end to end:
held-out perplexity (`pare eval`) of trims of the trained fixtures, one case per criterion,
the rows of tools/bench/quality_table.py where the data-aware criterion wins.

  - activation (Minitron), `--ffn 0.5` on trained-llama: lower perplexity than magnitude
    and than the mean of 5 trims with random channels per layer (the table's draws);
  - bi (ShortGPT), `--drop-layers auto:1` on trained-llama: lower than `--score last`, and
    the lowest of the four single-layer drops (so below the exact mean of a random drop);
  - experts 50 % (`--experts 2`) on trained-moe: NAEE's reconstruction search (`--score
    reconstruction --calibrate`) is the lowest of reconstruction, activation (the norm of
    the experts' outputs), frequency (routing counts) and magnitude; all three data-aware
    criteria are below magnitude and below the mean of 5 random expert choices.

Measured with the binary of 2035d00 (perplexity, untrimmed trained-llama 77.46,
trained-moe 83.26):
  FFN 50 %:      activation 89.98, magnitude 167.22, random mean 138.63 (126.23-148.20)
  drop 1 layer:  bi 85.64 (layer 3), last 89.49 (layer 2); layers 0, 1: 2023.10, 133.26
  experts 2/4:   reconstruction 158.31, frequency 193.45, activation 200.18,
                 magnitude 209.39, random mean 299.93 (220.66-353.80)
The margins asserted below (MARGIN) are well inside those.

Not asserted, because the data-aware criterion does not win there on these fixtures (see
the table): query heads 50 % on trained-llama (activation 97.65, magnitude 93.42, mean over
all 256 choices 95.83), kv heads 50 % (activation and magnitude tie), hidden 75 % on
trained-llama (activation 142.37, random mean 137.27 over 5 seeds, 140.26 over 20).

calibrate and eval run with --threads 1, as the table does, so the numbers do not depend
on the core count.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from conftest import FIXTURES, describe, run_pare

CALIBRATION = FIXTURES.parent / "calibration"
HELDOUT = FIXTURES.parent / "heldout"
SEEDS = 5
MARGIN = 0.98  # a data-aware choice must be below MARGIN x the perplexity it beats


def _pare(args) -> str:
    proc = run_pare(args)
    assert proc.returncode == 0, describe(proc)
    return proc.stdout


def _perplexity(model: Path, name: str) -> float:
    out = json.loads(_pare(["eval", model, "--tokens", HELDOUT / f"{name}.safetensors", "--json", "--quiet",
                            "--threads", "1"]))
    ppl = float(out["perplexity"])
    assert math.isfinite(ppl), out
    return ppl


def _trim(name: str, out: Path, *args) -> tuple[dict, float]:
    _pare(["trim", FIXTURES / name, out, *args, "--quiet"])
    record = json.loads((out / "pare-trim.json").read_text())
    return record, _perplexity(out, name)


def _trim_plan(name: str, out: Path, plan: dict) -> float:
    """Trim with explicit keep lists (a recipe), check pare kept exactly those."""
    recipe = out.with_suffix(".json")
    recipe.write_text(json.dumps({"plan": plan}))
    record, ppl = _trim(name, out, "--recipe", recipe)
    assert record["plan"] == plan, f"pare kept {record['plan']}, the recipe said {plan}"
    return ppl


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("selection-quality")


@pytest.fixture(scope="module")
def stats(work):
    """name -> statistics of that trained fixture on its calibration windows (pare calibrate)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in cache:
            out = work / f"{name}.stats.safetensors"
            _pare(["calibrate", FIXTURES / name, "--tokens", CALIBRATION / f"{name}.safetensors", "-o", out,
                   "--threads", "1", "--quiet"])
            cache[name] = out
        return cache[name]

    return get


def _random_mean(name: str, row: str, work: Path, draw) -> tuple[float, list[float]]:
    """Mean perplexity of SEEDS trims with random keep lists; draw(rng) -> plan. The random
    generator is seeded as quality_table.py seeds it, so the draws are the table's."""
    values = []
    for seed in range(SEEDS):
        plan = {"version": 1, **draw(random.Random(f"{name}/{row}/{seed}"))}
        values.append(_trim_plan(name, work / f"{name}-{row}-random-{seed}", plan))
    return sum(values) / len(values), values


def test_activation_beats_magnitude_and_random_on_ffn(work, stats):
    name = "trained-llama"
    cfg = json.loads((FIXTURES / name / "config.json").read_text())
    layers, ffn = cfg["num_hidden_layers"], cfg["intermediate_size"]
    act, p_act = _trim(name, work / "ffn-activation", "--ffn", "0.5", "--stats", stats(name))
    assert act["selection"]["criteria"]["widths"] == "activation", act["selection"]["criteria"]
    mag, p_mag = _trim(name, work / "ffn-magnitude", "--ffn", "0.5", "--score", "magnitude")
    assert act["plan"]["ffn"] != mag["plan"]["ffn"]
    p_rnd, draws = _random_mean(name, "ffn", work, lambda rng: {"ffn": {
        str(layer): sorted(rng.sample(range(ffn), ffn // 2)) for layer in range(layers)}})
    summary = f"activation {p_act:.2f}, magnitude {p_mag:.2f}, random mean {p_rnd:.2f} {[round(v, 2) for v in draws]}"
    assert p_act < MARGIN * p_mag, summary
    assert p_act < MARGIN * p_rnd, summary


def test_bi_beats_last_and_random_on_layer_drop(work, stats):
    name = "trained-llama"
    layers = json.loads((FIXTURES / name / "config.json").read_text())["num_hidden_layers"]
    bi, p_bi = _trim(name, work / "depth-bi", "--drop-layers", "auto:1", "--stats", stats(name))
    assert bi["selection"]["layers"]["drop"]["criterion"] == "bi", bi["selection"]["layers"]
    last, p_last = _trim(name, work / "depth-last", "--drop-layers", "auto:1", "--score", "last")
    assert last["plan"]["drop_layers"] == [layers - 2]
    # A random single-layer drop has only `layers` outcomes: measure them all.
    each = [_trim_plan(name, work / f"depth-{layer}", {"version": 1, "drop_layers": [layer]})
            for layer in range(layers)]
    mean = sum(each) / len(each)
    summary = (f"bi {p_bi:.2f} (drops {bi['plan']['drop_layers']}), last {p_last:.2f}, "
               f"each layer dropped {[round(v, 2) for v in each]}, mean {mean:.2f}")
    assert p_bi < MARGIN * p_last, summary
    assert p_bi < MARGIN * mean, summary
    assert p_bi == min(each), summary  # the best single layer to drop


def test_reconstruction_wins_on_experts(work, stats):
    name = "trained-moe"
    cfg = json.loads((FIXTURES / name / "config.json").read_text())
    layers, experts = cfg["num_hidden_layers"], cfg["num_local_experts"]
    keep = ["--experts", str(experts // 2)]
    got = {
        "reconstruction": _trim(name, work / "experts-reconstruction", *keep, "--score", "reconstruction",
                                "--calibrate", "--tokens", CALIBRATION / f"{name}.safetensors", "--threads", "1"),
        "activation": _trim(name, work / "experts-activation", *keep, "--stats", stats(name)),
        "frequency": _trim(name, work / "experts-frequency", *keep, "--stats", stats(name), "--score", "frequency"),
        "magnitude": _trim(name, work / "experts-magnitude", *keep, "--score", "magnitude"),
    }
    assert "selection" not in got["magnitude"][0]  # no statistics: magnitude
    for criterion in ("reconstruction", "activation", "frequency"):
        assert got[criterion][0]["selection"]["criteria"]["experts"] == criterion, got[criterion][0]["selection"]
    ppl = {criterion: p for criterion, (_, p) in got.items()}
    p_rnd, draws = _random_mean(name, "experts", work, lambda rng: {"experts": {
        str(layer): sorted(rng.sample(range(experts), experts // 2)) for layer in range(layers)}})
    summary = (", ".join(f"{c} {p:.2f} {got[c][0]['plan']['experts']}" for c, p in ppl.items())
               + f", random mean {p_rnd:.2f} {[round(v, 2) for v in draws]}")
    for other in ("activation", "frequency", "magnitude"):
        assert ppl["reconstruction"] < MARGIN * ppl[other], summary
    for criterion in ("reconstruction", "activation", "frequency"):
        assert ppl[criterion] < MARGIN * ppl["magnitude"], summary
        assert ppl[criterion] < MARGIN * p_rnd, summary
