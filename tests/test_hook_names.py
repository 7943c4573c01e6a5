"""The names filter lensbox gives for a user's own cache: ``ModelAdapter.hook_names`` and
``Analyzer.hook_names``. A cache made with it is enough for ``logit_lens(..., cache=cache)``
and gives the same statistics as a run without a cache."""

import pytest
import torch

import lensbox
from lensbox import InputError

from models import tiny_bridge


@pytest.fixture(scope="module")
def bridge():
    return tiny_bridge()


def test_adapter_hook_names_map_each_site_once(bridge):
    a = lensbox.adapt(bridge)
    assert a.hook_names("resid_post.1,resid_pre.2") == ["blocks.1.hook_resid_post", "blocks.2.hook_resid_pre"]
    # the embeddings and resid_pre.0 are one hook; listed once
    assert a.hook_names(["embed", "resid_pre.0"]) == ["blocks.0.hook_resid_pre"]
    names = set(bridge.hook_dict)
    everything = a.hook_names("all", include_mid=True)
    assert len(everything) == len(set(everything)) and set(everything) <= names
    assert "blocks.1.hook_resid_mid" in everything and "blocks.1.hook_resid_mid" not in a.hook_names("all")


def test_lens_hook_names_include_the_sites_a_lens_always_reads(bridge):
    names = lensbox.LogitLens("resid_post.1").hook_names(bridge)
    assert names == ["blocks.0.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]


@pytest.mark.parametrize("sites", [None, "resid_post.1"])
def test_cache_made_with_the_filter_gives_the_same_result(bridge, sites):
    tokens = lensbox.adapt(bridge).to_tokens("The quick brown fox jumps")
    names = lensbox.LogitLens(sites).hook_names(bridge)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens, names_filter=names)
    assert set(names) <= set(cache.keys())  # (a bridge also keeps aliases of the same hooks)
    assert names == list(dict.fromkeys(names))  # no repeats
    cached = lensbox.logit_lens(bridge, tokens, sites=sites, cache=cache)
    direct = lensbox.logit_lens(bridge, tokens, sites=sites)
    assert [s.name for s in cached.sites] == [s.name for s in direct.sites]
    for field in ("kl_final", "entropy", "next_logprob", "top_logprobs"):
        torch.testing.assert_close(getattr(cached, field), getattr(direct, field), rtol=0, atol=1e-5, equal_nan=True)  # last position: no next token (NaN)
    assert torch.equal(cached.top_ids, direct.top_ids)


def test_a_cache_missing_one_hook_is_refused(bridge):
    tokens = lensbox.adapt(bridge).to_tokens("The quick brown fox")
    names = lensbox.LogitLens().hook_names(bridge)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens, names_filter=names[1:])
    with pytest.raises(InputError, match="lacks hook points"):
        lensbox.logit_lens(bridge, tokens, cache=cache)


def test_hook_names_follow_site_order_not_string_order(make_tiny_lm):
    model = make_tiny_lm(n_layers=12)
    names = lensbox.LogitLens().hook_names(model)
    assert names == ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(12)]
