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
* ``tiny_tokens`` -- ``[2, 12]`` token ids for ``tiny_lm``.
* ``smollm2_model`` -- the real SmolLM2-135M-Instruct bridge (``lensbox.load_model()``), for
  tests marked ``@pytest.mark.smollm2``.
"""

from pathlib import Path
from typing import Any, Callable

import pytest
import torch

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
def tiny_tokens() -> torch.Tensor:
    """``[2, 12]`` token ids (below 300) for the tiny models."""
    gen = torch.Generator().manual_seed(1234)
    return torch.randint(1, 300, (2, 12), generator=gen)


@pytest.fixture(scope="session")
def smollm2_model() -> Any:
    import lensbox

    return lensbox.load_model(progress=False)
