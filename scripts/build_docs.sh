#!/usr/bin/env bash
# Build the documentation site into site/ with every worked example executed on SmolLM2.
#
#   bash scripts/build_docs.sh            # build (strict: a failing example, a broken link or anchor fails it)
#   bash scripts/build_docs.sh serve      # build, then serve on http://127.0.0.1:8000 (live reload)
#
# Needs lensbox installed with its docs extra (pip install -e ".[docs]"; scripts/setup.sh does it).
# Installs nothing itself except the docs tools when they are missing from the active environment.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x .venv/bin/python ]; then
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
export NO_MKDOCS_2_WARNING=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
if ! python -c "import mkdocs, material, mkdocstrings_handlers.python, markdown_exec, nbclient, ipykernel, ipywidgets" >/dev/null 2>&1; then
    if [ -z "${VIRTUAL_ENV:-}" ]; then
        echo "build_docs: the docs tools are missing and no virtual environment is active;" >&2
        echo "  activate the project's environment (. .venv/bin/activate) or run scripts/setup.sh first" >&2
        exit 1
    fi
    echo "build_docs: installing the docs extra (mkdocs, mkdocs-material, mkdocstrings[python], markdown-exec, nbclient, ipykernel)"
    python -m pip install -q -e ".[docs]"
fi
start=$(date +%s)
mode=build
case "${1:-}" in
    build|serve) mode=$1; shift ;;
esac
if [ "$mode" = "serve" ]; then
    exec python -m mkdocs serve --strict --dev-addr 127.0.0.1:8000 "$@"
fi
python -m mkdocs build --strict "$@"
echo "build_docs: site/ built in $(( $(date +%s) - start )) s (per-page times: site/build-timings.json)"
