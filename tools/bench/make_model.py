#!/usr/bin/env python3
"""Generate a synthetic Llama-3.2-1B-shaped bf16 sharded checkpoint, fast.

    python tools/bench/make_model.py OUT [--scale 1.0] [--shard-size 2GB] [--seed 0]

Shapes follow Llama-3.2-1B (hidden 2048, intermediate 8192, 16 layers, 32 heads,
8 kv heads, head_dim 64, vocab 128256, tied embeddings: ~1.24B parameters, ~2.5 GB).
--scale multiplies the layer count (scale 2 -> 32 layers, ~2.2B parameters).

No torch, no model init: each tensor is drawn as float32 normal*0.02 (norm weights
1 + normal*0.02) in chunks with numpy, truncated to bf16 by keeping the high 16 bits,
and streamed straight into shard files whose safetensors header is written here.
Shards are filled in module order up to --shard-size (like transformers'
save_pretrained), tensors inside a shard sorted by name (like safetensors' save_file),
with model.safetensors.index.json and a transformers-loadable config.json.

If OUT already holds a model generated with the same parameters (stamp file
.make_model_stamp.json), nothing is done.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

STAMP = ".make_model_stamp.json"
GENERATOR_VERSION = 1

BASE = dict(
    hidden=2048,
    intermediate=8192,
    layers=16,
    heads=32,
    kv_heads=8,
    head_dim=64,
    vocab=128256,
)

CHUNK = 1 << 24  # elements per generated chunk (64 MiB of float32)


def parse_size(text: str) -> int:
    t = text.strip().upper()
    units = [("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10),
             ("GB", 10**9), ("MB", 10**6), ("KB", 10**3), ("B", 1)]
    for suffix, mult in units:
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


def tensor_list(layers: int):
    """(name, shape, kind) in module (state_dict) order, as transformers' LlamaForCausalLM."""
    h, i, v = BASE["hidden"], BASE["intermediate"], BASE["vocab"]
    q = BASE["heads"] * BASE["head_dim"]
    kv = BASE["kv_heads"] * BASE["head_dim"]
    out = [("model.embed_tokens.weight", (v, h), "w")]
    for l in range(layers):
        p = f"model.layers.{l}."
        out += [
            (p + "self_attn.q_proj.weight", (q, h), "w"),
            (p + "self_attn.k_proj.weight", (kv, h), "w"),
            (p + "self_attn.v_proj.weight", (kv, h), "w"),
            (p + "self_attn.o_proj.weight", (h, q), "w"),
            (p + "mlp.gate_proj.weight", (i, h), "w"),
            (p + "mlp.up_proj.weight", (i, h), "w"),
            (p + "mlp.down_proj.weight", (h, i), "w"),
            (p + "input_layernorm.weight", (h,), "norm"),
            (p + "post_attention_layernorm.weight", (h,), "norm"),
        ]
    out.append(("model.norm.weight", (h,), "norm"))
    return out  # tied embeddings: no lm_head.weight


def config_json(layers: int) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 128000,
        "eos_token_id": 128001,
        "head_dim": BASE["head_dim"],
        "hidden_act": "silu",
        "hidden_size": BASE["hidden"],
        "initializer_range": 0.02,
        "intermediate_size": BASE["intermediate"],
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": BASE["heads"],
        "num_hidden_layers": layers,
        "num_key_value_heads": BASE["kv_heads"],
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "factor": 32.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.45.0",
        "use_cache": True,
        "vocab_size": BASE["vocab"],
    }


def numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def gen_chunk(seed_seq: np.random.SeedSequence, n: int, kind: str) -> bytes:
    rng = np.random.Generator(np.random.PCG64(seed_seq))
    x = rng.standard_normal(n, dtype=np.float32)
    x *= np.float32(0.02)
    if kind == "norm":
        x += np.float32(1.0)
    # bf16 = high 16 bits of the float32 (truncation); little-endian uint16 bytes.
    return (x.view(np.uint32) >> 16).astype(np.uint16).tobytes()


