"""pare trim against the reference surgery (tools/reference_trim.py, plain torch indexing,
written independently of pare's Swift code).

For every family and pass (alone and chained):
  - pare's output tensors equal the reference's bit for bit, given the plan pare recorded;
  - pare chose the same indices the reference's own scoring chooses;
  - transformers loads pare's output, and its logits equal the reference model's;
  - the config agrees on every size key;
  - pare-trim.json records the input's tensor sha256s correctly, and replays.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES, REPO_ROOT, expect_error, forward, load_model, read_tensors, run_pare, tree_digest

sys.path.insert(0, str(REPO_ROOT / "tools"))
import reference_trim  # noqa: E402

# (fixture, pare flags, the same request in reference_trim's terms)
CASES = [
    ("llama-gqa-f32", ["--drop-layers", "1", "--kv-heads", "1", "--ffn", "0.5"],
     {"drop_layers": [1], "kv_heads": 1, "ffn": 0.5}),
    ("llama-gqa-f32", ["--heads", "2", "--ffn", "48"], {"heads": 2, "ffn": 48}),
    ("llama-gqa-f32", ["--merge-layers", "0-1", "--ffn", "0.75", "--heads", "2"],
     {"merge": [{"start": 0, "count": 2}], "ffn": 0.75, "heads": 2}),
    ("llama-gqa-bf16", ["--merge-layers", "0-1", "--merge-norms", "merge", "--kv-heads", "1"],
     {"merge": [{"start": 0, "count": 2, "norms": "merge"}], "kv_heads": 1}),
    ("llama-sharded", ["--drop-layers", "0", "--heads", "2"], {"drop_layers": [0], "heads": 2}),
    ("qwen3", ["--drop-layers", "1", "--heads", "2", "--ffn", "0.5"], {"drop_layers": [1], "heads": 2, "ffn": 0.5}),
    ("qwen3", ["--merge-layers", "0-2"], {"merge": [{"start": 0, "count": 3}]}),
    ("mixtral", ["--experts", "2", "--expert-ffn", "16", "--kv-heads", "1"],
     {"experts": 2, "expert_ffn": 16, "kv_heads": 1}),
    ("mixtral", ["--merge-layers", "0-1", "--experts", "3"], {"merge": [{"start": 0, "count": 2}], "experts": 3}),
    ("qwen2-moe", ["--drop-layers", "0", "--experts", "2", "--ffn", "0.5", "--heads", "2"],
     {"drop_layers": [0], "experts": 2, "ffn": 0.5, "expert_ffn": 0.5, "shared_expert_ffn": 0.5, "heads": 2}),
    ("qwen2-moe", ["--experts", "3", "--shared-expert-ffn", "20", "--expert-ffn", "16"],
     {"experts": 3, "shared_expert_ffn": 20, "expert_ffn": 16}),
    ("gpt2", ["--drop-layers", "0", "--ffn", "96"], {"drop_layers": [0], "ffn": 96}),
    ("gpt2", ["--merge-layers", "0-1", "--ffn", "0.25"], {"merge": [{"start": 0, "count": 2}], "ffn": 0.25}),
    ("bert", ["--drop-layers", "1", "--ffn", "32"], {"drop_layers": [1], "ffn": 32}),
    ("bert", ["--merge-layers", "0-1", "--merge-norms", "merge"], {"merge": [{"start": 0, "count": 2, "norms": "merge"}]}),
    # Hidden-size pruning (Minitron's embedding channels), alone and with every other pass.
    ("llama-gqa-f32", ["--hidden", "48"], {"hidden": 48}),
    ("llama-gqa-f32", ["--drop-layers", "1", "--kv-heads", "1", "--ffn", "0.5", "--hidden", "0.75"],
     {"drop_layers": [1], "kv_heads": 1, "ffn": 0.5, "hidden": 0.75}),
    ("llama-gqa-bf16", ["--merge-layers", "0-1", "--hidden", "32"], {"merge": [{"start": 0, "count": 2}], "hidden": 32}),
    ("qwen3", ["--heads", "2", "--hidden", "24"], {"heads": 2, "hidden": 24}),
    ("mixtral", ["--experts", "3", "--hidden", "24"], {"experts": 3, "hidden": 24}),
    ("qwen2-moe", ["--hidden", "0.5", "--shared-expert-ffn", "20"], {"hidden": 0.5, "shared_expert_ffn": 20}),
    # Families added with schema version 2.
    ("qwen3-moe", ["--drop-layers", "1", "--experts", "3", "--expert-ffn", "16", "--hidden", "24"],
     {"drop_layers": [1], "experts": 3, "expert_ffn": 16, "hidden": 24}),
    ("qwen3-moe", ["--merge-layers", "2-3", "--heads", "2", "--ffn", "0.5"],
     {"merge": [{"start": 2, "count": 2}], "heads": 2, "ffn": 0.5, "expert_ffn": 0.5}),
    ("olmo2", ["--drop-layers", "1", "--ffn", "0.5", "--hidden", "24"], {"drop_layers": [1], "ffn": 0.5, "hidden": 24}),
    ("olmo2", ["--merge-layers", "0-1", "--merge-norms", "merge"], {"merge": [{"start": 0, "count": 2, "norms": "merge"}]}),
    ("gemma2", ["--heads", "2", "--ffn", "32", "--hidden", "24"], {"heads": 2, "ffn": 32, "hidden": 24}),
    ("gemma2", ["--drop-layers", "0,3", "--kv-heads", "1"], {"drop_layers": [0, 3], "kv_heads": 1}),
]
IDS = [f"{f}:{' '.join(a)}" for f, a, _ in CASES]

SIZE_KEYS = [
    "hidden_size", "num_hidden_layers", "n_layer", "num_attention_heads", "n_head", "num_key_value_heads", "head_dim",
    "intermediate_size", "n_inner", "moe_intermediate_size", "shared_expert_intermediate_size",
    "num_local_experts", "num_experts", "num_experts_per_tok", "layer_types", "mlp_only_layers",
    "decoder_sparse_step", "max_window_layers",
]


def canonical(plan: dict) -> dict:
    """Plans compared as data: keep lists sorted, version and empty sections ignored."""
    out = {}
    for key, value in plan.items():
        if key == "version" or value in ({}, []):
            continue
        out[key] = value
    return json.loads(json.dumps(out, sort_keys=True))


@pytest.fixture(scope="module")
def trims(tmp_path_factory):
    """Runs every case once with pare and once with the reference (from pare's plan)."""
    results = {}
    for fixture, flags, request in CASES:
        base = tmp_path_factory.mktemp("trim")
        before = tree_digest(FIXTURES / fixture)
        proc = run_pare(["trim", FIXTURES / fixture, base / "pare", *flags, "--quiet"])
        assert proc.returncode == 0, proc.stderr
        assert tree_digest(FIXTURES / fixture) == before, "pare trim modified its input"
        record = json.loads((base / "pare" / "pare-trim.json").read_text())
        reference_trim.trim(FIXTURES / fixture, base / "reference", record["plan"])
        results[(fixture, tuple(flags))] = (base / "pare", base / "reference", record, request)
    return results


@pytest.mark.parametrize("fixture,flags,request_", CASES, ids=IDS)
def test_tensors_equal_the_reference_bit_for_bit(trims, fixture, flags, request_):
    pare_out, reference_out, _, _ = trims[(fixture, tuple(flags))]
    ours, theirs = read_tensors(pare_out), read_tensors(reference_out)
    assert sorted(ours) == sorted(theirs), f"names differ: {sorted(set(ours) ^ set(theirs))}"
    for name, a in ours.items():
        b = theirs[name]
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        if a.raw() != b.raw():
            x, y = a.tensor.flatten(), b.tensor.flatten()
            i = int((x != y).nonzero()[0])
            pytest.fail(f"{name}: first difference at flat index {i}: pare {x[i].item()!r}, reference {y[i].item()!r}")


@pytest.mark.parametrize("fixture,flags,request_", CASES, ids=IDS)
def test_pare_chooses_what_the_reference_scoring_chooses(trims, fixture, flags, request_):
    _, _, record, request = trims[(fixture, tuple(flags))]
    expected = reference_trim.resolve(FIXTURES / fixture, request)
    assert canonical(record["plan"]) == canonical(expected)


@pytest.mark.parametrize("fixture,flags,request_", CASES, ids=IDS)
def test_transformers_loads_pare_output_with_the_reference_logits(trims, fixture, flags, request_):
    pare_out, reference_out, _, _ = trims[(fixture, tuple(flags))]
    ours = json.loads((pare_out / "config.json").read_text())
    theirs = json.loads((reference_out / "config.json").read_text())
    for key in SIZE_KEYS:
        a, b = ours.get(key), theirs.get(key)
        if key == "max_window_layers" and a is not None and b is not None:
            # Only layers below it matter: a value at or past the last layer covers them all,
            # and pare leaves such a value as the user wrote it.
            layers = ours["num_hidden_layers"]
            a, b = min(a, layers), min(b, layers)
        assert a == b, f"config {key}: pare {ours.get(key)!r}, reference {theirs.get(key)!r}"
    logits, hidden = forward(load_model(pare_out))
    ref_logits, ref_hidden = forward(load_model(reference_out))
    assert torch.equal(logits, ref_logits)
    assert torch.equal(hidden, ref_hidden)
    proc = run_pare(["validate", pare_out])
    assert proc.returncode == 0, proc.stderr


def test_provenance_records_the_input_tensor_hashes(trims):
    pare_out, _, record, _ = trims[("mixtral", ("--experts", "2", "--expert-ffn", "16", "--kv-heads", "1"))]
    tensors = read_tensors(FIXTURES / "mixtral")
    recorded = {t["name"]: t["sha256"] for t in record["input_tensors"]}
    assert recorded == {name: hashlib.sha256(t.raw()).hexdigest() for name, t in tensors.items()}


def test_a_recorded_trim_replays_bit_for_bit(trims, tmp_path):
    pare_out, _, _, _ = trims[("qwen2-moe", ("--drop-layers", "0", "--experts", "2", "--ffn", "0.5", "--heads", "2"))]
    proc = run_pare(["trim", FIXTURES / "qwen2-moe", tmp_path / "again", "--recipe", pare_out / "pare-trim.json", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    a, b = read_tensors(pare_out), read_tensors(tmp_path / "again")
    assert {k: v.raw() for k, v in a.items()} == {k: v.raw() for k, v in b.items()}


def test_dry_run_writes_nothing_and_reports_the_plan(tmp_path):
    proc = run_pare(["trim", FIXTURES / "qwen2-moe", tmp_path / "out", "--experts", "2", "--ffn", "0.5", "--dry-run", "--json"])
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []
    plan = json.loads(proc.stdout)
    assert plan["axes"]["experts"] == {"before": 4, "after": 2}
    assert plan["parameters"]["after"] < plan["parameters"]["before"]
    assert plan["kv_cache_bytes_per_token"]["before"] == plan["kv_cache_bytes_per_token"]["after"]
    real = run_pare(["trim", FIXTURES / "qwen2-moe", tmp_path / "out", "--experts", "2", "--ffn", "0.5", "--json"])
    assert json.loads(real.stdout)["parameters"] == plan["parameters"]


def test_in_place_trim_swaps_only_when_complete(tmp_path):
    import shutil
    model = tmp_path / "model"
    shutil.copytree(FIXTURES / "llama-gqa-f32", model)
    proc = run_pare(["trim", model, "--in-place", "--drop-layers", "1"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((model / "config.json").read_text())["num_hidden_layers"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    # A refused trim leaves it as it was.
    before = tree_digest(model)
    expect_error(run_pare(["trim", model, "--in-place", "--heads", "3"]), 1, "multiple of")
    assert tree_digest(model) == before


@pytest.mark.parametrize("fixture,flags,fragment", [
    ("gpt2", ["--heads", "2"], "head_dim"),
    ("llama-gqa-f32", ["--heads", "3"], "kv head h / 2"),
    ("mixtral", ["--experts", "1"], "num_experts_per_tok"),
    ("llama-gqa-f32", ["--drop-layers", "7"], "numbered 0 to 1"),
    # The class derives head_dim from hidden and heads: fewer of either changes the head size.
    ("gpt2", ["--hidden", "32"], "head_dim = hidden / heads"),
    ("bert", ["--hidden", "16"], "head_dim = hidden / heads"),
    ("bert", ["--heads", "2"], "derives head_dim = hidden / heads"),
    # OLMo2 normalises q and k over all heads at once.
    ("olmo2", ["--kv-heads", "1"], "one statistic across kv_heads"),
    ("olmo2", ["--heads", "2"], "one statistic across"),
    # LlamaConfig / Gemma2Config refuse a hidden size that is not a multiple of the heads.
    ("llama-gqa-f32", ["--hidden", "50"], "hidden / heads to divide exactly"),
    ("gemma2", ["--heads", "2", "--hidden", "27"], "27 / 2"),
    ("qwen3-moe", ["--shared-expert-ffn", "8"], "no shared_expert_ffn axis"),
])
def test_refusals_write_nothing(tmp_path, fixture, flags, fragment):
    proc = run_pare(["trim", FIXTURES / fixture, tmp_path / "out", *flags])
    expect_error(proc, 1, fragment)
    assert list(tmp_path.iterdir()) == []


def test_merging_a_dense_layer_into_an_moe_layer_is_refused(tmp_path):
    # qwen2-moe's layer 1 is dense (mlp_only_layers), layers 0 and 2 are MoE.
    expect_error(run_pare(["trim", FIXTURES / "qwen2-moe", tmp_path / "out", "--merge-layers", "1-2"]), 1, "same tensors")
    assert list(tmp_path.iterdir()) == []


def test_unknown_tensors_are_refused_unless_kept(tmp_path):
    import shutil
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(FIXTURES / "bert", model)
    tensors = load_file(model / "model.safetensors")
    tensors["extra.adapter.weight"] = torch.arange(3, dtype=torch.float32)
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    expect_error(run_pare(["trim", model, tmp_path / "out", "--ffn", "32"]), 1, "extra.adapter.weight", "--keep-unknown")
    proc = run_pare(["trim", model, tmp_path / "out", "--ffn", "32", "--keep-unknown", "--quiet"])
    assert proc.returncode == 0 and "extra.adapter.weight" in proc.stderr
    assert torch.equal(read_tensors(tmp_path / "out")["extra.adapter.weight"].tensor, torch.arange(3, dtype=torch.float32))


@pytest.mark.parametrize("flags", [["--kv-heads", "0"], ["--heads", "-2"], ["--experts", "0"], ["--ffn", "0"], []])
def test_usage_errors_exit_64(tmp_path, flags):
    proc = run_pare(["trim", FIXTURES / "mixtral", tmp_path / "out", *flags])
    assert proc.returncode == 64, proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_keep_unknown_is_refused_when_layers_move(tmp_path):
    import shutil
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(FIXTURES / "bert", model)
    tensors = load_file(model / "model.safetensors")
    tensors["bert.encoder.layer.1.adapter.weight"] = torch.ones(2)
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    expect_error(run_pare(["trim", model, tmp_path / "out", "--drop-layers", "0", "--keep-unknown"]), 1, "renumbered")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("fixture,prefix", [("gpt2", "transformer."), ("bert", "bert.")])
def test_base_model_checkpoints_without_the_prefix(tmp_path, fixture, prefix):
    """GPT2Model / BertModel / sentence-transformers checkpoints name tensors without the
    head class's prefix; pare matches and writes them as they are, with the same bytes."""
    import shutil
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(FIXTURES / fixture, model)
    tensors = {k[len(prefix):]: v for k, v in load_file(model / "model.safetensors").items() if k.startswith(prefix)}
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((model / "config.json").read_text())
    config["architectures"] = ["GPT2Model" if fixture == "gpt2" else "BertModel"]  # the base model alone
    (model / "config.json").write_text(json.dumps(config, indent=2))
    assert run_pare(["validate", model]).returncode == 0
    flags = ["--drop-layers", "0", "--ffn", "0.5", "--quiet"]
    assert run_pare(["trim", model, tmp_path / "bare", *flags]).returncode == 0
    assert run_pare(["trim", FIXTURES / fixture, tmp_path / "full", *flags]).returncode == 0
    bare, full = read_tensors(tmp_path / "bare"), read_tensors(tmp_path / "full")
    assert {k: v.raw() for k, v in bare.items()} == {k[len(prefix):]: v.raw() for k, v in full.items() if k.startswith(prefix)}
    from transformers import AutoModel

    loaded, info = AutoModel.from_pretrained(str(tmp_path / "bare"), output_loading_info=True)
    # The fixture was saved from the MLM head class, which has no pooler.
    assert {k for k in info["missing_keys"] if not k.startswith("pooler.")} == set()
    assert not info["unexpected_keys"] and not info["mismatched_keys"]
    with torch.no_grad():
        out = loaded.eval()(input_ids=torch.tensor([[1, 5, 7, 9]]))
    assert torch.isfinite(out.last_hidden_state).all()
