"""The architecture matrix (issue 11, section 1), on TransformerLens 4.x: for each model family, a tiny
random-weight TransformerBridge booted offline from a transformers config (no hub), raw and in
compatibility mode, must be decoded exactly by every lens.

Families (see ``models.ARCH_FAMILIES``): GPT-2 (LayerNorm + learned positions, tied embeddings), GPT-NeoX
(parallel attention + partial rotary), Llama (RMSNorm + GQA + gated MLP), Gemma-2 (final-logit and attention
soft-caps), Qwen2 (biased q/k/v). For each:

(a) the logit lens's final site equals the model's own log-softmax within 1e-5, against the Hugging Face
    model's logits computed before the bridge was built (an independent forward pass), and lensbox's run-time
    final-site check runs, passes, and refuses the same model with a wrong unembedding bias;
(b) the identity tuned lens gives the logit lens's statistics;
(c) ``residual_norms`` runs and (raw mode) matches the Hugging Face hidden states' norms.

The HookedTransformer (TransformerLens 2.18 / 3.9) matrix lives in ``tests/compat`` (``.ci/compat.sh``).
"""

from typing import Any, Dict, Tuple

import pytest
import torch

import lensbox
from lensbox import ModelError
from lensbox.core import ModelAdapter, Site
from lensbox.lenses import TunedLens
from lensbox.lenses import _stats

from models import ARCH_FAMILIES, build_tiny_hf

N_LAYERS = 2
MODES = ("raw", "compat")
CASES = [(f, m) for f in ARCH_FAMILIES for m in MODES]
IDS = [f"{f}-{m}" for f, m in CASES]

STATS = (
    "top_ids", "top_logprobs", "final_top1", "next_logprob", "next_rank", "final_top1_logprob", "final_top1_rank",
    "kl_final", "kl_final_reverse", "kl_input", "kl_input_reverse", "entropy", "cross_entropy",
)


class Built:
    """One family in one mode: the bridge, and what the untouched Hugging Face model computed on the tokens."""

    def __init__(self, family: str, mode: str, model: Any, tokens: torch.Tensor) -> None:
        hf = build_tiny_hf(family, n_layers=N_LAYERS)  # the same weights as the bridge's (same seed), untouched
        self.family, self.mode, self.config = family, mode, hf.config
        with torch.no_grad():
            out = hf(tokens, output_hidden_states=True)
        self.hf_logprobs = out.logits.double().log_softmax(-1)
        self.hf_hidden = [h.detach().clone() for h in out.hidden_states]
        self.model = model  # the session-wide bridge (conftest.tiny_family): booted once for every test file


@pytest.fixture(scope="module")
def built(tiny_family: Any, tiny_tokens: torch.Tensor) -> Any:
    cache: Dict[Tuple[str, str], Built] = {}

    def get(family: str, mode: str) -> Built:
        if (family, mode) not in cache:
            cache[(family, mode)] = Built(family, mode, tiny_family(family, mode), tiny_tokens)
        return cache[(family, mode)]

    return get


def test_each_family_has_its_feature(built: Any) -> None:
    """The configs really exercise what the matrix claims (else a family could pass vacuously)."""
    cfg = {f: built(f, "raw").model.cfg for f in ARCH_FAMILIES}
    hf = {f: built(f, "raw").config for f in ARCH_FAMILIES}
    assert cfg["gpt2"].normalization_type == "LN" and cfg["gpt2"].positional_embedding_type == "standard"
    assert cfg["neox"].parallel_attn_mlp and cfg["neox"].positional_embedding_type == "rotary"
    assert hf["neox"].rope_parameters["partial_rotary_factor"] == 0.5
    assert cfg["llama"].normalization_type == "RMS" and cfg["llama"].gated_mlp
    assert cfg["llama"].n_key_value_heads == 2 < cfg["llama"].n_heads
    assert cfg["gemma2"].output_logits_soft_cap == 2.0 and cfg["gemma2"].attn_scores_soft_cap == 5.0
    qwen = built("qwen2", "raw").model.original_model.model.layers[0].self_attn
    assert all(getattr(qwen, p).bias is not None for p in ("q_proj", "k_proj", "v_proj"))
    assert qwen.o_proj.bias is None
    assert float(qwen.q_proj.bias.detach().abs().min()) > 0  # randomised by the builder (HF initialises them to 0)


