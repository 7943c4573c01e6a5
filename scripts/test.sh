#!/usr/bin/env bash
# Set up everything the tests need, then run them: the main suite (TransformerLens 4.x),
# the HookedTransformer suites on TransformerLens 2.18 and 3.9 (their own venvs), and the
# documentation site built with its examples executed and checked in headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/setup.sh
bash scripts/install_system_deps.sh
# shellcheck disable=SC1091
. .venv/bin/activate
export MPLBACKEND=Agg
python -c "import lensbox; lensbox.load_model(progress=True)" >/dev/null   # fetch + cache the default model once
echo "== compatibility suites (TransformerLens 2.18 and 3.9)"
# Their venvs live in the user cache so a fresh clone reuses them (stamp files guard the recipe).
export LENSBOX_VENVS="${LENSBOX_VENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/lensbox/venvs}"
bash .ci/compat.sh
echo "== documentation site"
bash scripts/build_docs.sh
export LENSBOX_SITE_DIR="$PWD/site"
echo "== import layering (import-linter contracts in pyproject.toml)"
lint-imports
echo "== main suite"
python -m pytest -q -ra "$@"
echo "test.sh: total $(( $(date +%s) - start )) s"