def write_shard(path: str, entries, pool: ThreadPoolExecutor, root_seed: int, index_of: dict):
    """entries: list of (name, shape, kind); written sorted by name."""
    entries = sorted(entries, key=lambda e: e[0])
    header = {"__metadata__": {"format": "pt"}}
    off = 0
    for name, shape, _ in entries:
        nb = numel(shape) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [off, off + nb]}
        off += nb
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb", buffering=0) as f:
        f.write(struct.pack("<Q", len(hb)))
        f.write(hb)
        for name, shape, kind in entries:
            n = numel(shape)
            base = np.random.SeedSequence([root_seed, index_of[name]])
            chunks = [(s, min(CHUNK, n - s)) for s in range(0, n, CHUNK)]
            seqs = base.spawn(len(chunks))
            # Generate chunks in parallel (numpy releases the GIL), write in order.
            for data in pool.map(lambda a: gen_chunk(a[0], a[1][1], kind), zip(seqs, chunks)):
                f.write(data)
    os.replace(tmp, path)
    return off


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--scale", type=float, default=1.0, help="layer-count multiplier (default 1.0 = 16 layers)")
    ap.add_argument("--shard-size", default="2GB", help="max tensor bytes per shard (default 2GB)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true", help="regenerate even if the stamp matches")
    args = ap.parse_args(argv)

    layers = max(1, round(BASE["layers"] * args.scale))
    shard_limit = parse_size(args.shard_size)
    # BASE first: its 16 layers must not overwrite the scaled count.
    params = {**BASE, "generator_version": GENERATOR_VERSION, "layers": layers, "shard_size": shard_limit,
              "seed": args.seed}

    stamp_path = os.path.join(args.out, STAMP)
    if not args.force and os.path.exists(stamp_path):
        try:
            with open(stamp_path) as f:
                if json.load(f).get("params") == params:
                    print(f"{args.out}: up to date (layers={layers}), skipping", file=sys.stderr)
                    return 0
        except (OSError, ValueError):
            pass

    if os.path.exists(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)

    tensors = tensor_list(layers)
    index_of = {name: i for i, (name, _, _) in enumerate(tensors)}

    # Module-order greedy sharding, as transformers' shard_checkpoint does.
    shards, cur, cur_bytes = [], [], 0
    for t in tensors:
        nb = numel(t[1]) * 2
        if cur and cur_bytes + nb > shard_limit:
            shards.append(cur)
            cur, cur_bytes = [], 0
        cur.append(t)
        cur_bytes += nb
    if cur:
        shards.append(cur)

    t0 = time.time()
    total_bytes = 0
    weight_map = {}
    n = len(shards)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for k, entries in enumerate(shards, 1):
            fname = f"model-{k:05d}-of-{n:05d}.safetensors" if n > 1 else "model.safetensors"
            total_bytes += write_shard(os.path.join(args.out, fname), entries, pool, args.seed, index_of)
            for name, _, _ in entries:
                weight_map[name] = fname
            print(f"  wrote {fname} ({time.time() - t0:.1f}s)", file=sys.stderr)

    if n > 1:
        index = {"metadata": {"total_size": total_bytes},
                 "weight_map": dict(sorted(weight_map.items()))}
        with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f, indent=2)
            f.write("\n")
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config_json(layers), f, indent=2)
        f.write("\n")
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 128000, "eos_token_id": 128001, "transformers_version": "4.45.0"}, f, indent=2)
        f.write("\n")

    nparams = sum(numel(s) for _, s, _ in tensors)
    with open(stamp_path, "w") as f:
        json.dump({"params": params, "num_parameters": nparams, "total_bytes": total_bytes,
                   "shards": n}, f, indent=2)
    print(f"{args.out}: {nparams / 1e9:.3f}B params, {total_bytes / 1e9:.2f} GB in {n} shard(s), "
          f"{time.time() - t0:.1f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
