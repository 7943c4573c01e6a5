"""The package's shape: import layering (import-linter), the root API, old import paths."""

import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import lensbox

ROOT = Path(__file__).resolve().parents[1]

# The 54 names the root exported before issue 8 (lensbox 0.1.0); each must keep working.
OLD_ROOT_NAMES = [
    "InputProbe", "RidgeProbe", "SoftmaxProbe", "SoftmaxSettings", "fit_softmax", "ProbeEvaluation",
    "embedding_relation", "evaluate_probe", "LensEvaluation", "evaluate", "TunedLens", "train_tuned_lens",
    "tuned_lens", "CORPORA", "to_hooked_transformer", "ResidualNorms", "TokenPlaneTrajectory", "fetch_corpus",
    "plot", "read_texts", "residual_norms", "sequence_labels", "token_label", "token_plane_trajectory",
    "token_windows", "tokenizer_kind", "train_val_split", "visible_text", "DEFAULT_MODEL", "METRICS",
    "Analyzer", "Decoder", "EmbedTransposeDecoder", "LastBlocksDecoder", "LensResult", "LogitLens", "analyze",
    "available_analyzers", "cache_dir", "get_analyzer", "load_hf_model", "load_model", "logit_lens",
    "register_analyzer", "ArtifactError", "InputError", "LensboxError", "ModelAdapter", "ModelError",
    "NonFiniteError", "Site", "SiteError", "SiteKind", "adapt",
]


def _lint_imports() -> str:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.fail("lint-imports is not installed: pip install import-linter (it is in the dev extra)")
    return exe


def test_import_layering_contracts_hold():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([_lint_imports()], cwd=ROOT, capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "BROKEN" not in out and "0 broken" in out, out[-4000:]


def test_lint_imports_would_catch_a_breach(tmp_path):
    # The contracts are not vacuous: core importing lenses must be reported.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src" / "lensbox", src / "lensbox", ignore=shutil.ignore_patterns("__pycache__"))
    with open(src / "lensbox" / "core" / "_sites.py", "a") as f:
        f.write("\nfrom ..lenses import _logit  # noqa: E402  (a deliberate breach)\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.run([_lint_imports()], cwd=tmp_path, capture_output=True, text=True, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "lensbox.core._sites -> lensbox.lenses._logit" in out, out[-3000:]


def test_root_api_is_small_and_importable():
    assert len(lensbox.__all__) <= 32  # 30 + logit_attribution + component_lens (issue 9)
    assert len(set(lensbox.__all__)) == len(lensbox.__all__)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # the everyday names are not deprecated
        for name in lensbox.__all__:
            assert getattr(lensbox, name) is not None, name
    ns: dict = {}
    exec("from lensbox import *", ns)
    assert set(lensbox.__all__) <= set(ns)
    assert isinstance(lensbox.__version__, str) and lensbox.__version__


@pytest.mark.parametrize("name", OLD_ROOT_NAMES)
def test_old_root_names_still_resolve(name):
    assert len(OLD_ROOT_NAMES) == 54
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(lensbox, name)
    assert value is not None
    ours = [w for w in caught if issubclass(w.category, DeprecationWarning) and str(w.message).startswith("lensbox.")]
    if name in lensbox.__all__ or name == "plot":
        assert not ours
        return
    (warning,) = ours
    message = str(warning.message)
    assert message.startswith(f"lensbox.{name} has moved: import it from lensbox.")
    home = message.split("import it from ")[1].split(" ")[0]
    assert getattr(importlib.import_module(home), name) is value  # the new home really holds it
    assert warning.filename == __file__  # the warning points at the caller


def test_documented_old_paths():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from lensbox import InputProbe, TunedLens, logit_lens
        from lensbox.lenses import LogitLens
        from lensbox.plot import plot_heatmap

    assert logit_lens is lensbox.lenses.logit_lens and TunedLens is lensbox.lenses.TunedLens
    assert LogitLens is lensbox.LogitLens
    assert callable(plot_heatmap) and plot_heatmap.__name__ == "plot_heatmap"
    assert InputProbe.name == "input_probe"
    assert lensbox.data.__name__ == "lensbox.data" and lensbox.plot.__name__ == "lensbox.plot"
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        lensbox.no_such_name  # noqa: B018


# Sub-packages whose owner has not yet written the docstring (each owner removes its entry).
PENDING_DOCSTRINGS: set = set()


def test_every_subpackage_has_a_docstring():
    packages = [m.name for m in pkgutil.iter_modules(lensbox.__path__) if m.ispkg]
    assert set(packages) >= {"core", "lenses", "training", "probes", "data", "models", "plot", "cli"}
    missing = []
    for name in ["lensbox"] + [f"lensbox.{p}" for p in packages if f"lensbox.{p}" not in PENDING_DOCSTRINGS]:
        doc = importlib.import_module(name).__doc__ or ""
        if len(doc.strip()) < 40:  # more than a bare title
            missing.append(f"{name}: {doc.strip()!r}")
    assert not missing, "sub-packages without a docstring describing their internals:\n" + "\n".join(missing)


def test_import_is_cheap_and_side_effect_free():
    code = (
        "import sys, lensbox; "
        "print(sorted(m for m in ('transformer_lens', 'transformers', 'matplotlib', 'plotly', 'sklearn', 'pandas', "
        "'lensbox.plot._plot', 'lensbox.cli') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
