#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer + AddressSanitizer) of the safetensors header parser
# and of the .pare reader.
# Usage: tools/fuzz/run.sh [SECONDS=60]
# Builds each parser's sources into one fuzzing binary under .build/fuzz and runs the header
# fuzzer for SECONDS over tools/fuzz/seeds, then the .pare fuzzer for SECONDS/2 over
# tools/fuzz/pare-seeds (new corpus entries go to .build/fuzz/corpus*). Exits non-zero when
# a fuzzer finds a crash; the reproducer is left in .build/fuzz.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_TO_RUN="${1:-60}"
BUILD=.build/fuzz
rm -rf "$BUILD/src" "$BUILD/src-pare" && mkdir -p "$BUILD/src" "$BUILD/src-pare" "$BUILD/include" "$BUILD/corpus" "$BUILD/corpus-pare"

# copy_modules DIR MODULE...: the modules' sources as one module in DIR, without the
# imports between them.
copy_modules() {
    local dir="$1"; shift
    local names; names="$(IFS='|'; echo "$*")"
    for module in "$@"; do
        for f in Sources/$module/*.swift; do
            sed -E "/^import ($names)\$/d" "$f" > "$dir/${module}_$(basename "$f")"
        done
    done
}

# The header parser: OrderedJSON, Tensors and SafeTensors.
copy_modules "$BUILD/src" OrderedJSON Tensors SafeTensors
# The C targets, as the package builds them: the system shims, and the kernels (CRC-32C,
# 2:4 selection) that Tensors and PareFormat call.
cp Sources/CSystemShims/include/CSystemShims.h Sources/CKernels/include/CKernels.h "$BUILD/include/"
printf 'module CSystemShims {\n  header "CSystemShims.h"\n  export *\n}\n' > "$BUILD/include/module.modulemap"
printf 'module CKernels {\n  header "CKernels.h"\n  export *\n}\n' >> "$BUILD/include/module.modulemap"
C_OBJECTS=()
for c in Sources/CSystemShims/shims.c Sources/CKernels/*.c; do
    object="$BUILD/$(basename "$c" .c).o"
    clang -c -O1 -fsanitize=fuzzer-no-link,address -I "$(dirname "$c")/include" "$c" -o "$object"
    C_OBJECTS+=("$object")
done
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name PareFuzz -I "$BUILD/include" \
    "$BUILD"/src/*.swift tools/fuzz/FuzzHeader.swift "${C_OBJECTS[@]}" -o "$BUILD/fuzz-header" 2>&1 \
    | grep -v "Cannot export local symbol" || true

# The .pare reader: OrderedJSON, Tensors and PareFormat, with the kernels and libzstd.
copy_modules "$BUILD/src-pare" OrderedJSON Tensors PareFormat
mkdir -p "$BUILD/include/zstd"
printf 'module CZstd [system] {\n  header "/usr/include/zstd.h"\n  header "/usr/include/zstd_errors.h"\n  link "zstd"\n  export *\n}\n' > "$BUILD/include/zstd/module.modulemap"
swiftc -sanitize=fuzzer,address -parse-as-library -O -module-name PareFuzz -I "$BUILD/include" -I "$BUILD/include/zstd" \
    "$BUILD"/src-pare/*.swift tools/fuzz/FuzzPare.swift "${C_OBJECTS[@]}" -lzstd -o "$BUILD/fuzz-pare" 2>&1 \
    | grep -v "Cannot export local symbol" || true

cd "$BUILD"
./fuzz-pare -max_total_time="$(( (SECONDS_TO_RUN + 1) / 2 ))" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 corpus-pare ../../tools/fuzz/pare-seeds
./fuzz-header -max_total_time="$SECONDS_TO_RUN" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 corpus ../../tools/fuzz/seeds
