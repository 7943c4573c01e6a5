"""Refuse rather than guess: the lens decoders apply the model's logit soft-cap, and a lens whose decoded
final stream does not reproduce the model's own log-softmax raises ModelError naming the model class."""

from typing import Any

import pytest
import torch

import lensbox
from lensbox import ModelError
from lensbox.core._adapter import ModelAdapter
from lensbox.lenses import LogitLens, TunedLens
from lensbox.lenses import _decoders, _kernels

from models import build_tiny_lm


@pytest.fixture(scope="module")
def gemma2(tiny_tokenizer: Any) -> Any:
    """A tiny random Gemma-2 bridge: final-logit soft-cap 2.0 (logits would reach ~+-20 without it)."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(
        vocab_size=320, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=8, max_position_embeddings=128, initializer_range=0.3,
        final_logit_softcapping=2.0, attn_logit_softcapping=50.0, query_pre_attn_scalar=8, sliding_window=64,
    )
    state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        hf = Gemma2ForCausalLM(cfg).eval()
    finally:
        torch.random.set_rng_state(state)
    return build_tiny_lm(tiny_tokenizer, hf_model=hf)


def run_with_logits(model: Any, lens: Any, tokens: torch.Tensor, **kw: Any) -> Any:
    """What analyze() does for an analyzer with needs_logits: one forward pass, its logits handed over."""
    adapter = lensbox.adapt(model)
    with torch.no_grad():
        logits = model(tokens)
    streams = adapter.run_and_capture(tokens, lens.sites(adapter))
    return lens.run(adapter, streams, tokens, logits=logits, **kw)


def test_softcapped_final_site_equals_model_log_softmax(gemma2: Any, tiny_tokens: torch.Tensor) -> None:
    assert lensbox.adapt(gemma2).model.cfg.output_logits_soft_cap == 2.0
    res = run_with_logits(gemma2, LogitLens(k=8), tiny_tokens)
    with torch.no_grad():
        want = gemma2(tiny_tokens).double().log_softmax(-1).topk(8, dim=-1)
    final = res.site_index("final")
    torch.testing.assert_close(res.top_logprobs[:, final].double(), want.values, atol=1e-5, rtol=0)
    assert torch.equal(res.top_ids[:, final], want.indices)
    assert float(res.top_logits[:, final].abs().max()) <= 2.0  # capped
    assert float(res.kl_final[:, final].max()) == 0.0


def test_lens_without_the_softcap_is_refused(gemma2: Any, tiny_tokens: torch.Tensor, monkeypatch: Any) -> None:
    monkeypatch.setattr(_decoders, "logit_softcap", lambda adapter: None)
    monkeypatch.setattr(_kernels, "logit_softcap", lambda adapter: None)
    with pytest.raises(ModelError, match="TransformerBridge") as info:
        run_with_logits(gemma2, LogitLens(), tiny_tokens)
    assert "does not reproduce" in str(info.value) and "soft-cap" in str(info.value)
    with pytest.raises(ModelError, match="does not reproduce"):
        run_with_logits(gemma2, TunedLens.identity(gemma2), tiny_tokens)


def test_broken_unembedding_bias_is_refused(tiny_lm: Any, tiny_tokens: torch.Tensor, monkeypatch: Any) -> None:
    run_with_logits(tiny_lm, LogitLens(), tiny_tokens)  # the intact decoder passes
    bias = 0.05 * torch.randn(lensbox.adapt(tiny_lm).d_vocab, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(ModelAdapter, "b_U", property(lambda self: bias))
    with pytest.raises(ModelError, match="TransformerBridge"):
        run_with_logits(tiny_lm, LogitLens(chunk_rows=5), tiny_tokens)


def test_a_softcap_the_model_does_not_apply_is_refused(make_tiny_lm: Any, tiny_tokens: torch.Tensor) -> None:
    model = make_tiny_lm(seed=3)
    model.cfg.output_logits_soft_cap = 5.0  # the config says capped; the Llama forward pass is not
    with pytest.raises(ModelError, match="soft-cap read from the config: 5.0"):
        run_with_logits(model, LogitLens(), tiny_tokens)


def test_no_logits_no_check(gemma2: Any, tiny_tokens: torch.Tensor, monkeypatch: Any) -> None:
    """Streams from a user's cache come without logits: nothing to compare, no error."""
    monkeypatch.setattr(_kernels, "logit_softcap", lambda adapter: None)
    adapter = lensbox.adapt(gemma2)
    lens = LogitLens()
    streams = adapter.run_and_capture(tiny_tokens, lens.sites(adapter))
    lens.run(adapter, streams, tiny_tokens, logits=None)


def test_analyze_hands_over_the_logits(gemma2: Any, tiny_tokens: torch.Tensor, monkeypatch: Any) -> None:
    """End to end: logit_lens / tuned_lens run the check on the forward pass's logits, and with a user's cache
    on the logits of the cache check's pass (they follow from the cached final stream)."""
    res = lensbox.logit_lens(gemma2, tiny_tokens)
    assert float(res.kl_final[:, -1].max()) == 0.0
    _, cache = gemma2.run_with_cache(tiny_tokens)
    monkeypatch.setattr(_kernels, "logit_softcap", lambda adapter: None)
    with pytest.raises(ModelError, match="Gemma|TransformerBridge"):
        lensbox.logit_lens(gemma2, tiny_tokens)
    with pytest.raises(ModelError, match="does not reproduce"):
        lensbox.lenses.tuned_lens(gemma2, tiny_tokens, TunedLens.identity(gemma2))
    with pytest.raises(ModelError, match="does not reproduce"):
        lensbox.logit_lens(gemma2, tiny_tokens, cache=cache)
