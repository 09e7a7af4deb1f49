#!/usr/bin/env bash
# Builds pare in release mode and installs the binary as PREFIX/bin/pare.
# Usage: tools/install.sh [PREFIX]   (default: /usr/local; use ~/.local without root)
# A first release build compiles the dependencies too: about 2 minutes on 2 cores (128 s
# measured, BENCHMARKS.md); later ones take seconds to a minute. Installs libzstd-dev and libopenblas-dev if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${1:-/usr/local}"
. tools/prerequisites.sh
require_build_prerequisites
echo "building pare (release)..."
t0=$(date +%s)
swift build -c release --product pare
echo "built in $(( $(date +%s) - t0 ))s"
mkdir -p "$PREFIX/bin"
install -m 0755 .build/release/pare "$PREFIX/bin/pare"
echo "installed $PREFIX/bin/pare ($("$PREFIX/bin/pare" --version))"
case ":$PATH:" in
    *":$PREFIX/bin:"*) ;;
    *) echo "note: $PREFIX/bin is not on PATH; add it, e.g. export PATH=\"$PREFIX/bin:\$PATH\"" ;;
esac
