"""The one KL / log-softmax kernel (lensbox.lenses.log_softmax / kl_divergence) and exactness at the final site."""

from typing import Any

import pytest
import torch

import lensbox
from lensbox import Site
from lensbox.lenses import TunedLens, evaluate, kl_divergence, log_softmax

from test_tuned_lens_models import random_windows, tiny_model


def test_log_softmax_is_float32_exact_on_wide_logits() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(16, 49152, generator=gen) * 30 + 150  # SmolLM2-like range and vocabulary
    want = z.double().log_softmax(-1)
    got = log_softmax(z)
    assert got.dtype == torch.float32
    # within two float32 ulps of the largest values (~-270: ulp 3e-5); centring itself rounds that much
    assert float((got.double() - want).abs().max()) < 6e-5
    assert float((got.double().exp().sum(-1) - 1).abs().max()) < 1e-5


def test_kl_divergence_matches_float64_and_is_zero_on_identical_rows() -> None:
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 8, 3000, generator=gen) * 5
    la, lb = log_softmax(a), log_softmax(b)
    want = (la.double().exp() * (la.double() - lb.double())).sum(-1)
    torch.testing.assert_close(kl_divergence(la, lb).double(), want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(kl_divergence(la, lb, ref_probs=la.exp()), kl_divergence(la, lb))
    assert torch.equal(kl_divergence(la, la), torch.zeros(8))


def test_log_softmax_is_differentiable() -> None:
    z = torch.randn(3, 50, dtype=torch.float32, requires_grad=True)
    target = torch.randn(3, 50).log_softmax(-1)
    kl_divergence(target, log_softmax(z)).sum().backward()
    # d KL(p || softmax z) / dz = softmax(z) - p
    torch.testing.assert_close(z.grad, z.detach().softmax(-1) - target.exp(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("chunk_rows", [512, 3])
def test_logit_lens_final_site_kl_is_zero(chunk_rows: int) -> None:
    model = tiny_model(seed=0)
    res = lensbox.logit_lens(model, random_windows(2, 20, seed=3), chunk_rows=chunk_rows)
    final = res.site_index("final")
    for name in ("kl_final", "kl_final_reverse"):
        assert float(getattr(res, name)[:, final].abs().max()) <= 1e-6
    for name in ("kl_input", "kl_input_reverse"):
        assert float(getattr(res, name)[:, res.site_index("embed")].abs().max()) <= 1e-6
    assert float(res.kl_final[:, 0].min()) > 1e-3  # the other sites are not zeroed


def test_evaluate_final_site_kl_is_zero() -> None:
    model = tiny_model(seed=0)
    windows = random_windows(3, 20, seed=4)
    lens = TunedLens.identity(model)
    with torch.no_grad():
        lens.translators.weight.normal_(0, 0.05)
    ev = evaluate(model, windows, {"logit": "logit", "tuned": lens}, window=20, batch_size=2, chunk_rows=7,
                  progress=False)
    final = ev.sites.index(Site.resid_post(2))
    for name in ("logit", "tuned"):
        assert ev.values[name]["kl"][final] <= 1e-6
        assert ev.values[name]["top1_agree"][final] == 1.0
    assert ev.values["tuned"]["kl"][0] > 1e-3


@pytest.mark.smollm2
def test_final_site_kl_is_zero_smollm2(smollm2_model: Any) -> None:
    from lensbox.data import fetch_corpus, read_texts

    text = read_texts(fetch_corpus("botchan", progress=False))[0][20_000:40_000]
    ev = evaluate(smollm2_model, [text], {"logit": "logit"}, window=128, max_tokens=256, batch_size=2, progress=False)
    assert ev.tokens == 256
    assert ev.values["logit"]["kl"][-1] <= 1e-6
    assert ev.values["logit"]["kl"][0] > 1.0
    res = lensbox.logit_lens(smollm2_model, text[:1500])
    assert res.tokens.shape[1] > 200
    assert float(res.kl_final[:, -1].abs().max()) <= 1e-6
