#!/usr/bin/env python3
"""Reference N:M sparsification of Hugging Face checkpoints, with numpy and torch.

This is the yardstick the interop suite holds `pare sparsify` against. It is written
independently of pare's Swift code and aims to be obviously correct rather than fast.
It works on the tensors as they are stored on disk (checkpoint names), never on a
transformers model's in-memory layout, so it gives the same answer under the main venv
(transformers 5.x, which stacks MoE experts in memory) and under .venv-ct
(transformers 4.57 + compressed-tensors 0.14.0.1). See tools/interop/SPARSE_FORMATS.md.

    sparse_reference.py sparsify IN OUT --pattern 2:4 [--score magnitude|wanda --stats F]
                                        [--targets RE] [--ignore RE]
    sparse_reference.py norms MODEL STATS.safetensors [--batch 4 --tokens 32 --seed 0]
    sparse_reference.py ct-compress DENSE OUT [--targets RE] [--ignore RE]   (.venv-ct only)

THE RULE. For every target weight W (2-D) and pattern N:M, split every row into groups
of M consecutive elements along the input dimension (the last dimension of an
nn.Linear weight [out, in]; dimension 0 of a GPT-2 Conv1D weight, stored [in, out]).
In each group keep the N elements with the highest score; ties go to the lower index
(sort by (-score, index)). Every other element becomes +0.0 (all bits zero).
    magnitude: score = |float32(w)|
    wanda:     score = float32(|float32(w_ij)|) * float32(norm_j), one float32 multiply,
               norm_j = the statistics file's `<weight name>.input_norm`[j] (F32, 1-D,
               length = input dimension), the L2 norm of input channel j over all
               calibration tokens.
The rule is applied to float32 copies of the values (bf16/f16 -> f32 is exact); the
kept elements keep their original bits, in the original dtype.

DEFAULT TARGETS: 2-D weights of the decoder/encoder layers whose role is attention
q/k/v/o (GPT-2: c_attn, c_proj), MLP gate/up/down (GPT-2: c_fc, c_proj; BERT:
intermediate.dense, output.dense), MoE expert and shared-expert gate/up/down. Never by
default: embeddings, lm_head, routers (mixtral block_sparse_moe.gate, qwen2_moe mlp.gate,
shared_expert_gate), norms, biases, heads (BERT cls.*, pooler).
`targets=RE` replaces the default set with every 2-D float tensor whose name matches RE
(re.search); `ignore=RE` then removes every name that matches RE (re.search).

Library: parse_pattern, default_targets, select_targets, input_dim, nm_mask, apply_mask,
sparsify_state_dict, sparsify_folder, collect_input_norms, calibration_ids,
read_folder, write_like, cutlass_pack, cutlass_unpack, ct_compress_folder,
ct_decompress_folder, ct_sparsity_config (the last three need compressed-tensors).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

INDEX_NAME = "model.safetensors.index.json"

# --------------------------------------------------------------------------- targets

_DECODER = [
    r"model\.layers\.\d+\.self_attn\.[qkvo]_proj\.weight",
    r"model\.layers\.\d+\.mlp\.(gate|up|down)_proj\.weight",  # dense MLP (not mlp.gate = router)
    r"model\.layers\.\d+\.block_sparse_moe\.experts\.\d+\.w[123]\.weight",  # mixtral experts
    r"model\.layers\.\d+\.mlp\.experts\.\d+\.(gate|up|down)_proj\.weight",  # qwen2_moe experts
    r"model\.layers\.\d+\.mlp\.shared_expert\.(gate|up|down)_proj\.weight",  # qwen2_moe shared expert
]
_GPT2_CONV1D = r"(transformer\.)?h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight"
_BERT = [
    r"(bert\.)?encoder\.layer\.\d+\.attention\.self\.(query|key|value)\.weight",
    r"(bert\.)?encoder\.layer\.\d+\.attention\.output\.dense\.weight",
    r"(bert\.)?encoder\.layer\.\d+\.(intermediate|output)\.dense\.weight",
]
DEFAULT_TARGET_PATTERNS = {
    "llama": _DECODER, "mistral": _DECODER, "qwen2": _DECODER, "qwen3": _DECODER,
    "mixtral": _DECODER, "qwen2_moe": _DECODER, "gpt2": [_GPT2_CONV1D], "bert": _BERT,
}
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def model_type_of(folder) -> str:
    return json.loads((Path(folder) / "config.json").read_text())["model_type"]


def is_conv1d(name: str, model_type: str) -> bool:
    """GPT-2 Conv1D weights are stored [in, out]."""
    return model_type == "gpt2" and re.fullmatch(_GPT2_CONV1D, name) is not None


def input_dim(name: str, model_type: str) -> int:
    """The dimension the N:M groups run along: 0 for Conv1D, 1 (the last) otherwise."""
    return 0 if is_conv1d(name, model_type) else 1


def default_targets(shapes: dict, model_type: str) -> list[str]:
    """Names (in the order given) of the default targets. shapes: {name: shape}."""
    if model_type not in DEFAULT_TARGET_PATTERNS:
        raise ValueError(f"no default targets for model_type {model_type!r}")
    pats = [re.compile(p) for p in DEFAULT_TARGET_PATTERNS[model_type]]
    return [n for n, s in shapes.items() if len(s) == 2 and any(p.fullmatch(n) for p in pats)]


def select_targets(tensors: dict, model_type: str, targets: str | None = None, ignore: str | None = None) -> list[str]:
    """The target names, in the order of `tensors` ({name: torch.Tensor})."""
    if targets is None:
        chosen = set(default_targets({n: tuple(t.shape) for n, t in tensors.items()}, model_type))
    else:
        rx = re.compile(targets)
        chosen = {n for n, t in tensors.items() if t.dim() == 2 and t.dtype in FLOAT_DTYPES and rx.search(n)}
    if ignore is not None:
        rx = re.compile(ignore)
        chosen = {n for n in chosen if not rx.search(n)}
    return [n for n in tensors if n in chosen]


# --------------------------------------------------------------------------- the mask

_PATTERN = re.compile(r"^([0-9]+):([0-9]+)$")


def parse_pattern(text: str) -> tuple[int, int]:
    """'2:4' -> (2, 4). Requires 1 <= N < M."""
    m = _PATTERN.match(text)
    if not m:
        raise ValueError(f"pattern {text!r} is not N:M")
    n, mm = int(m.group(1)), int(m.group(2))
    if not 1 <= n < mm:
        raise ValueError(f"pattern {text!r}: need 1 <= N < M")
    return n, mm


def _f32(weight) -> np.ndarray:
    if isinstance(weight, torch.Tensor):
        return weight.detach().to(torch.float32).cpu().numpy()
    return np.asarray(weight, dtype=np.float32)


def nm_mask(weight_f32, n: int, m: int, input_dim: int, norms=None) -> np.ndarray:
    """Boolean keep-mask of a 2-D weight under the N:M rule (see the module docstring).

    weight_f32: the weight as float32 (numpy or torch; other float dtypes are converted
    exactly). input_dim: the dimension the groups run along. norms: optional 1-D float32
    input-channel norms (wanda); score = |w| * norm in float32."""
    w = _f32(weight_f32)
    if w.ndim != 2:
        raise ValueError(f"expected a 2-D weight, got shape {w.shape}")
    score = np.abs(w)
    if norms is not None:
        nrm = _f32(norms).reshape(-1)
        if nrm.shape[0] != w.shape[input_dim]:
            raise ValueError(f"norms have length {nrm.shape[0]}, input dimension is {w.shape[input_dim]}")
        score = score * (nrm[None, :] if input_dim == 1 else nrm[:, None])  # float32 * float32
        assert score.dtype == np.float32
    s = np.moveaxis(score, input_dim, -1)
    rows, k = s.shape
    if k % m:
        raise ValueError(f"input dimension {k} is not a multiple of M={m}")
    groups = s.reshape(rows, k // m, m)
    # Stable sort of -score: equal scores keep index order, so the lower index wins.
    order = np.argsort(-groups, axis=-1, kind="stable")
    keep = np.zeros(groups.shape, dtype=bool)
    np.put_along_axis(keep, order[..., :n], True, axis=-1)
    return np.ascontiguousarray(np.moveaxis(keep.reshape(rows, k), -1, input_dim))


def apply_mask(t: torch.Tensor, mask: np.ndarray) -> torch.Tensor:
    """t with every element outside `mask` replaced by +0.0 (all bits zero); dtype kept."""
    out = t.detach().clone().contiguous()
    out[~torch.from_numpy(np.ascontiguousarray(mask))] = 0
    return out


def sparsify_state_dict(tensors: dict, model_type: str, n: int, m: int, norms: dict | None = None,
                        targets: str | None = None, ignore: str | None = None) -> tuple[dict, list[str]]:
    """(new {name: tensor} in the same order, target names). norms: {'<w>.input_norm': t}
    for wanda (None for magnitude); a missing or mis-sized entry raises, naming it."""
    names = select_targets(tensors, model_type, targets, ignore)
    out = OrderedDict(tensors)
    for name in names:
        t = tensors[name]
        nrm = None
        if norms is not None:
            key = name + ".input_norm"
            if key not in norms:
                raise KeyError(f"statistics file has no {key}")
            nrm = norms[key]
        out[name] = apply_mask(t, nm_mask(t, n, m, input_dim(name, model_type), nrm))
    return out, names


# --------------------------------------------------------------------------- folders


def weight_files(folder) -> list[Path]:
    return sorted(Path(folder).glob("*.safetensors"))


def read_folder(folder) -> tuple[dict, dict]:
    """({name: tensor} in file order then header order, {name: file basename})."""
    from safetensors import safe_open

    tensors, where = OrderedDict(), {}
    for f in weight_files(folder):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                tensors[k] = st.get_tensor(k)
                where[k] = f.name
    return tensors, where


def write_like(src, dst, tensors: dict, where: dict) -> None:
    """Write `tensors` to dst with src's file layout (same file per tensor, same index),
    and copy every other file of src."""
    from safetensors.torch import save_file

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for p in src.iterdir():
        if p.is_file() and not p.name.endswith(".safetensors"):
            shutil.copy2(p, dst / p.name)
    by_file: dict[str, dict] = OrderedDict()
    for name, t in tensors.items():
        by_file.setdefault(where[name], OrderedDict())[name] = t.contiguous()
    for fname, group in by_file.items():
        save_file(group, str(dst / fname), metadata={"format": "pt"})


def load_stats(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def sparsify_folder(src, dst, pattern: str = "2:4", score: str = "magnitude", stats=None,
                    targets: str | None = None, ignore: str | None = None) -> list[str]:
    """Reference `pare sparsify --format dense`: writes dst, returns the target names."""
    n, m = parse_pattern(pattern)
    if score not in ("magnitude", "wanda"):
        raise ValueError(f"unknown score {score!r}")
    if score == "wanda" and stats is None:
        raise ValueError("wanda needs a statistics file")
    norms = load_stats(stats) if score == "wanda" else None
    tensors, where = read_folder(src)
    out, names = sparsify_state_dict(tensors, model_type_of(src), n, m, norms, targets, ignore)
    write_like(src, dst, out, where)
    return names


# --------------------------------------------------------------------------- calibration


def calibration_ids(vocab_size: int, batch: int = 4, tokens: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab_size, (batch, tokens), generator=gen)


# transformers 5 keeps MoE experts stacked in one module (gate_up_proj [E, 2F, H] with the
# gate rows first, down_proj [E, H, F]); the checkpoint names them per expert.
_STACKED_EXPERT_NAMES = {
    "mixtral": ("block_sparse_moe.experts.{e}.w1.weight", "block_sparse_moe.experts.{e}.w3.weight",
                "block_sparse_moe.experts.{e}.w2.weight"),
    "qwen2_moe": ("mlp.experts.{e}.gate_proj.weight", "mlp.experts.{e}.up_proj.weight",
                  "mlp.experts.{e}.down_proj.weight"),
}


@torch.no_grad()
def collect_input_norms(model, input_ids: torch.Tensor, names=None, attention_mask=None) -> dict:
    """One calibration pass. Returns {'<weight name>.input_norm': float32 1-D tensor}: the L2
    norm over every calibration token of each input channel of each nn.Linear / Conv1D
    (and of each expert of a transformers-5 stacked experts module), keyed by checkpoint
    weight name. Sums of squares are accumulated in float64. A weight that saw no token
    (an expert never routed to) gets zeros. names: restrict to these weight names (each
    must be found)."""
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    hooks = []

    def add(name: str, x: torch.Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).to(torch.float64)
        sums[name] = sums[name] + (x * x).sum(0)

    def linear_hook(name):
        def hook(_module, args, kwargs):
            x = args[0] if args else kwargs["input"]
            add(name, x)
        return hook

    model_type = model.config.model_type
    for mod_name, module in model.named_modules():
        kind = type(module).__name__
        if isinstance(module, torch.nn.Linear) or kind == "Conv1D":
            name = f"{mod_name}.weight"
            width = module.weight.shape[1] if isinstance(module, torch.nn.Linear) else module.weight.shape[0]
            sums[name] = torch.zeros(width, dtype=torch.float64)
            hooks.append(module.register_forward_pre_hook(linear_hook(name), with_kwargs=True))
        elif isinstance(getattr(module, "gate_up_proj", None), torch.Tensor) and module.gate_up_proj.dim() == 3:
            if model_type not in _STACKED_EXPERT_NAMES:
                raise ValueError(f"stacked experts of {model_type} are not mapped to checkpoint names")
            parent = mod_name[: -len("mlp.experts")]
            templates = _STACKED_EXPERT_NAMES[model_type]
            num, two_f, hidden = module.gate_up_proj.shape
            ffn = two_f // 2
            per_expert = [[parent + t.format(e=e) for t in templates] for e in range(num)]
            for gate, up, down in per_expert:
                sums[gate] = torch.zeros(hidden, dtype=torch.float64)
                sums[up] = torch.zeros(hidden, dtype=torch.float64)
                sums[down] = torch.zeros(ffn, dtype=torch.float64)

            def experts_hook(mod, args, kwargs, per_expert=per_expert):
                hidden_states = args[0] if len(args) > 0 else kwargs["hidden_states"]
                top_k_index = args[1] if len(args) > 1 else kwargs["top_k_index"]
                h = hidden_states.reshape(-1, hidden_states.shape[-1])
                idx = top_k_index.reshape(h.shape[0], -1)
                for e, (gate, up, down) in enumerate(per_expert):
                    tok = (idx == e).any(dim=-1).nonzero().reshape(-1)
                    if tok.numel() == 0:
                        continue
                    x = h[tok]
                    add(gate, x)
                    add(up, x)
                    g, u = torch.nn.functional.linear(x, mod.gate_up_proj[e]).chunk(2, dim=-1)
                    add(down, mod.act_fn(g) * u)
            hooks.append(module.register_forward_pre_hook(experts_hook, with_kwargs=True))
    try:
        kwargs = {"input_ids": input_ids}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        model(**kwargs)
    finally:
        for h in hooks:
            h.remove()
    wanted = list(sums) if names is None else list(names)
    missing = [n for n in wanted if n not in sums]
    if missing:
        raise KeyError(f"no calibration hook saw {missing[:5]}")
    return OrderedDict((n + ".input_norm", sums[n].sqrt().to(torch.float32)) for n in wanted)


def load_model(folder, dtype=None):
    """from_pretrained with the Auto class that matches config.architectures."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    arch = json.loads((Path(folder) / "config.json").read_text())["architectures"][0]
    if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
        auto = transformers.AutoModelForCausalLM
    elif arch.endswith("ForMaskedLM"):
        auto = transformers.AutoModelForMaskedLM
    else:
        auto = transformers.AutoModel
    kwargs = {}
    if dtype is not None:
        kwargs["dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"] = dtype
    return auto.from_pretrained(str(folder), **kwargs).eval()