def _spy_final_check(monkeypatch: pytest.MonkeyPatch) -> list:
    seen: list = []
    real = _stats._final_excess

    def spy(model_logits: torch.Tensor, ours: torch.Tensor) -> torch.Tensor:
        out = real(model_logits, ours)
        seen.append(float(out[1]))
        return out

    monkeypatch.setattr(_stats, "_final_excess", spy)
    return seen


@pytest.mark.parametrize(("family", "mode"), CASES, ids=IDS)
def test_final_site_is_the_model_log_softmax(
    built: Any, family: str, mode: str, tiny_tokens: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = built(family, mode)
    seen = _spy_final_check(monkeypatch)
    res = lensbox.logit_lens(b.model, tiny_tokens, k=8)
    assert seen and max(seen) <= 1e-5, seen  # lensbox's own run-time check ran and found the final site exact
    final = res.site_index("final")
    want = b.hf_logprobs.topk(8, dim=-1)
    torch.testing.assert_close(res.top_logprobs[:, final].double(), want.values, atol=1e-5, rtol=0)
    assert torch.equal(res.top_ids[:, final], want.indices)
    # Whole distribution, not only its top: entropy and next-token log-prob against the HF model.
    hf_entropy = -(b.hf_logprobs.exp() * b.hf_logprobs).sum(-1)
    torch.testing.assert_close(res.entropy[:, final].double(), hf_entropy, atol=1e-5, rtol=0)
    nxt = b.hf_logprobs[:, :-1].gather(-1, tiny_tokens[:, 1:, None]).squeeze(-1)
    torch.testing.assert_close(res.next_logprob[:, final, :-1].double(), nxt, atol=1e-5, rtol=0)
    assert float(res.kl_final[:, final].abs().max()) <= 1e-6
    # And the bridge itself agrees with the HF model (the reference is the model's own output).
    with torch.no_grad():
        own = b.model(tiny_tokens).double().log_softmax(-1)
    torch.testing.assert_close(own, b.hf_logprobs, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("family", "mode"), CASES, ids=IDS)
def test_a_wrong_unembedding_bias_is_refused(
    built: Any, family: str, mode: str, tiny_tokens: torch.Tensor, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = built(family, mode)
    adapter = lensbox.adapt(b.model)
    bias = 0.5 * torch.randn(adapter.d_vocab, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(ModelAdapter, "b_U", property(lambda self: bias))
    with pytest.raises(ModelError, match="does not reproduce"):
        lensbox.logit_lens(b.model, tiny_tokens)


@pytest.mark.parametrize(("family", "mode"), CASES, ids=IDS)
def test_identity_tuned_lens_is_the_logit_lens(built: Any, family: str, mode: str, tiny_tokens: torch.Tensor) -> None:
    model = built(family, mode).model
    logit = lensbox.logit_lens(model, tiny_tokens, k=5)
    tuned = lensbox.tuned_lens(model, tiny_tokens, TunedLens.identity(model), k=5)
    assert tuned.sites == logit.sites
    assert [Site.embed(), Site.resid_post(0), Site.resid_post(N_LAYERS - 1)] == logit.sites
    for name in STATS:
        a, b = getattr(tuned, name), getattr(logit, name)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, equal_nan=True, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize(("family", "mode"), CASES, ids=IDS)
def test_residual_norms(built: Any, family: str, mode: str, tiny_tokens: torch.Tensor) -> None:
    b = built(family, mode)
    norms = lensbox.residual_norms(b.model, tiny_tokens)
    assert norms.sites == [Site.embed(), Site.resid_post(0), Site.resid_post(N_LAYERS - 1)]
    assert norms.norms.shape == (2, N_LAYERS + 1, tiny_tokens.shape[1])
    assert bool(torch.isfinite(norms.norms).all()) and float(norms.norms.min()) > 0
    if mode == "raw":  # compatibility mode centres the residual basis, so only the raw stream is HF's
        want = b.hf_hidden[1].norm(dim=-1)  # HF's hidden state after block 0 = resid_post 0
        torch.testing.assert_close(norms.norms[:, 1], want, atol=1e-4, rtol=1e-5)
