"""Edited activations (``fwd_hooks=``) on a HookedTransformer (TransformerLens 2.18 / 3.9).

Reference: the HookedTransformer's own ``run_with_hooks`` on the same edits, decoded with its
``ln_final`` and ``W_U`` in plain PyTorch.
"""

import pytest
import torch

pytest.importorskip("transformer_lens.HookedTransformer", exc_type=ImportError)

import lensbox  # noqa: E402
from lensbox import InputError, Site  # noqa: E402
from lensbox.lenses import LogitLens  # noqa: E402
from lensbox.models._convert import to_hooked_transformer  # noqa: E402

from compat_models import tiny_llama  # noqa: E402

LAYER = 1


def zero(act, hook):
    return act * 0


@pytest.fixture(scope="module")
def ht(tiny_tokenizer):
    return to_hooked_transformer(tiny_llama(), tiny_tokenizer)


@pytest.fixture(scope="module")
def toks(ht):
    adapter = lensbox.adapt(ht)
    return adapter.to_tokens("the cat sat on the mat."), adapter.to_tokens("a dog ran in the parks.")


def _reference_topk(ht, tokens, hook_name, fwd_hooks, k=5):
    store = {}

    def grab(act, hook):
        store["x"] = act.detach().clone()

    with torch.no_grad():
        ht.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks) + [(hook_name, grab)])
        lp = torch.log_softmax((ht.ln_final(store["x"]) @ ht.W_U + ht.b_U).float(), -1)
    return lp.topk(k, dim=-1)


def test_ablation_keeps_earlier_sites_and_changes_later_ones(ht, toks):
    tokens = toks[0]
    ablate = [(f"blocks.{LAYER}.hook_attn_out", zero)]
    plain = lensbox.logit_lens(ht, tokens, include_mid=True)
    edited = LogitLens(include_mid=True)(ht, tokens, fwd_hooks=ablate)
    for i, site in enumerate(plain.sites):
        diff = float((plain.top_logprobs[0, i] - edited.top_logprobs[0, i]).abs().max())
        if site.depth < Site.resid_mid(LAYER).depth:
            assert diff <= 1e-6, site
        else:
            assert diff > 1e-3, site
    for site in ("resid_mid.1", "final"):
        ref = _reference_topk(ht, tokens, lensbox.adapt(ht).hook_name(site), ablate)
        i = edited.site_index(site)
        assert torch.allclose(edited.top_logprobs[0, i], ref.values[0], atol=1e-5)
        assert torch.equal(edited.top_ids[0, i], ref.indices[0])


def test_patching_reproduces_the_donor_prompt_at_the_site(ht, toks):
    tokens, other = toks
    name = lensbox.adapt(ht).hook_name("resid_post.0")
    with torch.no_grad():
        _, cache = ht.run_with_cache(other, names_filter=[name])
    donor = cache[name]
    patched = lensbox.logit_lens(ht, tokens, fwd_hooks=[(name, lambda act, hook: donor.clone())])
    source = lensbox.logit_lens(ht, other)
    for s in ("resid_post.0", "final"):
        i = patched.site_index(s)
        assert torch.allclose(patched.top_logprobs[0, i], source.top_logprobs[0, i], atol=1e-6)
        assert torch.equal(patched.top_ids[0, i], source.top_ids[0, i])


def test_bad_hooks_and_a_cache_are_refused(ht, toks):
    tokens = toks[0]
    name = f"blocks.{LAYER}.hook_attn_out"
    with pytest.raises(InputError, match="another shape"):
        lensbox.logit_lens(ht, tokens, fwd_hooks=[(name, lambda act, hook: act[..., :4])])
    with pytest.raises(InputError, match="no hook point"):
        lensbox.logit_lens(ht, tokens, fwd_hooks=[("blocks.1.hook_nope", zero)])
    with torch.no_grad():
        _, cache = ht.run_with_cache(tokens)
    with pytest.raises(InputError, match="fwd_hooks cannot act on a cache"):
        lensbox.logit_lens(ht, tokens, cache=cache, fwd_hooks=[(name, zero)])
    assert not any(h.fwd_hooks for h in ht.hook_dict.values())  # nothing stayed attached
