"""The committed fixtures are what tools/make_fixtures.py makes, with the properties the
other tests rely on (e.g. llama-sharded and llama-gqa-bf16 hold llama-gqa-f32's weights)."""

from __future__ import annotations

import subprocess
import sys

import torch

from conftest import FIXTURE_NAMES, FIXTURES, INDEX_NAME, REPO_ROOT, content_digest, read_tensors, weight_files

EXPECTED = {
    "bert", "gemma2", "gpt2", "llama-gqa-bf16", "llama-gqa-f32", "llama-sharded", "mixtral", "olmo2", "qwen2-moe", "qwen3",
    "qwen3-moe",
}
# Trained by tools/train_fixtures.py (checked in test_trained_fixtures.py), up to 4 MB each;
# not random weights, and not reproduced bit for bit on another CPU.
TRAINED = {"trained-llama", "trained-moe"}
GENERATED = sorted(set(FIXTURE_NAMES) - TRAINED)


def test_fixture_set_and_sizes():
    assert set(FIXTURE_NAMES) == EXPECTED | TRAINED
    for name in FIXTURE_NAMES:
        size = sum(p.stat().st_size for p in (FIXTURES / name).rglob("*") if p.is_file())
        limit = 4 if name in TRAINED else 2
        assert size <= limit * 1024 * 1024, f"{name} is {size} bytes"
    assert (FIXTURES / "llama-gqa-f32" / "README.md").is_file()


def test_llama_variants_share_weights():
    f32 = read_tensors(FIXTURES / "llama-gqa-f32")
    bf16 = read_tensors(FIXTURES / "llama-gqa-bf16")
    sharded = read_tensors(FIXTURES / "llama-sharded")
    assert set(f32) == set(bf16) == set(sharded)
    for name, rec in f32.items():
        assert torch.equal(bf16[name].tensor, rec.tensor.to(torch.bfloat16)), name
        assert sharded[name].raw() == rec.raw(), name
    assert len(weight_files(FIXTURES / "llama-sharded")) >= 3
    assert (FIXTURES / "llama-sharded" / INDEX_NAME).is_file()


def test_no_constant_tensors():
    """Norms and biases are seeded noise, so a wrong selection of their rows shows."""
    for name in FIXTURE_NAMES:
        for tname, rec in read_tensors(FIXTURES / name).items():
            flat = rec.tensor.reshape(-1)
            assert not torch.all(flat == flat[0]), f"{name}: {tname} is constant"


def test_generator_reproduces_committed_fixtures(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "make_fixtures.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for name in GENERATED:
        assert content_digest(tmp_path / name) == content_digest(FIXTURES / name), (
            f"{name}: tools/make_fixtures.py no longer reproduces the committed files "
            "(different package versions?)"
        )
