#!/usr/bin/env bash
# Create (or refresh) the isolated virtual environment for the peer library
# tuned-lens 0.2.0, used only by the comparison benchmark in bench/peer/.
# Idempotent: re-running skips work that is already done.
#
#   bash bench/peer/setup_tuned_lens.sh          # -> .venvs/tuned-lens
#
# Pins (see bench/peer/README.md for the reasons):
#   torch==2.13.0 (CPU wheel, installed FIRST so nothing pulls a CUDA build),
#   transformers 5.x, tuned-lens==0.2.0, torchdata==0.9.0, plotly<6.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${TUNED_LENS_VENV:-$REPO/.venvs/tuned-lens}"
PY="${PYTHON:-python3}"

if [[ ! -x "$VENV/bin/python" ]]; then
    mkdir -p "$(dirname "$VENV")"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

have() {  # have DIST VERSION_PREFIX -> 0 when installed with that version prefix
    local v
    v="$("$VPY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null)" || return 1
    [[ "$v" == "$2"* ]]
}

"$VPY" -m pip install --quiet --upgrade pip

# torch first, always with this exact pin: on the project machines pip's find-links
# serves the 2.13.0+cpu wheel for this spec, and any other spec pulls GBs of CUDA wheels.
if ! have torch 2.13.0; then
    "$VPY" -m pip install --quiet torch==2.13.0
fi

if ! have tuned-lens 0.2.0 || ! have torchdata 0.9.0 || ! have transformers 5.; then
    # Keep torch where it is: a constraints file stops the resolver from swapping it.
    CONS="$(mktemp)"
    echo "torch==2.13.0" > "$CONS"
    "$VPY" -m pip install --quiet -c "$CONS" \
        "tuned-lens==0.2.0" "torchdata==0.9.0" "transformers>=5,<6" "plotly<6" gguf sentencepiece
    rm -f "$CONS"
fi

# The shim: transformers 5 rejects the load_in_8bit= keyword that the tuned-lens
# CLI always passes to from_pretrained.  bench/peer/shim/sitecustomize.py strips it;
# it is activated by putting bench/peer/shim on PYTHONPATH (run_tuned_lens_peer.sh does).
"$VPY" - <<'PYEOF'
import importlib.metadata as m
for d in ("torch", "transformers", "tuned-lens", "torchdata", "plotly"):
    print(f"{d:14s} {m.version(d)}")
PYEOF
echo "tuned-lens venv ready: $VENV"
