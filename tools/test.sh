#!/usr/bin/env bash
# Runs every test pare has: the Swift unit tests, then the interop suite, in which the real
# consumers (Python safetensors, torch, transformers) read what pare writes.
# Installs what is missing on a fresh Debian machine (needs root for apt, or the packages
# already present). Usage: tools/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n==> %s\n' "$*"; }

# Phase timings, printed at the end: where the minutes go.
PHASES=()
phase_start() { PHASE_NAME="$1"; PHASE_T0=$(date +%s); say "$1"; }
phase_end() { PHASES+=("$(printf '%-34s %4ss' "$PHASE_NAME" $(( $(date +%s) - PHASE_T0 )))"); }
report_phases() {
    printf '\n==> time by phase\n'
    for line in "${PHASES[@]}"; do printf '    %s\n' "$line"; done
}
RESULTS="$(mktemp)"
trap 'report_phases; rm -f "$RESULTS"' EXIT

. tools/prerequisites.sh

require_build_prerequisites
command -v python3 >/dev/null || apt_install python3 python3-venv
# strace injects faults at the swap in tools/crash_harness.py (tools/interop/test_hostile.py).
command -v strace >/dev/null || apt_install strace
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv

# make_venv LINK REQUIREMENTS: LINK points at a venv with exactly those pins. The venv
# lives in a cache outside the checkout, named by the pins' hash, so a fresh clone on the
# same machine (CI's) reuses it instead of downloading torch again; it is built when
# missing, and a stale one is never reused (another hash, another venv).
VENV_CACHE="${PARE_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pare}"
make_venv() {
    local link="$1" requirements="$2" want venv
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    venv="$VENV_CACHE/venv-${want:0:16}"
    if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.complete" ]; then
        say "creating $venv with $requirements (first time only: a few minutes for torch)"
        rm -rf "$venv"
        mkdir -p "$VENV_CACHE"
        python3 -m venv "$venv"
        # CPU torch: the +cpu build when the index has it, else the plain wheel.
        if ! "$venv/bin/pip" install -q -r "$requirements"; then
            sed 's/^torch==\(.*\)+cpu$/torch==\1/' "$requirements" > "$venv/requirements-plain.txt"
            "$venv/bin/pip" install -q -r "$venv/requirements-plain.txt"
        fi
        touch "$venv/.complete"
    fi
    # A venv from before the cache (a real folder) is replaced by the link.
    if [ ! -L "$link" ]; then rm -rf "$link"; fi
    ln -sfn "$venv" "$link"
}

# The interop venv (safetensors, torch, transformers 5, zstandard for the .pare reader).
phase_start "Python venvs"
VENV=.venv
make_venv "$VENV" tools/requirements.txt
# A second venv for the compressed-tensors proof: transformers 4.57 + compressed-tensors
# 0.14.0.1, the last release with the sparse-24-bitmask compressor.
# tools/interop/test_sparsify.py runs tools/interop/ct_check.py under it.
make_venv .venv-ct tools/requirements-ct.txt
export PARE_CT_PYTHON="$PWD/.venv-ct/bin/python"
phase_end

phase_start "swift build (with tests)"
swift build --build-tests
phase_end

phase_start "swift unit tests"
swift test
phase_end

phase_start "fuzzing the header parser and the .pare reader (libFuzzer, ${PARE_FUZZ_SECONDS:-60}s + half that)"
tools/fuzz/run.sh "${PARE_FUZZ_SECONDS:-60}" 2>&1 | tail -4
phase_end

phase_start "interop suite (real consumers)"
export PARE_BIN="$PWD/.build/debug/pare"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
"$VENV/bin/python" -m pytest tools/interop -q "$@" 2>&1 | tee "$RESULTS"
phase_end
# The phase table goes last but one: pytest's own closing line stays the last line.
trap - EXIT
report_phases
tail -1 "$RESULTS"
rm -f "$RESULTS"
