"""Geometry data (residual norms, token-plane paths) on a tiny random model, checked against plain PyTorch,
and the plots fed from real lens results end to end."""

import io
import warnings

import pytest
import torch

import lensbox
from lensbox import Site
from lensbox._errors import InputError
from lensbox.lenses._geometry import residual_norms, token_plane_trajectory
from lensbox.plot import heatmap_cell_texts, heatmap_outlines, plot_heatmap, plot_residual_norms, plot_trajectory
from models import tiny_bridge

PROMPT = "John and Mary went to the bar. John bought a drink for"


@pytest.fixture(scope="module")
def model():
    return tiny_bridge(seed=1, n_layers=3)


def reference_streams(model, tokens):
    """Residual streams by hook name from TransformerLens's own cache (independent of lensbox's capture)."""
    _, cache = model.run_with_cache(tokens)
    out = {Site.embed(): cache["blocks.0.hook_resid_pre"]}
    for i in range(model.cfg.n_layers):
        out[Site.resid_post(i)] = cache[f"blocks.{i}.hook_resid_post"]
    return out


def test_residual_norms_match_plain_pytorch(model):
    norms = residual_norms(model, PROMPT)
    tokens = model.to_tokens(PROMPT)
    ref = reference_streams(model, tokens)
    assert norms.sites == [Site.embed()] + [Site.resid_post(i) for i in range(3)]
    assert norms.norms.shape == (1, 4, tokens.shape[1])
    for i, s in enumerate(norms.sites):
        want = torch.sqrt((ref[s].double() ** 2).sum(-1)).float()
        torch.testing.assert_close(norms.norms[:, i], want, rtol=1e-5, atol=1e-5)
    assert norms.input_labels[0][-1] == "␣for"
    df = norms.to_pandas()
    assert len(df) == 4 * tokens.shape[1]
    assert set(df.columns) >= {"site", "pos", "norm", "input_token"}
    fig = plot_residual_norms(norms)
    fig.savefig(io.BytesIO(), format="png", dpi=50)


def test_residual_norms_with_mid_sites(model):
    norms = residual_norms(model, PROMPT, sites="1", include_mid=True)
    assert norms.sites == [Site.resid_mid(1), Site.resid_post(1)]


def test_token_plane_logits_match_model_output(model):
    tr = token_plane_trajectory(model, PROMPT, (" Mary", " John"))
    tokens = model.to_tokens(PROMPT)
    tok = model.tokenizer
    ids = (tok.encode(" Mary", add_special_tokens=False)[0], tok.encode(" John", add_special_tokens=False)[0])
    assert tr.token_ids == ids
    assert tr.token_labels == ("␣Mary", "␣John")
    assert tr.pos == tokens.shape[1] - 1
    with torch.no_grad():
        logits = model(tokens)[0, -1]
    # The last site's two logits are the model's own output logits for those tokens.
    torch.testing.assert_close(tr.logits[0, -1], logits[list(ids)].float(), rtol=1e-4, atol=1e-4)
    # Every site: logits = final_norm(resid) @ W_U[:, ids] + b_U, computed independently.
    ref = reference_streams(model, tokens)
    W = model.W_U[:, list(ids)].float()
    b = model.b_U[list(ids)].float() if getattr(model, "b_U", None) is not None else torch.zeros(2)
    for i, s in enumerate(tr.sites):
        x = model.ln_final(ref[s][:, -1]).float()
        torch.testing.assert_close(tr.logits[:, i], x @ W + b, rtol=1e-4, atol=1e-4)
        # Plane coordinates are the orthogonal projection: the same logits come back from them.
        torch.testing.assert_close(tr.coords[:, i] @ tr.directions.T + tr.bias, tr.logits[:, i], rtol=1e-4, atol=1e-4)
    # Orthonormal basis: the first axis is ' Mary', the second has no ' Mary' component.
    assert abs(float(tr.directions[0, 1])) < 1e-5
    torch.testing.assert_close(tr.directions.norm(dim=1), W.norm(dim=0), rtol=1e-5, atol=1e-5)
    fig = plot_trajectory(tr)
    fig.savefig(io.BytesIO(), format="png", dpi=50)


def test_token_plane_rejects_bad_tokens(model):
    with pytest.raises(InputError, match="is not one token"):
        token_plane_trajectory(model, PROMPT, (" Maryanne-Josephine", " John"))
    with pytest.raises(InputError, match="same token"):
        token_plane_trajectory(model, PROMPT, (" Mary", " Mary"))
    with pytest.raises(InputError, match="exactly two tokens"):
        token_plane_trajectory(model, PROMPT, (" Mary",))
    with pytest.raises(InputError, match="outside the vocabulary"):
        token_plane_trajectory(model, PROMPT, (10**7, 5))
    with pytest.raises(InputError, match="Position out of range"):
        token_plane_trajectory(model, PROMPT, (" Mary", " John"), pos=500)


def test_heatmap_from_real_logit_lens(model):
    r = lensbox.logit_lens(model, PROMPT)
    fig = plot_heatmap(r, label_chars=40, max_width=None)  # every position: no page-column limit
    n_sites, n_pos = r.kl_final.shape[1:]
    texts = heatmap_cell_texts(fig)
    assert len(texts) == n_sites * n_pos
    got = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in texts}
    for i in range(n_sites):
        for p in range(n_pos):
            assert got[(i, p)] == r.top_labels[0][i][p][0]
    agree = int((r.top_ids[0, :, :, 0] == r.final_top1[0]).sum())
    assert len(heatmap_outlines(fig)) == agree >= n_pos  # the last row agrees everywhere
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.savefig(io.BytesIO(), format="png", dpi=50)
    assert [str(w.message) for w in caught if "missing from" in str(w.message)] == []


def test_confidence_norm_data_matches_plain_pytorch(model):
    """Each cell's point: the norm of TransformerLens's cached stream, and the top-1 probability / entropy of
    log_softmax(ln_final(stream) @ W_U + b_U) computed by hand; the first position left out by default."""
    from lensbox.plot import confidence_norm_data, plot_confidence_vs_norm

    result = lensbox.logit_lens(model, PROMPT)
    norms = residual_norms(model, PROMPT)
    data = confidence_norm_data(result, norms)
    tokens = model.to_tokens(PROMPT)
    ref = reference_streams(model, tokens)
    n_pos = tokens.shape[1]
    assert len(data["norm"]) == len(result.sites) * (n_pos - 1)
    for i, s in enumerate(result.sites):
        with torch.no_grad():
            lp = (model.ln_final(ref[s][0]).double() @ model.W_U.double() + model.b_U.double()).log_softmax(-1)[1:]
        sel = data["site_index"] == i
        assert (data["pos"][sel] == list(range(1, n_pos))).all()
        torch.testing.assert_close(torch.from_numpy(data["norm"][sel]), ref[s][0, 1:].double().norm(dim=-1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(data["top1_prob"][sel]), lp.exp().max(-1).values, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(torch.from_numpy(data["entropy"][sel]), -(lp.exp() * lp).sum(-1), rtol=1e-4, atol=1e-4)
    fig = plot_confidence_vs_norm(result, norms)
    fig.savefig(io.BytesIO(), format="png", dpi=50)
    # results of other inputs are refused, not silently paired
    with pytest.raises(InputError, match="different sites or tokens"):
        confidence_norm_data(result, residual_norms(model, PROMPT + " her"))
    with pytest.raises(InputError, match="residual norms"):
        confidence_norm_data(norms, result)
