# Sourced by tools/demo.sh, tools/install.sh and tools/test.sh: what every script needs on
# a fresh Debian machine, installed when missing (as root, or through sudo).

# apt_install PACKAGE...: installs Debian packages, or says which are missing.
apt_install() {
    if command -v apt-get >/dev/null; then
        echo "installing $*" >&2
        if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@"
    else
        echo "missing system packages: $* (install them and re-run)" >&2
        exit 1
    fi
}

# require_build_prerequisites: Swift on PATH (it cannot be installed from here), libzstd
# for the .pare format's CZstd system-library target, and OpenBLAS for the executor's
# COpenBLAS target (pare eval).
require_build_prerequisites() {
    if ! command -v swift >/dev/null; then
        echo "swift not found: install Swift 6 (https://www.swift.org/install/linux/) and put it on PATH" >&2
        exit 1
    fi
    local missing=()
    [ -f /usr/include/zstd.h ] || missing+=(libzstd-dev)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    pkg-config --exists openblas 2>/dev/null || missing+=(libopenblas-dev)
    if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}" pkg-config; fi
}
