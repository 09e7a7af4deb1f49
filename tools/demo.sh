#!/usr/bin/env bash
# The main job on the bundled tiny model: inspect a Llama checkpoint (GQA, f32), print the
# plan of a trim, trim it (drop a layer, keep one kv group, halve the FFN), validate the
# result, convert it to bf16 in shards, sparsify it 2:4, pack that into .pare, and check
# every checksum of the packed copy; then prune it narrower (hidden size and query heads);
# then run the models with pare's executor (pare eval): what the trim cost against the
# original (KL, top-1 agreement, a cosine per layer), and the held-out perplexity of the
# small trained Llama before and after a trim.
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

# Token ids for the random-weight fixture (any ids below its vocabulary of 320).
printf '%s\n' "[1, 5, 9, 14, 2, 300, 7, 42, 8, 99, 3, 17]" "[250, 4, 4, 61, 19, 88, 120, 6]" > "$OUT/ids.jsonl"
run eval "$OUT/llama-small" --tokens "$OUT/ids.jsonl" --reference "$MODEL"
# A small Llama trained on English text (tools/train_fixtures.py), on held-out windows:
# its perplexity, then what cutting a quarter of its FFN channels by magnitude cost.
TRAINED=Tests/Fixtures/models/trained-llama
HELDOUT=Tests/Fixtures/heldout/trained-llama.safetensors
run eval "$TRAINED" --tokens "$HELDOUT"
run trim "$TRAINED" "$OUT/trained-small" --ffn 0.75 --quiet
run eval "$OUT/trained-small" --tokens "$HELDOUT" --reference "$TRAINED"

echo
echo "pare demo: done; the outputs are in $OUT (remove it with: rm -rf $OUT)"
