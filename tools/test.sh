#!/usr/bin/env bash
# Runs every test pare has: the Swift unit tests, then the interop suite, in which the real
# consumers (Python safetensors, torch, transformers) read what pare writes.
# Installs what is missing on a fresh Debian machine (needs root for apt, or the packages
# already present). Usage: tools/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

apt_install() {
    if command -v apt-get >/dev/null; then
        say "installing $*"
        if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
    else
        echo "missing system packages: $* (install them and re-run)" >&2
        exit 1
    fi
}

if ! command -v swift >/dev/null; then
    echo "swift not found: install Swift 6 (https://www.swift.org/install/linux/) and put it on PATH" >&2
    exit 1
fi
# libzstd for the .pare format's CZstd system-library target.
[ -f /usr/include/zstd.h ] || apt_install libzstd-dev pkg-config
command -v python3 >/dev/null || apt_install python3 python3-venv
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv

# make_venv DIR REQUIREMENTS: a venv with exactly those pins, rebuilt when they change.
make_venv() {
    local venv="$1" requirements="$2"
    local stamp="$venv/.requirements.sha256" want
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        say "creating $venv with $requirements"
        rm -rf "$venv"
        python3 -m venv "$venv"
        # CPU torch: the +cpu build when the index has it, else the plain wheel.
        if ! "$venv/bin/pip" install -q -r "$requirements"; then
            sed 's/^torch==\(.*\)+cpu$/torch==\1/' "$requirements" > "$venv/requirements-plain.txt"
            "$venv/bin/pip" install -q -r "$venv/requirements-plain.txt"
        fi
        echo "$want" > "$stamp"
    fi
}

# The interop venv (safetensors, torch, transformers 5, zstandard for the .pare reader).
VENV=.venv
make_venv "$VENV" tools/requirements.txt
# A second venv for the compressed-tensors proof: transformers 4.57 + compressed-tensors
# 0.14.0.1, the last release with the sparse-24-bitmask compressor.
# tools/interop/test_sparsify.py runs tools/interop/ct_check.py under it.
make_venv .venv-ct tools/requirements-ct.txt
export PARE_CT_PYTHON="$PWD/.venv-ct/bin/python"

say "swift build and unit tests"
swift build --build-tests
swift test

say "fuzzing the header parser and the .pare reader (libFuzzer, ${PARE_FUZZ_SECONDS:-60}s + half that)"
tools/fuzz/run.sh "${PARE_FUZZ_SECONDS:-60}" 2>&1 | tail -4

say "interop suite (real consumers)"
export PARE_BIN="$PWD/.build/debug/pare"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/python" -m pytest tools/interop -q "$@"
