"""Regularisation chosen on held-out text (issue 12): ridge per site, shrinkage, bias-only and low-rank translators."""

import pytest
import torch

from lensbox import InputError
from lensbox.lenses import TunedLens
from lensbox.training import TrainSettings, train_tuned_lens
from lensbox.training._lstsq import LstsqStats, low_rank
from lensbox.training._select import RIDGE_GRID, choose_ridge

from test_tuned_lens_models import random_windows, tiny_model

FAST = dict(window=16, batch_size=4, progress=False, chunk_rows=64)


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


def _stats(seed, n=200, S=2, d=5, noise=1.0):
    gen = torch.Generator().manual_seed(seed)
    H = torch.randn(S, n, d, generator=gen)
    F = H[0] @ torch.randn(d, d, generator=gen) + noise * torch.randn(n, d, generator=gen) + 0.5
    st = LstsqStats(S, d, scale_invariant=False)
    st.add(H, F)
    return st, H, F


def test_held_out_mse_bias_and_low_rank_match_plain_pytorch():
    st, H, F = _stats(0)
    gen = torch.Generator().manual_seed(1)
    W, b = torch.randn(2, 5, 5, generator=gen), torch.randn(2, 5, generator=gen)
    for s in range(2):
        pred = H[s] + H[s] @ W[s].T + b[s]
        assert float(st.mse(W, b)[s]) == pytest.approx(float((F - pred).pow(2).sum(-1).mean()), rel=1e-5)
    # bias only: the mean of F - H per site (the best constant shift)
    W0, b0 = st.solve(0.0, "bias")
    assert float(W0.abs().max()) == 0.0
    torch.testing.assert_close(b0, (F[None] - H).mean(1), atol=1e-5, rtol=1e-5)
    # low rank: rank <= r, and the bias refitted for the truncated matrix
    W2, b2 = st.solve(1e-3, "lowrank", rank=2)
    assert int(torch.linalg.matrix_rank(W2[0])) == 2
    torch.testing.assert_close(b2[0], (F - H[0] - H[0] @ W2[0].T).mean(0), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(low_rank(W2, 5), W2)


def test_ridge_is_chosen_per_site_by_held_out_error():
    train, _, _ = _stats(0, n=12, noise=3.0)  # few noisy rows: a strong ridge generalises better
    held, _, _ = _stats(5, n=400, noise=3.0)
    W, b, chosen, errors = choose_ridge(train, [held], "affine", 16)
    for s in range(2):
        errs = [errors[repr(lam)][s] for lam in RIDGE_GRID]
        assert chosen[s] == RIDGE_GRID[errs.index(min(errs))]
        Ws, bs = train.solve(chosen[s])
        torch.testing.assert_close(W[s], Ws[s])
        torch.testing.assert_close(b[s], bs[s])
    assert chosen[1] > RIDGE_GRID[0]  # site 1 carries no signal: the fit is noise, shrunk hard


def test_training_options_are_recorded_and_kept(model, tmp_path):
    data = random_windows(24, 16, seed=1)
    other = random_windows(4, 16, seed=9)
    lens = train_tuned_lens(model, data, steps=2, val_fraction=0.2, val_data=other, select_tokens=32, **FAST)
    t = lens.config["training"]
    sel = t["selection"]
    assert t["ridge"] == "auto" and t["shrink"] == "auto" and t["translator"] == "affine"
    assert [h["name"] for h in sel["held_out"]] == ["validation windows", "val_data"]
    assert sel["held_out"][1]["tokens"] == 32
    assert set(sel["ridge"]) == {s.name for s in lens.lens_sites} and set(sel["ridge"].values()) <= set(RIDGE_GRID)
    assert set(sel["shrink"].values()) <= {0.0, 0.5, 1.0}
    # bias only: no matrix; low rank: rank <= 3 after the refinement
    bias = train_tuned_lens(model, data, steps=2, val_fraction=0.0, translator="bias", ridge=1e-3, **FAST)
    assert float(bias.translators.weight.detach().abs().max()) == 0.0 and float(bias.translators.bias.detach().abs().max()) > 0
    lr = train_tuned_lens(model, data, steps=2, val_fraction=0.0, translator="lowrank", rank=3, ridge=1e-3, **FAST)
    assert max(int(torch.linalg.matrix_rank(w)) for w in lr.translators.weight) <= 3
    assert "translator='lowrank'" in repr(lr) and "token windows" in repr(lr)
    lr.save(tmp_path / "lr")  # the same file format: a dense matrix per site
    back = TunedLens.load(tmp_path / "lr")
    assert back.config["training"]["rank"] == 3 and torch.equal(back.translators.weight, lr.translators.weight)
    # shrink=0 keeps the least-squares start; shrink=1 the refined translators
    start = train_tuned_lens(model, data, steps=0, init_tokens=128, val_fraction=0.0, ridge=1e-3, **FAST)
    kept = train_tuned_lens(model, data, steps=2, val_fraction=0.0, ridge=1e-3, shrink=0.0, lr=1e-2, **FAST)
    torch.testing.assert_close(kept.translators.weight, start.translators.weight)
    moved = train_tuned_lens(model, data, steps=2, val_fraction=0.0, ridge=1e-3, shrink=1.0, lr=1e-2, **FAST)
    assert not torch.allclose(moved.translators.weight, start.translators.weight)
    with pytest.raises(InputError, match="shrink"):
        TrainSettings(shrink=1.5)
    with pytest.raises((InputError, TypeError), match="translator"):
        TrainSettings(translator="full")


def test_trained_on_is_recorded_and_shown(model):
    data = random_windows(8, 16, seed=1)
    lens = train_tuned_lens(model, ["a b c " * 40], steps=1, val_fraction=0.0, ridge=1e-3, **FAST)
    assert "240 chars" in lens.trained_on and "sha256" in lens.trained_on
    mixed = TunedLens(lens.translators, config={**lens.config, "corpus": {
        "name": "lensbox default mix", "corpora": [{"corpus": "botchan"}, {"corpus": "django-code"}]}})
    assert mixed.trained_on == "lensbox default mix (botchan, django-code)"
    assert "trained_on='lensbox default mix (botchan, django-code)'" in repr(mixed)
    del data


def test_ridge_finalists_are_decided_by_held_out_kl_computed_like_plain_pytorch(model):
    """Of the strengths with the lowest held-out squared error, the one with the lowest held-out
    KL(final || lens) wins, site by site; the KL matches a plain decode of the same rows."""
    from lensbox.core._adapter import adapt
    from lensbox.core._sites import Site
    from lensbox.training._objective import capture
    from lensbox.training._select import held_out_sets, held_out_stats, ridge_finalists_by_kl

    a = adapt(model)
    final = Site.resid_post(a.n_layers - 1)
    sites = [Site.embed(), Site.resid_post(0)]
    train_w, held_w = random_windows(6, 16, seed=3), random_windows(4, 16, seed=4)
    train = LstsqStats(len(sites), a.d_model, scale_invariant=True)
    streams = capture(a, train_w, sites)
    F = streams[final].reshape(-1, a.d_model)
    train.add(torch.stack([streams[s].reshape(F.shape[0], -1) for s in sites]), F)
    held = held_out_sets(a, sites, {"held": held_w}, batch_size=2)
    _, _, _, errors = choose_ridge(train, held_out_stats(held, sites, final, a.d_model, True), "affine", 16)
    W, b, chosen, table = ridge_finalists_by_kl(a, train, sites, held, errors, "affine", 16, chunk_rows=32, finalists=3)

    torch.set_grad_enabled(False)
    try:
        _check_kl_table(a, train, sites, final, held_w, errors, W, b, chosen, table)
    finally:
        torch.set_grad_enabled(True)


def _check_kl_table(a, train, sites, final, held_w, errors, W, b, chosen, table):
    got = a.run_and_capture(held_w, sorted(set(sites) | {final}))
    p_log = torch.log_softmax(a.decode(got[final].reshape(-1, a.d_model)).double(), -1)
    for i, s in enumerate(sites):
        ranked = sorted(RIDGE_GRID, key=lambda lam: errors[repr(lam)][i])[:3]
        assert set(table[s.name]) == {repr(lam) for lam in ranked}
        for lam in ranked:
            Wl, bl = train.solve(lam)
            h = got[s].reshape(-1, a.d_model).float()
            q_log = torch.log_softmax(a.decode(h + h @ Wl[i].T + bl[i]).double(), -1)
            kl = float((p_log.exp() * (p_log - q_log)).sum(-1).mean())
            assert table[s.name][repr(lam)] == pytest.approx(kl, rel=1e-3, abs=1e-4)
        best = min(ranked, key=lambda lam: table[s.name][repr(lam)])
        assert chosen[i] == best
        torch.testing.assert_close(W[i], train.solve(best)[0][i])
        torch.testing.assert_close(b[i], train.solve(best)[1][i])
