"""Proof that tools/reference_trim.py is right, independently of pare.

The reference is the yardstick pare's `trim` is compared against bit for bit, so it
is checked here against things that do not share its code:

* transformers itself: every output loads through from_pretrained with no missing,
  unexpected or mismatched weight, runs a forward pass, and has the config values the
  request implies; on-disk shapes agree with the config (`check_disk_shapes`).
* an emulation on the *untrimmed* model (`emulate`): removed query heads / kv groups
  get their o_proj columns zeroed, removed FFN channels their down-projection columns
  (gpt2: c_proj rows), removed experts are masked out of the router (logit -inf),
  dropped and merged-away layers are replaced by an identity, merged layers get the
  LaCo formula computed here in float64. Its logits must equal the trimmed model's.
* the LaCo formula recomputed in float64 from the input files;
* hand-made tensors with known norms and ties for the default selection.

Why logits are compared with a tolerance rather than bit for bit: a zeroed column still
takes part in the matmul's reduction, and a reduction over a different length is blocked
and summed in a different order by the BLAS kernel, so results differ by float32
rounding (observed: max |diff| <= 2e-7, about half of the cases bit-equal). The same holds for the router's
softmax over 4 vs 3 entries. Dropping a layer (identity) and the weights themselves are
checked bit for bit.

This file needs no pare binary: it overrides conftest's `_require_pare_binary`.
Run: .venv/bin/python -m pytest tools/interop/test_reference_trim.py -q
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import FIXTURES, REPO_ROOT, load_model, model_inputs, read_tensors

sys.path.insert(0, str(REPO_ROOT / "tools"))
import reference_trim as rt  # noqa: E402

PLANS_DIR = Path(__file__).resolve().parent / "trim_plans"
RTOL, ATOL = 1e-5, 2e-6  # float32 logits, see the module docstring


@pytest.fixture(scope="session", autouse=True)
def _require_pare_binary():
    """Overrides conftest's fixture: the reference is checked without pare."""
    if not FIXTURES.is_dir():
        pytest.fail(f"no fixtures under {FIXTURES}; run tools/make_fixtures.py", pytrace=False)


# ============================================================================ extra tiny models


@torch.no_grad()
def _noisy_constants(model, seed=7):
    """Give constant-initialised parameters (norm weights, biases) distinct values."""
    gen = torch.Generator().manual_seed(seed)
    for _, p in model.named_parameters():
        flat = p.reshape(-1)
        if flat.numel() and bool((flat == flat[0]).all()):
            p.copy_(float(flat[0]) + 0.05 * torch.randn(p.shape, generator=gen))


def _save(model, folder: Path) -> Path:
    _noisy_constants(model)
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def extra_models(tmp_path_factory) -> dict[str, Path]:
    """Families / layouts the committed fixtures do not cover."""
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen2MoeConfig,
        Qwen2MoeForCausalLM,
    )

    root = tmp_path_factory.mktemp("extra_models")
    common = dict(vocab_size=128, hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=64, tie_word_embeddings=False)
    torch.manual_seed(11)
    out = {}
    out["mistral"] = _save(
        MistralForCausalLM(MistralConfig(intermediate_size=48, num_hidden_layers=4, head_dim=8, **common)),
        root / "mistral",
    )
    # Biases on q/k/v/o and on gate/up/down.
    out["llama-bias"] = _save(
        LlamaForCausalLM(LlamaConfig(intermediate_size=48, num_hidden_layers=3, attention_bias=True, mlp_bias=True,
                                     **common)),
        root / "llama-bias",
    )
    # Sliding window on the layers >= max_window_layers: layer_types = [full, full, sliding, sliding].
    out["qwen2-sliding"] = _save(
        Qwen2ForCausalLM(Qwen2Config(intermediate_size=48, num_hidden_layers=4, use_sliding_window=True,
                                     sliding_window=4, max_window_layers=2, **common)),
        root / "qwen2-sliding",
    )
    moe = dict(intermediate_size=40, moe_intermediate_size=16, shared_expert_intermediate_size=24,
               num_experts=4, num_experts_per_tok=2, norm_topk_prob=False, **common)
    # decoder_sparse_step=2: layers 1 and 3 are MoE, 0 and 2 dense.
    out["qwen2-moe-step2"] = _save(
        Qwen2MoeForCausalLM(Qwen2MoeConfig(num_hidden_layers=4, decoder_sparse_step=2, mlp_only_layers=[], **moe)),
        root / "qwen2-moe-step2",
    )
    # Kinds S S D S S: two adjacent MoE layers to merge, a dense one in the middle.
    out["qwen2-moe-5"] = _save(
        Qwen2MoeForCausalLM(Qwen2MoeConfig(num_hidden_layers=5, decoder_sparse_step=1, mlp_only_layers=[2], **moe)),
        root / "qwen2-moe-5",
    )
    return out


def model_dir(name: str, extra: dict) -> Path:
    return extra[name] if name in extra else FIXTURES / name


# ============================================================================ helpers


def read_config(folder) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


@torch.no_grad()
def logits_of(model) -> torch.Tensor:
    return model(**model_inputs(model.config), use_cache=False).logits


def decoder_layers(model) -> torch.nn.ModuleList:
    for path in ("model.layers", "transformer.h", "bert.encoder.layer"):
        obj = model
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
            return obj
        except AttributeError:
            continue
    raise AssertionError("no decoder layers found")


