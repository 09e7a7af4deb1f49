#!/usr/bin/env python3
"""Reference structural trimming of Hugging Face checkpoints, with plain torch indexing.

This is the yardstick the interop suite holds `pare trim` against. It is written
independently of pare's Swift code and aims to be obviously correct rather than
fast: load the model with transformers, index its state dict, rewrite its config,
save it with `save_pretrained`. One function per surgery per family.

    reference_trim.py IN OUT --plan PLAN.json        apply an explicit plan
    reference_trim.py IN --resolve REQUEST.json      print the plan a request resolves to
    reference_trim.py IN OUT --request REQUEST.json  resolve, then apply

Library: `trim(model_dir, out_dir, plan)`, `resolve(model_dir, request) -> plan`,
the `score_*` functions and `select_top`.

Families (config.model_type): llama, mistral, qwen2, qwen3, mixtral, qwen2_moe, qwen3_moe,
olmo2, gemma2, gpt2, bert.
Tensor names below are those of the model *in memory* (transformers 5.24). For
mixtral / qwen2_moe / qwen3_moe that is the stacked expert layout
`mlp.experts.gate_up_proj [E, 2F, H]` (rows 0..F-1 = gate/w1 of the expert, rows
F..2F-1 = up/w3) and `mlp.experts.down_proj [E, H, F]`; `save_pretrained` writes them
back as the per-expert tensors of the input checkpoint
(`block_sparse_moe.experts.{e}.w1.weight`, `mlp.experts.{e}.gate_proj.weight`, ...).

PLAN (explicit; every index is an ORIGINAL index of the input model; every key optional)
    {
      "version": 1,
      "merge": [{"layers": [3, 4, 5], "norms": "first"}],
      "drop_layers": [10, 11],
      "attention": {"0": {"kv_heads": [0, 2], "query_heads": [[0, 1], [0, 1]]}},
      "ffn": {"0": [0, 5, 7]},
      "expert_ffn": {"0": {"1": [0, 3]}},
      "shared_expert_ffn": {"0": [1, 2]},
      "experts": {"0": [0, 2, 3]},
      "hidden": [0, 1, 3, 4, ...]
    }
  Order: (1) merges, (2) drop layers (the merged-away layers l+1..l+m go too),
  (3) attention / ffn / expert_ffn / shared_expert_ffn / experts on the surviving layers
  (keyed by original layer index; expert_ffn keyed by original expert index, and only
  kept experts may be named); then layers and experts are renumbered 0..n-1 in
  original order. Keep lists may be given in any order; they are applied sorted
  ascending (kept structures keep their relative order, nothing is permuted).
  Layers (or experts) not named in a section keep everything. `attention` entries may
  omit `query_heads` (keep whole groups) or `kv_heads` (keep every kv head).
  `merge[].norms` defaults to "first".
  (4) `hidden` (global, not per layer: the kept channels of the residual stream, original
  indices) applies last, to every tensor that carries the hidden axis (`HIDDEN_LAYER_DIMS`,
  `HIDDEN_GLOBAL_DIMS`): the embedding's and the LM head's columns (a tied head stays
  tied), every norm over hidden (input / post-attention / final; gemma2's pre/post-
  feedforward, olmo2's post norms), the input columns of q/k/v, gate/up, every expert's
  gate/up, the router, qwen2_moe's shared expert gate/up and shared_expert_gate, and the
  output rows of o_proj and down_proj (every expert's down, the shared expert's down) with
  their biases. Slicing commutes with the per-layer surgeries, so the order is only a
  convenience. Per-head / full-width q_norm and k_norm, q/k/v biases and gate/up biases
  have no hidden axis. gpt2 and bert are refused (see `refuse_gpt2_hidden`).

REQUEST (what `resolve` turns into a plan with default, calibration-free scores)
    {"merge": [{"start": 0, "count": 2, "norms": "first"}],   # count = layers in the run
     "drop_layers": [1],
     "kv_heads": 1,             # kv groups kept per layer
     "heads": 2,                # query heads kept per layer (spread evenly over the kv groups)
     "ffn": 0.75,               # dense FFN channels: fraction or count
     "expert_ffn": 16,          # each expert's FFN channels: fraction or count
     "shared_expert_ffn": 16,   # qwen2_moe shared expert's FFN channels: fraction or count
     "experts": 3,              # experts kept per MoE layer: fraction or count
     "hidden": 0.75}            # hidden channels kept (one selection for the whole model)
  Size rule: a JSON integer is a count; a JSON non-integer number f in (0, 1] is a
  fraction and means max(1, floor(f * size)) (e.g. 0.75 * 96 = 72; 0.3 * 3 = 0.9 -> 1).

DEFAULT SELECTION (group magnitude). A structure's score is the sum of the squared L2
norms, accumulated in float64, of every weight removed with it:
  query head     its q_proj rows (+ q bias) and o_proj columns;
  kv group       its k_proj and v_proj rows (+ biases) plus the scores of all its query heads;
  FFN channel    gate row + up row + down column (+ gate/up bias entries; gpt2 c_fc column
                 + bias + c_proj row; bert intermediate row + bias + output column);
  expert         its gate_up and down blocks + its router row (+ router bias entry);
  expert channel that expert's gate row + up row + down column;
  hidden channel c  every element that is removed with c, in every tensor that carries the
                 hidden axis (list under PLAN (4)): embedding column, LM head column
                 (counted once in total when tied), every norm's entry c, q/k/v/gate/up/
                 router/expert gate_up/shared expert columns c, o_proj/down/expert down/
                 shared expert down rows c and bias entries c, on the surviving layers
                 only (dropped and merged-away layers do not count).
The N highest scores are kept, ties broken by the lower index (sort by (-score, index)),
and the kept list is reported ascending. Scores are computed on the weights as they are
after the earlier steps (merge, drop), i.e. on the merged tensors cast back to the model
dtype. `heads` is resolved inside the kept kv groups: heads / kv_heads per group. Width
prunes of different axes are scored independently, each on the full-width (merged)
weights: the hidden score does not see the heads / channels the same request removes.

LaCo MERGE. For a run [l, l+1, ..., l+m]:
    acc = float32(θ_l)
    for k in 1..m:  acc = acc + (float32(θ_{l+k}) - float32(θ_l))      # float32, in this order
    θ_l' = acc.to(dtype)                                               # torch rounding (RNE)
computed from the ORIGINAL tensors (never in place), for every per-layer tensor except
the norms: "norms": "first" keeps layer l's norm weights/biases; "norms": "merge" applies
the formula to them too. Layers l+1..l+m are removed. Layers of a run must hold the same
tensors with the same shapes (a qwen2_moe dense layer cannot merge with a MoE layer).

CONFIG. drop/merge: num_hidden_layers (gpt2 n_layer); `layer_types` sliced;
`max_window_layers` = number of kept layers whose original index < old value;
qwen2_moe / qwen3_moe `mlp_only_layers` / `decoder_sparse_step`: see `qwen2_moe_sparse_config`.
attention: num_attention_heads, num_key_value_heads, explicit head_dim.
ffn: intermediate_size (gpt2: explicit n_inner; qwen2_moe / qwen3_moe: the dense layers' size).
expert_ffn: mixtral intermediate_size, qwen2_moe / qwen3_moe moe_intermediate_size.
shared_expert_ffn: shared_expert_intermediate_size (qwen2_moe only; qwen3_moe has no shared expert).
experts: mixtral and qwen3_moe num_local_experts (qwen3_moe's `num_experts` is an
attribute_map alias of it), qwen2_moe num_experts.
hidden: hidden_size, and head_dim written explicitly (the original head size): every
family that allows hidden pruning reads config.head_dim in its attention and rotary
embedding and falls back to hidden_size // num_attention_heads only when it is absent
(qwen2, qwen2_moe, qwen3_moe, olmo2 have no head_dim field; mixtral's defaults to None;
llama/mistral derive it in __post_init__; qwen3's config class fills in 128 and gemma2's
256 when config.json has none -- not hidden / heads). gemma2's
embedding scale is sqrt(hidden_size), computed by the class from the config: a hidden-
pruned gemma2 scales its embeddings by sqrt(new hidden), as a model of that width does.

REFUSED (TrimError, before anything is written): different counts per layer for any
structure (the config holds one number), a query-head count that does not split evenly
over the kv groups, top-k > experts kept, gpt2/bert head pruning (see
`refuse_gpt2_attention` / `refuse_bert_attention`), olmo2 head pruning
(`refuse_olmo2_attention`), gpt2/bert hidden pruning (`refuse_gpt2_hidden` /
`refuse_bert_hidden`), a llama / gemma2 result whose hidden_size is not a multiple of
num_attention_heads (`check_heads_divide_hidden`), out-of-range or duplicate indices,
entries for removed layers/experts, merges of layers with different tensors.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

PLAN_VERSION = 1
PLAN_KEYS = {"version", "merge", "drop_layers", "attention", "ffn", "expert_ffn", "shared_expert_ffn", "experts", "hidden"}
REQUEST_KEYS = {"merge", "drop_layers", "kv_heads", "heads", "ffn", "expert_ffn", "shared_expert_ffn", "experts", "hidden"}


class TrimError(ValueError):
    """A plan or request that the output checkpoint cannot represent (or that is malformed)."""


# =============================================================================== families


@dataclass(frozen=True)
class Family:
    model_types: tuple[str, ...]
    layer_prefixes: tuple[str, ...]  # state-dict prefix of layer i is f"{prefix}{i}."; first that matches
    norms: tuple[str, ...]  # per-layer norm tensors (suffixes), for merge "norms": "first"
    attention: str  # "gqa", or the family whose refusal applies (REFUSE_ATTENTION)
    dense_ffn: str | None  # "llama", "gpt2", "bert" or None (mixtral: only expert FFNs)
    ffn_config_key: str | None  # config attribute of the dense FFN size
    moe: bool = False
    experts_config_key: str | None = None
    expert_ffn_config_key: str | None = None
    shared_expert_ffn_config_key: str | None = None
    hidden: bool = True  # hidden pruning supported (else REFUSE_HIDDEN[model_type])


_LLAMA_NORMS = ("input_layernorm.weight", "post_attention_layernorm.weight")
_LLAMA_PREFIXES = ("model.layers.", "layers.")

FAMILIES = {
    "llama": Family(("llama", "mistral", "qwen2"), _LLAMA_PREFIXES, _LLAMA_NORMS, "gqa", "llama", "intermediate_size"),
    "qwen3": Family(
        ("qwen3",),
        _LLAMA_PREFIXES,
        _LLAMA_NORMS + ("self_attn.q_norm.weight", "self_attn.k_norm.weight"),
        "gqa",
        "llama",
        "intermediate_size",
    ),
    "mixtral": Family(
        ("mixtral",),
        _LLAMA_PREFIXES,
        _LLAMA_NORMS,
        "gqa",
        None,
        None,
        moe=True,
        experts_config_key="num_local_experts",
        expert_ffn_config_key="intermediate_size",
    ),
    "qwen2_moe": Family(
        ("qwen2_moe",),
        _LLAMA_PREFIXES,
        _LLAMA_NORMS,
        "gqa",
        "llama",  # the dense layers (mlp_only_layers / off-step layers)
        "intermediate_size",
        moe=True,
        experts_config_key="num_experts",
        expert_ffn_config_key="moe_intermediate_size",
        shared_expert_ffn_config_key="shared_expert_intermediate_size",
    ),
    "qwen3_moe": Family(
        ("qwen3_moe",),
        _LLAMA_PREFIXES,
        _LLAMA_NORMS + ("self_attn.q_norm.weight", "self_attn.k_norm.weight"),
        "gqa",
        "llama",  # the dense layers (mlp_only_layers / off-step layers)
        "intermediate_size",
        moe=True,
        experts_config_key="num_local_experts",  # config.json key; `num_experts` is an attribute_map alias
        expert_ffn_config_key="moe_intermediate_size",
    ),
    "olmo2": Family(
        ("olmo2",),
        _LLAMA_PREFIXES,
        # post-norms only (no input norm); q_norm / k_norm are full-width RMSNorms
        ("post_attention_layernorm.weight", "post_feedforward_layernorm.weight",
         "self_attn.q_norm.weight", "self_attn.k_norm.weight"),
        "olmo2",
        "llama",
        "intermediate_size",
    ),
    "gemma2": Family(
        ("gemma2",),
        _LLAMA_PREFIXES,
        _LLAMA_NORMS + ("pre_feedforward_layernorm.weight", "post_feedforward_layernorm.weight"),
        "gqa",
        "llama",
        "intermediate_size",
    ),
    "gpt2": Family(
        ("gpt2",),
        ("transformer.h.", "h."),
        ("ln_1.weight", "ln_1.bias", "ln_2.weight", "ln_2.bias"),
        "gpt2",
        "gpt2",
        "n_inner",
        hidden=False,
    ),
    "bert": Family(
        ("bert",),
        ("bert.encoder.layer.", "encoder.layer."),
        (
            "attention.output.LayerNorm.weight",
            "attention.output.LayerNorm.bias",
            "output.LayerNorm.weight",
            "output.LayerNorm.bias",
        ),
        "bert",
        "bert",
        "intermediate_size",
        hidden=False,
    ),
}


def family_of(model_type: str) -> Family:
    for fam in FAMILIES.values():
        if model_type in fam.model_types:
            return fam
    known = sorted(t for f in FAMILIES.values() for t in f.model_types)
    raise TrimError(f"model_type {model_type!r} is not supported by the reference (known: {', '.join(known)})")


# =============================================================================== model info


@dataclass
class ModelInfo:
    model_type: str
    family: Family
    prefix: str
    num_layers: int
    hidden_size: int
    tied: bool  # the LM head is the embedding (one tensor)
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_size: int | None  # dense FFN channels (None: no dense FFN in this family)
    dense_layers: list[int]  # layers with a dense FFN
    moe_layers: list[int]  # layers with experts
    num_experts: int | None
    top_k: int | None
    expert_ffn_size: int | None
    shared_ffn_size: int | None


def layer_prefix(sd: dict, fam: Family) -> str:
    for p in fam.layer_prefixes:
        if any(k.startswith(p + "0.") for k in sd):
            return p
    raise TrimError(f"no layer tensors found under any of {fam.layer_prefixes}")


def model_info(model) -> ModelInfo:
    cfg = model.config
    fam = family_of(cfg.model_type)
    sd = model.state_dict()
    prefix = layer_prefix(sd, fam)
    n = cfg.num_hidden_layers
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    moe_layers = [i for i in range(n) if fam.moe and f"{prefix}{i}.mlp.gate.weight" in sd]
    if cfg.model_type in ("qwen2_moe", "qwen3_moe"):  # the weights agree with the DecoderLayer's rule
        rule = [i for i in range(n) if i not in cfg.mlp_only_layers and cfg.num_experts > 0
                and (i + 1) % cfg.decoder_sparse_step == 0]
        assert moe_layers == rule, f"MoE layers {moe_layers} differ from the config's rule {rule}"
    dense_layers = [i for i in range(n) if fam.dense_ffn is not None and i not in moe_layers]
    ffn_size = None
    if fam.dense_ffn == "gpt2":
        ffn_size = cfg.n_inner if cfg.n_inner is not None else 4 * cfg.hidden_size
    elif fam.dense_ffn is not None:
        ffn_size = cfg.intermediate_size
    info = ModelInfo(
        model_type=cfg.model_type,
        family=fam,
        prefix=prefix,
        num_layers=n,
        hidden_size=cfg.hidden_size,
        tied=_is_tied(sd),
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
        ffn_size=ffn_size,
        dense_layers=dense_layers,
        moe_layers=moe_layers,
        num_experts=getattr(cfg, fam.experts_config_key) if fam.moe else None,
        top_k=cfg.num_experts_per_tok if fam.moe else None,
        expert_ffn_size=getattr(cfg, fam.expert_ffn_config_key) if fam.moe else None,
        shared_ffn_size=getattr(cfg, fam.shared_expert_ffn_config_key) if fam.shared_expert_ffn_config_key else None,
    )
    if heads % kv:
        raise TrimError(f"num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}")
    # Sanity: the config sizes agree with the tensors.
    if fam.attention == "gqa":
        q = sd[f"{prefix}0.self_attn.q_proj.weight"]
        k = sd[f"{prefix}0.self_attn.k_proj.weight"]
        assert q.shape[0] == heads * head_dim and k.shape[0] == kv * head_dim, "config/q_proj/k_proj disagree"
    if dense_layers:
        probe = {"llama": ("mlp.up_proj.weight", 0), "gpt2": ("mlp.c_fc.weight", 1), "bert": ("intermediate.dense.weight", 0)}
        suffix, dim = probe[fam.dense_ffn]
        assert sd[f"{prefix}{dense_layers[0]}.{suffix}"].shape[dim] == ffn_size, "config/FFN tensors disagree"
    if moe_layers:
        gu = sd[f"{prefix}{moe_layers[0]}.mlp.experts.gate_up_proj"]
        assert tuple(gu.shape[:2]) == (info.num_experts, 2 * info.expert_ffn_size), "config/expert tensors disagree"
    return info


def _is_tied(sd: dict) -> bool:
    """Whether the state dict's LM head is the embedding itself (transformers ties the
    parameters: both names are in the state dict, with one storage)."""
    head = sd.get("lm_head.weight")
    embed = next((sd[k] for k in ("model.embed_tokens.weight", "embed_tokens.weight") if k in sd), None)
    return head is not None and embed is not None and head.data_ptr() == embed.data_ptr()


# =============================================================================== small helpers


def _idx(indices) -> torch.Tensor:
    return torch.tensor(list(indices), dtype=torch.long)


def take_rows(t: torch.Tensor, rows) -> torch.Tensor:
    return t.index_select(0, _idx(rows)).contiguous()


def take_cols(t: torch.Tensor, cols) -> torch.Tensor:
    return t.index_select(1, _idx(cols)).contiguous()


def head_rows(heads, head_dim: int) -> list[int]:
    """Row indices of whole heads: head h -> rows h*head_dim ... h*head_dim + head_dim - 1."""
    return [h * head_dim + d for h in heads for d in range(head_dim)]


def sq_rows(t: torch.Tensor) -> torch.Tensor:
    """Per-row sum of squares in float64 (a 1-D tensor: per-entry squares)."""
    t = t.to(torch.float64)
    return t * t if t.dim() == 1 else (t * t).sum(dim=1)


def sq_cols(t: torch.Tensor) -> torch.Tensor:
    """Per-column sum of squares in float64 of a 2-D tensor."""
    t = t.to(torch.float64)
    return (t * t).sum(dim=0)


def sq_all(t: torch.Tensor) -> torch.Tensor:
    t = t.to(torch.float64)
    return (t * t).sum()


def select_top(scores, n: int) -> list[int]:
    """Indices of the n highest scores; ties go to the lower index; returned ascending."""
    values = [float(s) for s in (scores.tolist() if isinstance(scores, torch.Tensor) else scores)]
    if not 1 <= n <= len(values):
        raise TrimError(f"cannot keep {n} of {len(values)}")
    order = sorted(range(len(values)), key=lambda i: (-values[i], i))
    return sorted(order[:n])


def size_from_request(value, size: int, what: str) -> int:
    """A JSON integer is a count; a non-integer number in (0, 1] is a fraction: max(1, floor(f * size))."""
    if isinstance(value, bool):
        raise TrimError(f"{what}: expected a count or a fraction, got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, float):
        if not 0.0 < value <= 1.0:
            raise TrimError(f"{what}: a fraction must be in (0, 1], got {value}")
        n = max(1, math.floor(value * size))
    else:
        raise TrimError(f"{what}: expected a count or a fraction, got {value!r}")
    if not 1 <= n <= size:
        raise TrimError(f"{what}: {n} is out of range 1..{size}")
    return n


# =============================================================================== attention


def attention_gqa(layer: dict, info: ModelInfo, kv_keep: list[int], q_keep: list[list[int]]) -> dict:
    """GQA head pruning for llama / mistral / qwen2 / qwen3 / mixtral / qwen2_moe / qwen3_moe / gemma2.

    Query head h belongs to kv head h // group (group = heads / kv_heads). Query head
    (k, j) = kv head k, j-th head of its group, is q_proj rows / o_proj columns
    (k*group + j)*head_dim ... + head_dim; kv head k is k_proj / v_proj rows
    k*head_dim ... + head_dim. Biases follow their rows. o_proj's bias and qwen3 / qwen3_moe's
    per-head-dim q_norm / k_norm ([head_dim], shared by all heads) are untouched.
    """
    group = info.num_heads // info.num_kv_heads
    hd = info.head_dim
    q_heads = [k * group + j for k, js in zip(kv_keep, q_keep) for j in js]
    q_rows = head_rows(q_heads, hd)
    kv_rows = head_rows(kv_keep, hd)
    out = dict(layer)
    out["self_attn.q_proj.weight"] = take_rows(layer["self_attn.q_proj.weight"], q_rows)
    out["self_attn.k_proj.weight"] = take_rows(layer["self_attn.k_proj.weight"], kv_rows)
    out["self_attn.v_proj.weight"] = take_rows(layer["self_attn.v_proj.weight"], kv_rows)
    out["self_attn.o_proj.weight"] = take_cols(layer["self_attn.o_proj.weight"], q_rows)
    for name, rows in [("q_proj", q_rows), ("k_proj", kv_rows), ("v_proj", kv_rows)]:
        if f"self_attn.{name}.bias" in layer:
            out[f"self_attn.{name}.bias"] = take_rows(layer[f"self_attn.{name}.bias"], rows)
    return out


def refuse_gpt2_attention(*_args, **_kwargs):
    """transformers 5.24 GPT2Attention: head_dim = n_embd // n_head, c_attn = Conv1D(3 * n_embd, n_embd),
    c_proj = Conv1D(n_embd, n_embd). The attention width is tied to the hidden size, so a
    checkpoint with fewer heads of the same head size has no config that describes it."""
    raise TrimError(
        "gpt2 attention heads cannot be pruned: transformers' GPT2Attention derives head_dim = n_embd // n_head "
        "and sizes c_attn as 3*n_embd and c_proj as n_embd x n_embd, so fewer heads would change the head size, "
        "not the width; there is no head_dim key to keep it (prune ffn or drop layers instead)"
    )


def refuse_bert_attention(*_args, **_kwargs):
    """transformers 5.24 BertSelfAttention: attention_head_size = int(hidden_size / num_attention_heads),
    query/key/value = Linear(hidden, heads * head_size), BertSelfOutput.dense = Linear(hidden, hidden).
    Same problem as gpt2: the config has no head size key, fewer heads cannot be expressed."""
    raise TrimError(
        "bert attention heads cannot be pruned: transformers' BertSelfAttention derives the head size as "
        "hidden_size / num_attention_heads and attention.output.dense is hidden x hidden, so fewer heads would "
        "change the head size, not the width; there is no head_dim key to keep it (prune ffn or drop layers instead)"
    )


def refuse_olmo2_attention(*_args, **_kwargs):
    """transformers 5.24 Olmo2Attention: q_norm = Olmo2RMSNorm(num_attention_heads * head_dim) applied to the
    whole q_proj output before it is split into heads, k_norm = Olmo2RMSNorm(num_key_value_heads * head_dim)
    likewise. One mean of squares is taken over every head at once, so a kept head is normalised differently
    once others are gone: slicing the norm weights gives a model that no longer computes the original heads."""
    raise TrimError(
        "olmo2 attention heads cannot be pruned: Olmo2Attention's q_norm and k_norm are each one RMSNorm over the "
        "full q width (num_attention_heads * head_dim) and k width (num_key_value_heads * head_dim), i.e. over all "
        "heads at once, so removing any head changes the statistic the kept heads are normalised with "
        "(prune ffn or hidden, or drop / merge layers instead)"
    )


REFUSE_ATTENTION = {"gpt2": refuse_gpt2_attention, "bert": refuse_bert_attention, "olmo2": refuse_olmo2_attention}


def score_query_heads(layer: dict, num_heads: int, num_kv_heads: int, head_dim: int) -> torch.Tensor:
    """[num_kv_heads, group] float64: q_proj rows (+ q bias) + o_proj columns of each query head."""
    per_row = sq_rows(layer["self_attn.q_proj.weight"]) + sq_cols(layer["self_attn.o_proj.weight"])
    if "self_attn.q_proj.bias" in layer:
        per_row = per_row + sq_rows(layer["self_attn.q_proj.bias"])
    return per_row.reshape(num_heads, head_dim).sum(dim=1).reshape(num_kv_heads, num_heads // num_kv_heads)


def score_kv_heads(layer: dict, num_heads: int, num_kv_heads: int, head_dim: int) -> torch.Tensor:
    """[num_kv_heads] float64: k and v rows (+ biases) + the scores of all query heads of the group."""
    per_row = sq_rows(layer["self_attn.k_proj.weight"]) + sq_rows(layer["self_attn.v_proj.weight"])
    for name in ("k_proj", "v_proj"):
        if f"self_attn.{name}.bias" in layer:
            per_row = per_row + sq_rows(layer[f"self_attn.{name}.bias"])
    kv = per_row.reshape(num_kv_heads, head_dim).sum(dim=1)
    return kv + score_query_heads(layer, num_heads, num_kv_heads, head_dim).sum(dim=1)


# =============================================================================== dense FFN


def ffn_llama(layer: dict, keep: list[int], base: str = "mlp.") -> dict:
    """llama-style gated MLP (also qwen2_moe's dense layers and, with base="mlp.shared_expert.",
    its shared expert): gate_proj / up_proj rows (+ biases), down_proj columns; down bias untouched."""
    out = dict(layer)
    for name in ("gate_proj", "up_proj"):
        out[f"{base}{name}.weight"] = take_rows(layer[f"{base}{name}.weight"], keep)
        if f"{base}{name}.bias" in layer:
            out[f"{base}{name}.bias"] = take_rows(layer[f"{base}{name}.bias"], keep)
    out[f"{base}down_proj.weight"] = take_cols(layer[f"{base}down_proj.weight"], keep)
    return out


def ffn_gpt2(layer: dict, keep: list[int]) -> dict:
    """gpt2 Conv1D stores weights transposed ([in, out]): c_fc weight [hidden, ffn] -> columns,
    c_fc bias [ffn] -> entries, c_proj weight [ffn, hidden] -> rows; c_proj bias untouched."""
    out = dict(layer)
    out["mlp.c_fc.weight"] = take_cols(layer["mlp.c_fc.weight"], keep)
    out["mlp.c_fc.bias"] = take_rows(layer["mlp.c_fc.bias"], keep)
    out["mlp.c_proj.weight"] = take_rows(layer["mlp.c_proj.weight"], keep)
    return out


def ffn_bert(layer: dict, keep: list[int]) -> dict:
    """bert: intermediate.dense rows + bias, output.dense columns; output.dense bias untouched."""
    out = dict(layer)
    out["intermediate.dense.weight"] = take_rows(layer["intermediate.dense.weight"], keep)
    out["intermediate.dense.bias"] = take_rows(layer["intermediate.dense.bias"], keep)
    out["output.dense.weight"] = take_cols(layer["output.dense.weight"], keep)
    return out


def score_ffn_llama(layer: dict, base: str = "mlp.") -> torch.Tensor:
    s = sq_rows(layer[f"{base}gate_proj.weight"]) + sq_rows(layer[f"{base}up_proj.weight"])
    s = s + sq_cols(layer[f"{base}down_proj.weight"])
    for name in ("gate_proj", "up_proj"):
        if f"{base}{name}.bias" in layer:
            s = s + sq_rows(layer[f"{base}{name}.bias"])
    return s


def score_ffn_gpt2(layer: dict) -> torch.Tensor:
    return sq_cols(layer["mlp.c_fc.weight"]) + sq_rows(layer["mlp.c_fc.bias"]) + sq_rows(layer["mlp.c_proj.weight"])


def score_ffn_bert(layer: dict) -> torch.Tensor:
    s = sq_rows(layer["intermediate.dense.weight"]) + sq_rows(layer["intermediate.dense.bias"])
    return s + sq_cols(layer["output.dense.weight"])


FFN = {"llama": ffn_llama, "gpt2": ffn_gpt2, "bert": ffn_bert}
SCORE_FFN = {"llama": score_ffn_llama, "gpt2": score_ffn_gpt2, "bert": score_ffn_bert}


# =============================================================================== MoE (mixtral, qwen2_moe)

_EXPERT_TENSORS = {"mlp.experts.gate_up_proj", "mlp.experts.down_proj"}


def _check_expert_tensors(layer: dict) -> None:
    extra = sorted(k for k in layer if k.startswith("mlp.experts.") and k not in _EXPERT_TENSORS)
    if extra:
        raise TrimError(f"unexpected per-expert tensors the reference does not know how to slice: {extra}")


def experts_stacked(layer: dict, keep: list[int]) -> dict:
    """Keep experts `keep` (mixtral and qwen2_moe, stacked layout): router rows (mlp.gate.weight
    [E, H]) and router bias if any, gate_up_proj[e] and down_proj[e]. The shared expert and its
    gate are untouched."""
    _check_expert_tensors(layer)
    out = dict(layer)
    out["mlp.gate.weight"] = take_rows(layer["mlp.gate.weight"], keep)
    if "mlp.gate.bias" in layer:
        out["mlp.gate.bias"] = take_rows(layer["mlp.gate.bias"], keep)
    out["mlp.experts.gate_up_proj"] = take_rows(layer["mlp.experts.gate_up_proj"], keep)
    out["mlp.experts.down_proj"] = take_rows(layer["mlp.experts.down_proj"], keep)
    return out


def expert_ffn_stacked(layer: dict, keep_per_expert: list[list[int]]) -> dict:
    """Per-expert FFN channels (mixtral w1/w3 rows + w2 columns; qwen2_moe experts' gate/up rows +
    down columns). keep_per_expert[e] = kept channels of expert e (current numbering), all the
    same length. In gate_up_proj[e] ([2F, H]) channel c is row c (gate) and row F + c (up);
    in down_proj[e] ([H, F]) it is column c."""
    _check_expert_tensors(layer)
    gate_up = layer["mlp.experts.gate_up_proj"]
    down = layer["mlp.experts.down_proj"]
    F = gate_up.shape[1] // 2
    out = dict(layer)
    out["mlp.experts.gate_up_proj"] = torch.stack(
        [take_rows(gate_up[e], list(keep) + [F + c for c in keep]) for e, keep in enumerate(keep_per_expert)]
    )
    out["mlp.experts.down_proj"] = torch.stack([take_cols(down[e], keep) for e, keep in enumerate(keep_per_expert)])
    return out


def shared_expert_ffn_qwen2_moe(layer: dict, keep: list[int]) -> dict:
    """qwen2_moe shared expert: a llama MLP under mlp.shared_expert.; shared_expert_gate untouched."""
    return ffn_llama(layer, keep, base="mlp.shared_expert.")


def score_experts(layer: dict) -> torch.Tensor:
    """[E] float64: gate_up[e] + down[e] + router row (+ router bias entry)."""
    _check_expert_tensors(layer)
    gu = layer["mlp.experts.gate_up_proj"].to(torch.float64)
    dn = layer["mlp.experts.down_proj"].to(torch.float64)
    s = (gu * gu).sum(dim=(1, 2)) + (dn * dn).sum(dim=(1, 2)) + sq_rows(layer["mlp.gate.weight"])
    if "mlp.gate.bias" in layer:
        s = s + sq_rows(layer["mlp.gate.bias"])
    return s


def score_expert_ffn(layer: dict) -> torch.Tensor:
    """[E, F] float64: gate row + up row + down column of each expert's channel."""
    gu = layer["mlp.experts.gate_up_proj"].to(torch.float64)
    dn = layer["mlp.experts.down_proj"].to(torch.float64)
    F = gu.shape[1] // 2
    rows = (gu * gu).sum(dim=2)  # [E, 2F]
    return rows[:, :F] + rows[:, F:] + (dn * dn).sum(dim=1)


