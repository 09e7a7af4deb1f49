"""Goldens: every fixture × representative trim must reproduce its golden exactly (config
and the sha256 of every tensor), and pare validate --golden must catch any difference."""

from __future__ import annotations

import json
import pathlib

import pytest

from conftest import FIXTURES, run_pare

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
GOLDENS = sorted((ROOT / "goldens").glob("*.json"))


def test_there_is_a_golden_per_fixture():
    fixtures = {json.loads(p.read_text())["fixture"] for p in GOLDENS}
    # The trained fixtures (tools/train_fixtures.py) are for perplexity, not trim goldens.
    assert fixtures == {p.name for p in FIXTURES.iterdir() if p.is_dir() and not p.name.startswith("trained-")}


@pytest.mark.parametrize("golden", GOLDENS, ids=[p.stem for p in GOLDENS])
def test_trim_reproduces_its_golden(golden, tmp_path):
    spec = json.loads(golden.read_text())
    out = tmp_path / "out"
    proc = run_pare(["trim", FIXTURES / spec["fixture"], out, *spec["trim"], "--quiet"])
    assert proc.returncode == 0, proc.stderr
    proc = run_pare(["validate", out, "--golden", golden])
    assert proc.returncode == 0, proc.stderr
    report = json.loads(run_pare(["validate", out, "--golden", golden, "--json"]).stdout)
    assert report["valid"] and report["golden_differences"] == []


def test_golden_catches_a_changed_byte_and_a_config_value(tmp_path):
    golden = next(p for p in GOLDENS if p.stem.startswith("llama-gqa-f32"))
    spec = json.loads(golden.read_text())
    out = tmp_path / "out"
    assert run_pare(["trim", FIXTURES / spec["fixture"], out, *spec["trim"], "--quiet"]).returncode == 0
    tampered = json.loads(golden.read_text())
    tampered["tensors"][0]["sha256"] = "0" * 64
    tampered["config"]["rms_norm_eps"] = 0.5
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(tampered))
    proc = run_pare(["validate", out, "--golden", path])
    assert proc.returncode == 1
    assert "different bytes" in proc.stderr and "rms_norm_eps" in proc.stderr
    assert "[rule: golden]" in proc.stderr
