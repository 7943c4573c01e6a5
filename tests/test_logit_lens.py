"""The logit lens against independent computations.

Every statistic is checked against a plain-PyTorch reference that decodes each cached
residual stream by hand (``ln_final`` then ``W_U``/``b_U``, or ``W_E^T``) without chunking
and computes KL, entropy, ranks and top-k directly in float64, and the log-probabilities
against TransformerLens 4.3's own ``transformer_lens.tools.analysis.logit_lens``.
"""

from typing import Any, Dict, List, Optional, Sequence

import pytest
import torch
from torch import Tensor

import lensbox
from lensbox import LensResult, NonFiniteError, Site

FLOAT_FIELDS = (
    "next_logprob",
    "final_top1_logprob",
    "kl_final",
    "kl_final_reverse",
    "kl_input",
    "kl_input_reverse",
    "entropy",
    "cross_entropy",
)
INT_FIELDS = ("next_rank", "final_top1_rank", "input_rank")


# ----------------------------------------------------------------------------- reference
def hook_of(site: Site, n_layers: int) -> str:
    if site.kind.value == "embed":
        return "blocks.0.hook_resid_pre"
    return f"blocks.{site.layer}.hook_{site.kind.value}"


def decode_by_hand(model: Any, resid: Tensor, unembed: str = "W_U") -> Tensor:
    """``ln_final(resid) @ W (+ b)`` in float32, straight from the model's own modules and weights."""
    with torch.no_grad():
        normed = model.ln_final(resid).float()
        if unembed == "W_U":
            return normed @ model.W_U.float() + model.b_U.float()
        return normed @ model.W_E.float().T


def reference_stats(
    logits: Dict[Site, Tensor], sites: Sequence[Site], final: Tensor, inp: Tensor, tokens: Tensor, k: int
) -> Dict[str, Tensor]:
    """All LensResult statistics, unchunked, in float64 from float32 logits ``[batch, pos, vocab]``."""
    lp = torch.stack([logits[s].double().log_softmax(-1) for s in sites], dim=1)  # [batch, site, pos, vocab]
    lpf = final.double().log_softmax(-1)[:, None]
    lpi = inp.double().log_softmax(-1)[:, None]
    p, pf, pi = lp.exp(), lpf.exp(), lpi.exp()
    batch, n_sites, n_pos, _ = lp.shape
    nxt = torch.zeros(batch, n_pos, dtype=torch.long)
    nxt[:, :-1] = tokens[:, 1:]
    nxt_idx = nxt[:, None, :, None].expand(batch, n_sites, n_pos, 1)
    next_lp = lp.gather(-1, nxt_idx)
    next_rank = (lp > next_lp).sum(-1)
    next_lp = next_lp[..., 0]
    next_lp[:, :, -1] = float("nan")
    next_rank[:, :, -1] = -1
    final_top1 = lpf[:, 0].argmax(-1)
    ft_idx = final_top1[:, None, :, None].expand(batch, n_sites, n_pos, 1)
    ft_lp = lp.gather(-1, ft_idx)
    in_lp = lp.gather(-1, tokens[:, None, :, None].expand(batch, n_sites, n_pos, 1))  # the token AT each position
    top = lp.topk(k, dim=-1)
    return {
        "next_logprob": next_lp,
        "cross_entropy": -next_lp,
        "next_rank": next_rank,
        "final_top1_logprob": ft_lp[..., 0],
        "final_top1_rank": (lp > ft_lp).sum(-1),
        "input_rank": (lp > in_lp).sum(-1),
        "kl_final": (pf * (lpf - lp)).sum(-1),
        "kl_final_reverse": (p * (lp - lpf)).sum(-1),
        "kl_input": (pi * (lpi - lp)).sum(-1),
        "kl_input_reverse": (p * (lp - lpi)).sum(-1),
        "entropy": -(p * lp).sum(-1),
        "top_ids": top.indices,
        "top_logprobs": top.values,
        "final_top1": final_top1,
        "logprobs": lp,
    }