class Skip(torch.nn.Module):
    """A layer that returns its input: what dropping the layer computes."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


def norm_param_names(layer: torch.nn.Module) -> set[str]:
    """Parameters of norm modules, found by module class (independent of the reference's list)."""
    names = set()
    for mod_name, mod in layer.named_modules():
        if isinstance(mod, torch.nn.LayerNorm) or "RMSNorm" in type(mod).__name__:
            for p_name, _ in mod.named_parameters(recurse=False):
                names.add(f"{mod_name}.{p_name}" if mod_name else p_name)
    return names


def mask_router(gate: torch.nn.Module, removed: list[int]) -> None:
    """Make a MoE router ignore experts `removed`: their logits become -inf before softmax.
    Mirrors MixtralTopKRouter / Qwen2MoeTopKRouter.forward of transformers 5.24 with the mask
    added (checked by test_router_mask_is_faithful)."""
    kind = type(gate).__name__

    def forward(hidden_states):
        hidden_states = hidden_states.reshape(-1, gate.hidden_dim)
        logits = F.linear(hidden_states, gate.weight)
        if removed:
            logits = logits.clone()
            logits[:, removed] = float("-inf")
        if kind == "MixtralTopKRouter":
            probs = torch.softmax(logits.float(), dim=-1)
            top, idx = torch.topk(probs, gate.top_k, dim=-1)
            top = top / top.sum(dim=-1, keepdim=True)
            return logits, top, idx
        assert kind == "Qwen2MoeTopKRouter", kind
        probs = torch.softmax(logits, dtype=torch.float, dim=-1)
        top, idx = torch.topk(probs, gate.top_k, dim=-1)
        if gate.norm_topk_prob:
            top = top / top.sum(dim=-1, keepdim=True)
        return logits, top.to(logits.dtype), idx

    gate.forward = forward


@torch.no_grad()
def emulate(model, plan: dict, stored_dtype: torch.dtype) -> torch.nn.Module:
    """Turn the untrimmed model (loaded in float32) into one that computes what the trimmed
    model should compute. Written from the plan's semantics, not from the reference's code."""
    cfg = model.config
    layers = decoder_layers(model)
    original = [{n: p.detach().clone() for n, p in layer.named_parameters()} for layer in layers]

    removed_layers = set(plan.get("drop_layers", []))
    for m in plan.get("merge", []):
        run = m["layers"]
        first = layers[run[0]]
        norms = norm_param_names(first)
        for name, p in first.named_parameters():
            if m.get("norms", "first") == "first" and name in norms:
                continue
            base = original[run[0]][name].double()
            total = base + sum(original[k][name].double() - base for k in run[1:])
            p.copy_(total.to(stored_dtype).to(p.dtype))  # as stored in the checkpoint's dtype
        removed_layers |= set(run[1:])

    for layer_key, entry in plan.get("attention", {}).items():
        H = cfg.num_attention_heads
        KV = cfg.num_key_value_heads
        hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
        group = H // KV
        kv_keep = entry.get("kv_heads", list(range(KV)))
        q_keep = entry.get("query_heads", [list(range(group))] * len(kv_keep))
        kept = {k * group + j for k, js in zip(kv_keep, q_keep) for j in js}
        o = layers[int(layer_key)].self_attn.o_proj.weight
        for h in range(H):
            if h not in kept:
                o[:, h * hd:(h + 1) * hd] = 0

    for layer_key, keep in plan.get("ffn", {}).items():
        layer = layers[int(layer_key)]
        if cfg.model_type == "gpt2":
            w, dim = layer.mlp.c_proj.weight, 0
        elif cfg.model_type == "bert":
            w, dim = layer.output.dense.weight, 1
        else:
            w, dim = layer.mlp.down_proj.weight, 1
        gone = [c for c in range(w.shape[dim]) if c not in keep]
        if dim == 0:
            w[gone, :] = 0
        else:
            w[:, gone] = 0

    for layer_key, keep in plan.get("shared_expert_ffn", {}).items():
        w = layers[int(layer_key)].mlp.shared_expert.down_proj.weight
        w[:, [c for c in range(w.shape[1]) if c not in keep]] = 0

    for layer_key, per_expert in plan.get("expert_ffn", {}).items():
        down = layers[int(layer_key)].mlp.experts.down_proj  # [E, H, F]
        for e, keep in per_expert.items():
            down[int(e)][:, [c for c in range(down.shape[2]) if c not in keep]] = 0

    for layer_key, keep in plan.get("experts", {}).items():
        gate = layers[int(layer_key)].mlp.gate
        mask_router(gate, [e for e in range(gate.weight.shape[0]) if e not in keep])

    for i in removed_layers:
        layers[i] = Skip()
    return model


def check_disk_shapes(folder) -> None:
    """Every tensor on disk has the shape the config implies; layers are exactly 0..n-1."""
    cfg = read_config(folder)
    T = read_tensors(folder)
    shape = {k: list(r.shape) for k, r in T.items()}
    mt = cfg["model_type"]
    if mt == "gpt2":
        n, d = cfg["n_layer"], cfg["n_embd"]
        inner = cfg["n_inner"] or 4 * d
        prefix = "transformer.h."
        for i in range(n):
            p = f"{prefix}{i}."
            assert shape[p + "attn.c_attn.weight"] == [d, 3 * d]
            assert shape[p + "mlp.c_fc.weight"] == [d, inner] and shape[p + "mlp.c_fc.bias"] == [inner]
            assert shape[p + "mlp.c_proj.weight"] == [inner, d] and shape[p + "mlp.c_proj.bias"] == [d]
    elif mt == "bert":
        n, d, inner = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]
        prefix = "bert.encoder.layer."
        for i in range(n):
            p = f"{prefix}{i}."
            assert shape[p + "attention.self.query.weight"] == [d, d]
            assert shape[p + "intermediate.dense.weight"] == [inner, d] and shape[p + "intermediate.dense.bias"] == [inner]
            assert shape[p + "output.dense.weight"] == [d, inner]
    else:
        n, d = cfg["num_hidden_layers"], cfg["hidden_size"]
        H = cfg["num_attention_heads"]
        KV = cfg.get("num_key_value_heads") or H
        hd = cfg.get("head_dim") or d // H
        prefix = "model.layers."
        for i in range(n):
            p = f"{prefix}{i}."
            assert shape[p + "self_attn.q_proj.weight"] == [H * hd, d]
            assert shape[p + "self_attn.k_proj.weight"] == [KV * hd, d]
            assert shape[p + "self_attn.v_proj.weight"] == [KV * hd, d]
            assert shape[p + "self_attn.o_proj.weight"] == [d, H * hd]
            for b, rows in (("q_proj", H * hd), ("k_proj", KV * hd), ("v_proj", KV * hd)):
                if p + f"self_attn.{b}.bias" in shape:
                    assert shape[p + f"self_attn.{b}.bias"] == [rows]
            if mt == "mixtral":
                E, f = cfg["num_local_experts"], cfg["intermediate_size"]
                moe = p + "block_sparse_moe."
                assert shape[moe + "gate.weight"] == [E, d]
                for e in range(E):
                    assert shape[f"{moe}experts.{e}.w1.weight"] == [f, d]
                    assert shape[f"{moe}experts.{e}.w3.weight"] == [f, d]
                    assert shape[f"{moe}experts.{e}.w2.weight"] == [d, f]
                assert f"{moe}experts.{E}.w1.weight" not in shape
                continue
            sparse = (
                mt == "qwen2_moe"
                and i not in cfg["mlp_only_layers"]
                and cfg["num_experts"] > 0
                and (i + 1) % cfg["decoder_sparse_step"] == 0
            )
            if sparse:
                E, f, sf = cfg["num_experts"], cfg["moe_intermediate_size"], cfg["shared_expert_intermediate_size"]
                assert shape[p + "mlp.gate.weight"] == [E, d]
                for e in range(E):
                    for w in ("gate_proj", "up_proj"):
                        assert shape[f"{p}mlp.experts.{e}.{w}.weight"] == [f, d]
                    assert shape[f"{p}mlp.experts.{e}.down_proj.weight"] == [d, f]
                assert f"{p}mlp.experts.{E}.gate_proj.weight" not in shape
                assert shape[p + "mlp.shared_expert.gate_proj.weight"] == [sf, d]
                assert shape[p + "mlp.shared_expert.down_proj.weight"] == [d, sf]
                assert shape[p + "mlp.shared_expert_gate.weight"] == [1, d]
            else:
                f = cfg["intermediate_size"]
                assert shape[p + "mlp.gate_proj.weight"] == [f, d]
                assert shape[p + "mlp.up_proj.weight"] == [f, d]
                assert shape[p + "mlp.down_proj.weight"] == [d, f]
    layer_ids = {int(k[len(prefix):].split(".")[0]) for k in shape if k.startswith(prefix)}
    assert layer_ids == set(range(n)), f"layer indices on disk {sorted(layer_ids)} != 0..{n - 1}"


