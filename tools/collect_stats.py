#!/usr/bin/env python3
"""Calibration statistics of a Hugging Face checkpoint, collected with PyTorch hooks.

The independent counterpart of `pare calibrate`: the model is loaded by transformers,
forward hooks (pre-hooks for inputs) on its modules see every activation, and the same
statistics file is written (formats/stats.md), so the two can be compared tensor by tensor.

    collect_stats.py MODEL --tokens FILE [--seq-len T] [--samples N] -o STATS.safetensors
                     [--device-map auto] [--dtype float32] [--threads N] [--quiet]

Tokens are read as pare reads them (Sources/Runtime/TokenFile.swift): a safetensors file
with an integer `input_ids` [N, T] or [T] and an optional `attention_mask` of the same
shape (tokens whose mask is 0 are dropped), or JSON lines of id lists. `--seq-len T` cuts
each sequence into consecutive windows of T tokens (the last may be shorter), `--samples N`
keeps the first N windows. Every window is one forward call (batch of one, no padding).

Statistics (sums in float64, written as 1-D float32). The Minitron aggregation of an
activation X[b, t, c] over windows b and the tokens t of b that reached the module is
imp[c] = sqrt(Σ_b (mean_t |X[b, t, c]|)²); a window with no token there adds nothing.

  <W>.input_norm            sqrt(Σ over tokens that reached it of x_j²) for every linear
                            weight W inside the blocks (attention, MLP, routers, every
                            expert, the shared expert and its gate), W named as in the
                            checkpoint; unreached experts get zeros
  <W>.input_mean            the mean over those tokens of x_j (0 when none reached it),
                            for bias compensation
  layers.L.attention.heads  m = Minitron of the attention output projection's input;
                            heads[h] = sqrt(Σ over head h's slice of m²)
  layers.L.mlp.channels     Minitron of the down projection's input (dense MLPs)
  layers.L.experts.E.channels, layers.L.shared_expert.channels   the same per expert
  hidden                    Σ over layers and the two branches of the Minitron of the
                            branch input (q_proj / c_attn / query; up_proj / c_fc /
                            intermediate.dense, or the router's input in an MoE layer)
  layers.L.block_influence  1 − mean over all tokens of cos(layer input, layer output)
  layers.L.router.tokens    (token, expert) assignments in the top-k, per expert
  layers.L.router.weight    Σ of the routing weights used to mix the expert outputs
  layers.L.router.beta      median over tokens of w₂/w₁ (top-2 weights; top-k ≥ 2 only)
  layers.L.experts.output_norm   sqrt(Σ over routed tokens of ‖expert output‖²), before
                            the routing weight is applied

transformers 5 stores routed experts fused (a `...Experts` module holding 3-D
`gate_up_proj` [E, 2I, H] and `down_proj` [E, H, I]); its pre-hook recomputes each
expert from the routed tokens and the routing it is given, and its forward hook checks
that the recomputed mixture equals the module's output. Per-expert statistics are named
after the checkpoint's per-expert tensors, matched by value.

Metadata: format=pt, tokens, sequences, model_sha256 (of model.safetensors.index.json,
else of the single weight file), tool.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

INDEX_NAME = "model.safetensors.index.json"
ENCODER_TYPES = {"bert"}

# Linear modules by their path inside a block: what else they feed besides <W>.input_norm.
ATTENTION_INPUT = {"self_attn.q_proj", "attn.c_attn", "attention.self.query"}
ATTENTION_OUTPUT = {"self_attn.o_proj", "attn.c_proj", "attention.output.dense"}
MLP_INPUT = {"mlp.up_proj", "mlp.c_fc", "intermediate.dense"}
MLP_DOWN = {"mlp.down_proj", "mlp.c_proj", "output.dense"}
SHARED_DOWN = {"mlp.shared_expert.down_proj"}


class StatsError(Exception):
    """Bad input: reported as one line and exit status 1."""


# --------------------------------------------------------------------------- tokens


INT_DTYPES = {"I64", "U64", "I32", "U32", "I16", "U16", "I8", "U8", "BOOL"}
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


def read_tokens(path) -> list[list[int]]:
    """The sequences of a tokens file, as pare reads them (before windowing)."""
    path = str(path)
    if not os.path.exists(path):
        raise StatsError(f"tokens file {path} does not exist")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError:
        raise StatsError(f"tokens file {path} cannot be read") from None
    first_text = next((b for b in head if b not in b" \t\r\n"), None)
    if path.endswith(".safetensors") or (len(head) >= 9 and first_text != ord("[")):
        seqs = _read_safetensors_tokens(path)
    else:
        seqs = _read_jsonl_tokens(path)
    if not any(len(s) for s in seqs):
        raise StatsError(f"tokens file {path} holds no tokens")
    return seqs


def _read_safetensors_tokens(path: str) -> list[list[int]]:
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            keys = list(f.keys())
            dtypes = {k: f.get_slice(k).get_dtype() for k in keys}
            if "input_ids" not in keys:
                raise StatsError(f"tokens file {path} has no 'input_ids' tensor (it holds: {', '.join(keys)})")
            for k in ("input_ids", "attention_mask"):
                if k in keys and dtypes[k] not in INT_DTYPES:
                    raise StatsError(f"tokens file {path}: '{k}' is {dtypes[k]}; token ids and masks are integers")
            ids = f.get_tensor("input_ids")
            mask = f.get_tensor("attention_mask") if "attention_mask" in keys else None
    except StatsError:
        raise
    except Exception as e:  # noqa: BLE001 - any parse failure is bad input
        raise StatsError(
            f"tokens file {path} is neither JSON lines of id lists nor a valid safetensors file ({e})"
        ) from None
    if ids.ndim == 1:
        ids = ids[None, :]
        mask = mask[None, :] if mask is not None and mask.ndim == 1 else mask
    elif ids.ndim != 2:
        raise StatsError(f"tokens file {path}: 'input_ids' has shape {list(ids.shape)}; "
                         "expected [sequences, tokens] or [tokens]")
    if mask is not None and mask.shape != ids.shape:
        raise StatsError(f"tokens file {path}: 'attention_mask' has shape {list(mask.shape)}, "
                         f"not the shape of 'input_ids' {list(ids.shape)}")
    seqs = []
    for r in range(ids.shape[0]):
        row = ids[r] if mask is None else ids[r][mask[r].astype(np.int64) != 0]
        values = [int(v) for v in row.tolist()]
        for c, v in enumerate(values):
            if not INT32_MIN <= v <= INT32_MAX:
                raise StatsError(f"tokens file {path}: sequence {r}, position {c}: id {v} is out of range")
        seqs.append(values)
    return seqs


def _read_jsonl_tokens(path: str) -> list[list[int]]:
    raw = Path(path).read_bytes()
    seqs: list[list[int]] = []
    for number, line in enumerate(raw.split(b"\n")):
        if not line.strip(b" \t\r"):
            continue
        try:
            value = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StatsError(f"tokens file {path}: line {number + 1} is not JSON ({e}); "
                             "expected a list of token ids per line") from None
        if isinstance(value, dict):
            value = value.get("input_ids")
        if not isinstance(value, list):
            raise StatsError(f"tokens file {path}: line {number + 1} is not a list of token ids")
        s = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, int):
                raise StatsError(f"tokens file {path}: line {number + 1}, item {i} is not an integer token id")
            if not INT32_MIN <= item <= INT32_MAX:
                raise StatsError(f"tokens file {path}: line {number + 1}, item {i}: id {item} is out of range")
            s.append(item)
        seqs.append(s)
    return seqs


def windows(seqs: list[list[int]], seq_len: int | None = None, samples: int | None = None) -> list[list[int]]:
    """Each non-empty sequence cut into windows of at most seq_len tokens; the first `samples`."""
    out: list[list[int]] = []
    for s in seqs:
        if not s:
            continue
        if not seq_len:
            out.append(list(s))
            continue
        out.extend(list(s[i:i + seq_len]) for i in range(0, len(s), seq_len))
    return out[:samples] if samples is not None else out


# --------------------------------------------------------------------------- model folder


def model_sha256(folder) -> str:
    folder = Path(folder)
    index = folder / INDEX_NAME
    if index.is_file():
        target = index
    elif (folder / "model.safetensors").is_file():
        target = folder / "model.safetensors"
    else:
        files = sorted(folder.glob("*.safetensors"))
        if len(files) != 1:
            raise StatsError(f"model {folder}: no {INDEX_NAME} and no single model.safetensors to fingerprint")
        target = files[0]
    h = hashlib.sha256()
    with open(target, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


class Checkpoint:
    """The checkpoint's tensor names and shapes (headers only), with lazy value reads."""

    def __init__(self, folder):
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / INDEX_NAME
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = sorted(set(weight_map.values()))
        else:
            files = [p.name for p in sorted(self.folder.glob("*.safetensors"))]
        if not files:
            raise StatsError(f"model {folder} has no safetensors weights")
        self.file_of: dict[str, str] = {}
        self.shape: dict[str, tuple] = {}
        for name in files:
            with safe_open(str(self.folder / name), framework="pt") as f:
                for k in f.keys():
                    self.file_of[k] = name
                    self.shape[k] = tuple(f.get_slice(k).get_shape())
        self._open: dict[str, object] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.shape

    def get(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        file = self.file_of[name]
        if file not in self._open:
            self._open[file] = safe_open(str(self.folder / file), framework="pt")
        return self._open[file].get_tensor(name)

    def names_under(self, prefix: str) -> list[str]:
        return [k for k in self.shape if k.startswith(prefix)]


def same_values(param: torch.Tensor, stored: torch.Tensor) -> bool | None:
    """Does a loaded parameter hold the checkpoint tensor's values? None: cannot tell (offloaded)."""
    if param.device.type == "meta":
        return None
    if tuple(param.shape) != tuple(stored.shape):
        return False
    return bool(torch.equal(param.detach().cpu(), stored.to(param.dtype)))


def name_candidates(path: str, base_prefix: str) -> list[str]:
    """Checkpoint spellings a module path may have (transformers renames some on load)."""
    stems = [path]
    if base_prefix and path.startswith(base_prefix + "."):
        stems.append(path[len(base_prefix) + 1:])
    elif base_prefix:
        stems.append(f"{base_prefix}.{path}")
    out: list[str] = []
    for s in stems:
        for a, b in [("", ""), (".mlp.", ".block_sparse_moe.")]:
            c = s.replace(a, b) if a else s
            if c not in out:
                out.append(c)
    return out


def resolve_weight(ckpt: Checkpoint, path: str, weight: torch.Tensor, base_prefix: str) -> str:
    """The checkpoint name of the weight of module `path` (checked by value)."""
    undecided = None
    for stem in name_candidates(path, base_prefix):
        name = stem + ".weight"
        if name not in ckpt or ckpt.shape[name] != tuple(weight.shape):
            continue
        same = same_values(weight, ckpt.get(name))
        if same:
            return name
        if same is None and undecided is None:
            undecided = name
    if undecided is not None:
        return undecided
    raise StatsError(f"no checkpoint tensor in {ckpt.folder} holds the weight of module {path}")


# --------------------------------------------------------------------------- loading


def config_of(folder) -> dict:
    p = Path(folder) / "config.json"
    if not p.is_file():
        raise StatsError(f"model {folder} has no config.json")
    return json.loads(p.read_text())


def load_model(folder, dtype: torch.dtype, device_map: str | None):
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    encoder = config_of(folder).get("model_type") in ENCODER_TYPES
    kwargs = {"dtype": dtype, "attn_implementation": "eager"}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        if encoder:
            model = transformers.AutoModel.from_pretrained(str(folder), add_pooling_layer=False, **kwargs)
        else:
            model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StatsError(f"transformers cannot load {folder}: {first}") from None
    model.eval()
    return model


def default_device_map(choice: str | None) -> str | None:
    if choice is None or choice == "auto":
        try:
            import accelerate  # noqa: F401
        except ImportError:
            return None
        return "auto" if torch.cuda.is_available() else None
    if choice in ("cpu", "none"):
        return None
    return choice


def block_modules(model) -> tuple[list, str]:
    """The transformer blocks in order, and their path prefix in named_modules()."""
    names = dict((id(m), n) for n, m in model.named_modules())
    base = model.base_model
    for path in ("layers", "h", "encoder.layer"):
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return list(obj), names[id(obj)]
    raise StatsError(f"cannot find the transformer blocks of {type(model).__name__}")


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


# --------------------------------------------------------------------------- collector


class Collector:
    """Hooks on one model; statistics accumulated over the forward calls (one window each)."""

    def __init__(self, model, ckpt: Checkpoint):
        self.model = model
        self.ckpt = ckpt
        self.config = model.config
        self.base_prefix = model.base_model_prefix or ""
        self.sizes: dict[str, int] = {}  # every statistic vector and its length
        self.sq: dict[str, torch.Tensor] = {}  # Σ x² per channel (input norms, output norms)
        self.lin: dict[str, torch.Tensor] = {}  # Σ x per input channel (input means)
        self.rows: dict[str, int] = {}  # tokens summed into each input statistic
        self.mini: dict[str, torch.Tensor] = {}  # Σ_b (mean_t |x|)² per channel
        self.counts: dict[str, torch.Tensor] = {}  # router tokens / weights
        self.ratios: dict[int, list[torch.Tensor]] = {}
        self.cos_sum: dict[int, float] = {}
        self.cos_count: dict[int, int] = {}
        self.heads: dict[int, tuple[str, int]] = {}  # layer -> (minitron key, heads)
        self.hidden_keys: list[str] = []
        self.input_norm_names: list[str] = []
        self.moe_layers: dict[int, dict] = {}
        self.handles = []
        self.expert_check_max = 0.0
        self._install()

    # ---- accumulation

    def _add(self, table: dict, key: str, value: torch.Tensor) -> None:
        value = value.detach()
        if key in table:
            table[key] += value.to(table[key].device)
        else:
            table[key] = value.clone()

    def _sumsq(self, key: str, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).double()
        if x.shape[0]:
            self._add(self.sq, key, (x * x).sum(0))
            if key.endswith(".input_norm"):
                self._add(self.lin, key, x.sum(0))
                self.rows[key] = self.rows.get(key, 0) + x.shape[0]

    def _minitron(self, key: str, x: torch.Tensor) -> None:
        """x: every token of one window that reached the module ([..., C]); nothing if none."""
        x = x.detach().reshape(-1, x.shape[-1]).double()
        if x.shape[0]:
            m = x.abs().mean(0)
            self._add(self.mini, key, m * m)

    # ---- installation

    def _install(self) -> None:
        blocks, prefix = block_modules(self.model)
        self.layers = len(blocks)
        hidden_size = self.config.hidden_size
        self.sizes["hidden"] = hidden_size
        for l, block in enumerate(blocks):
            bprefix = f"{prefix}.{l}"
            self.sizes[f"layers.{l}.block_influence"] = 1
            self.handles.append(block.register_forward_hook(self._block_hook(l), with_kwargs=True))
            has_attn_in = has_heads = has_mlp_in = False
            experts_modules = {}
            routers = {}
            for rel, mod in block.named_modules():
                if not rel:
                    continue
                path = f"{bprefix}.{rel}"
                kind = type(mod).__name__
                if hasattr(mod, "gate_up_proj") and hasattr(mod, "down_proj") and isinstance(
                    getattr(mod, "down_proj"), torch.nn.Parameter
                ):
                    experts_modules[rel] = mod
                    continue
                if kind.endswith("TopKRouter") or kind.endswith("Router"):
                    routers[rel] = mod
                    continue
                if not (isinstance(mod, torch.nn.Linear) or kind == "Conv1D"):
                    continue
                if "experts." in rel and not rel.startswith("mlp.shared_expert"):
                    raise StatsError(f"unsupported per-expert module layout at {path} ({kind})")
                w = mod.weight
                in_features = w.shape[0] if kind == "Conv1D" else w.shape[1]
                name = resolve_weight(self.ckpt, path, w, self.base_prefix)
                key = name + ".input_norm"
                self.sizes[key] = in_features
                self.input_norm_names.append(key)
                extra = []
                if rel in ATTENTION_INPUT:
                    extra.append(f"hidden:{l}:attention")
                    self.sizes[f"hidden:{l}:attention"] = in_features
                    has_attn_in = True
                if rel in ATTENTION_OUTPUT:
                    heads = self.config.num_attention_heads
                    if in_features % heads:
                        raise StatsError(f"{path}: input width {in_features} is not a multiple of {heads} heads")
                    extra.append(f"heads:{l}")
                    self.sizes[f"heads:{l}"] = in_features
                    self.heads[l] = (f"heads:{l}", heads)
                    self.sizes[f"layers.{l}.attention.heads"] = heads
                    has_heads = True
                if rel in MLP_INPUT:
                    extra.append(f"hidden:{l}:mlp")
                    self.sizes[f"hidden:{l}:mlp"] = in_features
                    has_mlp_in = True
                if rel in MLP_DOWN:
                    extra.append(f"layers.{l}.mlp.channels")
                    self.sizes[f"layers.{l}.mlp.channels"] = in_features
                if rel in SHARED_DOWN:
                    extra.append(f"layers.{l}.shared_expert.channels")
                    self.sizes[f"layers.{l}.shared_expert.channels"] = in_features
                self.handles.append(mod.register_forward_pre_hook(self._linear_hook(key, extra), with_kwargs=True))
            if routers or experts_modules:
                if len(routers) != 1 or len(experts_modules) != 1:
                    raise StatsError(f"layer {l}: expected one router and one experts module, found "
                                     f"{sorted(routers)} and {sorted(experts_modules)}")
                (rrel, router), = routers.items()
                (erel, experts), = experts_modules.items()
                self._install_moe(l, bprefix, rrel, router, erel, experts)
                has_mlp_in = True
            if not (has_attn_in and has_heads and has_mlp_in):
                raise StatsError(f"layer {l} ({type(block).__name__}): cannot find its attention input, "
                                 f"attention output and MLP input projections")
            self.hidden_keys += [f"hidden:{l}:attention", f"hidden:{l}:mlp"]

    def _install_moe(self, l, bprefix, rrel, router, erel, experts) -> None:
        layout = [("is_transposed", False), ("is_concatenated", True), ("has_gate", True), ("has_bias", False)]
        for attr, want in layout:
            if getattr(experts, attr, want) != want:
                raise StatsError(f"layer {l}: experts layout {attr}={getattr(experts, attr)} is not supported")
        num = experts.gate_up_proj.shape[0]
        inter = experts.down_proj.shape[2]
        hidden = experts.down_proj.shape[1]
        top_k = getattr(router, "top_k", None) or self.config.num_experts_per_tok
        rname = resolve_weight(self.ckpt, f"{bprefix}.{rrel}", router.weight, self.base_prefix)
        rkey = rname + ".input_norm"
        self.sizes[rkey] = hidden
        self.input_norm_names.append(rkey)
        self.sizes[f"hidden:{l}:mlp"] = hidden
        for stat in ("router.tokens", "router.weight", "experts.output_norm"):
            self.sizes[f"layers.{l}.{stat}"] = num
        if top_k >= 2:
            self.sizes[f"layers.{l}.router.beta"] = 1
        # Per-expert checkpoint names, matched by value against the fused parameters.
        names = []
        for e in range(num):
            under = []
            for stem in name_candidates(f"{bprefix}.{erel}.{e}.", self.base_prefix):
                under = [k for k in self.ckpt.names_under(stem)
                         if k.endswith(".weight") and len(self.ckpt.shape[k]) == 2]
                if under:
                    break
            if not under:
                raise StatsError(f"layer {l}: no per-expert tensors for expert {e} in the checkpoint")
            parts = {"gate": experts.gate_up_proj[e, :inter], "up": experts.gate_up_proj[e, inter:],
                     "down": experts.down_proj[e]}
            found = {}
            for role, param in parts.items():
                hits = [k for k in under if same_values(param, self.ckpt.get(k))]
                if len(hits) != 1 and param.device.type == "meta":
                    leaf = {"gate": ("w1", "gate_proj"), "up": ("w3", "up_proj"), "down": ("w2", "down_proj")}[role]
                    hits = [k for k in under if k.split(".")[-2] in leaf]
                if not hits:
                    raise StatsError(f"layer {l}, expert {e}: no checkpoint tensor holds its {role} projection")
                found[role] = hits[0]
            names.append(found)
            for role, width in (("gate", hidden), ("up", hidden), ("down", inter)):
                key = found[role] + ".input_norm"
                self.sizes[key] = width
                self.input_norm_names.append(key)
            self.sizes[f"layers.{l}.experts.{e}.channels"] = inter
        self.moe_layers[l] = {"experts": num, "top_k": top_k, "names": names}
        self.handles.append(router.register_forward_hook(self._router_hook(l, rkey), with_kwargs=True))
        self.handles.append(experts.register_forward_pre_hook(self._experts_pre_hook(l, experts), with_kwargs=True))
        self.handles.append(experts.register_forward_hook(self._experts_hook(l), with_kwargs=True))

    # ---- hooks

    def _linear_hook(self, key, extra):
        def hook(_mod, args, kwargs):
            x = args[0] if args else kwargs.get("input", kwargs.get("x"))
            self._sumsq(key, x)
            for k in extra:
                self._minitron(k, x)

        return hook

    def _block_hook(self, l):
        def hook(_mod, args, kwargs, out):
            h_in = (args[0] if args else kwargs["hidden_states"]).detach()
            h_out = _first(out).detach()
            a = h_in.reshape(-1, h_in.shape[-1]).double()
            b = h_out.reshape(-1, h_out.shape[-1]).to(a.device).double()
            denom = a.norm(dim=-1) * b.norm(dim=-1)
            dot = (a * b).sum(-1)
            safe = torch.where(denom > 0, denom, torch.ones_like(denom))
            cos = torch.where(denom > 0, dot / safe, torch.zeros_like(dot))
            self.cos_sum[l] = self.cos_sum.get(l, 0.0) + float(cos.sum())
            self.cos_count[l] = self.cos_count.get(l, 0) + cos.numel()

        return hook

    def _router_hook(self, l, rkey):
        info = self.moe_layers[l]

        def hook(_mod, args, kwargs, out):
            x = args[0] if args else kwargs["hidden_states"]
            self._sumsq(rkey, x)
            self._minitron(f"hidden:{l}:mlp", x)
            if not (isinstance(out, (tuple, list)) and len(out) == 3):
                raise StatsError(f"layer {l}: router returned {type(out).__name__}, "
                                 "expected (logits, weights, indices)")
            _, weights, index = out
            weights = weights.detach().reshape(-1, weights.shape[-1]).double()
            index = index.detach().reshape(-1, index.shape[-1])
            e = info["experts"]
            self._add(self.counts, f"layers.{l}.router.tokens",
                      torch.bincount(index.reshape(-1), minlength=e).double())
            summed = torch.zeros(e, dtype=torch.float64, device=weights.device)
            self._add(self.counts, f"layers.{l}.router.weight",
                      summed.index_add_(0, index.reshape(-1), weights.reshape(-1)))
            if info["top_k"] >= 2 and weights.shape[0]:
                top2 = torch.sort(weights, dim=-1, descending=True).values[:, :2]
                w1, w2 = top2[:, 0], top2[:, 1]
                ratio = torch.where(w1 > 0, w2 / torch.where(w1 > 0, w1, torch.ones_like(w1)), torch.zeros_like(w1))
                self.ratios.setdefault(l, []).append(ratio.cpu())

        return hook

    def _experts_pre_hook(self, l, experts):
        info = self.moe_layers[l]

        def hook(_mod, args, kwargs):
            names = ("hidden_states", "top_k_index", "top_k_weights")
            vals = list(args) + [kwargs[n] for n in names[len(args):]]
            hidden, index, weights = (v.detach() for v in vals[:3])
            inter = experts.down_proj.shape[2]
            mix = torch.zeros_like(hidden)
            with torch.no_grad():
                for e in range(info["experts"]):
                    tok, pos = torch.where(index == e)
                    if tok.numel() == 0:
                        continue
                    x = hidden[tok]
                    gate_up = torch.nn.functional.linear(x, experts.gate_up_proj[e])
                    gate, up = gate_up[:, :inter], gate_up[:, inter:]
                    h = experts.act_fn(gate) * up
                    y = torch.nn.functional.linear(h, experts.down_proj[e])
                    n = info["names"][e]
                    self._sumsq(n["gate"] + ".input_norm", x)
                    self._sumsq(n["up"] + ".input_norm", x)
                    self._sumsq(n["down"] + ".input_norm", h)
                    self._minitron(f"layers.{l}.experts.{e}.channels", h)
                    out_sq = torch.zeros(info["experts"], dtype=torch.float64, device=y.device)
                    out_sq[e] = (y.double() ** 2).sum()
                    self._add(self.sq, f"layers.{l}.experts.output_norm", out_sq)
                    mix.index_add_(0, tok, (y * weights[tok, pos, None]).to(mix.dtype))
            info["mix"] = mix

        return hook

    def _experts_hook(self, l):
        info = self.moe_layers[l]

        def hook(_mod, _args, _kwargs, out):
            mix = info.pop("mix")
            out = _first(out).detach()
            scale = max(float(out.abs().max()), 1e-12)
            err = float((out.double() - mix.to(out.device).double()).abs().max()) / scale
            self.expert_check_max = max(self.expert_check_max, err)
            tol = 1e-4 if out.dtype == torch.float32 else 2e-2
            if err > tol:
                raise RuntimeError(f"layer {l}: the recomputed expert mixture differs from transformers' output "
                                   f"(max error {err:.3g} of max |output|); the per-expert statistics would be wrong")

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    # ---- results

    def results(self) -> dict[str, torch.Tensor]:
        def vec(table, key):
            v = table.get(key)
            return torch.zeros(self.sizes[key], dtype=torch.float64) if v is None else v.detach().cpu().double()

        out: dict[str, torch.Tensor] = {}
        for key in self.input_norm_names:
            out[key] = vec(self.sq, key).sqrt()
            rows = self.rows.get(key, 0)
            mean = vec(self.lin, key) / rows if rows else torch.zeros(self.sizes[key], dtype=torch.float64)
            out[key[: -len(".input_norm")] + ".input_mean"] = mean
        hidden = torch.zeros(self.sizes["hidden"], dtype=torch.float64)
        for key in self.hidden_keys:
            hidden += vec(self.mini, key).sqrt()
        out["hidden"] = hidden
        for l in range(self.layers):
            key, heads = self.heads[l]
            m = vec(self.mini, key).sqrt()
            out[f"layers.{l}.attention.heads"] = (m * m).reshape(heads, -1).sum(-1).sqrt()
            n = self.cos_count.get(l, 0)
            influence = 1.0 - self.cos_sum[l] / n if n else 0.0
            out[f"layers.{l}.block_influence"] = torch.tensor([influence], dtype=torch.float64)
            for key in (f"layers.{l}.mlp.channels", f"layers.{l}.shared_expert.channels"):
                if key in self.sizes:
                    out[key] = vec(self.mini, key).sqrt()
            if l in self.moe_layers:
                info = self.moe_layers[l]
                for e in range(info["experts"]):
                    key = f"layers.{l}.experts.{e}.channels"
                    out[key] = vec(self.mini, key).sqrt()
                out[f"layers.{l}.router.tokens"] = vec(self.counts, f"layers.{l}.router.tokens")
                out[f"layers.{l}.router.weight"] = vec(self.counts, f"layers.{l}.router.weight")
                out[f"layers.{l}.experts.output_norm"] = vec(self.sq, f"layers.{l}.experts.output_norm").sqrt()
                if info["top_k"] >= 2:
                    r = torch.cat(self.ratios.get(l, [torch.zeros(0, dtype=torch.float64)])).numpy()
                    beta = float(np.median(r)) if r.size else 0.0
                    out[f"layers.{l}.router.beta"] = torch.tensor([beta], dtype=torch.float64)
        return {k: v.float().contiguous() for k, v in out.items()}


# --------------------------------------------------------------------------- driver


def collect(model_dir, token_windows: list[list[int]], *, dtype: torch.dtype = torch.float32,
            device_map: str | None = "auto", model=None) -> tuple[dict[str, torch.Tensor], dict]:
    """Statistics of `model_dir` on the windows: (tensors, info)."""
    cfg = config_of(model_dir)
    if model is None:
        model = load_model(model_dir, dtype, default_device_map(device_map))
    ckpt = Checkpoint(model_dir)
    vocab = model.config.vocab_size
    # Only a learned position table limits the length (rotary families run longer windows).
    tables = [k for k in ckpt.shape if k.endswith(("wpe.weight", "position_embeddings.weight"))]
    positions = ckpt.shape[tables[0]][0] if tables else None
    for i, w in enumerate(token_windows):
        bad = next((t for t in w if not 0 <= t < vocab), None)
        if bad is not None:
            raise StatsError(f"window {i}: token id {bad} is outside the model's vocabulary of {vocab}")
        if positions and len(w) > positions:
            raise StatsError(f"window {i} has {len(w)} tokens, more than the model's {positions} learned positions")
    collector = Collector(model, ckpt)
    encoder = cfg.get("model_type") in ENCODER_TYPES
    device = model.get_input_embeddings().weight.device
    if device.type == "meta":
        device = torch.device("cpu")
    started = time.perf_counter()
    try:
        with torch.no_grad():
            for w in token_windows:
                ids = torch.tensor([w], dtype=torch.int64, device=device)
                mask = torch.ones_like(ids)
                if encoder:
                    model(input_ids=ids, attention_mask=mask)
                else:
                    model.base_model(input_ids=ids, attention_mask=mask, use_cache=False)
    finally:
        collector.remove()
    seconds = time.perf_counter() - started
    info = {"family": cfg.get("model_type"), "sequences": len(token_windows),
            "tokens": sum(len(w) for w in token_windows), "seconds": seconds,
            "expert_check_max": collector.expert_check_max}
    return collector.results(), info


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


DTYPES = {"float32": torch.float32, "f32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "f16": torch.float16}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="collect_stats.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--seq-len", type=_positive)
    ap.add_argument("--samples", type=_positive)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--device-map", default="auto", help="auto (GPUs when accelerate is installed, else CPU), cpu, or "
                                                         "any transformers device_map string")
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--threads", type=_positive, help="torch CPU threads (default: torch's)")
    ap.add_argument("--quiet", action="store_true", help="no summary")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import transformers
        from safetensors.torch import save_file

        folder = Path(args.model)
        if not (folder / "config.json").is_file():
            raise StatsError(f"model {folder} is not a model folder (no config.json)")
        out = Path(args.output)
        if not out.parent.is_dir():
            raise StatsError(f"output folder {out.parent} does not exist")
        wins = windows(read_tokens(args.tokens), args.seq_len, args.samples)
        if not wins:
            raise StatsError(f"tokens file {args.tokens} holds no tokens")
        sha = model_sha256(folder)
        tensors, info = collect(folder, wins, dtype=DTYPES[args.dtype], device_map=args.device_map)
        metadata = {
            "format": "pt",
            "tokens": str(info["tokens"]),
            "sequences": str(info["sequences"]),
            "model_sha256": sha,
            "tool": f"tools/collect_stats.py (transformers {transformers.__version__}, torch {torch.__version__})",
        }
        tmp = out.with_name(out.name + ".tmp")
        try:
            save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, out)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StatsError(f"cannot write {out}: {e.strerror or e}") from None
    except StatsError as e:
        print(f"collect_stats.py: error: {e}", file=sys.stderr)
        return 1
    if not args.quiet:
        tps = info["tokens"] / info["seconds"] if info["seconds"] > 0 else math.inf
        print(f"{folder} ({info['family']}): {info['sequences']} sequences, {info['tokens']} tokens in "
              f"{info['seconds']:.2f} s ({tps:.0f} tokens/s)")
        print(f"wrote {len(tensors)} statistics to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