def reference_for(model: Any, tokens: Tensor, sites: Sequence[Site], k: int, unembed: str = "W_U") -> Dict[str, Tensor]:
    n_layers = int(model.cfg.n_layers)
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    logits = {s: decode_by_hand(model, cache[hook_of(s, n_layers)], unembed) for s in sites}
    final = decode_by_hand(model, cache[f"blocks.{n_layers - 1}.hook_resid_post"], "W_U")
    inp = decode_by_hand(model, cache["blocks.0.hook_resid_pre"], unembed)
    return reference_stats(logits, sites, final, inp, tokens, k)


def assert_matches(result: LensResult, ref: Dict[str, Tensor], *, atol: float = 1e-4, rtol: float = 0.0) -> None:
    for name in FLOAT_FIELDS + ("top_logprobs",):
        got = getattr(result, name)
        assert got.dtype == torch.float32, name
        torch.testing.assert_close(got.double(), ref[name], atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"{name}: {m}")
    for name in INT_FIELDS + ("top_ids",):
        assert torch.equal(getattr(result, name), ref[name]), name
    assert torch.equal(result.final_top1, ref["final_top1"])


def full_logprobs(result: LensResult) -> Tensor:
    """``[batch, site, pos, vocab]`` log-probs from a result computed with k = vocabulary size."""
    out = torch.empty_like(result.top_logprobs)
    return out.scatter_(-1, result.top_ids, result.top_logprobs)


# ----------------------------------------------------------------------------- final layer
@pytest.mark.parametrize("compat", [False, True])
def test_final_layer_equals_model_log_softmax(tiny_lm: Any, tiny_lm_compat: Any, tiny_tokens: Tensor, compat: bool) -> None:
    model = tiny_lm_compat if compat else tiny_lm
    vocab = int(model.W_U.shape[1])
    result = lensbox.logit_lens(model, tiny_tokens, sites="final", k=vocab)
    with torch.no_grad():
        expected = model(tiny_tokens).float().log_softmax(-1)
    got = full_logprobs(result)[:, 0]
    assert (got - expected).abs().max().item() <= 1e-4


@pytest.mark.smollm2
def test_final_layer_equals_model_log_softmax_smollm2(smollm2_model: Any) -> None:
    from lensbox.lenses._stats import lens_statistics

    model = smollm2_model
    adapter = lensbox.adapt(model)
    tokens = model.to_tokens("The capital of France is Paris, and the capital of Japan is")
    final_site = Site.resid_post(adapter.n_layers - 1)
    streams = adapter.run_and_capture(tokens, [Site.embed(), final_site])
    vocab = adapter.d_vocab
    stats = lens_statistics(
        adapter, streams, [final_site], tokens, lensbox.lenses.Decoder(), final=streams[final_site], k=vocab
    )
    got = torch.empty_like(stats["top_logprobs"]).scatter_(-1, stats["top_ids"], stats["top_logprobs"])[:, 0]
    with torch.no_grad():
        expected = model(tokens).float().log_softmax(-1)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4
    # and the final layer agrees with itself: no KL, rank 0 for its own top-1
    assert stats["kl_final"].abs().max().item() <= 1e-4
    assert (stats["final_top1_rank"] == 0).all()


# ----------------------------------------------------------------------------- every layer
@pytest.mark.parametrize("include_mid", [False, True])
def test_every_layer_matches_unchunked_reference(tiny_lm: Any, tiny_tokens: Tensor, include_mid: bool) -> None:
    result = lensbox.logit_lens(tiny_lm, tiny_tokens, include_mid=include_mid, k=7, chunk_rows=10)
    sites = result.sites
    n_layers = int(tiny_lm.cfg.n_layers)
    expected_sites = [Site.embed()] + [
        s for i in range(n_layers) for s in ([Site.resid_mid(i)] if include_mid else []) + [Site.resid_post(i)]
    ]
    assert sites == expected_sites
    ref = reference_for(tiny_lm, tiny_tokens, sites, k=7)
    assert_matches(result, ref)