def folder_norms(folder, batch: int = 4, tokens: int = 32, seed: int = 0, names=None) -> dict:
    """collect_input_norms on a model folder with calibration_ids; names default to the
    folder's default targets."""
    model = load_model(folder)
    tensors, _ = read_folder(folder)
    if names is None:
        names = default_targets({n: tuple(t.shape) for n, t in tensors.items()}, model_type_of(folder))
    ids = calibration_ids(model.config.vocab_size, batch, tokens, seed)
    return collect_input_norms(model, ids, names, torch.ones_like(ids))


# --------------------------------------------------------------------------- CUTLASS


def cutlass_pack(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's own (values [m, k/2], meta) for a 2:4-sparse f16/bf16 weight [m, k]."""
    from torch.sparse._semi_structured_conversions import sparse_semi_structured_from_dense_cutlass

    return sparse_semi_structured_from_dense_cutlass(dense.contiguous())


def cutlass_unpack(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    from torch.sparse._semi_structured_conversions import sparse_semi_structured_to_dense_cutlass

    return sparse_semi_structured_to_dense_cutlass(values, meta)


# --------------------------------------------------------------------------- compressed-tensors (.venv-ct)


def linear_module_names(model) -> list[str]:
    return [n for n, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)]


def ct_sparsity_config(model, compressed_weights, global_sparsity: float = 0.0):
    """The Sparse24BitMaskConfig llm-compressor would write for a model in which exactly
    `compressed_weights` are compressed: targets ["Linear"], ignore = every other
    nn.Linear module (in named_modules order)."""
    from compressed_tensors.config import Sparse24BitMaskConfig

    compressed = {w[: -len(".weight")] for w in compressed_weights}
    linear = linear_module_names(model)
    missing = sorted(compressed - set(linear))
    if missing:
        raise ValueError(f"not nn.Linear modules, compressed-tensors cannot target them: {missing[:5]}")
    ignore = [n for n in linear if n not in compressed]
    return Sparse24BitMaskConfig(targets=["Linear"], ignore=ignore, global_sparsity=global_sparsity,
                                 sparsity_structure="2:4")


def global_sparsity_of(model) -> float:
    """llm-compressor's global_sparsity: exact zeros / elements over model.parameters()."""
    total = zeros = 0
    for p in model.parameters():
        total += p.numel()
        zeros += int((p == 0).sum())
    return zeros / total if total else 0.0


def ct_compress_folder(dense, out, weight_names=None, sparsity_config=None) -> Path:
    """Compress a dense 2:4-sparse folder with compressed-tensors' own ModelCompressor
    (sparse-24-bitmask) and write it as that package's users do: one model.safetensors
    (__metadata__ {"format": "pt"}), the other files copied, config.json updated by
    ModelCompressor.update_config. weight_names default to the folder's default targets."""
    from compressed_tensors.compressors import ModelCompressor
    from safetensors.torch import save_file

    dense, out = Path(dense), Path(out)
    tensors, _ = read_folder(dense)
    if weight_names is None:
        weight_names = default_targets({n: tuple(t.shape) for n, t in tensors.items()}, model_type_of(dense))
    dtype = next(t.dtype for n, t in tensors.items() if n in set(weight_names))
    model = load_model(dense, dtype)
    if sparsity_config is None:
        sparsity_config = ct_sparsity_config(model, weight_names, global_sparsity_of(model))
    compressor = ModelCompressor(sparsity_config=sparsity_config)
    compressed = compressor.compress(model, state_dict=OrderedDict(tensors))
    out.mkdir(parents=True, exist_ok=True)
    for p in dense.iterdir():
        if p.is_file() and not p.name.endswith(".safetensors") and p.name != INDEX_NAME:
            shutil.copy2(p, out / p.name)
    save_file({k: v.contiguous() for k, v in compressed.items()}, str(out / "model.safetensors"),
              metadata={"format": "pt"})
    compressor.update_config(str(out))
    return out


def ct_decompress_folder(folder) -> dict:
    """{name: tensor} of a compressed-tensors folder, decompressed by the package itself."""
    from compressed_tensors.compressors import ModelCompressor

    compressor = ModelCompressor.from_pretrained(str(folder))
    if compressor is None or compressor.sparsity_compressor is None:
        raise ValueError(f"{folder}: config.json has no compressed-tensors sparsity_config")
    return OrderedDict(compressor.sparsity_compressor.decompress(str(folder)))


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sparsify", help="reference `pare sparsify --format dense`")
    s.add_argument("src", type=Path)
    s.add_argument("dst", type=Path)
    s.add_argument("--pattern", default="2:4")
    s.add_argument("--score", default="magnitude", choices=["magnitude", "wanda"])
    s.add_argument("--stats", type=Path)
    s.add_argument("--targets")
    s.add_argument("--ignore")
    nrm = sub.add_parser("norms", help="write a wanda statistics file from a calibration pass")
    nrm.add_argument("model", type=Path)
    nrm.add_argument("out", type=Path)
    nrm.add_argument("--batch", type=int, default=4)
    nrm.add_argument("--tokens", type=int, default=32)
    nrm.add_argument("--seed", type=int, default=0)
    c = sub.add_parser("ct-compress", help="compress a dense 2:4 folder with compressed-tensors (.venv-ct)")
    c.add_argument("dense", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--targets")
    c.add_argument("--ignore")
    args = ap.parse_args(argv)

    if args.cmd == "sparsify":
        names = sparsify_folder(args.src, args.dst, args.pattern, args.score, args.stats, args.targets, args.ignore)
        print(f"{len(names)} target tensors -> {args.dst}", file=sys.stderr)
    elif args.cmd == "norms":
        from safetensors.torch import save_file

        norms = folder_norms(args.model, args.batch, args.tokens, args.seed)
        save_file(dict(norms), str(args.out), metadata={"format": "pt"})
        print(f"{len(norms)} input norms -> {args.out}", file=sys.stderr)
    else:
        tensors, _ = read_folder(args.dense)
        names = select_targets(tensors, model_type_of(args.dense), args.targets, args.ignore)
        ct_compress_folder(args.dense, args.out, names)
        print(f"{len(names)} tensors compressed -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
