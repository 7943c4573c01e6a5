"""A lens fitted on a raw model's residual stream is refused on a model whose residual basis was changed
by weight processing (issue 11, section 1): centring the writing weights (compatibility mode on a
LayerNorm model here; ``center_writing_weights`` of a HookedTransformer in tests/compat)."""

from typing import Any

import pytest
import torch

import lensbox
from lensbox import ModelError
from lensbox.lenses import TunedLens


@pytest.fixture(scope="module")
def gpt2_pair(tiny_family: Any) -> Any:
    """The same random GPT-2 (LayerNorm) weights as a raw bridge and in compatibility mode (writing weights centred)."""
    raw, centred = tiny_family("gpt2", "raw"), tiny_family("gpt2", "compat")
    tokens = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():  # independent check of what compatibility mode did: the embed stream is centred
        e_raw = raw.run_with_cache(tokens)[1]["blocks.0.hook_resid_pre"]
        e_cen = centred.run_with_cache(tokens)[1]["blocks.0.hook_resid_pre"]
    torch.testing.assert_close(e_cen, e_raw - e_raw.mean(-1, keepdim=True), atol=1e-5, rtol=1e-4)
    return raw, centred


def test_tuned_lens_file_from_the_raw_model_is_refused_on_the_centred_one(gpt2_pair: Any, tiny_tokens: Any, tmp_path: Any) -> None:
    raw, centred = gpt2_pair
    path = TunedLens.identity(raw).save(tmp_path / "lens", model=raw)
    lensbox.lenses.tuned_lens(raw, tiny_tokens, TunedLens.load(path))  # its own model: fine
    with pytest.raises(ModelError, match=r"differs in behaviour at embed(.|\n)*check_fingerprint=False"):
        lensbox.lenses.tuned_lens(centred, tiny_tokens, TunedLens.load(path))


def test_jacobian_lens_is_refused_on_a_model_with_centred_writing_weights(gpt2_pair: Any, tiny_tokens: Any) -> None:
    from transformer_lens.tools.analysis.jacobian_lens import JacobianLens

    raw, centred = gpt2_pair
    gen = torch.Generator().manual_seed(0)
    jlens = JacobianLens({layer: torch.eye(32) + 0.1 * torch.randn(32, 32, generator=gen) for layer in (0, 1)}, n_prompts=1, d_model=32,
                         metadata={"model_name": "tiny-llama"})
    data = tiny_tokens.repeat(2, 1)
    ev = lensbox.lenses.evaluate(raw, data, {"jlens": jlens}, window=12, batch_size=2, progress=False)
    assert "resid_post.0" in [site.name for site in ev.sites]  # the raw model: decoded
    with pytest.raises(ModelError, match=r"Jacobian lens was fitted on a raw model(.|\n)*center_writing_weights"):
        lensbox.lenses.evaluate(centred, data, {"jlens": jlens}, window=12, batch_size=2, progress=False)
