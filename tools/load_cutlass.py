#!/usr/bin/env python3
"""Load the output of `pare sparsify --format cutlass` into torch's 2:4 sparse tensors.

pare's cutlass output is an ordinary safetensors folder in which every packed weight
`<name>` [m, k] (f16/bf16) is replaced by two tensors (tools/interop/SPARSE_FORMATS.md):
    <name>.values   [m, k/2]   same dtype: the kept elements, 2 per group of 4, in order
    <name>.meta     [m, k/16]  int16: torch's CUTLASS metadata, exactly what
                               torch.sparse._semi_structured_conversions.
                               sparse_semi_structured_from_dense_cutlass returns
Every other tensor is stored as it is.

On a CUDA GPU (compute capability 8.x: torch's CUTLASS 2:4 kernel is built for SM80 and
checks for 8.x), each pair
becomes a torch.sparse.SparseSemiStructuredTensorCUTLASS built straight from (values,
meta), with no re-compression:

    SparseSemiStructuredTensorCUTLASS(torch.Size([m, k]), packed=values.cuda(),
        meta=meta.cuda(), packed_t=None, meta_t=None, compressed_swizzled_bitmask=None)

and `--model` loads the checkpoint with transformers and puts those tensors in place of
the nn.Linear weights (F.linear then runs the sparse kernel).

On a CPU there is no such kernel: the script says so and exits 2. What does run on a
CPU is the reconstruction: `--dense-out DIR` writes an ordinary dense folder (values and
metadata expanded back with torch's sparse_semi_structured_to_dense_cutlass), which any
runtime loads and which tests compare with the dense reference.

    load_cutlass.py FOLDER                      GPU: build every sparse tensor, check x @ W.T
                                                against the reconstructed dense weight
    load_cutlass.py FOLDER --model              GPU: also load the model and run a forward pass
    load_cutlass.py FOLDER --dense-out DIR      any device: write the dense reconstruction

Library: read_cutlass(folder), to_dense(values, meta), to_sparse(values, meta, device),
dense_state(folder), swap_into(model, pairs, device).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections import OrderedDict
from pathlib import Path

import torch

SUFFIX_VALUES, SUFFIX_META = ".values", ".meta"
INDEX_NAME = "model.safetensors.index.json"


def read_cutlass(folder) -> tuple[OrderedDict, OrderedDict, dict]:
    """(plain {name: tensor}, {name: (values, meta)}, {name: file}) of a cutlass folder."""
    from safetensors import safe_open

    plain, parts, where = OrderedDict(), OrderedDict(), {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                where[k] = f.name
                for suffix in (SUFFIX_VALUES, SUFFIX_META):
                    if k.endswith(suffix):
                        parts.setdefault(k[: -len(suffix)], {})[suffix] = st.get_tensor(k)
                        break
                else:
                    plain[k] = st.get_tensor(k)
    pairs = OrderedDict()
    for name, p in parts.items():
        if set(p) != {SUFFIX_VALUES, SUFFIX_META}:
            raise ValueError(f"{name}: has {sorted(p)}, needs both {SUFFIX_VALUES} and {SUFFIX_META}")
        values, meta = p[SUFFIX_VALUES], p[SUFFIX_META]
        if values.dtype not in (torch.float16, torch.bfloat16) or meta.dtype != torch.int16:
            raise ValueError(f"{name}: values {values.dtype} / meta {meta.dtype}; expected f16|bf16 / int16")
        m, half_k = values.shape
        if tuple(meta.shape) != (m, half_k * 2 // 16):
            raise ValueError(f"{name}: meta shape {list(meta.shape)}, expected {[m, half_k * 2 // 16]}")
        pairs[name] = (values, meta)
    return plain, pairs, where


def to_dense(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    """The dense [m, k] weight back from (values, meta); runs on a CPU."""
    from torch.sparse._semi_structured_conversions import sparse_semi_structured_to_dense_cutlass

    return sparse_semi_structured_to_dense_cutlass(values, meta)


def to_sparse(values: torch.Tensor, meta: torch.Tensor, device="cuda"):
    """torch.sparse.SparseSemiStructuredTensorCUTLASS from the stored pair (GPU only)."""
    from torch.sparse import SparseSemiStructuredTensorCUTLASS

    m, half_k = values.shape
    return SparseSemiStructuredTensorCUTLASS(
        torch.Size([m, 2 * half_k]),
        packed=values.to(device).contiguous(),
        meta=meta.to(device).contiguous(),
        packed_t=None,
        meta_t=None,
        compressed_swizzled_bitmask=None,
        requires_grad=False,
    )


def dense_state(folder) -> tuple[OrderedDict, dict]:
    """({name: tensor} with every pair expanded back to `name`, {name: file})."""
    plain, pairs, stored = read_cutlass(folder)
    state, where = OrderedDict(), {}
    for k, fname in stored.items():  # keep the stored order
        name = k
        if k.endswith(SUFFIX_META) and k[: -len(SUFFIX_META)] in pairs:
            continue
        if k.endswith(SUFFIX_VALUES) and k[: -len(SUFFIX_VALUES)] in pairs:
            name = k[: -len(SUFFIX_VALUES)]
            state[name] = to_dense(*pairs[name])
        else:
            state[name] = plain[k]
        where[name] = fname
    return state, where


def write_dense(folder, out) -> Path:
    """Write the dense reconstruction of a cutlass folder to `out` (one safetensors file
    per input file, other files copied, a shard index rewritten with the dense names)."""
    from safetensors.torch import save_file

    folder, out = Path(folder), Path(out)
    state, where = dense_state(folder)
    out.mkdir(parents=True, exist_ok=True)
    for p in folder.iterdir():
        if p.is_file() and not p.name.endswith(".safetensors") and p.name != INDEX_NAME:
            shutil.copy2(p, out / p.name)
    by_file: dict[str, OrderedDict] = OrderedDict()
    for name, t in state.items():
        by_file.setdefault(where[name], OrderedDict())[name] = t.contiguous()
    for fname, group in by_file.items():
        save_file(group, str(out / fname), metadata={"format": "pt"})
    if (folder / INDEX_NAME).exists():
        index = json.loads((folder / INDEX_NAME).read_text())
        index["weight_map"] = {name: where[name] for name in state}
        (out / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")
    return out


def swap_into(model, pairs: dict, device="cuda") -> list[str]:
    """Replace each nn.Linear weight named in `pairs` by its sparse tensor. Returns the
    names that have no nn.Linear in the model (e.g. transformers-5 stacked MoE experts),
    which keep their dense weights."""
    skipped = []
    for name, (values, meta) in pairs.items():
        path = name[: -len(".weight")] if name.endswith(".weight") else None
        try:
            module = model.get_submodule(path) if path else None
        except AttributeError:
            module = None
        if not isinstance(module, torch.nn.Linear):
            skipped.append(name)
            continue
        module.weight = torch.nn.Parameter(to_sparse(values, meta, device), requires_grad=False)
    return skipped


def gpu_check(folder, with_model: bool) -> int:
    plain, pairs, _ = read_cutlass(folder)
    worst = 0.0
    for name, (values, meta) in pairs.items():
        sparse = to_sparse(values, meta)
        dense = to_dense(values, meta).cuda()
        x = torch.randn(64, dense.shape[1], dtype=dense.dtype, device="cuda")
        got = torch.mm(sparse, x.t())
        want = torch.mm(dense, x.t())
        err = float((got.float() - want.float()).abs().max() / (want.float().abs().max() + 1e-6))
        worst = max(worst, err)
    print(f"{len(pairs)} SparseSemiStructuredTensorCUTLASS built; worst relative matmul error vs dense {worst:.2e}")
    if with_model:
        import tempfile

        import transformers

        with tempfile.TemporaryDirectory() as tmp:
            write_dense(folder, tmp)
            model = transformers.AutoModelForCausalLM.from_pretrained(tmp, dtype=next(iter(pairs.values()))[0].dtype)
        model = model.cuda().eval()
        skipped = swap_into(model, pairs)
        ids = torch.randint(3, model.config.vocab_size, (1, 16), device="cuda")
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        print(f"forward pass OK, logits {list(logits.shape)}; {len(pairs) - len(skipped)} weights sparse, "
              f"{len(skipped)} left dense (no nn.Linear for them)")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--dense-out", type=Path, help="write the dense reconstruction here (runs on a CPU)")
    ap.add_argument("--model", action="store_true", help="also load the model and run a forward pass (GPU)")
    args = ap.parse_args(argv)
    if args.dense_out is not None:
        write_dense(args.folder, args.dense_out)
        print(f"dense reconstruction written to {args.dense_out}")
        return 0
    if not torch.cuda.is_available():
        print(
            "load_cutlass: no CUDA device. SparseSemiStructuredTensorCUTLASS runs only on NVIDIA GPUs "
            "(compute capability 8.x); on a CPU use --dense-out DIR to reconstruct the dense weights.",
            file=sys.stderr,
        )
        return 2
    return gpu_check(args.folder, args.model)


if __name__ == "__main__":
    sys.exit(main())