def score_shared_expert_ffn(layer: dict) -> torch.Tensor:
    return score_ffn_llama(layer, base="mlp.shared_expert.")


# =============================================================================== hidden (Minitron's embedding channels)

# Every per-layer tensor (in-memory name, llama-style families) that carries the hidden axis,
# with the dimension it is in. Norms over hidden: entries; projections that read the residual
# stream: input columns (dim 1, stacked experts' gate_up_proj [E, 2F, H]: dim 2); projections
# that write it: output rows (dim 0, stacked down_proj [E, H, F]: dim 1) and their biases.
HIDDEN_LAYER_DIMS = {
    "input_layernorm.weight": 0,
    "post_attention_layernorm.weight": 0,
    "pre_feedforward_layernorm.weight": 0,  # gemma2
    "post_feedforward_layernorm.weight": 0,  # gemma2, olmo2
    "self_attn.q_proj.weight": 1,
    "self_attn.k_proj.weight": 1,
    "self_attn.v_proj.weight": 1,
    "self_attn.o_proj.weight": 0,
    "self_attn.o_proj.bias": 0,
    "mlp.gate_proj.weight": 1,
    "mlp.up_proj.weight": 1,
    "mlp.down_proj.weight": 0,
    "mlp.down_proj.bias": 0,
    "mlp.gate.weight": 1,  # router [E, H]
    "mlp.experts.gate_up_proj": 2,  # [E, 2F, H]
    "mlp.experts.down_proj": 1,  # [E, H, F]
    "mlp.shared_expert.gate_proj.weight": 1,
    "mlp.shared_expert.up_proj.weight": 1,
    "mlp.shared_expert.down_proj.weight": 0,
    "mlp.shared_expert_gate.weight": 1,  # [1, H]
}
# Per-layer tensors with no hidden axis: untouched by hidden pruning. A tensor in neither
# table is refused (the reference never guesses which dimension is the hidden one).
NO_HIDDEN_LAYER = {
    "self_attn.q_proj.bias",
    "self_attn.k_proj.bias",
    "self_attn.v_proj.bias",
    "self_attn.q_norm.weight",  # qwen3/qwen3_moe: [head_dim]; olmo2: [heads * head_dim]
    "self_attn.k_norm.weight",  # qwen3/qwen3_moe: [head_dim]; olmo2: [kv_heads * head_dim]
    "mlp.gate_proj.bias",
    "mlp.up_proj.bias",
    "mlp.gate.bias",  # router bias [E]
}
# Global tensors (names relative to the base model's prefix, "model." or nothing).
HIDDEN_GLOBAL_DIMS = {"embed_tokens.weight": 1, "norm.weight": 0, "lm_head.weight": 1}

