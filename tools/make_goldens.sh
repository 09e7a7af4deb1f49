#!/usr/bin/env bash
# Regenerates goldens/: one expected config + tensor manifest per fixture × representative
# trim. Deliberate: run it only when a change to pare's output is intended, and review the
# diff. tools/interop/test_goldens.py re-runs every trim and checks it against its golden.
set -euo pipefail
cd "$(dirname "$0")/.."
swift build --product pare >/dev/null
PARE=.build/debug/pare
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# fixture | trim flags
CASES=(
    "llama-gqa-f32|--drop-layers 1 --kv-heads 1 --ffn 0.5"
    "llama-gqa-bf16|--heads 2 --ffn 48"
    "llama-sharded|--merge-layers 0-1 --ffn 0.75"
    "qwen3|--drop-layers 1 --heads 2 --ffn 0.5"
    "mixtral|--experts 2 --expert-ffn 16 --kv-heads 1"
    "qwen2-moe|--drop-layers 0 --experts 2 --ffn 0.5 --heads 2"
    "gpt2|--drop-layers 0 --ffn 96"
    "bert|--drop-layers 1 --ffn 32"
    "qwen3-moe|--drop-layers 1 --experts 3 --expert-ffn 16 --heads 2"
    "olmo2|--merge-layers 0-1 --ffn 0.5"
    "gemma2|--drop-layers 0,3 --kv-heads 1 --ffn 32"
    # Hidden-size pruning, one per family that supports it.
    "llama-gqa-f32|--hidden 48"
    "qwen3|--hidden 24 --heads 2"
    "mixtral|--hidden 24 --experts 3"
    "qwen2-moe|--hidden 0.5"
    "qwen3-moe|--hidden 24"
    "olmo2|--hidden 24 --drop-layers 2"
    "gemma2|--hidden 24 --heads 2"
)
rm -f goldens/*.json
for case in "${CASES[@]}"; do
    fixture="${case%%|*}"
    flags="${case#*|}"
    name="$fixture--$(echo "$flags" | tr -s ' .,-' '_' | sed 's/^_//; s/_$//')"
    # shellcheck disable=SC2086
    $PARE trim "Tests/Fixtures/models/$fixture" "$TMP/$name" $flags --quiet
    $PARE validate "$TMP/$name" --write-golden "$TMP/$name.golden.json" >/dev/null
    python3 - "$TMP/$name.golden.json" "goldens/$name.json" "$fixture" "$flags" <<'PY'
import json, sys
src, dst, fixture, flags = sys.argv[1:]
golden = json.load(open(src))
out = {"fixture": fixture, "trim": flags.split(), **golden}
open(dst, "w").write(json.dumps(out, indent=2) + "\n")
PY
    echo "goldens/$name.json"
done