def test_every_layer_matches_transformer_lens_logit_lens(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    from transformer_lens.tools.analysis import logit_lens as tl_logit_lens

    vocab = int(tiny_lm.W_U.shape[1])
    result = lensbox.logit_lens(tiny_lm, tiny_tokens, k=vocab)
    with torch.no_grad():
        _, cache = tiny_lm.run_with_cache(tiny_tokens)
    tl = tl_logit_lens(tiny_lm, cache=cache, positions=None, return_type="log_probs")
    # TL's stack is 0_pre, 1_pre, ..., final_post: the same streams as embed, resid_post.0.., final.
    assert tl.labels[0] == "0_pre" and tl.labels[-1] == "final_post"
    assert len(tl.labels) == len(result.sites)
    theirs = tl.values.float().transpose(0, 1)  # [batch, site, pos, vocab]
    ours = full_logprobs(result)
    assert (ours - theirs).abs().max().item() <= 1e-4
    # and both equal the by-hand decoding of each cached stream
    ref = reference_for(tiny_lm, tiny_tokens, result.sites, k=5)
    assert (ours.double() - ref["logprobs"]).abs().max().item() <= 1e-4


@pytest.mark.smollm2
def test_every_layer_matches_references_smollm2(smollm2_model: Any) -> None:
    from transformer_lens.tools.analysis import logit_lens as tl_logit_lens

    model = smollm2_model
    tokens = model.to_tokens("It was the best of times, it was the worst of times, it was the age of")
    result = lensbox.logit_lens(model, tokens, k=10)
    assert len(result.sites) == 31
    ref = reference_for(model, tokens, result.sites, k=10)
    # Log-probs within 1e-4 absolute. KL and entropy reach ~200 nats at the embeddings,
    # where float32 itself carries ~2e-5 relative error, so those get 1e-4 + 1e-6 relative.
    assert_matches(result, ref, atol=1e-4, rtol=1e-6)
    for name in ("next_logprob", "final_top1_logprob", "top_logprobs"):
        err = (getattr(result, name).double() - ref[name]).abs().nan_to_num().max().item()
        assert err <= 1e-4, (name, err)
    # TransformerLens's own logit lens, gathered at our top tokens and next tokens.
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    tl = tl_logit_lens(model, cache=cache, positions=None, return_type="log_probs")
    theirs = tl.values.float().transpose(0, 1)  # [batch, site, pos, vocab]
    assert theirs.shape[1] == 31
    assert (theirs.gather(-1, result.top_ids) - result.top_logprobs).abs().max().item() <= 1e-4
    nxt = tokens[:, 1:][:, None, :, None].expand(-1, 31, -1, 1)
    tl_next = theirs[:, :, :-1].gather(-1, nxt)[..., 0]
    assert (tl_next - result.next_logprob[:, :, :-1]).abs().max().item() <= 1e-4


# ----------------------------------------------------------------------------- chunking
@pytest.mark.parametrize("chunk_rows", [1, 7, 512])
@pytest.mark.parametrize("include_mid", [False, True])
def test_chunked_equals_unchunked(tiny_lm: Any, tiny_tokens: Tensor, chunk_rows: int, include_mid: bool) -> None:
    assert tiny_tokens.shape[0] > 1
    result = lensbox.logit_lens(tiny_lm, tiny_tokens, include_mid=include_mid, chunk_rows=chunk_rows)
    ref = reference_for(tiny_lm, tiny_tokens, result.sites, k=5)
    assert_matches(result, ref)


def test_chunk_sizes_agree_with_each_other(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    results = [lensbox.logit_lens(tiny_lm, tiny_tokens, chunk_rows=c) for c in (1, 3, 7, 48, 512)]
    for other in results[1:]:
        for name in FLOAT_FIELDS + ("top_logprobs",):
            torch.testing.assert_close(getattr(other, name), getattr(results[0], name), atol=2e-5, rtol=0, equal_nan=True)
        for name in INT_FIELDS + ("top_ids", "final_top1"):
            assert torch.equal(getattr(other, name), getattr(results[0], name)), name


def test_vocabulary_without_padding(make_tiny_lm: Any, tiny_tokens: Tensor) -> None:
    """A vocabulary that is a multiple of the engine's 1024-column quantum takes the unpadded path."""
    model = make_tiny_lm(vocab=2048, seed=3)
    result = lensbox.logit_lens(model, tiny_tokens, chunk_rows=9, k=3)
    assert_matches(result, reference_for(model, tiny_tokens, result.sites, k=3))


# ----------------------------------------------------------------------------- model variants
def test_raw_and_compatibility_mode_agree(tiny_lm: Any, tiny_lm_compat: Any, tiny_tokens: Tensor) -> None:
    assert getattr(tiny_lm_compat, "compatibility_mode", False) and not getattr(tiny_lm, "compatibility_mode", False)
    vocab = int(tiny_lm.W_U.shape[1])
    raw = lensbox.logit_lens(tiny_lm, tiny_tokens, k=vocab)
    compat = lensbox.logit_lens(tiny_lm_compat, tiny_tokens, k=vocab)
    assert (full_logprobs(raw) - full_logprobs(compat)).abs().max().item() <= 1e-4
    for name in FLOAT_FIELDS:
        torch.testing.assert_close(getattr(raw, name), getattr(compat, name), atol=1e-4, rtol=0, equal_nan=True)
    for name in INT_FIELDS:
        assert torch.equal(getattr(raw, name), getattr(compat, name))


@pytest.mark.smollm2
def test_raw_and_compatibility_mode_agree_smollm2(smollm2_model: Any) -> None:
    compat_model = lensbox.load_model(compatibility_mode=True, progress=False)
    assert compat_model.compatibility_mode
    tokens = smollm2_model.to_tokens("The quick brown fox jumps over the lazy dog because")
    raw = lensbox.logit_lens(smollm2_model, tokens, k=10)
    compat = lensbox.logit_lens(compat_model, tokens, k=10)
    for name in ("next_logprob", "final_top1_logprob", "top_logprobs"):
        err = (getattr(raw, name) - getattr(compat, name)).abs().nan_to_num().max().item()
        assert err <= 1e-4, (name, err)
    for name in ("kl_final", "kl_final_reverse", "kl_input", "kl_input_reverse", "entropy"):
        torch.testing.assert_close(getattr(raw, name), getattr(compat, name), atol=1e-4, rtol=1e-6)


@pytest.mark.parametrize("dtype,atol", [(torch.float16, 0.05), (torch.bfloat16, 0.4)])
def test_half_precision_model_gives_float32_statistics(
    make_tiny_lm: Any, tiny_lm: Any, tiny_tokens: Tensor, dtype: torch.dtype, atol: float
) -> None:
    half = make_tiny_lm(dtype=dtype)
    assert half.W_U.dtype == dtype
    got = lensbox.logit_lens(half, tiny_tokens)
    full = lensbox.logit_lens(tiny_lm, tiny_tokens)
    for name in FLOAT_FIELDS + ("top_logprobs",):
        value = getattr(got, name)
        assert value.dtype == torch.float32, name
        torch.testing.assert_close(value, getattr(full, name), atol=atol, rtol=0, equal_nan=True)
    agree = (got.top_ids[..., 0] == full.top_ids[..., 0]).float().mean().item()
    assert agree >= 0.9


# ----------------------------------------------------------------------------- decoders
def test_embed_transpose_decoder_matches_hand_computation(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    # Untied weights, so W_E^T is a genuinely different decoder.
    assert (tiny_lm.W_E.T - tiny_lm.W_U).abs().max().item() > 0.1
    result = lensbox.logit_lens(tiny_lm, tiny_tokens, decoder="embed_t", chunk_rows=6)
    assert "W_E" in result.decoder
    ref = reference_for(tiny_lm, tiny_tokens, result.sites, k=5, unembed="W_E^T")
    assert_matches(result, ref)
    plain = lensbox.logit_lens(tiny_lm, tiny_tokens)
    assert not torch.allclose(plain.entropy, result.entropy, atol=1e-2)


def run_last_blocks_by_hand(model: Any, tokens: Tensor, stream: Tensor, start: int) -> Tensor:
    """Patch ``stream`` in as the input of block ``start``, run to the end, return the final stream."""
    n_layers = int(model.cfg.n_layers)
    out: Dict[str, Tensor] = {}

    def patch(act: Tensor, hook: Any = None) -> Tensor:
        return stream.clone()

    def grab(act: Tensor, hook: Any = None) -> None:
        out["final"] = act.detach().clone()

    with torch.no_grad():
        model.run_with_hooks(
            tokens,
            fwd_hooks=[(f"blocks.{start}.hook_resid_pre", patch), (f"blocks.{n_layers - 1}.hook_resid_post", grab)],
            return_type=None,
        )
    return out["final"]


@pytest.mark.parametrize("site", [Site.embed(), Site.resid_mid(0)])
def test_last_blocks_decoder_matches_running_blocks_by_hand(tiny_lm: Any, tiny_tokens: Tensor, site: Site) -> None:
    n_layers = int(tiny_lm.cfg.n_layers)
    blocks = 2
    result = lensbox.logit_lens(tiny_lm, tiny_tokens, sites=[site, "final"], decoder=f"last_blocks:{blocks}")
    with torch.no_grad():
        _, cache = tiny_lm.run_with_cache(tiny_tokens)
    stream = cache[hook_of(site, n_layers)]
    ran = run_last_blocks_by_hand(tiny_lm, tiny_tokens, stream, start=n_layers - blocks)
    assert not torch.allclose(ran, cache[f"blocks.{n_layers - 1}.hook_resid_post"], atol=1e-3)
    final_logits = decode_by_hand(tiny_lm, cache[f"blocks.{n_layers - 1}.hook_resid_post"])
    # The input-layer reference of a last-blocks lens is the embeddings run through the same blocks.
    inp_logits = decode_by_hand(tiny_lm, run_last_blocks_by_hand(tiny_lm, tiny_tokens, cache["blocks.0.hook_resid_pre"], n_layers - blocks))
    sites = result.sites
    logits = {sites[0]: decode_by_hand(tiny_lm, ran), sites[1]: final_logits}
    ref = reference_stats(logits, sites, final_logits, inp_logits, tiny_tokens, k=5)
    assert_matches(result, ref)


# ----------------------------------------------------------------------------- positions and sites
def test_resid_mid_sites_and_last_position(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    result = lensbox.logit_lens(tiny_lm, tiny_tokens, include_mid=True)
    n_layers = int(tiny_lm.cfg.n_layers)
    assert [s for s in result.sites if s.kind.value == "resid_mid"] == [Site.resid_mid(i) for i in range(n_layers)]
    # The last position has no next token: NaN log-prob / cross-entropy and rank -1, and only there.
    assert torch.isnan(result.next_logprob[:, :, -1]).all()
    assert torch.isnan(result.cross_entropy[:, :, -1]).all()
    assert (result.next_rank[:, :, -1] == -1).all()
    assert torch.isfinite(result.next_logprob[:, :, :-1]).all()
    assert (result.next_rank[:, :, :-1] >= 0).all()
    # Everything else is defined at the last position too.
    for name in ("kl_final", "entropy", "final_top1_logprob"):
        assert torch.isfinite(getattr(result, name)).all(), name
    assert (result.final_top1_rank >= 0).all()


# ----------------------------------------------------------------------------- non-finite activations
def cache_with(model: Any, tokens: Tensor, poison: Dict[str, Any]) -> Dict[str, Tensor]:
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    out = {name: act.clone() for name, act in cache.items()}
    for name, (index, value) in poison.items():
        out[name][index] = value
    return out


def test_nan_activation_raises_by_default(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    cache = cache_with(tiny_lm, tiny_tokens, {"blocks.1.hook_resid_post": ((0, 3, 0), float("nan"))})
    with pytest.raises(NonFiniteError) as info:
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)
    message = str(info.value)
    assert "resid_post.1" in message and "[0, 3]" in message and "on_nonfinite" in message


def test_nan_injected_by_a_hook_raises(make_tiny_lm: Any, tiny_tokens: Tensor) -> None:
    model = make_tiny_lm(seed=5)

    def poison(act: Tensor, hook: Any = None) -> Tensor:
        act = act.clone()
        act[1, 4, 2] = float("inf")
        return act

    model.add_hook("blocks.0.hook_resid_post", poison)
    try:
        with pytest.raises(NonFiniteError, match="resid_post"):
            lensbox.logit_lens(model, tiny_tokens)
    finally:
        model.reset_hooks()
    assert torch.isfinite(lensbox.logit_lens(model, tiny_tokens).entropy).all()


def test_mark_policy_gives_nan_exactly_at_bad_cells(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    clean = lensbox.logit_lens(tiny_lm, tiny_tokens)
    cache = cache_with(tiny_lm, tiny_tokens, {"blocks.1.hook_resid_post": ((0, 3, 0), float("nan"))})
    marked = lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache, on_nonfinite="mark")
    row = marked.sites.index(Site.resid_post(1))
    bad = torch.zeros_like(clean.entropy, dtype=torch.bool)
    bad[0, row, 3] = True
    for name in FLOAT_FIELDS:
        got, want = getattr(marked, name), getattr(clean, name)
        assert torch.isnan(got[bad]).all(), name
        torch.testing.assert_close(got[~bad], want[~bad], atol=1e-6, rtol=0, equal_nan=True)
    for name in INT_FIELDS:
        got, want = getattr(marked, name), getattr(clean, name)
        assert (got[bad] == -1).all(), name
        assert torch.equal(got[~bad], want[~bad]), name


def test_mark_policy_with_bad_final_stream(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    n_layers = int(tiny_lm.cfg.n_layers)
    clean = lensbox.logit_lens(tiny_lm, tiny_tokens)
    cache = cache_with(tiny_lm, tiny_tokens, {f"blocks.{n_layers - 1}.hook_resid_post": ((1, 5, 7), float("inf"))})
    marked = lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache, on_nonfinite="mark")
    # Comparisons with the final distribution are undefined at (1, 5) for every site ...
    for name in ("kl_final", "kl_final_reverse", "final_top1_logprob"):
        assert torch.isnan(getattr(marked, name)[1, :, 5]).all(), name
    assert (marked.final_top1_rank[1, :, 5] == -1).all()
    # ... while a site's own statistics elsewhere are untouched.
    embed = marked.sites.index(Site.embed())
    for name in ("entropy", "next_logprob", "kl_input"):
        torch.testing.assert_close(getattr(marked, name)[1, embed, 5], getattr(clean, name)[1, embed, 5], atol=1e-6, rtol=0)
    keep = torch.ones_like(clean.entropy, dtype=torch.bool)
    keep[1, :, 5] = False
    torch.testing.assert_close(marked.kl_final[keep], clean.kl_final[keep], atol=1e-6, rtol=0)


# ----------------------------------------------------------------------------- raw logits
def test_top_logits_are_the_raw_decoded_logits(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    """``top_logits`` (the heatmap's 'logit' colour) are ln_final(resid) @ W_U + b_U at the top-k ids."""
    n_layers = int(tiny_lm.cfg.n_layers)
    sites = [Site.embed(), Site.resid_post(0), Site.resid_post(n_layers - 1)]
    result = lensbox.logit_lens(tiny_lm, tiny_tokens, sites=sites, k=3)
    with torch.no_grad():
        _, cache = tiny_lm.run_with_cache(tiny_tokens)
        model_logits = tiny_lm(tiny_tokens).float()
    assert result.top_logits is not None
    for i, site in enumerate(sites):
        by_hand = decode_by_hand(tiny_lm, cache[hook_of(site, n_layers)], "W_U").float()
        expected = by_hand.gather(-1, result.top_ids[:, i])
        assert (result.top_logits[:, i] - expected).abs().max().item() <= 1e-4, site.name
    # the final site's raw logits are the model's own logits (raw bridge)
    expected_final = model_logits.gather(-1, result.top_ids[:, -1])
    assert (result.top_logits[:, -1] - expected_final).abs().max().item() <= 1e-4
    assert torch.equal(result.metric("logit"), result.top_logits[..., 0])
    df = result.to_pandas()
    assert df["top1_logit"].tolist() == result.top_logits[..., 0].reshape(-1).tolist()
    # log-probs and logits differ by one log-normaliser per cell
    gap = result.top_logits - result.top_logprobs
    assert (gap - gap[..., :1]).abs().max().item() <= 1e-4
