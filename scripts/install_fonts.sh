#!/usr/bin/env bash
# Install the fonts lensbox plots use for non-Latin token labels.
#
#   fonts-dejavu-core : Latin, Greek, Cyrillic, Arabic, Hebrew and the label symbols ␣ ↵ ⇥ ↳
#   fonts-noto-cjk    : Chinese, Japanese, Korean (Noto Sans CJK)
#   fonts-noto-core   : further scripts (Devanagari, Thai, Bengali, Tamil, Arabic, ...)
#
# Idempotent: when every package is already installed it does nothing and touches no network.
# Needs root (or sudo) and Debian/Ubuntu apt. Usage: bash scripts/install_fonts.sh
set -euo pipefail

packages=(fonts-dejavu-core fonts-noto-cjk fonts-noto-core)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    echo "install_fonts: all font packages already installed (${packages[*]})"
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_fonts: apt-get not found; install these font packages (or equivalents) by hand: ${missing[*]}" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_fonts: need root or sudo to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "install_fonts: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"

# Refresh fontconfig's cache; matplotlib rebuilds its own cache when the font list changes
# (lensbox.plot._fonts rescans the system font directories when it finds no CJK font).
if command -v fc-cache >/dev/null 2>&1; then
    fc-cache -f >/dev/null 2>&1 || true
fi
echo "install_fonts: done"
