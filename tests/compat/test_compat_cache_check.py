"""A user's cache on HookedTransformer (TL 2.x / 3.x): its own cache gives a fresh run's numbers; another text's
cache, or one stitched from two runs at a deeper layer, is refused (issue 11, section 4)."""

import pytest
import torch

pytest.importorskip("transformer_lens.HookedTransformer", exc_type=ImportError)

import lensbox  # noqa: E402
from lensbox import InputError  # noqa: E402

CFG = dict(n_layers=2, d_model=32, d_head=8, n_heads=4, d_mlp=64, d_vocab=100, n_ctx=32, act_fn="gelu",
           normalization_type="LN", seed=0)


def test_cache_checks_on_hooked_transformer():
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    model = HookedTransformer(HookedTransformerConfig(**CFG)).eval()
    gen = torch.Generator().manual_seed(0)
    tokens, other = torch.randint(1, 100, (2, 2, 10), generator=gen)
    with torch.no_grad():
        own = dict(model.run_with_cache(tokens)[1].items())
        theirs = dict(model.run_with_cache(other)[1].items())
    torch.testing.assert_close(lensbox.logit_lens(model, tokens, cache=own).kl_final,
                               lensbox.logit_lens(model, tokens).kl_final)
    with pytest.raises(InputError, match="not made from these inputs"):
        lensbox.logit_lens(model, tokens, cache=theirs)
    stitched = dict(own, **{"blocks.1.hook_resid_post": theirs["blocks.1.hook_resid_post"]})
    with pytest.raises(InputError, match=r"mixes runs(.|\n)*blocks\.1\.hook_resid_post"):
        lensbox.logit_lens(model, tokens, cache=stitched)