# ============================================================================ cases

# (model, case id, request, expected config values)
CASES = [
    ("llama-gqa-f32", "drop", {"drop_layers": [0]}, {"num_hidden_layers": 1}),
    ("llama-gqa-f32", "merge", {"merge": [{"start": 0, "count": 2}]}, {"num_hidden_layers": 1}),
    ("llama-gqa-f32", "merge-norms", {"merge": [{"start": 0, "count": 2, "norms": "merge"}]}, {"num_hidden_layers": 1}),
    ("llama-gqa-f32", "kv_heads", {"kv_heads": 1}, {"num_key_value_heads": 1, "num_attention_heads": 2, "head_dim": 16}),
    ("llama-gqa-f32", "heads", {"heads": 2}, {"num_key_value_heads": 2, "num_attention_heads": 2, "head_dim": 16}),
    ("llama-gqa-f32", "ffn", {"ffn": 0.75}, {"intermediate_size": 72}),
    ("llama-gqa-f32", "chain", {"merge": [{"start": 0, "count": 2}], "kv_heads": 1, "heads": 1, "ffn": 50},
     {"num_hidden_layers": 1, "num_key_value_heads": 1, "num_attention_heads": 1, "intermediate_size": 50}),
    ("llama-gqa-bf16", "chain", {"drop_layers": [1], "heads": 2, "ffn": 0.5},
     {"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 48}),
    ("llama-gqa-bf16", "merge", {"merge": [{"start": 0, "count": 2}]}, {"num_hidden_layers": 1}),
    ("llama-sharded", "chain", {"drop_layers": [0], "kv_heads": 1, "ffn": 0.25},
     {"num_hidden_layers": 1, "num_key_value_heads": 1, "num_attention_heads": 2, "intermediate_size": 24}),
    ("mistral", "chain", {"merge": [{"start": 1, "count": 2}], "drop_layers": [3], "kv_heads": 1, "heads": 1, "ffn": 0.5},
     {"num_hidden_layers": 2, "num_key_value_heads": 1, "num_attention_heads": 1, "head_dim": 8, "intermediate_size": 24}),
    ("llama-bias", "chain", {"merge": [{"start": 1, "count": 2}], "kv_heads": 1, "heads": 1, "ffn": 0.5},
     {"num_hidden_layers": 2, "num_key_value_heads": 1, "num_attention_heads": 1, "head_dim": 8, "intermediate_size": 24}),
    ("llama-bias", "heads", {"heads": 2}, {"num_key_value_heads": 2, "num_attention_heads": 2, "head_dim": 8}),
    ("qwen3", "drop", {"drop_layers": [1]}, {"num_hidden_layers": 2, "max_window_layers": 2}),
    ("qwen3", "merge3", {"merge": [{"start": 0, "count": 3}]}, {"num_hidden_layers": 1}),
    ("qwen3", "kv_heads", {"kv_heads": 1}, {"num_key_value_heads": 1, "num_attention_heads": 2, "head_dim": 16}),
    ("qwen3", "heads", {"heads": 2}, {"num_key_value_heads": 2, "num_attention_heads": 2, "head_dim": 16}),
    ("qwen3", "ffn", {"ffn": 0.5}, {"intermediate_size": 40}),
    ("qwen3", "chain", {"merge": [{"start": 0, "count": 2}], "drop_layers": [2], "heads": 2, "ffn": 33},
     {"num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "intermediate_size": 33}),
    ("qwen2-sliding", "drop", {"drop_layers": [0]},
     {"num_hidden_layers": 3, "max_window_layers": 1, "layer_types": ["full_attention", "sliding_attention", "sliding_attention"]}),
    ("qwen2-sliding", "chain", {"drop_layers": [2], "kv_heads": 1, "ffn": 0.5},
     {"num_hidden_layers": 3, "max_window_layers": 2, "num_key_value_heads": 1, "intermediate_size": 24,
      "layer_types": ["full_attention", "full_attention", "sliding_attention"]}),
    ("mixtral", "drop", {"drop_layers": [0]}, {"num_hidden_layers": 1}),
    ("mixtral", "merge", {"merge": [{"start": 0, "count": 2}]}, {"num_hidden_layers": 1}),
    ("mixtral", "heads", {"heads": 2}, {"num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8}),
    ("mixtral", "kv_heads", {"kv_heads": 1}, {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8}),
    ("mixtral", "experts", {"experts": 3}, {"num_local_experts": 3, "num_experts_per_tok": 2}),
    ("mixtral", "expert_ffn", {"expert_ffn": 0.5}, {"intermediate_size": 24}),
    ("mixtral", "chain", {"merge": [{"start": 0, "count": 2}], "kv_heads": 1, "experts": 2, "expert_ffn": 16},
     {"num_hidden_layers": 1, "num_key_value_heads": 1, "num_local_experts": 2, "intermediate_size": 16}),
    ("qwen2-moe", "drop", {"drop_layers": [0]}, {"num_hidden_layers": 2, "mlp_only_layers": [0], "decoder_sparse_step": 1}),
    ("qwen2-moe", "heads", {"heads": 2}, {"num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 8}),
    ("qwen2-moe", "kv_heads", {"kv_heads": 1}, {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8}),
    ("qwen2-moe", "ffn", {"ffn": 0.5}, {"intermediate_size": 32, "moe_intermediate_size": 24}),
    ("qwen2-moe", "experts", {"experts": 2}, {"num_experts": 2}),
    ("qwen2-moe", "expert_ffn", {"expert_ffn": 12}, {"moe_intermediate_size": 12, "intermediate_size": 64}),
    ("qwen2-moe", "shared_expert_ffn", {"shared_expert_ffn": 0.25}, {"shared_expert_intermediate_size": 10}),
    ("qwen2-moe", "chain", {"drop_layers": [2], "heads": 2, "ffn": 16, "experts": 3, "expert_ffn": 8, "shared_expert_ffn": 20},
     {"num_hidden_layers": 2, "mlp_only_layers": [1], "num_attention_heads": 2, "intermediate_size": 16,
      "num_experts": 3, "moe_intermediate_size": 8, "shared_expert_intermediate_size": 20}),
    ("qwen2-moe-5", "chain",
     {"merge": [{"start": 0, "count": 2}], "drop_layers": [3], "kv_heads": 1, "ffn": 20, "experts": 3, "expert_ffn": 8,
      "shared_expert_ffn": 12},
     {"num_hidden_layers": 3, "mlp_only_layers": [1], "decoder_sparse_step": 1, "num_key_value_heads": 1,
      "num_attention_heads": 2, "intermediate_size": 20, "num_experts": 3, "moe_intermediate_size": 8,
      "shared_expert_intermediate_size": 12}),
    ("qwen2-moe-step2", "drop", {"drop_layers": [0]},
     {"num_hidden_layers": 3, "decoder_sparse_step": 1, "mlp_only_layers": [1]}),
    ("qwen2-moe-step2", "drop-keeps-step", {"drop_layers": [0, 1]},
     {"num_hidden_layers": 2, "decoder_sparse_step": 2, "mlp_only_layers": []}),
    ("gpt2", "drop", {"drop_layers": [1]}, {"n_layer": 1}),
    ("gpt2", "merge", {"merge": [{"start": 0, "count": 2}]}, {"n_layer": 1}),
    ("gpt2", "ffn", {"ffn": 0.75}, {"n_inner": 144}),
    ("gpt2", "chain", {"merge": [{"start": 0, "count": 2, "norms": "merge"}], "ffn": 100}, {"n_layer": 1, "n_inner": 100}),
    ("bert", "drop", {"drop_layers": [0]}, {"num_hidden_layers": 1}),
    ("bert", "merge", {"merge": [{"start": 0, "count": 2}]}, {"num_hidden_layers": 1}),
    ("bert", "ffn", {"ffn": 40}, {"intermediate_size": 40}),
    ("bert", "chain", {"drop_layers": [1], "ffn": 0.5}, {"num_hidden_layers": 1, "intermediate_size": 32}),
]


def _dtype_of(folder) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[read_config(folder)["dtype"]]


def check_against_emulation(src: Path, out: Path, plan: dict) -> float:
    """Trimmed model (out) vs emulated untrimmed model (src), both computed in float32."""
    trimmed = load_model(out, torch.float32)
    got = logits_of(trimmed)
    assert torch.isfinite(got).all()
    want = logits_of(emulate(load_model(src, torch.float32), plan, _dtype_of(src)))
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)
    return float((got - want).abs().max())


@pytest.mark.parametrize("name,case,request_,expected", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_case(name, case, request_, expected, extra_models, tmp_path):
    src = model_dir(name, extra_models)
    before = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    plan = rt.resolve(src, request_)
    json.dumps(plan)  # plain JSON
    out = rt.trim(src, tmp_path / "out", plan)
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == before, "input modified"

    cfg = read_config(out)
    for key, value in expected.items():
        assert cfg[key] == value, f"config {key} = {cfg[key]!r}, expected {value!r}"
    orig = read_config(src)
    for key in set(orig) - {"transformers_version"} - set(expected) - {
        "num_hidden_layers", "n_layer", "layer_types", "max_window_layers", "mlp_only_layers", "decoder_sparse_step",
        "num_attention_heads", "num_key_value_heads", "head_dim",
    }:
        assert cfg[key] == orig[key], f"config {key} changed: {orig[key]!r} -> {cfg[key]!r}"
    if "layer_types" in cfg:
        assert len(cfg["layer_types"]) == cfg["num_hidden_layers"]
    check_disk_shapes(out)
    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    # dtype as saved
    assert {r.dtype for r in read_tensors(out).values()} == {r.dtype for r in read_tensors(src).values()}

    load_model(out)  # in its own dtype: no missing / unexpected / mismatched weights
    check_against_emulation(src, out, plan)


# ============================================================================ bit-level checks


def _layers_on_disk(T: dict, prefix: str) -> dict[int, dict]:
    out: dict[int, dict] = {}
    for k, r in T.items():
        if k.startswith(prefix):
            i, rest = k[len(prefix):].split(".", 1)
            out.setdefault(int(i), {})[rest] = r.tensor
    return out


def _prefix(model_type: str) -> str:
    return {"gpt2": "transformer.h.", "bert": "bert.encoder.layer."}.get(model_type, "model.layers.")


@pytest.mark.parametrize("name", ["llama-gqa-f32", "llama-gqa-bf16", "qwen3", "mixtral", "gpt2", "bert"])
@pytest.mark.parametrize("norms", ["first", "merge"])
def test_laco_merge_formula(name, norms, tmp_path):
    """Merged tensors = θ_l + Σ(θ_{l+k} − θ_l) from the ORIGINAL weights. Checked against float64
    (bf16: bit-exact, since differences and sums of bf16 values are exact in float32 here; f32:
    within 2 ulp, and bit-exact against the documented float32 left-to-right order)."""
    src = FIXTURES / name
    n = read_config(src).get("num_hidden_layers") or read_config(src)["n_layer"]
    run = list(range(0, min(n, 3)))
    plan = {"merge": [{"layers": run, "norms": norms}]}
    out = rt.trim(src, tmp_path / "out", plan)
    prefix = _prefix(read_config(src)["model_type"])
    A = _layers_on_disk(read_tensors(src), prefix)
    B = _layers_on_disk(read_tensors(out), prefix)
    assert sorted(B) == list(range(n - len(run) + 1))
    norm_names = {k for k in A[0] if "norm" in k.lower() or k.startswith("ln_")}
    assert norm_names, "no norms found"
    for tname, merged in B[0].items():
        base = A[run[0]][tname]
        if norms == "first" and tname in norm_names:
            assert torch.equal(merged, base), f"{tname}: norms 'first' must keep layer {run[0]}"
            continue
        exact = base.double() + sum(A[k][tname].double() - base.double() for k in run[1:])
        if base.dtype == torch.bfloat16:
            assert torch.equal(merged, exact.to(torch.bfloat16)), tname
        else:
            # float32 left to right, recomputed with numpy
            a = base.numpy().astype(np.float32)
            acc = a.copy()
            for k in run[1:]:
                acc = acc + (A[k][tname].numpy().astype(np.float32) - a)
            assert np.array_equal(merged.numpy(), acc), tname
            # and close to the exact value: a few float32 roundings of terms no larger than `scale`
            scale = torch.stack([A[k][tname].double().abs() for k in run]).amax(dim=0)
            err = (merged.double() - exact).abs()
            assert bool((err <= 4 * torch.finfo(torch.float32).eps * scale).all()), tname
    # the layers after the run move down, untouched
    for new_i, old_i in enumerate(range(run[-1] + 1, n), start=1):
        for tname, t in B[new_i].items():
            assert torch.equal(t, A[old_i][tname])


def test_experts_kept_bit_identical(tmp_path):
    """Experts: the kept experts' weights and router rows are the original ones, bit for bit,
    renumbered in original order; the shared expert is untouched."""
    for name, plan in [
        ("mixtral", {"experts": {"0": [3, 1, 0], "1": [0, 2, 3]}}),
        ("qwen2-moe", {"experts": {"0": [1, 3], "2": [0, 2]}}),
    ]:
        src = FIXTURES / name
        out = rt.trim(src, tmp_path / name, plan)
        A, B = read_tensors(src), read_tensors(out)
        moe = "block_sparse_moe" if name == "mixtral" else "mlp"
        weights = ("w1", "w2", "w3") if name == "mixtral" else ("gate_proj", "up_proj", "down_proj")
        for layer, keep in plan["experts"].items():
            keep = sorted(keep)
            p = f"model.layers.{layer}.{moe}."
            assert torch.equal(B[p + "gate.weight"].tensor, A[p + "gate.weight"].tensor[keep])
            for new_e, old_e in enumerate(keep):
                for w in weights:
                    assert torch.equal(B[f"{p}experts.{new_e}.{w}.weight"].tensor, A[f"{p}experts.{old_e}.{w}.weight"].tensor)
            assert f"{p}experts.{len(keep)}.{weights[0]}.weight" not in B
        for k, r in A.items():  # everything outside the experts/router is untouched
            if ".experts." not in k and not k.endswith("gate.weight") or "shared_expert" in k:
                assert torch.equal(B[k].tensor, r.tensor), k


def test_attention_rows_bit_identical(tmp_path):
    """Head pruning picks exactly the documented rows: q rows / o columns of (k*group + j),
    k / v rows (and biases) of kv head k; qwen3 q_norm/k_norm untouched."""
    for name in ("qwen2-moe", "qwen3"):
        src = FIXTURES / name
        cfg = read_config(src)
        H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        hd = cfg.get("head_dim") or cfg["hidden_size"] // H
        group = H // KV
        plan = {"attention": {str(i): {"kv_heads": [1], "query_heads": [[1]]} for i in range(cfg["num_hidden_layers"])}}
        out = rt.trim(src, tmp_path / name, plan)
        A, B = read_tensors(src), read_tensors(out)
        q = slice((1 * group + 1) * hd, (1 * group + 2) * hd)
        kv = slice(1 * hd, 2 * hd)
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}.self_attn."
            assert torch.equal(B[p + "q_proj.weight"].tensor, A[p + "q_proj.weight"].tensor[q])
            assert torch.equal(B[p + "o_proj.weight"].tensor, A[p + "o_proj.weight"].tensor[:, q])
            for w in ("k_proj", "v_proj"):
                assert torch.equal(B[p + w + ".weight"].tensor, A[p + w + ".weight"].tensor[kv])
            if p + "q_proj.bias" in A:
                assert torch.equal(B[p + "q_proj.bias"].tensor, A[p + "q_proj.bias"].tensor[q])
                assert torch.equal(B[p + "k_proj.bias"].tensor, A[p + "k_proj.bias"].tensor[kv])
            for nrm in ("q_norm.weight", "k_norm.weight"):
                if p + nrm in A:
                    assert torch.equal(B[p + nrm].tensor, A[p + nrm].tensor)


def test_drop_layer_is_bit_exact(tmp_path):
    """Dropping a layer computes exactly what skipping it computes (same ops on the same inputs)."""
    for name, drop in [("llama-gqa-f32", [0]), ("qwen3", [1]), ("gpt2", [0]), ("bert", [1]), ("mixtral", [1])]:
        src = FIXTURES / name
        out = rt.trim(src, tmp_path / name, {"drop_layers": drop})
        got = logits_of(load_model(out))
        want = logits_of(emulate(load_model(src), {"drop_layers": drop}, torch.float32))
        assert torch.equal(got, want), f"{name}: max diff {(got - want).abs().max()}"


def test_router_mask_is_faithful():
    """The test's router re-implementation, with nothing masked, reproduces transformers exactly."""
    for name in ("mixtral", "qwen2-moe"):
        model = load_model(FIXTURES / name)
        want = logits_of(model)
        for layer in decoder_layers(model):
            if hasattr(layer.mlp, "gate") and hasattr(layer.mlp.gate, "top_k"):
                mask_router(layer.mlp.gate, [])
        assert torch.equal(logits_of(model), want)


# ============================================================================ default selection


def test_select_top_ties_lower_index():
    assert rt.select_top([1.0, 3.0, 3.0, 2.0], 1) == [1]
    assert rt.select_top([1.0, 3.0, 3.0, 2.0], 2) == [1, 2]
    assert rt.select_top([5.0, 1.0, 5.0, 5.0], 2) == [0, 2]
    assert rt.select_top(torch.tensor([0.0, 0.0, 0.0]), 2) == [0, 1]
    assert rt.select_top([2.0, 9.0, 1.0, 9.0], 3) == [0, 1, 3]  # output ascending, not by score


def test_size_rounding():
    assert rt.size_from_request(0.75, 96, "ffn") == 72
    assert rt.size_from_request(0.7, 10, "ffn") == 7
    assert rt.size_from_request(0.33, 10, "ffn") == 3  # floor(3.3)
    assert rt.size_from_request(0.05, 10, "ffn") == 1  # at least 1
    assert rt.size_from_request(1.0, 10, "ffn") == 10
    assert rt.size_from_request(6, 10, "ffn") == 6
    for bad in (0, 11, 0.0, 1.5, -0.5, True):
        with pytest.raises(rt.TrimError):
            rt.size_from_request(bad, 10, "ffn")


def test_head_scores_hand_made():
    """4 query heads, 2 kv heads (group 2), head_dim 2, hidden 3. Every row of a head holds one
    value so the squared norms are easy: q rows of head h are (a_h, 0, 0), o columns (b_h, 0, 0)."""
    H, KV, hd, hidden = 4, 2, 2, 3
    a = [1.0, 2.0, 1.0, 0.0]  # q row value per head
    b = [1.0, 0.0, 1.0, 2.0]  # o column value per head
    q = torch.zeros(H * hd, hidden)
    o = torch.zeros(hidden, H * hd)
    for h in range(H):
        q[h * hd:(h + 1) * hd, 0] = a[h]
        o[0, h * hd:(h + 1) * hd] = b[h]
    k = torch.zeros(KV * hd, hidden)
    v = torch.zeros(KV * hd, hidden)
    k[0:2, 1] = 1.0  # kv head 0: 2 rows of norm² 1
    v[2:4, 2] = 3.0  # kv head 1: 2 rows of norm² 9
    layer = {"self_attn.q_proj.weight": q, "self_attn.o_proj.weight": o,
             "self_attn.k_proj.weight": k, "self_attn.v_proj.weight": v}
    qs = rt.score_query_heads(layer, H, KV, hd)
    # head h: hd * (a² + b²) = [4, 8, 4, 8]
    assert qs.dtype == torch.float64 and qs.tolist() == [[4.0, 8.0], [4.0, 8.0]]
    # kv 0: 2 + 4 + 8 = 14; kv 1: 18 + 4 + 8 = 30
    assert rt.score_kv_heads(layer, H, KV, hd).tolist() == [14.0, 30.0]
    assert rt.select_top(rt.score_kv_heads(layer, H, KV, hd), 1) == [1]
    # A tie between kv groups goes to the lower index.
    layer["self_attn.v_proj.weight"] = torch.zeros(KV * hd, hidden)
    layer["self_attn.k_proj.weight"] = torch.ones(KV * hd, hidden)
    assert rt.score_kv_heads(layer, H, KV, hd).tolist() == [18.0, 18.0]
    assert rt.select_top(rt.score_kv_heads(layer, H, KV, hd), 1) == [0]
    # biases count with their rows
    layer["self_attn.q_proj.bias"] = torch.tensor([0, 0, 0, 0, 0, 0, 1.0, 1.0])  # head 3
    assert rt.score_query_heads(layer, H, KV, hd).tolist() == [[4.0, 8.0], [4.0, 10.0]]


def test_ffn_and_expert_scores_hand_made():
    hidden, Fn = 2, 4
    gate = torch.tensor([[1.0, 0], [0, 2.0], [1.0, 1.0], [0, 0]])  # rows² 1, 4, 2, 0
    up = torch.tensor([[1.0, 0], [0, 0], [0, 1.0], [0, 0]])  # 1, 0, 1, 0
    down = torch.tensor([[1.0, 0, 1.0, 0], [0, 0, 0, 0]])  # cols² 1, 0, 1, 0
    layer = {"mlp.gate_proj.weight": gate, "mlp.up_proj.weight": up, "mlp.down_proj.weight": down}
    s = rt.score_ffn_llama(layer)
    assert s.tolist() == [3.0, 4.0, 4.0, 0.0]
    assert rt.select_top(s, 1) == [1]  # tie 1 vs 2 -> lower
    assert rt.select_top(s, 3) == [0, 1, 2]
    # gpt2 layout is transposed: c_fc [hidden, ffn] columns, c_proj [ffn, hidden] rows
    g = {"mlp.c_fc.weight": gate.T.contiguous(), "mlp.c_fc.bias": torch.tensor([0, 0, 0, 3.0]),
         "mlp.c_proj.weight": up.contiguous()}
    assert rt.score_ffn_gpt2(g).tolist() == [2.0, 4.0, 3.0, 9.0]
    # experts (stacked): E=3, F=2
    gate_up = torch.zeros(3, 2 * 2, hidden)
    dn = torch.zeros(3, hidden, 2)
    gate_up[0, 0, 0] = 1.0  # expert 0 channel 0 gate
    gate_up[0, 3, 0] = 2.0  # expert 0 channel 1 up
    gate_up[1, 1, 1] = 1.0  # expert 1 channel 1 gate
    dn[1, 0, 0] = 2.0  # expert 1 channel 0 down
    dn[2, 1, 1] = 1.0  # expert 2 channel 1 down
    router = torch.tensor([[0.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    L = {"mlp.experts.gate_up_proj": gate_up, "mlp.experts.down_proj": dn, "mlp.gate.weight": router}
    assert rt.score_experts(L).tolist() == [5.0, 5.0, 5.0]
    assert rt.select_top(rt.score_experts(L), 2) == [0, 1]
    assert rt.score_expert_ffn(L).tolist() == [[1.0, 4.0], [4.0, 1.0], [0.0, 1.0]]


def test_resolve_uses_scores_on_real_weights():
    """resolve() keeps exactly the top-scoring structures computed here independently."""
    src = FIXTURES / "llama-gqa-f32"
    plan = rt.resolve(src, {"ffn": 10, "kv_heads": 1})
    T = read_tensors(src)
    for i in range(2):
        p = f"model.layers.{i}."
        g = T[p + "mlp.gate_proj.weight"].tensor.double()
        u = T[p + "mlp.up_proj.weight"].tensor.double()
        d = T[p + "mlp.down_proj.weight"].tensor.double()
        s = (g ** 2).sum(1) + (u ** 2).sum(1) + (d ** 2).sum(0)
        assert plan["ffn"][str(i)] == sorted(torch.argsort(-s)[:10].tolist())
        hd = 16
        kvs = []
        for k in range(2):
            rows = slice(k * hd, (k + 1) * hd)
            qrows = slice(k * 2 * hd, (k + 1) * 2 * hd)
            kvs.append(float((T[p + "self_attn.k_proj.weight"].tensor[rows].double() ** 2).sum()
                             + (T[p + "self_attn.v_proj.weight"].tensor[rows].double() ** 2).sum()
                             + (T[p + "self_attn.q_proj.weight"].tensor[qrows].double() ** 2).sum()
                             + (T[p + "self_attn.o_proj.weight"].tensor[:, qrows].double() ** 2).sum()))
        assert plan["attention"][str(i)] == {"kv_heads": [int(kvs[1] > kvs[0])], "query_heads": [[0, 1]]}


# ============================================================================ config semantics


def test_qwen2_moe_sparse_config_rule():
    # kinds D S D S (step 2)
    sparse = [False, True, False, True]
    assert rt.qwen2_moe_sparse_config(sparse, [0, 1, 2, 3], 2, []) == (2, [])
    assert rt.qwen2_moe_sparse_config(sparse, [1, 2, 3], 2, []) == (1, [1])
    assert rt.qwen2_moe_sparse_config(sparse, [2, 3], 2, []) == (2, [])
    assert rt.qwen2_moe_sparse_config(sparse, [1, 3], 2, []) == (1, [])
    # kinds S D S (step 1, mlp_only [1])
    assert rt.qwen2_moe_sparse_config([True, False, True], [1, 2], 1, [1]) == (1, [0])


def test_gpt2_bert_cannot_express_fewer_heads():
    """The reason head pruning is refused for gpt2 / bert, checked against transformers 5.24's modules:
    with fewer heads the module keeps the full width and changes the head size instead."""
    from transformers import AutoConfig, LlamaConfig
    from transformers.models.bert.modeling_bert import BertSelfAttention, BertSelfOutput
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention
    from transformers.models.llama.modeling_llama import LlamaAttention

    g = AutoConfig.from_pretrained(str(FIXTURES / "gpt2"))  # n_embd 48, 4 heads of 12
    g.n_head = 3  # keep 3 heads of 12 = 36 wide?
    g.head_dim = 12  # not read by GPT2Attention
    att = GPT2Attention(g)
    assert att.head_dim == 16 and tuple(att.c_attn.weight.shape) == (48, 144) and tuple(att.c_proj.weight.shape) == (48, 48)

    b = AutoConfig.from_pretrained(str(FIXTURES / "bert"))  # hidden 32, 4 heads of 8
    b.num_attention_heads = 2
    b.head_dim = 8  # not read by BertSelfAttention
    sa = BertSelfAttention(b)
    assert sa.attention_head_size == 16 and tuple(sa.query.weight.shape) == (32, 32)
    assert tuple(BertSelfOutput(b).dense.weight.shape) == (32, 32)
    b.num_attention_heads = 3
    with pytest.raises(ValueError):
        BertSelfAttention(b)

    # llama-style attention honours an explicit head_dim: the width follows heads * head_dim.
    ll = LlamaConfig(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, head_dim=16)
    la = LlamaAttention(ll, layer_idx=0)
    assert tuple(la.q_proj.weight.shape) == (32, 64) and tuple(la.o_proj.weight.shape) == (64, 32)


# ============================================================================ refusals


REFUSALS = [
    ("gpt2", {"heads": 2}, None, "gpt2 attention heads cannot be pruned"),
    ("gpt2", None, {"attention": {"0": {"kv_heads": [0, 1, 2]}}}, "gpt2 attention heads cannot be pruned"),
    ("bert", {"heads": 2}, None, "bert attention heads cannot be pruned"),
    ("bert", None, {"attention": {"1": {"query_heads": [[0]] * 4}}}, "bert attention heads cannot be pruned"),
    ("llama-gqa-f32", {"heads": 3}, None, "cannot be split evenly over 2 kv heads"),
    ("llama-gqa-f32", {"kv_heads": 1, "heads": 3}, None, "query heads per group"),
    ("mixtral", {"experts": 1}, None, "fewer than num_experts_per_tok = 2"),
    ("mixtral", None, {"experts": {"0": [0], "1": [0]}}, "fewer than num_experts_per_tok = 2"),
    ("qwen2-moe", {"experts": 0.25}, None, "fewer than num_experts_per_tok"),
    ("mixtral", {"ffn": 0.5}, None, "mixtral has no dense FFN"),
    ("llama-gqa-f32", None, {"ffn": {"0": list(range(48))}}, "different FFN channel counts per layer"),
    ("llama-gqa-f32", None, {"ffn": {"0": list(range(48)), "1": list(range(40))}}, "different FFN channel counts"),
    ("llama-gqa-f32", None, {"attention": {"0": {"kv_heads": [0]}}}, "different attention head"),
    ("llama-gqa-f32", None, {"attention": {"0": {"query_heads": [[0], [0, 1]]}, "1": {"query_heads": [[0], [0, 1]]}}},
     "every kept kv group must keep the same number"),
    ("mixtral", None, {"experts": {"0": [0, 1, 2], "1": [0, 1]}}, "different expert counts per layer"),
    ("mixtral", None, {"expert_ffn": {"0": {"0": [0, 1]}}}, "different expert FFN channel counts"),
    ("mixtral", None, {"experts": {"0": [0, 1], "1": [0, 1]}, "expert_ffn": {"0": {"2": [0]}}}, "is removed by plan.experts"),
    ("qwen2-moe", None, {"shared_expert_ffn": {"0": [0, 1]}}, "different shared expert FFN channel counts"),
    ("qwen2-moe", None, {"ffn": {"0": [0, 1]}}, "is a MoE layer"),
    ("qwen2-moe", None, {"experts": {"1": [0, 1]}}, "has no experts"),
    ("qwen2-moe", {"merge": [{"start": 0, "count": 2}]}, None, "mix dense-MLP and MoE layers"),
    ("qwen2-moe", None, {"merge": [{"layers": [1, 2]}]}, "mix dense-MLP and MoE layers"),
    ("llama-gqa-f32", {"drop_layers": [0, 1]}, None, "removes every layer"),
    ("llama-gqa-f32", {"drop_layers": [2]}, None, "out of range"),
    ("llama-gqa-f32", None, {"drop_layers": [1], "ffn": {"1": [0]}}, "removed by drop_layers/merge"),
    ("qwen3", None, {"merge": [{"layers": [0, 1]}], "attention": {"1": {"kv_heads": [0]}}}, "removed by drop_layers/merge"),
    ("qwen3", None, {"merge": [{"layers": [0, 2]}]}, "consecutive"),
    ("qwen3", None, {"merge": [{"layers": [0, 1]}], "drop_layers": [1]}, "part of a merge"),
    ("qwen3", None, {"ffn": {"0": [0, 0, 1]}}, "duplicate"),
    ("qwen3", None, {"ffn": {"0": [80]}}, "out of range"),
    ("qwen3", None, {"layers": []}, "unknown plan keys"),
    ("gpt2", {"experts": 2}, None, "no surviving layer"),
]


@pytest.mark.parametrize("name,request_,plan,message", REFUSALS, ids=[f"{r[0]}-{r[3][:30]}" for r in REFUSALS])
def test_refusals(name, request_, plan, message, tmp_path):
    src = FIXTURES / name
    out = tmp_path / "out"
    with pytest.raises(rt.TrimError, match=message.replace("(", r"\(").replace(")", r"\)")):
        if request_ is not None:
            rt.trim(src, out, rt.resolve(src, request_))
        else:
            rt.trim(src, out, plan)
    assert not out.exists(), "nothing may be written for a refused plan"


# ============================================================================ CLI + example plans


def test_cli(tmp_path):
    src = FIXTURES / "qwen3"
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"drop_layers": [1], "heads": 2, "ffn": 0.5}))
    script = REPO_ROOT / "tools" / "reference_trim.py"
    proc = subprocess.run([sys.executable, str(script), str(src), "--resolve", str(req)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan == rt.resolve(src, json.loads(req.read_text()))
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(proc.stdout)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(script), str(src), str(out), "--plan", str(plan_file)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert read_config(out)["num_hidden_layers"] == 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"heads": 3}))
    proc = subprocess.run([sys.executable, str(script), str(src), "--resolve", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith("reference_trim: error: ") and "kv heads" in proc.stderr


EXAMPLE_PLANS = sorted(PLANS_DIR.glob("*.json")) if PLANS_DIR.is_dir() else []


def test_example_plans_exist():
    assert EXAMPLE_PLANS, f"no example plans in {PLANS_DIR}"


@pytest.mark.parametrize("plan_file", EXAMPLE_PLANS, ids=[p.stem for p in EXAMPLE_PLANS])
def test_example_plan(plan_file, tmp_path):
    """tools/interop/trim_plans/<fixture>.<name>.json: applies, loads, matches the emulation."""
    src = FIXTURES / plan_file.name.split(".")[0]
    plan = json.loads(plan_file.read_text())
    out = rt.trim(src, tmp_path / "out", plan)
    check_disk_shapes(out)
    load_model(out)
    check_against_emulation(src, out, plan)


def test_expert_ffn_size_not_16_byte_aligned(tmp_path):
    """Known trap (transformers 5.24 + torch 2.13 CPU): MoE experts run through torch grouped_mm by
    default, which needs row strides that are multiples of 16 bytes. An expert FFN of 5 float32
    channels (20-byte rows) loads fine but the default forward raises; experts_implementation="eager"
    runs it, and the reference's output is right."""
    from transformers import AutoModelForCausalLM

    src = FIXTURES / "qwen2-moe"
    plan = {"expert_ffn": {"0": {str(e): [0, 3, 5, 7, 11] for e in range(4)},
                           "2": {str(e): [1, 2, 3, 4, 5] for e in range(4)}}}
    out = rt.trim(src, tmp_path / "out", plan)
    assert read_config(out)["moe_intermediate_size"] == 5
    default = load_model(out)
    with pytest.raises(RuntimeError, match="strides should be multiple of 16 bytes"):
        logits_of(default)
    eager = AutoModelForCausalLM.from_pretrained(str(out), experts_implementation="eager").eval()
    want = logits_of(emulate(load_model(src), plan, torch.float32))
    torch.testing.assert_close(logits_of(eager), want, rtol=RTOL, atol=ATOL)