# model_types whose config class refuses hidden_size % num_attention_heads != 0
# (LlamaConfig / Gemma2Config.validate_architecture in transformers 5.24, run at __init__,
# save_pretrained and from_pretrained), although their head size comes from head_dim.
HIDDEN_MULTIPLE_OF_HEADS = {"llama", "gemma2"}


def refuse_gpt2_hidden(*_args, **_kwargs):
    raise TrimError(
        "gpt2 hidden channels cannot be pruned: transformers' GPT2Attention derives head_dim = n_embd // n_head "
        "(there is no head_dim key), so a smaller n_embd would shrink every attention head instead of only the "
        "residual stream (prune ffn or drop / merge layers instead)"
    )


def refuse_bert_hidden(*_args, **_kwargs):
    raise TrimError(
        "bert hidden channels cannot be pruned: transformers' BertSelfAttention derives the head size as "
        "hidden_size / num_attention_heads (there is no head_dim key), so a smaller hidden_size would shrink every "
        "attention head instead of only the residual stream (prune ffn or drop / merge layers instead)"
    )


REFUSE_HIDDEN = {"gpt2": refuse_gpt2_hidden, "bert": refuse_bert_hidden}


def hidden_dim(name: str, info: ModelInfo) -> int | None:
    """The dimension of state-dict tensor `name` that is the hidden axis (None: it has none)."""
    prefix = info.prefix
    if name.startswith(prefix):
        suffix = name[len(prefix):].split(".", 1)[1]
        if suffix in HIDDEN_LAYER_DIMS:
            return HIDDEN_LAYER_DIMS[suffix]
        if suffix in NO_HIDDEN_LAYER:
            return None
    else:
        base = prefix[: -len("layers.")]  # "model." or ""
        rel = name if name == "lm_head.weight" else name[len(base):] if name.startswith(base) else None
        if rel in HIDDEN_GLOBAL_DIMS:
            return HIDDEN_GLOBAL_DIMS[rel]
    raise TrimError(f"the reference does not know whether {name} carries the hidden axis; hidden pruning refused")


