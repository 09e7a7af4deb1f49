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
* hidden pruning (Minitron's embedding channels) has NO exact emulation: every norm over
  the hidden axis (RMSNorm / LayerNorm) takes its mean over the kept channels only, and
  gemma2 scales its embeddings by sqrt(hidden_size), so a hidden-pruned model computes a
  different function than the untrimmed one with channels zeroed. It is checked instead
  by: loading and a forward pass, config values, on-disk shapes, bit-exact commutation
  with the other surgeries (trim with hidden = trim without it, then slice the dimensions
  that changed), the hand-made score cases, and the descriptors below.
* the architecture descriptors formats/qwen3_moe.json, olmo2.json, gemma2.json (schema
  version 2), with a checker written here from formats/README.md: every fixture tensor
  matches exactly one template with the shape the config implies, every required
  instance exists, and slicing by the descriptors' axes reproduces the reference's
  outputs bit for bit.

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
import re
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
        Olmo2Config,
        Olmo2ForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
        Qwen2MoeConfig,
        Qwen2MoeForCausalLM,
        Qwen3MoeConfig,
        Qwen3MoeForCausalLM,
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
    # Qwen3-MoE kinds by decoder_sparse_step alone: D S D S.
    out["qwen3-moe-step2"] = _save(
        Qwen3MoeForCausalLM(Qwen3MoeConfig(num_hidden_layers=4, decoder_sparse_step=2, mlp_only_layers=[],
                                           intermediate_size=40, moe_intermediate_size=16, num_experts=4,
                                           num_experts_per_tok=2, **common)),
        root / "qwen3-moe-step2",
    )
    # OLMo2 with attention_bias: q/k/v/o biases (required_if in the descriptor).
    out["olmo2-bias"] = _save(
        Olmo2ForCausalLM(Olmo2Config(intermediate_size=48, num_hidden_layers=2, attention_bias=True, pad_token_id=0,
                                     bos_token_id=1, eos_token_id=2, **common)),
        root / "olmo2-bias",
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
    Mirrors MixtralTopKRouter / Qwen2MoeTopKRouter / Qwen3MoeTopKRouter.forward of transformers 5.24 with the mask
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
        assert kind in ("Qwen2MoeTopKRouter", "Qwen3MoeTopKRouter"), kind
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
        V = cfg["vocab_size"]
        assert shape["model.embed_tokens.weight"] == [V, d] and shape["model.norm.weight"] == [d]
        assert ("lm_head.weight" in shape) != bool(cfg["tie_word_embeddings"])
        if "lm_head.weight" in shape:
            assert shape["lm_head.weight"] == [V, d]
        norms = {"olmo2": ["post_attention_layernorm", "post_feedforward_layernorm"],
                 "gemma2": ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                            "post_feedforward_layernorm"]}.get(mt, ["input_layernorm", "post_attention_layernorm"])
        qk_norm = {"qwen3": (hd, hd), "qwen3_moe": (hd, hd), "olmo2": (H * hd, KV * hd)}.get(mt)
        for i in range(n):
            p = f"{prefix}{i}."
            for nm in norms:
                assert shape[f"{p}{nm}.weight"] == [d], f"{p}{nm}"
            assert len([k for k in shape if k.startswith(p) and k.endswith("norm.weight")]) == len(norms) + 2 * bool(qk_norm)
            if qk_norm:
                assert shape[p + "self_attn.q_norm.weight"] == [qk_norm[0]]
                assert shape[p + "self_attn.k_norm.weight"] == [qk_norm[1]]
            if p + "self_attn.o_proj.bias" in shape:
                assert shape[p + "self_attn.o_proj.bias"] == [d]
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
            E = cfg.get("num_experts", cfg.get("num_local_experts"))  # qwen3_moe saves num_local_experts
            sparse = (
                mt in ("qwen2_moe", "qwen3_moe")
                and i not in cfg["mlp_only_layers"]
                and E > 0
                and (i + 1) % cfg["decoder_sparse_step"] == 0
            )
            if sparse:
                f = cfg["moe_intermediate_size"]
                assert shape[p + "mlp.gate.weight"] == [E, d]
                for e in range(E):
                    for w in ("gate_proj", "up_proj"):
                        assert shape[f"{p}mlp.experts.{e}.{w}.weight"] == [f, d]
                    assert shape[f"{p}mlp.experts.{e}.down_proj.weight"] == [d, f]
                assert f"{p}mlp.experts.{E}.gate_proj.weight" not in shape
                assert (p + "mlp.shared_expert_gate.weight" in shape) == (mt == "qwen2_moe")
                if mt == "qwen2_moe":
                    sf = cfg["shared_expert_intermediate_size"]
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
    # qwen3_moe: kinds S D S S (mlp_only_layers [1]); qwen3-moe-step2: D S D S (decoder_sparse_step 2)
    ("qwen3-moe", "drop", {"drop_layers": [0]}, {"num_hidden_layers": 3, "mlp_only_layers": [0], "decoder_sparse_step": 1}),
    ("qwen3-moe", "drop-dense", {"drop_layers": [1]}, {"num_hidden_layers": 3, "mlp_only_layers": [], "decoder_sparse_step": 1}),
    ("qwen3-moe", "merge", {"merge": [{"start": 2, "count": 2}]}, {"num_hidden_layers": 3, "mlp_only_layers": [1]}),
    ("qwen3-moe", "merge-norms", {"merge": [{"start": 2, "count": 2, "norms": "merge"}]}, {"num_hidden_layers": 3}),
    ("qwen3-moe", "heads", {"heads": 2}, {"num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16}),
    ("qwen3-moe", "kv_heads", {"kv_heads": 1}, {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}),
    ("qwen3-moe", "ffn", {"ffn": 0.5}, {"intermediate_size": 32, "moe_intermediate_size": 24}),
    ("qwen3-moe", "experts", {"experts": 3}, {"num_local_experts": 3, "num_experts_per_tok": 2}),
    ("qwen3-moe", "expert_ffn", {"expert_ffn": 0.5}, {"moe_intermediate_size": 12, "intermediate_size": 64}),
    ("qwen3-moe", "chain",
     {"merge": [{"start": 2, "count": 2}], "drop_layers": [0], "kv_heads": 1, "heads": 1, "ffn": 20, "experts": 2,
      "expert_ffn": 8},
     {"num_hidden_layers": 2, "mlp_only_layers": [0], "decoder_sparse_step": 1, "num_key_value_heads": 1,
      "num_attention_heads": 1, "intermediate_size": 20, "num_local_experts": 2, "moe_intermediate_size": 8}),
    ("qwen3-moe-step2", "drop", {"drop_layers": [0]}, {"num_hidden_layers": 3, "decoder_sparse_step": 1, "mlp_only_layers": [1]}),
    ("qwen3-moe-step2", "chain", {"drop_layers": [0, 1], "experts": 2, "ffn": 0.5, "heads": 2},
     {"num_hidden_layers": 2, "decoder_sparse_step": 2, "mlp_only_layers": [], "num_local_experts": 2,
      "intermediate_size": 20, "num_attention_heads": 2, "head_dim": 8}),
    # olmo2: no head pruning (see REFUSALS)
    ("olmo2", "drop", {"drop_layers": [1]}, {"num_hidden_layers": 2}),
    ("olmo2", "merge", {"merge": [{"start": 0, "count": 3}]}, {"num_hidden_layers": 1}),
    ("olmo2", "merge-norms", {"merge": [{"start": 1, "count": 2, "norms": "merge"}]}, {"num_hidden_layers": 2}),
    ("olmo2", "ffn", {"ffn": 0.75}, {"intermediate_size": 48}),
    ("olmo2", "chain", {"merge": [{"start": 0, "count": 2}], "drop_layers": [2], "ffn": 33},
     {"num_hidden_layers": 1, "intermediate_size": 33}),
    ("olmo2-bias", "chain", {"drop_layers": [0], "ffn": 0.5}, {"num_hidden_layers": 1, "intermediate_size": 24}),
    # gemma2: layer_types sliding/full follow the layers
    ("gemma2", "drop", {"drop_layers": [0]},
     {"num_hidden_layers": 3, "layer_types": ["full_attention", "sliding_attention", "full_attention"]}),
    ("gemma2", "merge", {"merge": [{"start": 1, "count": 2}]},
     {"num_hidden_layers": 3, "layer_types": ["sliding_attention", "full_attention", "full_attention"]}),
    ("gemma2", "merge-norms", {"merge": [{"start": 0, "count": 4, "norms": "merge"}]},
     {"num_hidden_layers": 1, "layer_types": ["sliding_attention"]}),
    ("gemma2", "heads", {"heads": 2}, {"num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 16}),
    ("gemma2", "kv_heads", {"kv_heads": 1}, {"num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16}),
    ("gemma2", "ffn", {"ffn": 0.5}, {"intermediate_size": 32}),
    ("gemma2", "chain", {"drop_layers": [3], "merge": [{"start": 0, "count": 2}], "kv_heads": 1, "heads": 1, "ffn": 21},
     {"num_hidden_layers": 2, "num_key_value_heads": 1, "num_attention_heads": 1, "intermediate_size": 21,
      "layer_types": ["sliding_attention", "sliding_attention"]}),
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


@pytest.mark.parametrize("name", ["llama-gqa-f32", "llama-gqa-bf16", "qwen3", "mixtral", "gpt2", "bert", "olmo2", "gemma2"])
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
        ("qwen3-moe", {"experts": {"0": [1, 3], "2": [0, 2], "3": [3, 2]}}),
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
    k / v rows (and biases) of kv head k; qwen3 / qwen3_moe q_norm/k_norm untouched."""
    for name in ("qwen2-moe", "qwen3", "qwen3-moe", "gemma2"):
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
    for name, drop in [("llama-gqa-f32", [0]), ("qwen3", [1]), ("gpt2", [0]), ("bert", [1]), ("mixtral", [1]),
                       ("qwen3-moe", [1]), ("olmo2", [0]), ("gemma2", [0, 3])]:
        src = FIXTURES / name
        out = rt.trim(src, tmp_path / name, {"drop_layers": drop})
        got = logits_of(load_model(out))
        want = logits_of(emulate(load_model(src), {"drop_layers": drop}, torch.float32))
        assert torch.equal(got, want), f"{name}: max diff {(got - want).abs().max()}"


def test_router_mask_is_faithful():
    """The test's router re-implementation, with nothing masked, reproduces transformers exactly."""
    for name in ("mixtral", "qwen2-moe", "qwen3-moe"):
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


# ============================================================================ hidden (Minitron's embedding channels)

# (model, case id, request, expected config values). There is no exact emulation for hidden
# pruning (see the module docstring: the norms' statistics and gemma2's embedding scale depend
# on the width), so these are not compared with logits of the untrimmed model; test_hidden_case
# checks them by loading, shapes, config and bit-exact commutation with the other surgeries.
# MoE cases keep hidden a multiple of 4: float32 expert rows must be 16-byte aligned for
# transformers' default grouped_mm (see test_expert_ffn_size_not_16_byte_aligned).
HIDDEN_CASES = [
    ("llama-gqa-f32", "hidden", {"hidden": 0.75}, {"hidden_size": 48, "head_dim": 16}),
    ("llama-gqa-f32", "chain", {"drop_layers": [1], "kv_heads": 1, "ffn": 0.5, "hidden": 40},
     {"num_hidden_layers": 1, "num_key_value_heads": 1, "num_attention_heads": 2, "intermediate_size": 48,
      "hidden_size": 40, "head_dim": 16}),
    ("llama-gqa-bf16", "hidden", {"hidden": 36}, {"hidden_size": 36, "head_dim": 16}),
    ("llama-gqa-bf16", "merge", {"merge": [{"start": 0, "count": 2}], "hidden": 0.5},
     {"num_hidden_layers": 1, "hidden_size": 32, "head_dim": 16}),
    ("llama-bias", "chain", {"heads": 2, "ffn": 0.5, "hidden": 26},
     {"num_attention_heads": 2, "intermediate_size": 24, "hidden_size": 26, "head_dim": 8}),
    # mistral's config class has no hidden % heads rule (llama's has)
    ("mistral", "hidden", {"hidden": 30}, {"hidden_size": 30, "head_dim": 8}),
    # qwen2: no head_dim in the config; it is written
    ("qwen2-sliding", "chain", {"drop_layers": [0], "hidden": 20},
     {"num_hidden_layers": 3, "max_window_layers": 1, "hidden_size": 20, "head_dim": 8}),
    ("qwen3", "hidden", {"hidden": 0.5}, {"hidden_size": 16, "head_dim": 16}),
    ("qwen3", "chain", {"merge": [{"start": 0, "count": 2}], "heads": 2, "ffn": 40, "hidden": 20},
     {"num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 40, "hidden_size": 20, "head_dim": 16}),
    # mixtral: head_dim null in the config; it is written
    ("mixtral", "hidden", {"hidden": 24}, {"hidden_size": 24, "head_dim": 8}),
    ("mixtral", "chain", {"merge": [{"start": 0, "count": 2}], "experts": 3, "expert_ffn": 16, "kv_heads": 1,
                          "hidden": 0.75},
     {"num_hidden_layers": 1, "num_local_experts": 3, "intermediate_size": 16, "num_key_value_heads": 1,
      "hidden_size": 24, "head_dim": 8}),
    ("qwen2-moe", "hidden", {"hidden": 28}, {"hidden_size": 28, "head_dim": 8}),
    ("qwen2-moe", "chain",
     {"drop_layers": [0], "kv_heads": 1, "ffn": 0.5, "experts": 3, "expert_ffn": 12, "shared_expert_ffn": 20,
      "hidden": 24},
     {"num_hidden_layers": 2, "num_key_value_heads": 1, "intermediate_size": 32, "num_experts": 3,
      "moe_intermediate_size": 12, "shared_expert_intermediate_size": 20, "hidden_size": 24, "head_dim": 8}),
    ("qwen3-moe", "hidden", {"hidden": 24}, {"hidden_size": 24, "head_dim": 16}),
    ("qwen3-moe", "chain",
     {"merge": [{"start": 2, "count": 2}], "drop_layers": [0], "kv_heads": 1, "ffn": 32, "experts": 3,
      "expert_ffn": 12, "hidden": 0.75},
     {"num_hidden_layers": 2, "mlp_only_layers": [0], "num_key_value_heads": 1, "intermediate_size": 32,
      "num_local_experts": 3, "moe_intermediate_size": 12, "hidden_size": 24, "head_dim": 16}),
    # qwen3_moe without head_dim in the config: it is written
    ("qwen3-moe-step2", "hidden", {"hidden": 16, "experts": 3}, {"hidden_size": 16, "head_dim": 8, "num_local_experts": 3}),
    ("olmo2", "hidden", {"hidden": 0.625}, {"hidden_size": 20, "head_dim": 8}),
    ("olmo2", "chain", {"merge": [{"start": 0, "count": 2, "norms": "merge"}], "ffn": 40, "hidden": 17},
     {"num_hidden_layers": 2, "intermediate_size": 40, "hidden_size": 17, "head_dim": 8}),
    ("olmo2-bias", "hidden", {"hidden": 24, "drop_layers": [1]}, {"num_hidden_layers": 1, "hidden_size": 24, "head_dim": 8}),
    ("gemma2", "hidden", {"hidden": 24}, {"hidden_size": 24, "head_dim": 16}),
    ("gemma2", "chain",
     {"drop_layers": [0], "merge": [{"start": 1, "count": 2}], "heads": 2, "ffn": 0.5, "hidden": 30},
     {"num_hidden_layers": 2, "layer_types": ["full_attention", "full_attention"], "num_attention_heads": 2,
      "intermediate_size": 32, "hidden_size": 30, "head_dim": 16}),
]

_LAYER_KEYS = {"num_hidden_layers", "n_layer", "layer_types", "max_window_layers", "mlp_only_layers",
               "decoder_sparse_step", "num_attention_heads", "num_key_value_heads", "head_dim"}


def check_hidden_commutes(src: Path, out: Path, plan: dict, tmp_path: Path) -> set[str]:
    """`out` (trimmed with `plan`) equals the same plan without `hidden`, followed by keeping
    channels plan["hidden"] (ascending) in exactly the dimensions whose size changed, each of
    which must go from hidden_size to the kept count. Returns the tensors that changed."""
    rest = {k: v for k, v in plan.items() if k != "hidden"}
    base = rt.trim(src, tmp_path / "without-hidden", rest)  # (an empty plan still rewrites max_window_layers)
    H = read_config(base)["hidden_size"]
    keep = sorted(plan["hidden"])
    idx = torch.tensor(keep)
    A, B = read_tensors(base), read_tensors(out)
    assert list(A) == list(B), "same tensors, same order"
    changed = set()
    for name, a in A.items():
        b = B[name]
        assert a.dtype == b.dtype and len(a.shape) == len(b.shape), name
        dims = [d for d in range(len(a.shape)) if a.shape[d] != b.shape[d]]
        want = a.tensor
        for d in dims:
            assert (a.shape[d], b.shape[d]) == (H, len(keep)), f"{name}: dim {d} {a.shape[d]} -> {b.shape[d]}"
            want = want.index_select(d, idx)
        assert torch.equal(b.tensor, want), name
        if dims:
            changed.add(name)
    cfg_a, cfg_b = read_config(base), read_config(out)
    assert cfg_b["hidden_size"] == len(keep)
    for key in set(cfg_a) | set(cfg_b):
        if key not in ("hidden_size", "head_dim", "transformers_version"):
            assert cfg_a.get(key) == cfg_b.get(key), key
    return changed


@pytest.mark.parametrize("name,case,request_,expected", HIDDEN_CASES, ids=[f"{c[0]}-{c[1]}" for c in HIDDEN_CASES])
def test_hidden_case(name, case, request_, expected, extra_models, tmp_path):
    src = model_dir(name, extra_models)
    before = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    plan = rt.resolve(src, request_)
    json.dumps(plan)
    assert plan["hidden"] == sorted(set(plan["hidden"])) and len(plan["hidden"]) == expected["hidden_size"]
    out = rt.trim(src, tmp_path / "out", plan)
    assert {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()} == before, "input modified"

    cfg, orig = read_config(out), read_config(src)
    for key, value in expected.items():
        assert cfg[key] == value, f"config {key} = {cfg[key]!r}, expected {value!r}"
    for key in set(orig) - {"transformers_version", "hidden_size"} - set(expected) - _LAYER_KEYS:
        assert cfg[key] == orig[key], f"config {key} changed: {orig[key]!r} -> {cfg[key]!r}"
    check_disk_shapes(out)
    assert {r.dtype for r in read_tensors(out).values()} == {r.dtype for r in read_tensors(src).values()}

    model = load_model(out)  # no missing / unexpected / mismatched weights
    assert model.config.hidden_size == expected["hidden_size"]
    for layer in decoder_layers(model):  # the head size is the original one, not hidden / heads
        assert layer.self_attn.head_dim == expected["head_dim"]
    got = logits_of(model)
    assert got.shape == (2, 12, cfg["vocab_size"]) and torch.isfinite(got).all()

    changed = check_hidden_commutes(src, out, plan, tmp_path)
    assert "model.embed_tokens.weight" in changed and "model.norm.weight" in changed
    desc = load_descriptor(orig["model_type"])
    assert descriptor_problems(desc, cfg, {k: r.shape for k, r in read_tensors(out).items()}) == []


@pytest.mark.parametrize("name", ["llama-gqa-bf16", "qwen2-moe", "gemma2"])
def test_hidden_keeping_every_channel_is_the_identity(name, tmp_path):
    """hidden = every channel: the same tensors bit for bit, the same logits; the config only
    gains an explicit head_dim where it had none (and max_window_layers is recounted, as by any trim)."""
    src = FIXTURES / name
    H = read_config(src)["hidden_size"]
    out = rt.trim(src, tmp_path / "out", {"hidden": list(range(H))[::-1]})
    A, B = read_tensors(src), read_tensors(out)
    assert {k: r.raw() for k, r in A.items()} == {k: r.raw() for k, r in B.items()}
    assert torch.equal(logits_of(load_model(out)), logits_of(load_model(src)))
    cfg, orig = read_config(out), read_config(src)
    assert {k for k in set(cfg) | set(orig) if cfg.get(k) != orig.get(k)} <= {"head_dim", "max_window_layers"}
    assert cfg["head_dim"] == (orig.get("head_dim") or H // orig["num_attention_heads"])


def test_hidden_scores_hand_made():
    """hidden 3. Each tensor adds a known amount to each channel's score (sum of squares of the
    elements removed with it); tensors without a hidden axis add nothing."""
    from types import SimpleNamespace

    info = SimpleNamespace(prefix="model.layers.", hidden_size=3, tied=False)
    glob = {
        "model.embed_tokens.weight": torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]),  # columns: 2, 0, 0
        "lm_head.weight": torch.tensor([[0, 2.0, 0], [0, 0, 0]]),  # 0, 4, 0
        "model.norm.weight": torch.tensor([0, 0, 1.0]),  # 0, 0, 1
    }
    q = torch.zeros(4, 3)
    q[0, 0] = 1.0  # column 0: 1
    o = torch.zeros(3, 4)
    o[2] = 1.0  # row 2: 4
    gate_up = torch.zeros(2, 4, 3)
    gate_up[1, 3, 1] = 2.0  # expert 1, up row 1, column 1: 4
    down = torch.zeros(2, 3, 2)
    down[0, 2, 1] = 1.0  # expert 0, row 2: 1
    router = torch.zeros(2, 3)
    router[1, 0] = 1.0  # column 0: 1
    layer = {
        "input_layernorm.weight": torch.ones(3),  # 1, 1, 1
        "self_attn.q_proj.weight": q,
        "self_attn.q_proj.bias": torch.full((4,), 5.0),  # no hidden axis
        "self_attn.q_norm.weight": torch.full((2,), 7.0),  # no hidden axis
        "self_attn.o_proj.weight": o,
        "self_attn.o_proj.bias": torch.tensor([0, 1.0, 0]),  # 0, 1, 0
        "mlp.experts.gate_up_proj": gate_up,
        "mlp.experts.down_proj": down,
        "mlp.gate.weight": router,
        "mlp.shared_expert_gate.weight": torch.tensor([[0, 0, 3.0]]),  # 0, 0, 9
    }
    s = rt.score_hidden(glob, {0: layer}, info)
    assert s.dtype == torch.float64
    # 0: 2 (embed) + 1 (norm) + 1 (q) + 1 (router) = 5; 1: 4 (head) + 1 + 1 (o bias) + 4 (up) = 10;
    # 2: 1 (final norm) + 1 + 4 (o) + 1 (down) + 9 (shared gate) = 16
    assert s.tolist() == [5.0, 10.0, 16.0]
    assert rt.select_top(s, 2) == [1, 2]
    info.tied = True  # the head is the embedding: counted once (as the embedding)
    assert rt.score_hidden(glob, {0: layer}, info).tolist() == [5.0, 6.0, 16.0]
    # layers not passed (dropped / merged away) count nothing
    assert rt.score_hidden(glob, {}, info).tolist() == [2.0, 0.0, 1.0]
    # a layer under its original index 7 counts the same
    assert rt.score_hidden(glob, {7: layer}, info).tolist() == [5.0, 6.0, 16.0]
    # ties go to the lower index
    layer["mlp.shared_expert_gate.weight"] = torch.tensor([[0, 0, 0.0]])
    layer["self_attn.o_proj.weight"] = torch.zeros(3, 4)
    tie = rt.score_hidden(glob, {0: layer}, info)
    assert tie.tolist() == [5.0, 6.0, 3.0]
    glob["model.norm.weight"] = torch.tensor([0, 0, 2.0])
    assert rt.score_hidden(glob, {0: layer}, info).tolist() == [5.0, 6.0, 6.0]
    assert rt.select_top(rt.score_hidden(glob, {0: layer}, info), 2) == [1, 2]
    assert rt.select_top(rt.score_hidden(glob, {0: layer}, info), 1) == [1]
    # a tensor the reference does not know is refused, never guessed
    layer["self_attn.mystery.weight"] = torch.ones(3, 3)
    with pytest.raises(rt.TrimError, match="does not know whether model.layers.0.self_attn.mystery.weight"):
        rt.score_hidden(glob, {0: layer}, info)


def _laco_f32(ts: list[torch.Tensor]) -> torch.Tensor:
    """The documented merge: float32, left to right, cast back."""
    a = ts[0].float()
    acc = a
    for t in ts[1:]:
        acc = acc + (t.float() - a)
    return acc.to(ts[0].dtype)


def independent_hidden_scores(src: Path, drop: list[int], merges: list[list[int]]) -> torch.Tensor:
    """Channel scores from the files on disk, the descriptor saying which dimension is hidden.
    Only surviving layers count; a merged layer counts with its LaCo-merged weights (norms of
    role `norm` kept from the first layer, "norms": "first"). A tied head is not on disk, so it
    counts once by construction."""
    cfg = read_config(src)
    desc = load_descriptor(cfg["model_type"])
    inst = expand_descriptor(desc, *bind_descriptor(desc, cfg))
    T = read_tensors(src)
    away = set(drop) | {i for run in merges for i in run[1:]}
    first = {run[0]: run for run in merges}
    s = torch.zeros(cfg["hidden_size"], dtype=torch.float64)
    for name, rec in T.items():
        spec, _, _, layer, expert = inst[name]
        if layer in away:
            continue
        t = rec.tensor
        if layer in first and spec["role"] != "norm":
            t = _laco_f32([T[instance_name(spec["name"], k, expert)].tensor for k in first[layer]])
        dims = [d for d, dim in enumerate(spec["shape"]) if dim == "hidden"]
        assert len(dims) <= 1, name
        if dims:
            x = t.double() ** 2
            s += x.sum(dim=[d for d in range(x.dim()) if d != dims[0]]) if x.dim() > 1 else x
    return s


@pytest.mark.parametrize("name,request_", [
    ("llama-gqa-f32", {"hidden": 40, "drop_layers": [0]}),
    ("llama-gqa-bf16", {"hidden": 0.5, "merge": [{"start": 0, "count": 2}]}),
    ("qwen3", {"hidden": 20, "merge": [{"start": 1, "count": 2}]}),
    ("mixtral", {"hidden": 24, "merge": [{"start": 0, "count": 2}], "experts": 3}),
    ("qwen2-moe", {"hidden": 24, "drop_layers": [0], "ffn": 0.5, "shared_expert_ffn": 20}),
    ("qwen3-moe", {"hidden": 24, "drop_layers": [0], "merge": [{"start": 2, "count": 2}]}),
    ("olmo2", {"hidden": 17, "merge": [{"start": 0, "count": 3}]}),
    ("gemma2", {"hidden": 24, "drop_layers": [1, 2], "heads": 2}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_resolve_hidden_scores_on_real_weights(name, request_):
    """resolve() keeps the top hidden channels of a score computed here from the files and the
    descriptors, on the surviving (merged) layers, at full width whatever else the request prunes."""
    src = FIXTURES / name
    plan = rt.resolve(src, request_)
    s = independent_hidden_scores(src, request_.get("drop_layers", []),
                                  [list(range(m["start"], m["start"] + m["count"])) for m in request_.get("merge", [])])
    n = len(plan["hidden"])
    want = sorted(sorted(range(len(s)), key=lambda c: (-float(s[c]), c))[:n])
    assert plan["hidden"] == want
    # dropping layers changes the selection's inputs: the score of the whole model differs
    if request_.get("drop_layers"):
        assert not torch.equal(s, independent_hidden_scores(src, [], []))


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


def test_hidden_rule_config_classes():
    """Which config classes refuse hidden_size % num_attention_heads != 0 (transformers 5.24's
    validate_architecture) -- the set rt.HIDDEN_MULTIPLE_OF_HEADS, checked on every family the
    reference trims hidden for."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    refusing = set()
    for fam in rt.FAMILIES.values():
        if not fam.hidden:
            continue
        for mt in fam.model_types:
            try:
                CONFIG_MAPPING[mt](hidden_size=30, num_attention_heads=4, num_key_value_heads=2, head_dim=8)
            except Exception as e:  # StrictDataclassClassValidationError
                assert "is not a multiple of the number of attention heads" in str(e), e
                refusing.add(mt)
    assert refusing == rt.HIDDEN_MULTIPLE_OF_HEADS == {"llama", "gemma2"}


def test_head_dim_written_is_read_by_every_hidden_family():
    """The reference writes head_dim when it prunes hidden. Every family it prunes hidden for
    honours an explicit head_dim (attention widths and rotary size follow it, not hidden / heads);
    without it, the classes with no head_dim field derive hidden // heads -- hence the write."""
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    base = dict(vocab_size=32, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=16, moe_intermediate_size=8, num_experts=4, num_local_experts=4,
                num_experts_per_tok=2, shared_expert_intermediate_size=8)
    derived = {}
    for fam in rt.FAMILIES.values():
        if not fam.hidden:
            continue
        for mt in fam.model_types:
            cls = CONFIG_MAPPING[mt]
            kw = {k: v for k, v in base.items() if k in cls.__dataclass_fields__}
            torch.manual_seed(0)
            model = AutoModelForCausalLM.from_config(cls(hidden_size=24, head_dim=16, **kw))
            att = model.model.layers[0].self_attn
            assert att.head_dim == 16 and tuple(att.q_proj.weight.shape) == (64, 24), mt
            assert tuple(att.o_proj.weight.shape) == (24, 64), mt
            assert model.model.rotary_emb.inv_freq.numel() == 8, mt  # head_dim / 2
            cfg = cls(hidden_size=24, **kw)
            if not hasattr(cfg, "head_dim") or cfg.head_dim is None:
                derived[mt] = AutoModelForCausalLM.from_config(cfg).model.layers[0].self_attn.head_dim
    # no head_dim field (or None): the size follows hidden / heads = 24 / 4
    assert derived == {"qwen2": 6, "mixtral": 6, "qwen2_moe": 6, "qwen3_moe": 6, "olmo2": 6}


def test_gpt2_bert_cannot_shrink_hidden():
    """Why hidden pruning is refused for gpt2 / bert (transformers 5.24): the head size is derived
    from the hidden size, so a narrower residual stream shrinks every head."""
    from transformers import AutoConfig
    from transformers.models.bert.modeling_bert import BertSelfAttention
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

    g = AutoConfig.from_pretrained(str(FIXTURES / "gpt2"))  # n_embd 48, 4 heads of 12
    g.n_embd = 36
    g.head_dim = 12  # not read
    att = GPT2Attention(g)
    assert att.head_dim == 9 and tuple(att.c_attn.weight.shape) == (36, 108)
    b = AutoConfig.from_pretrained(str(FIXTURES / "bert"))  # hidden 32, 4 heads of 8
    b.hidden_size = 24
    b.head_dim = 8  # not read
    assert BertSelfAttention(b).attention_head_size == 6


@torch.no_grad()
def test_olmo2_qk_norm_spans_all_heads():
    """Why olmo2 head pruning is refused: q_norm is one RMSNorm over all heads' q at once, so a
    kept head comes out different once another head is removed (with the norm weight sliced
    the way head pruning would slice it)."""
    model = load_model(FIXTURES / "olmo2")
    att = model.model.layers[0].self_attn
    H, hd = model.config.num_attention_heads, att.head_dim
    assert tuple(att.q_norm.weight.shape) == (H * hd,) and tuple(att.k_norm.weight.shape) == (2 * hd,)
    q = att.q_proj(torch.randn(1, 5, model.config.hidden_size, generator=torch.Generator().manual_seed(3)))
    full = att.q_norm(q)
    keep = torch.arange(0, 2 * hd)  # heads 0 and 1
    sliced = type(att.q_norm)(2 * hd, att.q_norm.variance_epsilon)
    sliced.weight.copy_(att.q_norm.weight[keep])
    assert not torch.allclose(sliced(q[..., keep]), full[..., keep], rtol=1e-3, atol=1e-4)


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
    # hidden
    ("gpt2", {"hidden": 0.5}, None, "gpt2 hidden channels cannot be pruned"),
    ("gpt2", None, {"hidden": list(range(24))}, "gpt2 hidden channels cannot be pruned"),
    ("bert", {"hidden": 16}, None, "bert hidden channels cannot be pruned"),
    ("bert", None, {"drop_layers": [0], "hidden": list(range(16))}, "bert hidden channels cannot be pruned"),
    ("llama-gqa-f32", {"hidden": 50}, None, "hidden_size must be a multiple of num_attention_heads"),
    ("llama-gqa-f32", None, {"hidden": list(range(50))}, "hidden_size 50 and num_attention_heads 4"),
    ("gemma2", {"hidden": 30}, None, "hidden_size must be a multiple of num_attention_heads"),
    ("gemma2", {"hidden": 30, "kv_heads": 2, "heads": 4}, None, "keep a hidden size that is a multiple of 4"),
    ("llama-gqa-f32", None, {"hidden": [0, 0, 1]}, "duplicate"),
    ("llama-gqa-f32", None, {"hidden": [64]}, "plan.hidden: index 64 out of range"),
    ("llama-gqa-f32", None, {"hidden": []}, "non-empty list"),
    ("llama-gqa-f32", None, {"hidden": {"0": [1]}}, "non-empty list"),
    ("mixtral", {"hidden": 0}, None, "hidden: 0 is out of range 1..32"),
    ("mixtral", {"hidden": 1.5}, None, "a fraction must be in"),
    # olmo2
    ("olmo2", {"heads": 2}, None, "olmo2 attention heads cannot be pruned"),
    ("olmo2", {"kv_heads": 1}, None, "olmo2 attention heads cannot be pruned"),
    ("olmo2", None, {"attention": {str(i): {"kv_heads": [0, 1], "query_heads": [[0], [1]]} for i in range(3)}},
     "olmo2 attention heads cannot be pruned"),
    ("olmo2", {"experts": 2}, None, "no surviving layer of this olmo2 model has experts"),
    # qwen3_moe
    ("qwen3-moe", {"shared_expert_ffn": 8}, None, "qwen3_moe has no shared expert"),
    ("qwen3-moe", None, {"shared_expert_ffn": {"0": [0]}}, "qwen3_moe has no shared expert"),
    ("qwen3-moe", {"merge": [{"start": 0, "count": 2}]}, None, "mix dense-MLP and MoE layers"),
    ("qwen3-moe", {"experts": 1}, None, "fewer than num_experts_per_tok = 2"),
    ("qwen3-moe", None, {"ffn": {"0": [0]}}, "is a MoE layer"),
    ("qwen3-moe", None, {"experts": {"1": [0, 1]}}, "has no experts"),
    ("qwen3-moe", None, {"experts": {"0": [0, 1], "2": [0, 1]}}, "different expert counts per layer"),
    # gemma2: llama-style rules
    ("gemma2", {"heads": 3}, None, "cannot be split evenly over 2 kv heads"),
    ("gemma2", {"merge": [{"start": 0, "count": 2}], "drop_layers": [1]}, None, "part of a merge"),
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
    """tools/interop/trim_plans/<fixture>.<name>.json: applies, loads, matches the emulation
    (plans with `hidden`, which has none: runs, and commutes with the rest of the plan, bit for bit)."""
    src = FIXTURES / plan_file.name.split(".")[0]
    plan = json.loads(plan_file.read_text())
    out = rt.trim(src, tmp_path / "out", plan)
    check_disk_shapes(out)
    model = load_model(out)
    if "hidden" in plan:
        assert read_config(out)["hidden_size"] == len(plan["hidden"])
        assert torch.isfinite(logits_of(model)).all()
        check_hidden_commutes(src, out, plan, tmp_path)
    else:
        check_against_emulation(src, out, plan)
    cfg = read_config(out)
    if any(cfg["model_type"] in d["model_types"] for d in map(json.loads, map(Path.read_text, FORMATS.glob("*.json")))
           if d.get("version") in (2, 3)):
        desc = load_descriptor(cfg["model_type"])
        assert descriptor_problems(desc, cfg, {k: r.shape for k, r in read_tensors(out).items()}) == []


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


# ============================================================================ descriptors (schema version 2)

# A checker for formats/*.json written here from formats/README.md and the version-2 additions
# (roles and axes from closed vocabularies, required_if, statistic_over), independent of the
# Swift reader. It binds a descriptor to a config.json, expands every template instance, and
# compares with the tensors of a checkpoint.

FORMATS = REPO_ROOT / "formats"
V2_DESCRIPTORS = ["qwen3_moe", "olmo2", "gemma2"]
ROLES = {
    "embedding", "embedding.position", "embedding.token_type", "lm_head", "lm_head.bias", "norm",
    "attention.query", "attention.key", "attention.value", "attention.output", "attention.qkv",
    "attention.query.bias", "attention.key.bias", "attention.value.bias", "attention.output.bias", "attention.qkv.bias",
    "mlp.gate", "mlp.up", "mlp.down", "mlp.gate.bias", "mlp.up.bias", "mlp.down.bias", "mlp.gate_up",
    "router", "expert.gate", "expert.up", "expert.down", "expert.gate_up",
    "shared_expert.gate", "shared_expert.up", "shared_expert.down", "shared_expert.router",
    "pooler", "head", "buffer",
}
AXES = ["layers", "hidden", "vocab", "heads", "kv_heads", "group", "head_dim", "ffn", "experts", "expert_ffn",
        "shared_expert_ffn", "experts_per_token", "positions", "token_types"]
TOP_KEYS = {
    "version", "family", "model_types", "axes", "flags", "layer_kinds", "tensors", "layer_config", "optional_prefix", "divisible", "causal",
    "compute",
}
TENSOR_KEYS = {"name", "shape", "role", "optional", "optional_if", "required_if", "layers", "transposed", "statistic_over"}
_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z_0-9]*)|(\d+)|([*/]))\s*")


def expr_tokens(text: str) -> list[str]:
    """An expression's tokens, operand operator operand ...; anything else is an error."""
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m and m.end() > pos, f"bad expression {text!r}"
        out.append(m.group(1) or m.group(2) or m.group(3))
        pos = m.end()
    assert out and len(out) % 2 == 1, f"bad expression {text!r}"
    for i, t in enumerate(out):
        assert (t in "*/") == (i % 2 == 1), f"bad expression {text!r}"
    return out


def expr_axes(text: str) -> list[str]:
    return [t for t in expr_tokens(text)[::2] if not t.isdigit()]


def eval_expr(text: str, env: dict) -> int:
    toks = expr_tokens(text)

    def val(t):
        return int(t) if t.isdigit() else env[t]

    v = val(toks[0])
    for op, t in zip(toks[1::2], toks[2::2]):
        if op == "*":
            v *= val(t)
        else:
            assert v % val(t) == 0, f"{text}: {v} / {val(t)} is not exact"
            v //= val(t)
    return v


def dim_exprs(dim) -> list[str]:
    return dim["concat"] if isinstance(dim, dict) else [dim]


def load_descriptor(model_type: str) -> dict:
    found = [json.loads(p.read_text()) for p in sorted(FORMATS.glob("*.json"))
             if model_type in json.loads(p.read_text()).get("model_types", [])]
    assert len(found) == 1, f"{len(found)} descriptors for {model_type}"
    return found[0]


def schema_problems(desc: dict) -> list[str]:
    """Version-2 schema rules that do not need a config."""
    p = []
    if desc.get("version") not in (2, 3):
        p.append(f"version {desc.get('version')!r} is not 2 or 3")
    if "compute" in desc:
        # Version 3: norms are named by module; each module's weight is a norm tensor.
        if desc.get("version") != 3:
            p.append("compute needs version 3")
        c = desc["compute"]
        roles = {t["name"]: t["role"] for t in desc.get("tensors", [])}
        modules = [c.get("final_norm"), (c.get("embedding") or {}).get("norm")]
        for branch in ("attention_branch", "mlp_branch"):
            modules += list((c.get(branch) or {}).values())
        qk = (c.get("attention") or {}).get("qk_norm") or {}
        modules += [qk.get("query"), qk.get("key")]
        for m in filter(None, modules):
            if roles.get(m + ".weight") != "norm":
                p.append(f"compute names module {m}, whose weight is not a norm tensor")
    p += [f"unknown top-level key {k}" for k in set(desc) - TOP_KEYS]
    axes = desc.get("axes", {})
    p += [f"axis {a} is not in the vocabulary" for a in axes if a not in AXES]
    for a, spec in axes.items():
        if set(spec) - {"keys", "default", "value"} or ("value" in spec) == bool(spec.get("keys")):
            p.append(f"axis {a}: exactly one of keys / value")
        for e in [spec.get("default"), spec.get("value")]:
            if e is not None:
                p += [f"axis {a} uses undefined axis {x}" for x in expr_axes(e) if x not in axes]
    for e in desc.get("divisible", []):
        if "/" not in e:
            p.append(f"divisible {e!r} has no quotient")
        p += [f"divisible {e!r} uses undefined axis {x}" for x in expr_axes(e) if x not in axes]
    flags, kinds = desc.get("flags", {}), desc.get("layer_kinds", {})
    for k, spec in kinds.items():
        if set(spec) - {"exclude_list", "step", "requires"} or spec.get("requires", "layers") not in axes:
            p.append(f"layer kind {k} is malformed")
    names = set()
    for t in desc.get("tensors", []):
        w = t.get("name")
        p += [f"{w}: unknown key {k}" for k in set(t) - TENSOR_KEYS]
        if w in names:
            p.append(f"{w}: two templates")
        names.add(w)
        if t.get("role") not in ROLES:
            p.append(f"{w}: role {t.get('role')!r} is not in the vocabulary")
        carried = set()
        for dim in t["shape"]:
            for e in dim_exprs(dim):
                carried |= set(expr_axes(e))
        p += [f"{w}: axis {x} is not defined" for x in carried if x not in axes]
        for key in ("optional_if", "required_if"):
            if key in t and t[key].lstrip("!") not in flags:
                p.append(f"{w}: {key} names unknown flag {t[key]}")
        if sum(k in t for k in ("optional", "optional_if", "required_if")) > 1:
            p.append(f"{w}: more than one of optional / optional_if / required_if")
        if "layers" in t and (t["layers"].lstrip("!") not in kinds or "{layer}" not in w):
            p.append(f"{w}: bad layers filter {t['layers']}")
        for x in t.get("statistic_over", []):
            if x not in AXES or x not in carried:
                p.append(f"{w}: statistic_over {x} is not an axis of the tensor's shape")
    return p


def bind_descriptor(desc: dict, config: dict):
    """(axis sizes, flags, layer kinds as sets of layer indices) for a config.json."""
    sizes, pending = {}, dict(desc["axes"])
    while pending:
        progress = False
        for a, spec in list(pending.items()):
            if "value" in spec:
                expr = spec["value"]
            else:
                key = next((k for k in spec["keys"] if config.get(k) is not None), None)
                if key is not None:
                    sizes[a] = int(config[key])
                    del pending[a]
                    progress = True
                    continue
                assert "default" in spec, f"axis {a}: no config key and no default"
                expr = spec["default"]
            if all(x in sizes for x in expr_axes(expr)):
                sizes[a] = eval_expr(expr, sizes)
                del pending[a]
                progress = True
        assert progress, f"axes cannot be resolved: {sorted(pending)}"
    flags = {f: bool(config[s["key"]]) if config.get(s["key"]) is not None else s.get("default", False)
             for f, s in desc.get("flags", {}).items()}
    kinds = {}
    for k, spec in desc.get("layer_kinds", {}).items():
        excl = config.get(spec["exclude_list"]) or [] if "exclude_list" in spec else []
        step = config.get(spec["step"]) or 1 if "step" in spec else 1
        ok = sizes[spec["requires"]] > 0 if "requires" in spec else True
        kinds[k] = {i for i in range(sizes["layers"]) if ok and i not in excl and (i + 1) % step == 0}
    return sizes, flags, kinds


def instance_name(template: str, layer, expert) -> str:
    return template.replace("{layer}", str(layer)).replace("{expert}", str(expert))


def expand_descriptor(desc, sizes, flags, kinds) -> dict:
    """{instance name: (template, expected shape, "required"|"optional"|"refused", layer, expert)}."""
    out = {}
    for t in desc["tensors"]:
        layers = range(sizes["layers"]) if "{layer}" in t["name"] else [None]
        if "layers" in t:
            kind = kinds[t["layers"].lstrip("!")]
            layers = [i for i in layers if (i in kind) != t["layers"].startswith("!")]
        experts = range(sizes["experts"]) if "{expert}" in t["name"] else [None]
        shape = [sum(eval_expr(e, sizes) for e in dim_exprs(dim)) for dim in t["shape"]]

        def holds(cond):
            return flags[cond.lstrip("!")] != cond.startswith("!")

        if t.get("optional"):
            presence = "optional"
        elif "optional_if" in t:
            presence = "optional" if holds(t["optional_if"]) else "required"
        elif "required_if" in t:
            presence = "required" if holds(t["required_if"]) else "refused"
        else:
            presence = "required"
        for i in layers:
            for e in experts:
                name = instance_name(t["name"], i, e)
                assert name not in out, f"{name} matches two templates"
                out[name] = (t, shape, presence, i, e)
    return out


def descriptor_problems(desc: dict, config: dict, shapes: dict) -> list[str]:
    """Every tensor matches exactly one template instance with the shape the config implies; every
    required instance is present; a required_if tensor whose flag does not hold is absent."""
    inst = expand_descriptor(desc, *bind_descriptor(desc, config))
    p = []
    for name, shape in shapes.items():
        if name not in inst:
            p.append(f"{name}: matches no template")
            continue
        _, want, presence, _, _ = inst[name]
        if presence == "refused":
            p.append(f"{name}: present although its required_if flag does not hold")
        elif list(shape) != want:
            p.append(f"{name}: shape {list(shape)}, the config implies {want}")
    p += [f"{name}: missing" for name, (_, _, pr, _, _) in inst.items() if pr == "required" and name not in shapes]
    return p


@pytest.mark.parametrize("family", V2_DESCRIPTORS)
def test_descriptor_schema(family):
    desc = json.loads((FORMATS / f"{family}.json").read_text())
    assert desc["family"] == family and desc["model_types"] == [family]
    assert schema_problems(desc) == []
    text = (FORMATS / f"{family}.json").read_text()
    assert text == json.dumps(desc, indent=2) + "\n", "the formats/ style: json.dumps(indent=2)"


@pytest.mark.parametrize("name", ["qwen3-moe", "qwen3-moe-step2", "olmo2", "olmo2-bias", "gemma2"])
def test_descriptor_matches_fixture(name, extra_models):
    src = model_dir(name, extra_models)
    cfg = read_config(src)
    desc = load_descriptor(cfg["model_type"])
    shapes = {k: r.shape for k, r in read_tensors(src).items()}
    assert descriptor_problems(desc, cfg, shapes) == []
    # and the roles say what the tensors are
    inst = expand_descriptor(desc, *bind_descriptor(desc, cfg))
    roles = {inst[k][0]["role"] for k in shapes}
    assert {"embedding", "norm", "attention.query", "attention.output"} <= roles
    assert ("attention.query.bias" in roles) == bool(cfg["attention_bias"])
    assert ("lm_head" in roles) != bool(cfg["tie_word_embeddings"])


def test_descriptor_checker_catches_mistakes():
    """The checker is not vacuous: each kind of mismatch is reported."""
    src = FIXTURES / "olmo2"
    cfg = read_config(src)
    desc = load_descriptor("olmo2")
    good = {k: r.shape for k, r in read_tensors(src).items()}

    def problems(shapes=None, config=None):
        return descriptor_problems(desc, config or cfg, good if shapes is None else shapes)

    assert problems() == []
    renamed = dict(good)
    renamed["model.layers.0.self_attn.q_normm.weight"] = renamed.pop("model.layers.0.self_attn.q_norm.weight")
    assert any("matches no template" in x for x in problems(renamed))
    assert any("q_norm.weight: missing" in x for x in problems(renamed))
    wrong = dict(good, **{"model.layers.1.self_attn.k_norm.weight": [32]})  # per the q width
    assert any("shape [32], the config implies [16]" in x for x in problems(wrong))
    extra_layer = dict(good, **{"model.layers.3.mlp.up_proj.weight": [64, 32]})
    assert any("matches no template" in x for x in problems(extra_layer))
    biased = dict(good, **{"model.layers.0.self_attn.o_proj.bias": [32]})
    assert any("required_if" in x for x in problems(biased))
    assert any("o_proj.bias: missing" in x for x in problems(config=dict(cfg, attention_bias=True)))
    tied = {k: v for k, v in good.items() if k != "lm_head.weight"}
    assert any("lm_head.weight: missing" in x for x in problems(tied))
    assert problems(tied, dict(cfg, tie_word_embeddings=True)) == []
    # qwen3_moe: the layer kinds decide where experts are
    q = FIXTURES / "qwen3-moe"
    qcfg, qdesc = read_config(q), load_descriptor("qwen3_moe")
    qshapes = {k: r.shape for k, r in read_tensors(q).items()}
    assert any("mlp.gate.weight: matches no template" in x
               for x in descriptor_problems(qdesc, dict(qcfg, mlp_only_layers=[0, 1]), qshapes))
    bad = schema_problems(dict(desc, tensors=desc["tensors"] + [{"name": "x", "shape": ["hidden"], "role": "bias"}]))
    assert any("role 'bias' is not in the vocabulary" in x for x in bad)
    bad = schema_problems(dict(desc, axes=dict(desc["axes"], heads_total={"keys": ["num_attention_heads"]})))
    assert any("heads_total is not in the vocabulary" in x for x in bad)


def test_descriptor_defaults_are_the_classes():
    """Each axis default and flag default is what the transformers class uses when the config
    key is absent (checked on the built modules, not on the config class's declared fields)."""
    from transformers import AutoModelForCausalLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    def make(cfg: dict):
        kwargs = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures", "transformers_version", "dtype")}
        return CONFIG_MAPPING[cfg["model_type"]](**kwargs)

    for name in ("qwen3-moe", "olmo2", "gemma2"):
        cfg = read_config(FIXTURES / name)
        desc = load_descriptor(cfg["model_type"])
        for axis, key in (("head_dim", "head_dim"), ("kv_heads", "num_key_value_heads")):
            assert "default" in desc["axes"][axis]
            small = {k: v for k, v in cfg.items() if k not in (key, "layer_types")}
            small.update(num_hidden_layers=1, num_attention_heads=8, hidden_size=64)
            torch.manual_seed(0)
            att = AutoModelForCausalLM.from_config(make(small)).model.layers[0].self_attn
            sizes, _, _ = bind_descriptor(desc, small)
            assert att.head_dim == sizes["head_dim"], (name, axis)
            assert att.k_proj.weight.shape[0] == sizes["kv_heads"] * sizes["head_dim"], (name, axis)
        for flag, spec in desc["flags"].items():
            small = {k: v for k, v in cfg.items() if k != spec["key"]}
            assert bool(getattr(make(small), spec["key"])) == spec["default"], (name, flag)
    # qwen3_moe: hub configs say num_experts, transformers 5.24 saves num_local_experts; both bind
    q = read_config(FIXTURES / "qwen3-moe")
    hub = {k: v for k, v in q.items() if k != "num_local_experts"} | {"num_experts": q["num_local_experts"]}
    assert make(hub).num_local_experts == q["num_local_experts"]
    shapes = {k: r.shape for k, r in read_tensors(FIXTURES / "qwen3-moe").items()}
    assert descriptor_problems(load_descriptor("qwen3_moe"), hub, shapes) == []


def descriptor_slice(desc: dict, src: Path, plan: dict) -> dict[str, torch.Tensor]:
    """What a plan (no merges) produces if every tensor is sliced along the axes its descriptor
    gives each dimension, products outermost first: `kv_heads*group*head_dim` row
    (k*group + g)*head_dim + d, the group's query heads chosen inside each kept kv head."""
    assert not plan.get("merge")
    cfg = read_config(src)
    sizes, flags, kinds = bind_descriptor(desc, cfg)
    inst = expand_descriptor(desc, sizes, flags, kinds)
    T = read_tensors(src)
    kept = [i for i in range(sizes["layers"]) if i not in set(plan.get("drop_layers", []))]

    def keep(axis, layer, expert, kv):
        every = list(range(sizes[axis])) if axis in sizes else None
        L = str(layer)
        if axis == "hidden":
            return sorted(plan.get("hidden", every))
        if axis == "kv_heads":
            return sorted(plan.get("attention", {}).get(L, {}).get("kv_heads", every))
        if axis == "group":
            entry = plan.get("attention", {}).get(L, {})
            given = entry.get("kv_heads", list(range(sizes["kv_heads"])))
            qs = entry.get("query_heads", [every] * len(given))
            return sorted(dict(zip(given, qs))[kv])
        if axis in ("ffn", "experts", "shared_expert_ffn"):
            return sorted(plan.get(axis, {}).get(L, every))
        if axis == "expert_ffn":
            return sorted(plan.get("expert_ffn", {}).get(L, {}).get(str(expert), every))
        return every  # head_dim, vocab, ...

    def indices(expr, layer, expert):
        factors = expr_tokens(expr)
        assert "/" not in factors, expr
        factors = factors[::2]

        def rec(pos, base, kv):
            if pos == len(factors):
                yield base
                return
            f = factors[pos]
            size = int(f) if f.isdigit() else sizes[f]
            for k in (range(size) if f.isdigit() else keep(f, layer, expert, kv)):
                yield from rec(pos + 1, base * size + k, k if f == "kv_heads" else kv)

        return list(rec(0, 0, None))

    out = {}
    for name, rec_ in T.items():
        spec, _, _, layer, expert = inst[name]
        if layer is not None and layer not in kept:
            continue
        new_layer = kept.index(layer) if layer is not None else None
        new_expert = None
        if expert is not None:
            kept_experts = keep("experts", layer, None, None)
            if expert not in kept_experts:
                continue
            new_expert = kept_experts.index(expert)
        t = rec_.tensor
        for d, dim in enumerate(spec["shape"]):
            assert not isinstance(dim, dict)
            t = t.index_select(d, torch.tensor(indices(dim, layer, expert)))
        out[instance_name(spec["name"], new_layer, new_expert)] = t
    return out


DESCRIPTOR_PLANS = [
    ("qwen3-moe", {"drop_layers": [0], "attention": {"1": {"kv_heads": [1], "query_heads": [[1, 0]]},
                                                      "2": {"kv_heads": [0], "query_heads": [[0, 1]]},
                                                      "3": {"kv_heads": [1], "query_heads": [[0, 1]]}}}),
    ("qwen3-moe", {"hidden": 24, "experts": 3, "expert_ffn": 12, "heads": 2, "ffn": 32, "drop_layers": [0]}),
    ("qwen3-moe-step2", {"hidden": 16, "experts": 2, "kv_heads": 1, "ffn": 0.5}),
    ("olmo2", {"hidden": 20, "ffn": 0.5, "drop_layers": [0]}),
    ("olmo2-bias", {"hidden": 20, "ffn": 0.5}),
    ("gemma2", {"hidden": 30, "heads": 2, "ffn": 40, "drop_layers": [2]}),
    ("gemma2", {"kv_heads": 1}),
]


@pytest.mark.parametrize("name,request_", DESCRIPTOR_PLANS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(DESCRIPTOR_PLANS)])
def test_descriptor_slicing_reproduces_the_reference(name, request_, extra_models, tmp_path):
    """Slicing each tensor by the axes its descriptor names (here) gives the reference's output
    bit for bit, and the output satisfies the descriptor under its new config: the descriptors
    and the reference agree on which tensors carry which axis, in which dimension, in which order."""
    src = model_dir(name, extra_models)
    plan = request_ if "attention" in request_ else rt.resolve(src, request_)
    out = rt.trim(src, tmp_path / "out", plan)
    got = {k: r.tensor for k, r in read_tensors(out).items()}
    desc = load_descriptor(read_config(src)["model_type"])
    want = descriptor_slice(desc, src, plan)
    assert sorted(got) == sorted(want)
    for k in got:
        assert torch.equal(got[k], want[k]), k
    assert descriptor_problems(desc, read_config(out), {k: list(v.shape) for k, v in got.items()}) == []


def test_olmo2_descriptor_refuses_what_the_reference_refuses():
    """statistic_over marks the axes whose pruning changes a norm's statistic: exactly the
    attention axes that refuse_olmo2_attention refuses; hidden and ffn stay prunable."""
    desc = load_descriptor("olmo2")
    over = {t["name"].split(".")[-2]: set(t["statistic_over"]) for t in desc["tensors"] if "statistic_over" in t}
    assert over == {"q_norm": {"kv_heads", "group", "head_dim"}, "k_norm": {"kv_heads", "head_dim"}}
    for family in ("qwen3_moe", "gemma2"):
        assert not any("statistic_over" in t for t in load_descriptor(family)["tensors"])
