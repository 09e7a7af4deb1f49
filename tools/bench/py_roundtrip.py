#!/usr/bin/env python3
"""The "Python way" baseline for bench_convert.py: re-save a sharded checkpoint with
safetensors' torch API, shard by shard, keeping the same sharding.

    python tools/bench/py_roundtrip.py IN OUT

For each shard: safetensors.torch.load_file (every tensor), then save_file into OUT
under the same name with metadata {"format": "pt"}. Every other file (index,
config.json, ...) is copied. Timed whole by the caller, torch import included.
"""
import os
import shutil
import sys

from safetensors.torch import load_file, save_file


def main() -> int:
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst)
    for name in sorted(os.listdir(src)):
        p = os.path.join(src, name)
        if not os.path.isfile(p):
            continue
        if name.endswith(".safetensors"):
            tensors = load_file(p)
            save_file(tensors, os.path.join(dst, name), metadata={"format": "pt"})
            del tensors
        else:
            shutil.copy2(p, os.path.join(dst, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
