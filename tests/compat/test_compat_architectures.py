"""The architecture matrix on HookedTransformer (TransformerLens 2.18 / 3.9; issue 11, section 1).

Each family is a tiny random-weight HookedTransformer built from a ``HookedTransformerConfig`` (no hub, no
Hugging Face model): GPT-2-like (LayerNorm + learned positions), NeoX-like (parallel attention + partial
rotary), Llama-like (RMSNorm + GQA + gated MLP), Gemma-2-like (logit and attention soft-caps), Qwen-like
(biased q/k/v). Every 1-D parameter (norm scales and shifts, b_U, MLP biases) is randomised, and the q/k/v
biases too for the Qwen-like model. For each: the logit lens's final site is the model's own log-softmax
within 1e-5 (and lensbox's run-time check ran), the identity tuned lens gives the logit lens's statistics, and
``residual_norms`` matches ``run_with_cache``. The 4.x TransformerBridge matrix is tests/test_architectures.py.
"""

from typing import Any, Dict

import pytest
import torch

pytest.importorskip("transformer_lens.HookedTransformer", exc_type=ImportError)

from transformer_lens import HookedTransformer, HookedTransformerConfig  # noqa: E402

import lensbox  # noqa: E402
from lensbox.lenses import TunedLens, _stats  # noqa: E402

BASE = dict(n_layers=2, d_model=32, n_ctx=64, d_head=8, n_heads=4, d_mlp=64, d_vocab=320, act_fn="gelu",
            initializer_range=0.3, seed=0)
ROTARY_GQA = dict(normalization_type="RMS", positional_embedding_type="rotary", rotary_dim=8, n_key_value_heads=2,
                  gated_mlp=True)
FAMILIES: Dict[str, Dict[str, Any]] = {
    "gpt2": dict(normalization_type="LN", positional_embedding_type="standard"),
    "neox": dict(normalization_type="LN", positional_embedding_type="rotary", rotary_dim=4, parallel_attn_mlp=True),
    "llama": dict(ROTARY_GQA, act_fn="silu"),
    "gemma2": dict(ROTARY_GQA, act_fn="gelu_pytorch_tanh", output_logits_soft_cap=2.0, attn_scores_soft_cap=5.0),
    "qwen2": dict(ROTARY_GQA, act_fn="silu"),
}
STATS = (
    "top_ids", "top_logprobs", "final_top1", "next_logprob", "next_rank", "final_top1_logprob", "final_top1_rank",
    "kl_final", "kl_final_reverse", "kl_input", "kl_input_reverse", "entropy", "cross_entropy",
)
TOKENS = torch.randint(1, 300, (2, 12), generator=torch.Generator().manual_seed(1))


def build(family: str) -> Any:
    model = HookedTransformer(HookedTransformerConfig(**{**BASE, **FAMILIES[family]})).eval()
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in model.named_parameters():
            qkv_bias = name.endswith(("b_Q", "b_K", "b_V", "_b_K", "_b_V"))
            if param.ndim == 1 or (family == "qwen2" and qkv_bias):
                param.add_(0.1 * torch.randn(param.shape, generator=gen))
    return model


@pytest.fixture(scope="module", params=list(FAMILIES), ids=list(FAMILIES))
def model(request: pytest.FixtureRequest) -> Any:
    return build(request.param)


def test_final_site_is_the_model_log_softmax(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list = []
    real = _stats._final_excess

    def spy(model_logits: torch.Tensor, ours: torch.Tensor) -> torch.Tensor:
        out = real(model_logits, ours)
        seen.append(float(out[1]))
        return out

    monkeypatch.setattr(_stats, "_final_excess", spy)
    res = lensbox.logit_lens(model, TOKENS, k=8)
    assert seen and max(seen) <= 1e-5, seen  # lensbox's run-time check ran and found the final site exact
    with torch.no_grad():
        want = model(TOKENS).double().log_softmax(-1)
    final = res.site_index("final")
    top = want.topk(8, dim=-1)
    torch.testing.assert_close(res.top_logprobs[:, final].double(), top.values, atol=1e-5, rtol=0)
    assert torch.equal(res.top_ids[:, final], top.indices)
    entropy = -(want.exp() * want).sum(-1)
    torch.testing.assert_close(res.entropy[:, final].double(), entropy, atol=1e-5, rtol=0)
    if model.cfg.output_logits_soft_cap > 0:
        assert float(res.top_logits[:, final].abs().max()) <= model.cfg.output_logits_soft_cap


def test_identity_tuned_lens_is_the_logit_lens(model: Any) -> None:
    logit = lensbox.logit_lens(model, TOKENS, k=5)
    tuned = lensbox.tuned_lens(model, TOKENS, TunedLens.identity(model), k=5)
    assert tuned.sites == logit.sites and len(logit.sites) == 3
    for name in STATS:
        torch.testing.assert_close(getattr(tuned, name), getattr(logit, name), atol=1e-6, rtol=0, equal_nan=True)


def test_residual_norms_match_run_with_cache(model: Any) -> None:
    norms = lensbox.residual_norms(model, TOKENS)
    with torch.no_grad():
        _, cache = model.run_with_cache(TOKENS)
    want = torch.stack(
        [cache["blocks.0.hook_resid_pre"], cache["blocks.0.hook_resid_post"], cache["blocks.1.hook_resid_post"]], 1
    ).norm(dim=-1)
    torch.testing.assert_close(norms.norms, want, atol=1e-5, rtol=1e-5)


def test_weight_processing_leaves_the_statistics_unchanged(model: Any) -> None:
    """fold_ln, center_writing_weights, center_unembed (and the value-bias folding process_weights_ always does)
    change the weights, not the model's function, so no logit-lens statistic moves beyond 1e-4. With a logit
    soft-cap, centring the unembedding does change the model's own output (the cap is not shift-invariant;
    the 4.x bridge disables it for such models), so the Gemma-2-like model is processed without it."""
    import copy

    processed = copy.deepcopy(model)
    softcap = model.cfg.output_logits_soft_cap > 0
    processed.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=not softcap)
    before = lensbox.logit_lens(model, TOKENS, k=5)
    after = lensbox.logit_lens(processed, TOKENS, k=5)
    assert after.sites == before.sites
    for name in STATS:
        if name not in ("top_ids", "final_top1", "next_rank", "final_top1_rank"):  # integers: near-ties may swap
            torch.testing.assert_close(getattr(after, name), getattr(before, name), atol=1e-4, rtol=0, equal_nan=True)
    assert torch.equal(after.final_top1, before.final_top1)
