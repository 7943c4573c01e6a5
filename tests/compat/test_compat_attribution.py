"""Component sites and direct logit attribution on HookedTransformer (TransformerLens 2.18 / 3.9; issue 9).

Tiny random HookedTransformers built from a config: GPT-2-like (LayerNorm, learned positions, b_O) and
Llama-like (RMSNorm, grouped-query attention: 4 query heads over 2 key/value heads). The per-head outputs
lensbox computes from hook_z add up (with b_O) to the model's own hook_attn_out.
"""

from typing import Any

import pytest
import torch

pytest.importorskip("transformer_lens.HookedTransformer", exc_type=ImportError)

from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

import lensbox  # noqa: E402
from lensbox import SiteError  # noqa: E402

BASE = dict(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_mlp=64, d_vocab=320, act_fn="gelu",
            initializer_range=0.3, seed=0)
FAMILIES = {
    "gpt2": dict(normalization_type="LN", positional_embedding_type="standard"),
    "llama": dict(normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8, n_key_value_heads=2,
                  gated_mlp=True, act_fn="silu"),
}
TOKENS = torch.randint(1, 300, (2, 12), generator=torch.Generator().manual_seed(1))


def build(family: str) -> Any:
    model = HookedTransformer(HookedTransformerConfig(**{**BASE, **FAMILIES[family]})).eval()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _, param in model.named_parameters():
            if param.ndim == 1:
                param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model


@pytest.fixture(scope="module", params=list(FAMILIES), ids=list(FAMILIES))
def model(request: pytest.FixtureRequest) -> Any:
    return build(request.param)


def test_head_outputs_add_up_to_attn_out(model: Any) -> None:
    adapter = lensbox.adapt(model)
    names = adapter.hook_names("tok_embed,head.0.1,attn_out.1,mlp_out.0")
    assert names == ["hook_embed", "blocks.0.attn.hook_z", "blocks.0.hook_mlp_out", "blocks.1.hook_attn_out"]
    _, cache = model.run_with_cache(TOKENS)
    total = cache["blocks.0.hook_resid_pre"].clone()
    for i in range(2):
        heads = adapter.head_outputs(i, cache[f"blocks.{i}.attn.hook_z"])
        torch.testing.assert_close(heads.sum(-2) + adapter.b_O(i), cache[f"blocks.{i}.hook_attn_out"],
                                   atol=1e-5, rtol=1e-5)
        total += cache[f"blocks.{i}.hook_attn_out"] + cache[f"blocks.{i}.hook_mlp_out"]
    torch.testing.assert_close(total, cache["blocks.1.hook_resid_post"], atol=1e-5, rtol=1e-5)
    store, _ = adapter.capture(TOKENS, adapter.sites("head.1.3", components=True))
    torch.testing.assert_close(store[lensbox.Site.head_out(1, 3)],
                               cache["blocks.1.attn.hook_z"][:, :, 3] @ model.W_O[1, 3], atol=1e-6, rtol=1e-6)
    with pytest.raises(SiteError, match=r"Head 4 does not exist(.|\n)*0\.\.3"):
        adapter.site("head.1.4")
    if model.cfg.positional_embedding_type == "standard":
        assert adapter.site("pos_embed") == lensbox.Site.pos_embed()
    else:
        with pytest.raises(SiteError, match="no positional embedding"):
            adapter.site("pos_embed")


def test_logit_attribution_matches_transformer_lens(model: Any) -> None:
    """Exact (the sum is the model's own logit), and equal to TL's recipe (stack_head_results + logit_attrs;
    decompose_resid + logit_attrs) on a HookedTransformer, whose LayerNorm/RMSNorm weights this TL recipe
    does not apply: compared on the model with its final norm weight set to 1 (TL's assumption)."""
    with torch.no_grad():
        logits = model(TOKENS).float()
    res = lensbox.logit_attribution(model, TOKENS, target=17, minus=42)
    torch.testing.assert_close(res.contributions.sum(-1), logits[..., 17] - logits[..., 42], atol=1e-4, rtol=0)
    attn = torch.stack([res.contributions[..., res.components.index(f"attn_out.{i}")] for i in range(2)], -1)
    torch.testing.assert_close(res.heads.sum(-1) + res.attn_bias, attn, atol=1e-4, rtol=0)
    nxt = lensbox.logit_attribution(model, TOKENS)
    want = logits[:, :-1].gather(-1, TOKENS[:, 1:, None])[..., 0]
    torch.testing.assert_close(nxt.contributions.sum(-1)[:, :-1], want, atol=1e-4, rtol=0)

    plain = build(model.cfg.positional_embedding_type == "standard" and "gpt2" or "llama")
    with torch.no_grad():
        plain.ln_final.w.fill_(1.0)
        if hasattr(plain.ln_final, "b"):
            plain.ln_final.b.zero_()
    res = lensbox.logit_attribution(plain, TOKENS, target=17, minus=42)
    _, cache = plain.run_with_cache(TOKENS)
    full = lambda t: torch.full_like(TOKENS, t)  # noqa: E731
    ref_heads = cache.logit_attrs(cache.stack_head_results(layer=-1), tokens=full(17), incorrect_tokens=full(42))
    torch.testing.assert_close(res.heads.reshape(*TOKENS.shape, -1).permute(2, 0, 1), ref_heads, atol=1e-4, rtol=0)
    stack = cache.decompose_resid(layer=-1)
    ref = cache.logit_attrs(stack, tokens=full(17), incorrect_tokens=full(42))
    torch.testing.assert_close(res.contributions[..., :-1].permute(2, 0, 1), ref, atol=1e-4, rtol=0)
