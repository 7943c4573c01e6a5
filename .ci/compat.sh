#!/usr/bin/env bash
# Build the TransformerLens 2.x and 3.x virtual environments and run tests/compat in each.
#
# Usage: bash .ci/compat.sh [--build-only] [ENV ...]      (ENV: tl218, tl39; default both)
#
# Each environment lives in $LENSBOX_VENVS (default: .venvs/ in the repository, which git
# ignores) and is rebuilt only when its recipe changes: a stamp file inside the venv
# records the recipe. lensbox goes in editable and without dependencies; its missing
# dependencies are installed under constraints frozen from the environment, so nothing
# there (TransformerLens, transformers, torch, numpy) moves. Exits non-zero when a build
# or a test run fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENVS="${LENSBOX_VENVS:-$ROOT/.venvs}"
PYTHON="${PYTHON:-python3}"
BUILD_ONLY=0
SELECTED=()
for arg in "$@"; do
    case "$arg" in
        --build-only) BUILD_ONLY=1 ;;
        tl218|tl39) SELECTED+=("$arg") ;;
        *) echo "compat.sh: unknown argument '$arg' (expected --build-only, tl218, tl39)" >&2; exit 2 ;;
    esac
done
[ ${#SELECTED[@]} -eq 0 ] && SELECTED=(tl218 tl39)

TORCH="torch==2.13.0"   # the local CPU wheel; any other spec pulls CUDA builds
COMMON="pytest jaxtyping gguf"

# The packages installed after torch. TL 2.18 pins numpy<2, and pyarrow newer than
# 23.0.1 needs numpy 2, hence the pin.
recipe() {
    case "$1" in
        tl218) echo "transformer-lens==2.18.0 pyarrow==23.0.1" ;;
        tl39) echo "transformer-lens==3.9.0 beartype>=0.18" ;;
    esac
}
# Installed last, with --no-deps. TL 2.18's metadata pins beartype<0.15 but TL never
# imports beartype; the tests' jaxtyping+beartype hook (pyproject addopts) needs >=0.18
# for PEP 585 hints such as os.PathLike[str].
post_recipe() {
    case "$1" in
        tl218) echo "beartype>=0.18" ;;
        *) echo "" ;;
    esac
}
expected_tl() {
    case "$1" in
        tl218) echo "2.18.0" ;;
        tl39) echo "3.9.0" ;;
    esac
}

# lensbox's runtime dependencies from pyproject.toml, less those each environment pins.
lensbox_deps() {
    "$1" -c '
import re, sys, tomllib
deps = tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]
skip = {"torch", "transformer-lens", "transformer_lens", "transformers"}
print(" ".join(d for d in deps if re.split(r"[<>=!~\[ ;]", d, maxsplit=1)[0].lower() not in skip))
' "$ROOT/pyproject.toml"
}

# pip's notes about this machine's local wheel indexes are noise.
quiet_pip() {
    "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}

now() { date +%s; }

build_env() {
    local name="$1" venv="$VENVS/$1" py="$VENVS/$1/bin/python" stamp post
    stamp="$TORCH | $(recipe "$name") | $COMMON | post: $(post_recipe "$name") | $($PYTHON --version 2>&1)"
    if [ -x "$py" ] && [ -f "$venv/.lensbox-stamp" ] && [ "$(cat "$venv/.lensbox-stamp")" = "$stamp" ]; then
        echo "[$name] reusing $venv"
    else
        echo "[$name] building $venv"
        rm -rf "$venv"
        mkdir -p "$VENVS"
        "$PYTHON" -m venv "$venv"
        local pip=("$py" -m pip install --quiet --no-input)
        quiet_pip "${pip[@]}" "$TORCH"
        # shellcheck disable=SC2046
        quiet_pip "${pip[@]}" "$TORCH" $(recipe "$name") $COMMON
        post="$(post_recipe "$name")"
        if [ -n "$post" ]; then
            # pip notes the broken beartype pin; that is expected here.
            # shellcheck disable=SC2086
            "$py" -m pip install --quiet --no-input --no-deps --upgrade $post 2>/dev/null
        fi
        echo "$stamp" > "$venv/.lensbox-stamp"
    fi
    local cons="$venv/.lensbox-constraints.txt"
    "$py" -m pip freeze --exclude-editable | grep -E '^[A-Za-z0-9_.-]+==' > "$cons"
    # shellcheck disable=SC2046
    quiet_pip "$py" -m pip install --quiet --no-input -c "$cons" $(lensbox_deps "$py")
    quiet_pip "$py" -m pip install --quiet --no-input --no-deps -e "$ROOT"
    "$py" -c "import lensbox" || return 1
    local got
    got="$("$py" -c 'import importlib.metadata as m; print(m.version("transformer-lens"))')"
    if [ "$got" != "$(expected_tl "$name")" ]; then
        echo "[$name] expected transformer-lens $(expected_tl "$name"), found $got" >&2
        return 1
    fi
    "$py" -c '
import importlib.metadata as m
print("  " + ", ".join(f"{p} {m.version(p)}" for p in ("transformer-lens", "transformers", "torch", "numpy", "beartype")))
'
}

status=0
for name in "${SELECTED[@]}"; do
    t0=$(now)
    if ! build_env "$name"; then
        echo "[$name] FAILED to build" >&2
        status=1
        continue
    fi
    t1=$(now)
    echo "[$name] environment ready in $((t1 - t0)) s"
    [ "$BUILD_ONLY" = 1 ] && continue
    set +e
    (cd "$ROOT" && "$VENVS/$name/bin/python" -m pytest tests/compat -q)
    rc=$?
    set -e
    echo "[$name] tests finished in $(($(now) - t1)) s (exit $rc)"
    [ "$rc" -ne 0 ] && status=1
done
exit "$status"
