"""Checks shared by the tiny-model and SmolLM2 HookedTransformer tests.

Each check compares lensbox against an independent computation: TransformerLens's
own ``run_with_cache`` and logits, the Hugging Face forward pass, or the final
RMSNorm and unembedding written out in plain PyTorch.
"""

from typing import Any, List, Sequence

import torch

import lensbox
from lensbox import Site


def check_adapter(ht: Any, n_layers: int, d_model: int, d_vocab: int) -> Any:
    adapter = lensbox.adapt(ht)
    assert adapter.generation == "hooked-transformer"
    assert (adapter.n_layers, adapter.d_model, adapter.d_vocab) == (n_layers, d_model, d_vocab)
    names = set(ht.hook_dict)
    sites = adapter.sites("all", include_mid=True)
    assert len(sites) == 2 * n_layers + 1
    for site in sites + [Site.resid_pre(n_layers - 1)]:
        assert adapter.hook_name(site) in names, site
    return adapter


def check_decode_reproduces_logits(ht: Any, tokens: torch.Tensor) -> None:
    adapter = lensbox.adapt(ht)
    with torch.no_grad():
        logits, cache = ht.run_with_cache(tokens)
        decoded = adapter.decode(cache[adapter.hook_name(Site.resid_post(adapter.n_layers - 1))])
    assert decoded.shape == logits.shape
    assert (decoded - logits).abs().max() <= 1e-4


def check_run_and_capture(ht: Any, tokens: torch.Tensor, sites: Sequence[Site]) -> None:
    adapter = lensbox.adapt(ht)
    got = adapter.run_and_capture(tokens, sites)
    with torch.no_grad():
        _, cache = ht.run_with_cache(tokens)
    assert set(got) == set(sites)
    for site in sites:
        ref = cache[adapter.hook_name(site)]
        assert got[site].shape == ref.shape == (*tokens.shape, adapter.d_model)
        assert (got[site] - ref).abs().max() <= 1e-6, site


def check_streams_match_hugging_face(ht: Any, hf: Any, tokens: torch.Tensor) -> None:
    """resid_post.i is the Hugging Face hidden state after block i (the last HF state is normed, so skipped)."""
    adapter = lensbox.adapt(ht)
    n = adapter.n_layers
    sites: List[Site] = [Site.embed()] + [Site.resid_post(i) for i in range(n - 1)]
    got = adapter.run_and_capture(tokens, sites)
    with torch.no_grad():
        hidden = hf(tokens, output_hidden_states=True).hidden_states
    assert len(hidden) == n + 1
    for i, site in enumerate(sites):
        ref = hidden[i]
        scale = float(ref.abs().max())
        assert (got[site] - ref).abs().max() <= 1e-4 * max(scale, 1.0), site


def manual_logprobs(ht: Any, stream: torch.Tensor) -> torch.Tensor:
    """Final RMSNorm and unembedding by hand, in float64."""
    x = stream.double()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + ht.cfg.eps)
    if ht.cfg.normalization_type == "RMS":  # unfolded: the norm keeps its own weight
        x = x * ht.ln_final.w.double()
    logits = x @ ht.W_U.double() + ht.b_U.double()
    return logits.log_softmax(-1)


# float32 against float64: on SmolLM2 (vocabulary 49,152) lensbox's log-probs are off by
# up to 4e-5 and its entropies (a float32 dot product over the vocabulary) by up to 3e-4.
LOGPROB_TOL = 2e-4
ENTROPY_TOL = 1e-3


def check_logit_lens_by_hand(ht: Any, tokens: torch.Tensor, sites: Any = "all", k: int = 5) -> None:
    adapter = lensbox.adapt(ht)
    result = lensbox.logit_lens(ht, tokens, sites=sites, include_mid=True, k=k)
    assert result.sites == adapter.sites(sites, include_mid=True)
    with torch.no_grad():
        _, cache = ht.run_with_cache(tokens)
    n_pos = tokens.shape[1]
    for i, site in enumerate(result.sites):
        lp = manual_logprobs(ht, cache[adapter.hook_name(site)])  # [batch, pos, vocab]
        top = lp.topk(k, dim=-1)
        assert (result.top_logprobs[:, i].double() - top.values).abs().max() <= LOGPROB_TOL, site
        # The ids the lens reports carry those log-probs (robust to near-ties in order).
        at_ids = lp.gather(-1, result.top_ids[:, i].long())
        assert (at_ids - result.top_logprobs[:, i].double()).abs().max() <= LOGPROB_TOL, site
        nxt = lp[:, :-1].gather(-1, tokens[:, 1:, None]).squeeze(-1)
        assert (result.next_logprob[:, i, : n_pos - 1].double() - nxt).abs().max() <= LOGPROB_TOL, site
        assert torch.isnan(result.next_logprob[:, i, -1]).all()
        entropy = -(lp.exp() * lp).sum(-1)
        assert (result.entropy[:, i].double() - entropy).abs().max() <= ENTROPY_TOL, site
