#!/usr/bin/env bash
# The main job on the bundled tiny model: inspect a Llama checkpoint (GQA, f32), convert
# it to bf16 re-sharded into three files, and inspect the result.
# Usage: tools/demo.sh [OUTPUT_DIR]   (default: a fresh temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v swift >/dev/null; then
    echo "swift not found: install Swift 6 (https://www.swift.org/install/linux/) and put it on PATH" >&2
    exit 1
fi
swift build --product pare >/dev/null
PARE=.build/debug/pare
MODEL=Tests/Fixtures/models/llama-gqa-f32
OUT="${1:-$(mktemp -d)/llama-bf16}"

echo "\$ pare inspect $MODEL"
$PARE inspect "$MODEL"
echo
echo "\$ pare convert $MODEL $OUT --dtype bf16 --max-shard-size 100KB"
$PARE convert "$MODEL" "$OUT" --dtype bf16 --max-shard-size 100KB
echo
echo "\$ pare inspect $OUT"
$PARE inspect "$OUT"
