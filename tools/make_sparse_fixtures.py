#!/usr/bin/env python3
"""Build the small checkpoints the 2:4 tests need and the committed fixtures cannot give.

torch's CUTLASS 2:4 layout (SparseSemiStructuredTensorCUTLASS) needs every packed weight
[m, k] in f16/bf16 with m a multiple of 32 and k a multiple of 64 (see
tools/interop/SPARSE_FORMATS.md); the committed fixtures are smaller than that
(llama-gqa-bf16's down_proj is [64, 96]). This builds, in the style of
tools/make_fixtures.py (seeded, from a config object, save_pretrained):

  llama-2of4-bf16   LlamaForCausalLM, 2 layers, hidden 128, intermediate 256, 4 heads,
                    2 kv heads (head_dim 32), bf16. Every attention/MLP weight is
                    [128|64|256, 128|256]: valid for CUTLASS.
                    Some groups of 4 in layer 0's q_proj are set to exact zeros
                    ([0,0,0,0], [0,0,0,x], [0,0,x,0], [0,x,0,0], [x,0,0,0]), so that a
                    2:4 mask keeps a zero there: the cases where torch's CUTLASS
                    metadata and compressed-tensors' bitmask pick positions by their
                    own tie rules.

It is not committed: the tests build it into a temporary directory.

Usage:  .venv/bin/python tools/make_sparse_fixtures.py --out DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_fixtures import make, save  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

# (row, first column of a group of 4, which positions stay non-zero)
ZERO_GROUPS = [
    (0, 0, []), (0, 4, [3]), (0, 8, [2]), (0, 12, [1]), (0, 16, [0]),
    (1, 0, [0]), (1, 4, [1]), (1, 8, [2]), (1, 12, [3]), (1, 16, []),
    (2, 60, []), (3, 124, [1]),
]


def build_llama_2of4() -> torch.nn.Module:
    cfg = LlamaConfig(
        vocab_size=320,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
    )
    return LlamaForCausalLM(cfg)


@torch.no_grad()
def plant_zero_groups(model: torch.nn.Module) -> None:
    w = model.model.layers[0].self_attn.q_proj.weight
    for row, col, keep in ZERO_GROUPS:
        for j in range(4):
            if j not in keep:
                w[row, col + j] = 0.0


def build_all(out: Path) -> list[Path]:
    model = make(build_llama_2of4)
    plant_zero_groups(model)
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    folder = out / "llama-2of4-bf16"
    save(model, folder)
    return [folder]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for folder in build_all(args.out):
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
