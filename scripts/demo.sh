#!/usr/bin/env bash
# Set up, then run the logit lens on the embedded SmolLM2 model: prints the
# layer-by-position table and writes out/lens.png and out/lens.csv.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/install_fonts.sh || echo "demo: fonts not installed; non-Latin labels may show boxes" >&2
# shellcheck disable=SC1091
. .venv/bin/activate
mkdir -p out
TEXT=${1:-"The capital of France is Paris. The capital of Germany is"}
lensbox lens "$TEXT" --out out/lens.png
lensbox -q lens "$TEXT" --metric rank --out out/lens.csv > /dev/null
echo "wrote out/lens.png and out/lens.csv"
