"""Shared fixtures for lensbox's tests.

* ``tiny_tokenizer_path`` -- a byte-level BPE tokenizer (300 tokens) trained here on a few
  fixed sentences and saved to disk (TransformerLens re-reads tokenizers from their path).
  Offline: the tiny-model tests need no download.
* ``make_tiny_lm`` -- a factory for random-weight Llama ``TransformerBridge`` models built
  from ``LlamaConfig`` (3 layers, d_model 32, vocab 320 by default; weights drawn with
  ``initializer_range=0.3`` so distributions are peaked and ranks / top-k mean something).
  Two calls with the same arguments give identical weights.
* ``tiny_lm`` / ``tiny_lm_compat`` -- session-wide instances, raw and after
  ``enable_compatibility_mode()`` (built from separate copies of the same weights, since
  compatibility mode rewrites weights in place). Treat them as read-only.
* ``tiny_family`` -- ``tiny_family(family, mode)``: session-wide 2-layer bridges of the architecture matrix.
* ``tiny_tokens`` -- ``[2, 12]`` token ids for ``tiny_lm``.
* Under pytest-xdist (``pytest -n 2``) every worker runs torch with one thread.
* ``smollm2_model`` -- the real SmolLM2-135M-Instruct bridge (``lensbox.load_model()``), for
  tests marked ``@pytest.mark.smollm2``.
"""

import os
from pathlib import Path
from typing import Any, Callable

# Under pytest-xdist (``-n 2``) each worker is one process on one core: one torch thread each (and for
# the subprocesses they start), so two workers do not fight over the cores.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)

from models import build_tiny_lm, build_tiny_tokenizer

# tests/compat needs a TransformerLens with ``HookedTransformer`` (2.x / 3.x); .ci/compat.sh runs it
# in its own virtual environments. On 4.x (this environment) it is left out of collection rather
# than reported as skipped.
try:
    import transformer_lens.HookedTransformer  # noqa: F401
except ImportError:
    collect_ignore = ["compat"]


@pytest.fixture(scope="session")
def tiny_tokenizer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lensbox_tiny_tokenizer")
    build_tiny_tokenizer(path)
    return path


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_tokenizer_path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_path))


@pytest.fixture(scope="session")
def make_tiny_lm(tiny_tokenizer: Any) -> Callable[..., Any]:
    """``make_tiny_lm(compat=False, hf_model=None, vocab=320, n_layers=3, d_model=32, seed=0, init=0.3, tie=False, dtype=float32)``."""

    def make(**kwargs: Any) -> Any:
        return build_tiny_lm(tiny_tokenizer, **kwargs)

    return make


@pytest.fixture(scope="session")
def tiny_lm(make_tiny_lm: Callable[..., Any]) -> Any:
    return make_tiny_lm()


@pytest.fixture(scope="session")
def tiny_lm_compat(make_tiny_lm: Callable[..., Any]) -> Any:
    return make_tiny_lm(compat=True)


@pytest.fixture(scope="session")
def tiny_family(tiny_tokenizer: Any) -> Callable[[str, str], Any]:
    """``tiny_family(family, mode)``: a session-wide 2-layer random bridge of one architecture family
    (``models.ARCH_FAMILIES``) with the tiny tokenizer, ``mode`` 'raw' or 'compat' (each built once; read-only)."""
    from models import build_tiny_hf, build_tiny_lm

    built: dict = {}

    def get(family: str, mode: str = "raw") -> Any:
        if (family, mode) not in built:
            hf = build_tiny_hf(family, n_layers=2)
            built[(family, mode)] = build_tiny_lm(tiny_tokenizer, hf_model=hf, compat=(mode == "compat"))
        return built[(family, mode)]

    return get


@pytest.fixture(scope="session")
def tiny_tokens() -> torch.Tensor:
    """``[2, 12]`` token ids (below 300) for the tiny models."""
    gen = torch.Generator().manual_seed(1234)
    return torch.randint(1, 300, (2, 12), generator=gen)


@pytest.fixture(scope="session")
def smollm2_model() -> Any:
    import lensbox

    return lensbox.load_model(progress=False)
