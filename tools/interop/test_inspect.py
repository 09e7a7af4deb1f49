"""`pare inspect --json` against transformers' config and Python safetensors."""

from __future__ import annotations

import json
import os
from collections import defaultdict

import pytest

from conftest import FIXTURE_NAMES, FIXTURES, describe, load_config, read_header, read_tensors, run_pare, weight_files

ST_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def inspect_json(path, *extra) -> dict:
    proc = run_pare(["inspect", path, "--json", *extra])
    assert proc.returncode == 0, describe(proc)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:  # pragma: no cover - diagnostic
        raise AssertionError(f"stdout is not one JSON object: {e}\n{describe(proc)}") from e


def expected_from_transformers(folder) -> dict:
    """The config-derived fields, computed from the transformers config object."""
    cfg = load_config(folder)
    raw = json.loads((folder / "config.json").read_text())
    heads = cfg.num_attention_heads
    hidden = cfg.hidden_size
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    if cfg.model_type == "gpt2":
        inter = cfg.n_inner or 4 * cfg.n_embd
    else:
        inter = getattr(cfg, "intermediate_size", None)
    experts = getattr(cfg, "num_local_experts", None) or getattr(cfg, "num_experts", None)
    return {
        "model_type": cfg.model_type,
        "architectures": list(cfg.architectures),
        "layers": cfg.num_hidden_layers,
        "hidden_size": hidden,
        "attention_heads": heads,
        "kv_heads": kv,
        "head_dim": head_dim,
        "intermediate_size": inter,
        "moe_intermediate_size": getattr(cfg, "moe_intermediate_size", None),
        "shared_expert_intermediate_size": getattr(cfg, "shared_expert_intermediate_size", None),
        "experts": experts,
        "experts_per_token": getattr(cfg, "num_experts_per_tok", None),
        "vocab_size": cfg.vocab_size,
        "tie_word_embeddings": raw.get("tie_word_embeddings", cfg.tie_word_embeddings),
    }


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_inspect_config_fields_match_transformers(fixture):
    folder = FIXTURES / fixture
    info = inspect_json(folder)
    want = expected_from_transformers(folder)
    got = {k: info.get(k, "<missing>") for k in want}
    assert got == want
    assert info["format"] == "safetensors"
    assert os.path.samefile(info["path"], folder)
    assert "tensors" not in info, "tensors listed without --tensors"


# Spot checks that do not depend on transformers' attribute aliases.
@pytest.mark.parametrize(
    "fixture, expected",
    [
        ("qwen3", {"head_dim": 16, "hidden_size": 32, "attention_heads": 4, "kv_heads": 2, "tie_word_embeddings": True}),
        ("mixtral", {"head_dim": 8, "experts": 4, "experts_per_token": 2}),  # config has "head_dim": null
        ("qwen2-moe", {"experts": 4, "experts_per_token": 2, "intermediate_size": 64, "layers": 3,
                       "moe_intermediate_size": 24, "shared_expert_intermediate_size": 40}),
        ("gpt2", {"layers": 2, "hidden_size": 48, "attention_heads": 4, "kv_heads": 4, "intermediate_size": 192}),
        ("bert", {"kv_heads": 4, "head_dim": 8, "experts": None, "experts_per_token": None}),
        ("llama-gqa-f32", {"kv_heads": 2, "head_dim": 16, "tie_word_embeddings": False, "vocab_size": 320}),
    ],
)
def test_inspect_spot_values(fixture, expected):
    info = inspect_json(FIXTURES / fixture)
    assert {k: info.get(k) for k in expected} == expected


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_inspect_counts_and_tensor_list(fixture):
    folder = FIXTURES / fixture
    info = inspect_json(folder, "--tensors")
    tensors = read_tensors(folder)

    assert info["parameters"] == sum(t.tensor.numel() for t in tensors.values())
    assert info["bytes"] == sum(len(t.raw()) for t in tensors.values())

    per_dtype = defaultdict(lambda: {"tensors": 0, "parameters": 0, "bytes": 0})
    for t in tensors.values():
        d = per_dtype[t.dtype]
        d["tensors"] += 1
        d["parameters"] += t.tensor.numel()
        d["bytes"] += t.tensor.numel() * ST_SIZES[t.dtype]
    assert info["dtypes"] == dict(per_dtype)

    # shards[].bytes is the file size (README: "bytes = file size"); top-level bytes and
    # dtypes[].bytes are tensor data bytes.
    shards = []
    for f in weight_files(folder):
        _, names, _ = read_header(f)
        shards.append({"file": f.name, "tensors": len(names), "bytes": f.stat().st_size})
    assert info["shards"] == shards

    listed = info["tensors"]
    assert [t["name"] for t in listed] == list(tensors), "tensor list order differs from file order"
    for t in listed:
        rec = tensors[t["name"]]
        assert (t["dtype"], list(t["shape"]), t["file"]) == (rec.dtype, rec.shape, rec.file), t["name"]


@pytest.mark.parametrize("fixture", ["llama-gqa-f32", "mixtral"])
def test_inspect_single_file_path(fixture):
    """A .safetensors path inside a model folder: tensor data is that file's."""
    f = FIXTURES / fixture / "model.safetensors"
    info = inspect_json(f, "--tensors")
    tensors = read_tensors(f)
    assert info["parameters"] == sum(t.tensor.numel() for t in tensors.values())
    assert [t["name"] for t in info["tensors"]] == list(tensors)
    assert [s["file"] for s in info["shards"]] == ["model.safetensors"]


def test_inspect_without_json_prints_text():
    proc = run_pare(["inspect", FIXTURES / "mixtral"])
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.strip(), "no human-readable output"
    assert "mixtral" in proc.stdout
