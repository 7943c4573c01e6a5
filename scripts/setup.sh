#!/usr/bin/env bash
# Idempotent set-up of a fresh machine: a virtual environment in .venv holding lensbox
# (editable) with its test and docs tools. Safe to run again; fast when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
# Install the CPU build of torch first: any other spec pulls several GB of CUDA wheels.
if ! python -c "import torch" >/dev/null 2>&1; then
    pip install -q "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
fi
pip install -q -e ".[dev,docs]" 2>&1 | grep -v "is ignored" || true
python -c "import lensbox, torch, transformer_lens; print('lensbox', lensbox.__version__, '| torch', torch.__version__)"
