#!/usr/bin/env python3
"""The "Python way" baseline for bench_convert.py: re-save a sharded checkpoint with
safetensors' torch API, shard by shard, keeping the same sharding.

    python tools/bench/py_roundtrip.py IN OUT [--f32]

For each shard: safetensors.torch.load_file (every tensor), then save_file into OUT
under the same name with metadata {"format": "pt"}. With --f32 every floating tensor is
cast with .float() before saving and config.json's torch_dtype is set to float32 (the
index's total_size is left as is). Every other file (index, config.json, ...) is copied.
Timed whole by the caller, torch import included.
"""
import json
import os
import shutil
import sys

from safetensors.torch import load_file, save_file


def main() -> int:
    src, dst = sys.argv[1], sys.argv[2]
    f32 = "--f32" in sys.argv[3:]
    os.makedirs(dst)
    for name in sorted(os.listdir(src)):
        p = os.path.join(src, name)
        if not os.path.isfile(p):
            continue
        if name.endswith(".safetensors"):
            tensors = load_file(p)
            if f32:
                tensors = {k: (v.float() if v.is_floating_point() else v) for k, v in tensors.items()}
            save_file(tensors, os.path.join(dst, name), metadata={"format": "pt"})
            del tensors
        elif f32 and name == "config.json":
            with open(p) as f:
                cfg = json.load(f)
            cfg["torch_dtype"] = "float32"
            with open(os.path.join(dst, name), "w") as f:
                json.dump(cfg, f, indent=2)
        else:
            shutil.copy2(p, os.path.join(dst, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