def hidden_slice(sd: dict, keep: list[int], info: ModelInfo) -> dict:
    """Every tensor that carries the hidden axis keeps channels `keep` along it (any order of the
    other surgeries gives the same result: they slice other dimensions)."""
    idx = _idx(keep)
    out = {}
    for name, t in sd.items():
        d = hidden_dim(name, info)
        if d is None:
            out[name] = t
            continue
        assert t.shape[d] == info.hidden_size, f"{name}: dim {d} is {t.shape[d]}, not hidden_size {info.hidden_size}"
        out[name] = t.index_select(d, idx).contiguous()
    return out


def sq_along(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum of squares in float64 over every dimension but `dim` ([t.shape[dim]])."""
    t = t.to(torch.float64)
    return (t * t).sum(dim=[d for d in range(t.dim()) if d != dim]) if t.dim() > 1 else t * t


def score_hidden(global_tensors: dict, layers: dict, info: ModelInfo) -> torch.Tensor:
    """[hidden] float64: channel c's score is the sum of squares of every element removed with it,
    over the global tensors (embedding; LM head unless tied to it; final norm) and the per-layer
    tensors of `layers` ({original index: suffix -> tensor}, the surviving layers with merges
    applied, full width)."""
    s = torch.zeros(info.hidden_size, dtype=torch.float64)
    for name, t in global_tensors.items():
        if info.tied and name == "lm_head.weight":
            continue  # the embedding, already counted
        d = hidden_dim(name, info)
        if d is not None:
            s += sq_along(t, d)
    for i, layer in layers.items():
        for suffix, t in layer.items():
            d = hidden_dim(f"{info.prefix}{i}.{suffix}", info)
            if d is not None:
                s += sq_along(t, d)
    return s


def check_heads_divide_hidden(info: ModelInfo, hidden: int, heads: int) -> None:
    if info.model_type in HIDDEN_MULTIPLE_OF_HEADS and hidden % heads:
        raise TrimError(
            f"{info.model_type}: the result would have hidden_size {hidden} and num_attention_heads {heads}, and "
            f"hidden_size must be a multiple of num_attention_heads: transformers' {info.model_type} config class "
            f"(validate_architecture) refuses any other config, although its head size comes from head_dim; keep a "
            f"hidden size that is a multiple of {heads}, or a head count that divides {hidden}"
        )


# =============================================================================== layers


def layer_tensors(sd: dict, prefix: str, i: int) -> dict:
    head = f"{prefix}{i}."
    return {k[len(head):]: v for k, v in sd.items() if k.startswith(head)}


def merge_laco(layers: list[dict], norms: str, norm_names: tuple[str, ...]) -> dict:
    """LaCo merge of a run of layers [θ_l, θ_{l+1}, ..., θ_{l+m}] (suffix -> tensor dicts, ORIGINAL
    weights): θ_l + Σ_k (θ_{l+k} − θ_l), accumulated in float32 left to right, cast back with
    .to(dtype). Norms keep θ_l's values with norms == "first"."""
    base, others = layers[0], layers[1:]
    for o in others:
        if set(o) != set(base) or any(o[k].shape != base[k].shape or o[k].dtype != base[k].dtype for k in base):
            raise TrimError("layers of a merge must hold the same tensors with the same shapes")
    out = {}
    for name, t in base.items():
        if norms == "first" and name in norm_names:
            out[name] = t
            continue
        base32 = t.to(torch.float32)
        acc = base32
        for o in others:
            acc = acc + (o[name].to(torch.float32) - base32)
        out[name] = acc.to(t.dtype)
    return out


def qwen2_moe_sparse_config(sparse: list[bool], kept: list[int], decoder_sparse_step: int, mlp_only_layers: list[int]):
    """New (decoder_sparse_step, mlp_only_layers) for qwen2_moe / qwen3_moe after keeping layers `kept`.

    transformers 5.24 Qwen2MoeDecoderLayer (and Qwen3MoeDecoderLayer, same rule) builds a MoE block for layer i iff
        i not in mlp_only_layers and num_experts > 0 and (i + 1) % decoder_sparse_step == 0,
    otherwise a dense Qwen2MoeMLP(intermediate_size). `sparse[i]` is the kind of original
    layer i. Every kept layer must keep its kind after renumbering. First try the old step
    with mlp_only_layers remapped (kept members, renumbered); if that no longer reproduces
    the kinds (the kept pattern is not "every step-th" any more), set decoder_sparse_step = 1
    and list every dense layer (new index) in mlp_only_layers.
    """
    new_mlp_only = [j for j, i in enumerate(kept) if i in mlp_only_layers]
    want = [sparse[i] for i in kept]
    got = [(j not in new_mlp_only) and (j + 1) % decoder_sparse_step == 0 for j in range(len(kept))]
    if got == want:
        return decoder_sparse_step, new_mlp_only
    return 1, [j for j, s in enumerate(want) if not s]


# =============================================================================== plan


@dataclass
class Plan:
    merges: list[tuple[list[int], str]]
    drop: list[int]
    kept: list[int]  # surviving original layers, ascending
    attention: dict[int, tuple[list[int], list[list[int]]]]
    ffn: dict[int, list[int]]
    expert_ffn: dict[int, dict[int, list[int]]]
    shared_expert_ffn: dict[int, list[int]]
    experts: dict[int, list[int]]
    # resulting uniform sizes (None = unchanged)
    out_heads: tuple[int, int] | None = None  # (num_kv_heads, per group)
    out_ffn: int | None = None
    out_experts: int | None = None
    out_expert_ffn: int | None = None
    out_shared_ffn: int | None = None
    hidden: list[int] | None = None  # kept hidden channels (global)


def _int(v, what: str) -> int:
    """An integer, or a string of digits (JSON object keys are strings)."""
    if isinstance(v, str) and v.isdigit():
        return int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise TrimError(f"{what}: expected an integer, got {v!r}")
    return v


def _keep_list(v, size: int, what: str) -> list[int]:
    if not isinstance(v, list) or not v:
        raise TrimError(f"{what}: expected a non-empty list of indices, got {v!r}")
    out = [_int(x, what) for x in v]
    bad = [x for x in out if not 0 <= x < size]
    if bad:
        raise TrimError(f"{what}: index {bad[0]} out of range 0..{size - 1}")
    if len(set(out)) != len(out):
        raise TrimError(f"{what}: duplicate indices in {out}")
    return sorted(out)


def _layer_map(section, name: str) -> dict[int, object]:
    if not isinstance(section, dict):
        raise TrimError(f"plan.{name}: expected an object keyed by layer index")
    return {_int(k, f"plan.{name} key"): v for k, v in section.items()}


def _uniform(counts: dict, what: str, config_key: str) -> int | None:
    """counts: {label: count}; all equal, else refuse naming two that differ."""
    if not counts:
        return None
    values = set(counts.values())
    if len(values) > 1:
        items = list(counts.items())
        a = items[0]
        b = next(kv for kv in items if kv[1] != a[1])
        raise TrimError(
            f"different {what} counts per layer: {a[1]} in {a[0]} but {b[1]} in {b[0]}; "
            f"the config holds a single {config_key}, so every layer must keep the same number "
            f"(different indices per layer are fine)"
        )
    return values.pop()


def normalize_plan(plan: dict, info: ModelInfo) -> Plan:
    """Validate a plan against the model and bring it to a typed form. Raises TrimError."""
    if not isinstance(plan, dict):
        raise TrimError("a plan is a JSON object")
    unknown = set(plan) - PLAN_KEYS
    if unknown:
        raise TrimError(f"unknown plan keys: {sorted(unknown)} (known: {sorted(PLAN_KEYS)})")
    if plan.get("version", PLAN_VERSION) != PLAN_VERSION:
        raise TrimError(f"plan version {plan.get('version')!r} is not {PLAN_VERSION}")
    fam, n = info.family, info.num_layers

    # (1) merges
    merges, merged_away, in_runs = [], set(), set()
    for r, m in enumerate(plan.get("merge", [])):
        if not isinstance(m, dict) or "layers" not in m or set(m) - {"layers", "norms"}:
            raise TrimError(f"plan.merge[{r}]: expected {{\"layers\": [...], \"norms\": \"first\"|\"merge\"}}")
        layers = [_int(x, f"plan.merge[{r}].layers") for x in m["layers"]]
        if len(layers) < 2 or layers != list(range(layers[0], layers[0] + len(layers))):
            raise TrimError(f"plan.merge[{r}].layers must be 2 or more consecutive ascending layers, got {layers}")
        if layers[0] < 0 or layers[-1] >= n:
            raise TrimError(f"plan.merge[{r}].layers {layers} out of range 0..{n - 1}")
        if in_runs & set(layers):
            raise TrimError(f"plan.merge[{r}].layers {layers} overlaps another merge")
        norms = m.get("norms", "first")
        if norms not in ("first", "merge"):
            raise TrimError(f"plan.merge[{r}].norms must be \"first\" or \"merge\", got {norms!r}")
        kinds = {i in info.moe_layers for i in layers}
        if len(kinds) > 1:
            raise TrimError(
                f"plan.merge[{r}]: layers {layers} mix dense-MLP and MoE layers, whose tensors differ; "
                "only layers of the same kind can be merged"
            )
        in_runs |= set(layers)
        merged_away |= set(layers[1:])
        merges.append((layers, norms))

    # (2) drops
    drop = sorted({_int(x, "plan.drop_layers") for x in plan.get("drop_layers", [])})
    bad = [i for i in drop if not 0 <= i < n]
    if bad:
        raise TrimError(f"plan.drop_layers: layer {bad[0]} out of range 0..{n - 1}")
    overlap = sorted(set(drop) & in_runs)
    if overlap:
        raise TrimError(f"plan.drop_layers: layer {overlap[0]} is part of a merge; drop or merge it, not both")
    kept = [i for i in range(n) if i not in set(drop) | merged_away]
    if not kept:
        raise TrimError("the plan removes every layer")

    def surviving(layer: int, section: str) -> int:
        if not 0 <= layer < n:
            raise TrimError(f"plan.{section}: layer {layer} out of range 0..{n - 1}")
        if layer not in kept:
            raise TrimError(f"plan.{section}: layer {layer} is removed by drop_layers/merge; name surviving layers")
        return layer

    out = Plan(merges, drop, kept, {}, {}, {}, {}, {})

    # (3a) attention
    att = _layer_map(plan.get("attention", {}), "attention")
    if att and fam.attention != "gqa":
        REFUSE_ATTENTION[fam.attention]()
    group = info.num_heads // info.num_kv_heads
    for layer, entry in att.items():
        surviving(layer, "attention")
        w = f"plan.attention[{layer}]"
        if not isinstance(entry, dict) or set(entry) - {"kv_heads", "query_heads"}:
            raise TrimError(f"{w}: expected {{\"kv_heads\": [...], \"query_heads\": [[...], ...]}}")
        kv_keep = _keep_list(entry.get("kv_heads", list(range(info.num_kv_heads))), info.num_kv_heads, w + ".kv_heads")
        # query_heads[i] belongs to the i-th kv head of the list *as given*; re-sort together.
        given_kv = [_int(x, w + ".kv_heads") for x in entry.get("kv_heads", list(range(info.num_kv_heads)))]
        q_given = entry.get("query_heads", [list(range(group)) for _ in given_kv])
        if not isinstance(q_given, list) or len(q_given) != len(given_kv):
            raise TrimError(f"{w}.query_heads: expected one list per kept kv head ({len(given_kv)})")
        by_kv = {k: _keep_list(q, group, f"{w}.query_heads (group of kv head {k})") for k, q in zip(given_kv, q_given)}
        q_keep = [by_kv[k] for k in kv_keep]
        if len({len(q) for q in q_keep}) > 1:
            raise TrimError(
                f"{w}.query_heads: groups keep different numbers of query heads {[len(q) for q in q_keep]}; "
                "query head h belongs to kv head h // group and the config holds one num_attention_heads and one "
                "num_key_value_heads, so every kept kv group must keep the same number of query heads"
            )
        out.attention[layer] = (kv_keep, q_keep)
    if att:
        counts = {}
        for i in kept:
            kv_keep, q_keep = out.attention.get(i, (range(info.num_kv_heads), [range(group)]))
            counts[f"layer {i}"] = (len(kv_keep), len(q_keep[0]))
        kv_n, per_group = _uniform(counts, "attention head (kv heads, query heads per group)",
                                   "num_key_value_heads / num_attention_heads")
        out.out_heads = (kv_n, per_group)

    # (3b) dense ffn
    ffn = _layer_map(plan.get("ffn", {}), "ffn")
    if ffn and fam.dense_ffn is None:
        raise TrimError(
            f"{info.model_type} has no dense FFN: its per-expert FFN size is {fam.expert_ffn_config_key}; "
            "use expert_ffn"
        )
    for layer, keep in ffn.items():
        surviving(layer, "ffn")
        if layer not in info.dense_layers:
            raise TrimError(f"plan.ffn: layer {layer} is a MoE layer; use expert_ffn / shared_expert_ffn for it")
        out.ffn[layer] = _keep_list(keep, info.ffn_size, f"plan.ffn[{layer}]")
    if ffn:
        counts = {f"layer {i}": len(out.ffn.get(i, range(info.ffn_size))) for i in kept if i in info.dense_layers}
        out.out_ffn = _uniform(counts, "FFN channel", fam.ffn_config_key)

    # (3c) experts
    exp = _layer_map(plan.get("experts", {}), "experts")
    if exp and not fam.moe:
        raise TrimError(f"{info.model_type} has no experts")
    for layer, keep in exp.items():
        surviving(layer, "experts")
        if layer not in info.moe_layers:
            raise TrimError(f"plan.experts: layer {layer} has no experts (dense MLP layer)")
        out.experts[layer] = _keep_list(keep, info.num_experts, f"plan.experts[{layer}]")
    if exp:
        counts = {f"layer {i}": len(out.experts.get(i, range(info.num_experts))) for i in kept if i in info.moe_layers}
        out.out_experts = _uniform(counts, "expert", fam.experts_config_key)
        if out.out_experts is not None and info.top_k > out.out_experts:
            raise TrimError(
                f"keeping {out.out_experts} experts per layer is fewer than num_experts_per_tok = {info.top_k}: "
                f"the router must pick {info.top_k} experts per token; keep at least {info.top_k}"
            )

    def kept_experts(layer: int) -> list[int]:
        return out.experts.get(layer, list(range(info.num_experts)))

    # (3d) expert ffn
    effn = _layer_map(plan.get("expert_ffn", {}), "expert_ffn")
    if effn and not fam.moe:
        raise TrimError(f"{info.model_type} has no experts; use ffn")
    for layer, per_expert in effn.items():
        surviving(layer, "expert_ffn")
        if layer not in info.moe_layers:
            raise TrimError(f"plan.expert_ffn: layer {layer} has no experts (dense MLP layer); use ffn")
        if not isinstance(per_expert, dict):
            raise TrimError(f"plan.expert_ffn[{layer}]: expected an object keyed by original expert index")
        out.expert_ffn[layer] = {}
        for e, keep in per_expert.items():
            e = _int(e, f"plan.expert_ffn[{layer}] key")
            if not 0 <= e < info.num_experts:
                raise TrimError(f"plan.expert_ffn[{layer}]: expert {e} out of range 0..{info.num_experts - 1}")
            if e not in kept_experts(layer):
                raise TrimError(f"plan.expert_ffn[{layer}]: expert {e} is removed by plan.experts")
            out.expert_ffn[layer][e] = _keep_list(keep, info.expert_ffn_size, f"plan.expert_ffn[{layer}][{e}]")
    if effn:
        counts = {
            f"layer {i} expert {e}": len(out.expert_ffn.get(i, {}).get(e, range(info.expert_ffn_size)))
            for i in kept
            if i in info.moe_layers
            for e in kept_experts(i)
        }
        out.out_expert_ffn = _uniform(counts, "expert FFN channel", fam.expert_ffn_config_key)

    # (3e) shared expert ffn
    sffn = _layer_map(plan.get("shared_expert_ffn", {}), "shared_expert_ffn")
    if sffn and fam.shared_expert_ffn_config_key is None:
        raise TrimError(f"{info.model_type} has no shared expert")
    for layer, keep in sffn.items():
        surviving(layer, "shared_expert_ffn")
        if layer not in info.moe_layers:
            raise TrimError(f"plan.shared_expert_ffn: layer {layer} has no shared expert (dense MLP layer)")
        out.shared_expert_ffn[layer] = _keep_list(keep, info.shared_ffn_size, f"plan.shared_expert_ffn[{layer}]")
    if sffn:
        counts = {
            f"layer {i}": len(out.shared_expert_ffn.get(i, range(info.shared_ffn_size)))
            for i in kept
            if i in info.moe_layers
        }
        out.out_shared_ffn = _uniform(counts, "shared expert FFN channel", fam.shared_expert_ffn_config_key)

    # (4) hidden
    if "hidden" in plan:
        if not fam.hidden:
            REFUSE_HIDDEN[info.model_type]()
        out.hidden = _keep_list(plan["hidden"], info.hidden_size, "plan.hidden")
    if out.hidden is not None or out.out_heads is not None:
        heads = out.out_heads[0] * out.out_heads[1] if out.out_heads is not None else info.num_heads
        check_heads_divide_hidden(info, len(out.hidden) if out.hidden is not None else info.hidden_size, heads)
    return out


# =============================================================================== apply


def apply_merges(sd: dict, info: ModelInfo, merges) -> dict:
    """State dict with each run's first layer replaced by the LaCo merge (other layers untouched)."""
    out = dict(sd)
    for layers, norms in merges:
        merged = merge_laco([layer_tensors(sd, info.prefix, i) for i in layers], norms, info.family.norms)
        for name, t in merged.items():
            out[f"{info.prefix}{layers[0]}.{name}"] = t
    return out


def apply_layer_surgery(layer: dict, layer_idx: int, plan: Plan, info: ModelInfo) -> dict:
    """Step (3) on one surviving layer (original index layer_idx)."""
    fam = info.family
    if layer_idx in plan.attention:
        layer = attention_gqa(layer, info, *plan.attention[layer_idx])
    if layer_idx in plan.ffn:
        layer = FFN[fam.dense_ffn](layer, plan.ffn[layer_idx])
    if layer_idx in plan.shared_expert_ffn:
        layer = shared_expert_ffn_qwen2_moe(layer, plan.shared_expert_ffn[layer_idx])
    if layer_idx in info.moe_layers and (layer_idx in plan.experts or layer_idx in plan.expert_ffn):
        experts = plan.experts.get(layer_idx, list(range(info.num_experts)))
        if layer_idx in plan.experts:
            layer = experts_stacked(layer, experts)
        if layer_idx in plan.expert_ffn:
            chosen = plan.expert_ffn[layer_idx]
            # after experts_stacked, position p holds original expert experts[p]
            keep = [chosen.get(e, list(range(info.expert_ffn_size))) for e in experts]
            layer = expert_ffn_stacked(layer, keep)
    return layer


def new_config(config, plan: Plan, info: ModelInfo):
    """A copy of the transformers config with every value the plan changes."""
    cfg = copy.deepcopy(config)
    fam = info.family
    n_old, kept = info.num_layers, plan.kept
    cfg.num_hidden_layers = len(kept)  # gpt2: attribute_map -> n_layer
    lt = getattr(cfg, "layer_types", None)
    if lt is not None:
        assert len(lt) == n_old, "layer_types length differs from num_hidden_layers"
        cfg.layer_types = [lt[i] for i in kept]
    if getattr(cfg, "max_window_layers", None) is not None:
        cfg.max_window_layers = sum(1 for i in kept if i < config.max_window_layers)
    if info.model_type in ("qwen2_moe", "qwen3_moe"):
        if config.num_experts > 0:
            sparse = [i in info.moe_layers for i in range(n_old)]
            cfg.decoder_sparse_step, cfg.mlp_only_layers = qwen2_moe_sparse_config(
                sparse, kept, config.decoder_sparse_step, list(config.mlp_only_layers)
            )
        else:
            cfg.mlp_only_layers = [j for j, i in enumerate(kept) if i in config.mlp_only_layers]
    if plan.out_heads is not None:
        kv_n, per_group = plan.out_heads
        cfg.num_attention_heads = kv_n * per_group
        cfg.num_key_value_heads = kv_n
        cfg.head_dim = info.head_dim
    if plan.out_ffn is not None:
        setattr(cfg, fam.ffn_config_key, plan.out_ffn)
    if plan.out_experts is not None:
        setattr(cfg, fam.experts_config_key, plan.out_experts)
    if plan.out_expert_ffn is not None:
        setattr(cfg, fam.expert_ffn_config_key, plan.out_expert_ffn)
    if plan.out_shared_ffn is not None:
        setattr(cfg, fam.shared_expert_ffn_config_key, plan.out_shared_ffn)
    if plan.hidden is not None:
        cfg.hidden_size = len(plan.hidden)
        cfg.head_dim = info.head_dim  # the classes fall back to hidden_size // heads without it
    return cfg


def transform_state_dict(sd: dict, plan: Plan, info: ModelInfo) -> dict:
    """The whole surgery on a state dict: merges, drops, per-layer surgery, renumbering."""
    sd = apply_merges(sd, info, plan.merges)
    prefix = info.prefix
    out = {k: v for k, v in sd.items() if not k.startswith(prefix)}  # global tensors, untouched
    leftovers = [k for k in sd if k.startswith(prefix) and k[len(prefix):].split(".")[0] not in
                 {str(i) for i in range(info.num_layers)}]
    assert not leftovers, f"unexpected tensors under {prefix}: {leftovers[:3]}"
    for new_i, old_i in enumerate(plan.kept):
        layer = apply_layer_surgery(layer_tensors(sd, prefix, old_i), old_i, plan, info)
        for name, t in layer.items():
            out[f"{prefix}{new_i}.{name}"] = t
    if plan.hidden is not None:
        out = hidden_slice(out, plan.hidden, info)
    return out


# =============================================================================== load / save


def _auto_class(config):
    import transformers

    arch = (config.architectures or [""])[0]
    for suffix, auto in [
        ("ForCausalLM", transformers.AutoModelForCausalLM),
        ("LMHeadModel", transformers.AutoModelForCausalLM),
        ("ForMaskedLM", transformers.AutoModelForMaskedLM),
    ]:
        if arch.endswith(suffix):
            return auto
    return transformers.AutoModel


def load(model_dir):
    """from_pretrained with the saved dtype; returns (model, info)."""
    import transformers
    from transformers import AutoConfig

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    config = AutoConfig.from_pretrained(str(model_dir))
    family_of(config.model_type)  # refuse unknown families before loading weights
    model = _auto_class(config).from_pretrained(str(model_dir), dtype="auto")
    model.eval()
    return model, model_info(model)


def trim(model_dir, out_dir, plan: dict) -> Path:
    """Apply an explicit plan to the checkpoint in model_dir and save the result to out_dir."""
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    model, info = load(model_dir)
    p = normalize_plan(plan, info)
    sd = {k: v.detach() for k, v in model.state_dict().items()}
    new_sd = transform_state_dict(sd, p, info)
    cfg = new_config(model.config, p, info)

    new_model = type(model)(cfg).to(model.dtype)
    new_model.load_state_dict(new_sd, strict=True)  # every tensor present, every shape as the config says
    if model.can_generate():
        new_model.generation_config = copy.deepcopy(model.generation_config)
    new_model.eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    new_model.save_pretrained(str(out_dir))
    # Other files of the input (README, tokenizer, ...) are carried over unchanged.
    for f in sorted(model_dir.iterdir()):
        if f.is_file() and not f.name.endswith(".safetensors") and f.name != "model.safetensors.index.json":
            if not (out_dir / f.name).exists():
                shutil.copy2(f, out_dir / f.name)
    return out_dir


# =============================================================================== resolve


def resolve(model_dir, request: dict) -> dict:
    """Turn a request (counts/fractions) into an explicit plan using the default scores."""
    if not isinstance(request, dict):
        raise TrimError("a request is a JSON object")
    unknown = set(request) - REQUEST_KEYS
    if unknown:
        raise TrimError(f"unknown request keys: {sorted(unknown)} (known: {sorted(REQUEST_KEYS)})")
    model, info = load(model_dir)
    fam = info.family
    plan: dict = {"version": PLAN_VERSION}
    merges = []
    for r, m in enumerate(request.get("merge", [])):
        if not isinstance(m, dict) or set(m) - {"start", "count", "norms"} or not {"start", "count"} <= set(m):
            raise TrimError(f"request.merge[{r}]: expected {{\"start\": l, \"count\": n, \"norms\": ...}}")
        start, count = _int(m["start"], "merge.start"), _int(m["count"], "merge.count")
        merges.append({"layers": list(range(start, start + count)), "norms": m.get("norms", "first")})
    if merges:
        plan["merge"] = merges
    if request.get("drop_layers"):
        plan["drop_layers"] = sorted({_int(x, "drop_layers") for x in request["drop_layers"]})
    base = normalize_plan(plan, info)  # validates merges / drops and gives the surviving layers
    sd = apply_merges({k: v.detach() for k, v in model.state_dict().items()}, info, base.merges)
    layers = {i: layer_tensors(sd, info.prefix, i) for i in base.kept}

    if "kv_heads" in request or "heads" in request:
        if fam.attention != "gqa":
            REFUSE_ATTENTION[fam.attention]()
        H, KV, hd = info.num_heads, info.num_kv_heads, info.head_dim
        group = H // KV
        kv_n = size_from_request(request.get("kv_heads", KV), KV, "kv_heads")
        heads_n = size_from_request(request["heads"], H, "heads") if "heads" in request else kv_n * group
        if heads_n % kv_n:
            raise TrimError(
                f"heads={heads_n} cannot be split evenly over {kv_n} kv heads: query head h belongs to kv head "
                f"h // group and the config holds one num_attention_heads and one num_key_value_heads, so every "
                f"kept kv group must keep the same number of query heads; use a multiple of {kv_n}, or set kv_heads "
                f"to a divisor of {heads_n}"
            )
        per_group = heads_n // kv_n
        if per_group > group:
            raise TrimError(
                f"heads={heads_n} over {kv_n} kv heads is {per_group} query heads per group, but a group has only "
                f"{group}; keep more kv heads or fewer query heads"
            )
        att = {}
        for i, L in layers.items():
            kv_keep = select_top(score_kv_heads(L, H, KV, hd), kv_n)
            qs = score_query_heads(L, H, KV, hd)
            att[str(i)] = {"kv_heads": kv_keep, "query_heads": [select_top(qs[k], per_group) for k in kv_keep]}
        plan["attention"] = att

    if "ffn" in request:
        if fam.dense_ffn is None:
            raise TrimError(
                f"{info.model_type} has no dense FFN: its per-expert FFN size is {fam.expert_ffn_config_key}; "
                "use expert_ffn"
            )
        dense = [i for i in base.kept if i in info.dense_layers]
        if not dense:
            raise TrimError("no surviving layer has a dense FFN; use expert_ffn / shared_expert_ffn")
        n = size_from_request(request["ffn"], info.ffn_size, "ffn")
        plan["ffn"] = {str(i): select_top(SCORE_FFN[fam.dense_ffn](layers[i]), n) for i in dense}

    moe = [i for i in base.kept if i in info.moe_layers]
    for key in ("experts", "expert_ffn", "shared_expert_ffn"):
        if key in request and not moe:
            raise TrimError(f"{key}: no surviving layer of this {info.model_type} model has experts")
    kept_experts = {i: list(range(info.num_experts)) for i in moe}
    if "experts" in request:
        n = size_from_request(request["experts"], info.num_experts, "experts")
        if n < info.top_k:
            raise TrimError(
                f"keeping {n} experts per layer is fewer than num_experts_per_tok = {info.top_k}: "
                f"the router must pick {info.top_k} experts per token; keep at least {info.top_k}"
            )
        kept_experts = {i: select_top(score_experts(layers[i]), n) for i in moe}
        plan["experts"] = {str(i): kept_experts[i] for i in moe}
    if "expert_ffn" in request:
        n = size_from_request(request["expert_ffn"], info.expert_ffn_size, "expert_ffn")
        plan["expert_ffn"] = {}
        for i in moe:
            scores = score_expert_ffn(layers[i])
            plan["expert_ffn"][str(i)] = {str(e): select_top(scores[e], n) for e in kept_experts[i]}
    if "shared_expert_ffn" in request:
        if fam.shared_expert_ffn_config_key is None:
            raise TrimError(f"{info.model_type} has no shared expert")
        n = size_from_request(request["shared_expert_ffn"], info.shared_ffn_size, "shared_expert_ffn")
        plan["shared_expert_ffn"] = {str(i): select_top(score_shared_expert_ffn(layers[i]), n) for i in moe}

    if "hidden" in request:
        if not fam.hidden:
            REFUSE_HIDDEN[info.model_type]()
        n = size_from_request(request["hidden"], info.hidden_size, "hidden")
        global_tensors = {k: v for k, v in sd.items() if not k.startswith(info.prefix)}
        plan["hidden"] = select_top(score_hidden(global_tensors, layers, info), n)

    normalize_plan(plan, info)  # the resolved plan must itself be valid
    return plan


# =============================================================================== CLI


def dumps_plan(plan: dict) -> str:
    """JSON with one line per layer entry (lists of indices stay on one line)."""
    parts = []
    for key, value in plan.items():
        if isinstance(value, dict) and value:
            inner = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            parts.append(f"  {json.dumps(key)}: {{\n{inner}\n  }}")
        else:
            parts.append(f"  {json.dumps(key)}: {json.dumps(value)}")
    return "{\n" + ",\n".join(parts) + "\n}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Reference structural trim (torch indexing) of a Hugging Face checkpoint.",
        epilog="See the module docstring for the plan and request formats.",
    )
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("out_dir", type=Path, nargs="?")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--plan", type=Path, help="explicit plan JSON to apply (needs OUT)")
    g.add_argument("--resolve", type=Path, metavar="REQUEST", help="print the plan a request JSON resolves to")
    g.add_argument("--request", type=Path, help="resolve a request JSON, then apply it (needs OUT)")
    args = ap.parse_args(argv)
    try:
        if args.resolve is not None:
            if args.out_dir is not None:
                ap.error("--resolve takes no OUT")
            print(dumps_plan(resolve(args.model_dir, json.loads(args.resolve.read_text()))))
            return 0
        if args.out_dir is None:
            ap.error("OUT is required with --plan / --request")
        if args.plan is not None:
            plan = json.loads(args.plan.read_text())
        else:
            plan = resolve(args.model_dir, json.loads(args.request.read_text()))
        trim(args.model_dir, args.out_dir, plan)
        print(dumps_plan(plan))
        return 0
    except TrimError as e:
        print(f"reference_trim: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
