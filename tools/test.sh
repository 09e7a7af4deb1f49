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

# The interop venv, rebuilt when the pinned requirements change.
VENV=.venv
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum tools/requirements.txt | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    say "creating $VENV with tools/requirements.txt"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # CPU torch: the +cpu build when the index has it, else the plain wheel.
    if ! "$VENV/bin/pip" install -q -r tools/requirements.txt; then
        sed 's/^torch==\(.*\)+cpu$/torch==\1/' tools/requirements.txt > "$VENV/requirements-plain.txt"
        "$VENV/bin/pip" install -q -r "$VENV/requirements-plain.txt"
    fi
    echo "$WANT" > "$STAMP"
fi

say "swift build and unit tests"
swift build --build-tests
swift test

say "fuzzing the header parser (libFuzzer, ${PARE_FUZZ_SECONDS:-60}s)"
tools/fuzz/run.sh "${PARE_FUZZ_SECONDS:-60}" 2>&1 | tail -4

say "interop suite (real consumers)"
export PARE_BIN="$PWD/.build/debug/pare"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/python" -m pytest tools/interop -q "$@"
