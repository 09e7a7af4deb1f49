#!/usr/bin/env bash
# The main job on the bundled tiny model: inspect a Llama checkpoint (GQA, f32), print the
# plan of a trim, trim it (drop a layer, keep one kv group, halve the FFN), validate the
# result, convert it to bf16 in shards, sparsify it 2:4, pack that into .pare, and check
# every checksum of the packed copy; then prune it narrower (hidden size and query heads).
# Installs libzstd-dev and libopenblas-dev (apt) if they are missing.
# Usage: tools/demo.sh [OUTPUT_DIR]   (default: a new folder /tmp/pare-demo.XXXXXX, named
# at the start and the end; remove it when done)
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/prerequisites.sh
require_build_prerequisites
OUT="${1:-$(mktemp -d /tmp/pare-demo.XXXXXX)}"
mkdir -p "$OUT"
echo "pare demo: outputs go to $OUT"

if [ -x .build/debug/pare ]; then
    echo "building pare (incremental: seconds)..."
else
    echo "building pare (first build with dependencies: about 2 minutes on 2 cores, most of it swift-crypto)..."
fi
t0=$(date +%s)
if ! log="$(swift build --product pare 2>&1)"; then
    echo "$log" >&2
    exit 1
fi
echo "built in $(( $(date +%s) - t0 ))s"
PARE=.build/debug/pare
MODEL=Tests/Fixtures/models/llama-gqa-f32

run() { echo; echo "\$ pare $*"; $PARE "$@"; }
run inspect "$MODEL"
run trim "$MODEL" --drop-layers 1 --kv-heads 1 --ffn 0.5 --dry-run
run trim "$MODEL" "$OUT/llama-small" --drop-layers 1 --kv-heads 1 --ffn 0.5
run validate "$OUT/llama-small"
run convert "$OUT/llama-small" "$OUT/llama-small-bf16" --dtype bf16 --max-shard-size 50KB
run inspect "$OUT/llama-small-bf16"
run sparsify "$OUT/llama-small-bf16" "$OUT/llama-small-24" --pattern 2:4
run convert "$OUT/llama-small-24" "$OUT/llama-small-24-pare" --format pare
run validate "$OUT/llama-small-24-pare" --verify
run trim "$MODEL" "$OUT/llama-narrow" --hidden 48 --heads 2

echo
echo "pare demo: done; the outputs are in $OUT (remove it with: rm -rf $OUT)"
