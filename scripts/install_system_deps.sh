#!/usr/bin/env bash
# System packages the tests and docs need: fonts for non-Latin token labels and
# Debian's Chromium for the browser check of the built site. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_fonts.sh
if ! command -v chromium >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "install_system_deps: no apt-get; install Chromium by hand for the docs browser test" >&2
        exit 1
    fi
fi
chromium --version
