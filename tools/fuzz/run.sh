#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of the safetensors header parser.
# Usage: tools/fuzz/run.sh [SECONDS=60]
# Builds the parser's sources into one fuzzing binary under .build/fuzz and runs it for
# SECONDS over the seeds in tools/fuzz/seeds (new corpus entries go to .build/fuzz/corpus).
# Exits non-zero when the fuzzer finds a crash; the reproducer is left in .build/fuzz.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN="${1:-60}"
BUILD=.build/fuzz
rm -rf "$BUILD/src" && mkdir -p "$BUILD/src" "$BUILD/include" "$BUILD/corpus"

# One module: drop the imports between pare's own modules.
for module in OrderedJSON Tensors SafeTensors; do
    for f in Sources/$module/*.swift; do
        sed -E '/^import (OrderedJSON|Tensors|SafeTensors)$/d' "$f" > "$BUILD/src/${module}_$(basename "$f")"
    done
done
cp Sources/CSystemShims/include/CSystemShims.h "$BUILD/include/"
printf 'module CSystemShims {\n  header "CSystemShims.h"\n  export *\n}\n' > "$BUILD/include/module.modulemap"
clang -c -O1 -fsanitize=fuzzer-no-link,address -I Sources/CSystemShims/include \
    Sources/CSystemShims/shims.c -o "$BUILD/shims.o"
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name PareFuzz -I "$BUILD/include" \
    "$BUILD"/src/*.swift tools/fuzz/FuzzHeader.swift "$BUILD/shims.o" -o "$BUILD/fuzz-header" 2>&1 \
    | grep -v "Cannot export local symbol" || true

cd "$BUILD"
./fuzz-header -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 corpus ../../tools/fuzz/seeds
