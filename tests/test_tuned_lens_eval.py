"""evaluate(): held-out statistics per lens and site, checked against LensResult and plain PyTorch."""

import math
import warnings

import pytest
import torch

import lensbox
from lensbox import InputError, Site
from lensbox.lenses import JacobianDecoder, TunedLens, evaluate

from test_tuned_lens import random_lens, write_tuned_lens_dir
from test_tuned_lens_models import random_windows, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


class FakeJacobianLens:
    """The two attributes lensbox uses from TransformerLens's JacobianLens."""

    def __init__(self, jacobians):
        self.jacobians = jacobians

    def transport(self, residual, layer):
        return residual.float() @ self.jacobians[layer].T


def test_evaluate_matches_lens_results(model, tmp_path):
    windows = random_windows(3, 20, seed=4)
    lens = random_lens(model, seed=2)
    d = 32
    jl = FakeJacobianLens({0: torch.eye(d), 1: 2.0 * torch.eye(d) + 0.01 * torch.ones(d, d)})
    ev = evaluate(model, windows, {"logit": "logit", "tuned": lens, "jlens": jl}, window=20, batch_size=2,
                  chunk_rows=13, progress=False, warn=False)
    assert ev.tokens == 60 and ev.windows == 3 and ev.target_bytes == 57
    assert [s.name for s in ev.sites] == ["embed", "resid_post.0", "resid_post.1", "resid_post.2"]
    for name, runner in (("logit", lambda w: lensbox.logit_lens(model, w)), ("tuned", lambda w: lens(model, w))):
        per = [runner(windows[b : b + 1]) for b in range(3)]  # one window per LensResult
        res = per[0]
        kl = torch.stack([r.kl_final[0] for r in per]).mean(dim=(0, 2))
        ce = torch.stack([r.cross_entropy[0, :, :-1] for r in per]).mean(dim=(0, 2))
        agree = torch.stack([(r.top_ids[0, ..., 0] == r.final_top1[0][None]).float() for r in per]).mean(dim=(0, 2))
        for i, s in enumerate(res.sites):
            j = ev.sites.index(s)
            assert ev.values[name]["kl"][j] == pytest.approx(float(kl[i]), rel=1e-4, abs=1e-5)
            assert ev.values[name]["ce"][j] == pytest.approx(float(ce[i]), rel=1e-4)
            assert ev.values[name]["top1_agree"][j] == pytest.approx(float(agree[i]))
            # byte tokens: one byte each, so bits per byte = nats per token / ln 2
            assert ev.values[name]["bpb"][j] == pytest.approx(float(ce[i]) / math.log(2), rel=1e-4)
    # the Jacobian lens: identity at layer 0 equals the logit lens; no embed entry
    j0 = ev.sites.index(Site.resid_post(0))
    assert ev.values["jlens"]["kl"][j0] == pytest.approx(ev.values["logit"]["kl"][j0], rel=1e-5)
    assert math.isnan(ev.values["jlens"]["kl"][0])
    assert ev.values["jlens"]["kl"][2] != pytest.approx(ev.values["logit"]["kl"][2])
    assert ev.values["tuned"]["kl"][-1] == pytest.approx(0.0, abs=1e-5)
    # summaries
    assert ev.mean("logit") == pytest.approx(sum(ev.values["logit"]["kl"][:3]) / 3)
    table = ev.table("kl")
    assert isinstance(table, str)
    lines = table.splitlines()
    assert lines[1].split() == ["site", "logit", "tuned", "jlens", "uniform"]
    assert lines[2].split()[0] == "embed" and lines[2].split()[3] == "—"  # the Jacobian lens has no embed site
    assert float(lines[2].split()[1]) == pytest.approx(ev.values["logit"]["kl"][0], abs=1e-4)
    assert float(lines[-1].split()[1]) == pytest.approx(ev.mean("logit"), abs=1e-4)
    wide = ev.to_pandas().pivot(index="site", columns="lens", values="kl")
    assert wide.loc["embed", "logit"] == ev.values["logit"]["kl"][0]
    assert len(ev.to_pandas()) == 12
    assert ev.to_dict()["values"]["jlens"]["kl"][0] is None
    assert "resid_post.1" in repr(ev)
    fig = ev.plot("kl")
    assert fig.axes[0].get_legend() is not None
    # lens directories, both formats, give the same numbers as the object
    lens.save(tmp_path / "mine")
    write_tuned_lens_dir(tmp_path / "peer", lens, model)
    ev2 = evaluate(model, windows, {"mine": tmp_path / "mine", "peer": str(tmp_path / "peer")}, window=20,
                   progress=False)
    for name in ("mine", "peer"):
        assert ev2.values[name]["kl"] == pytest.approx(ev.values["tuned"]["kl"], rel=1e-5, abs=1e-6)


def test_old_argument_order_warns_and_gives_the_same_numbers(model):
    windows = random_windows(2, 16, seed=4)
    new = evaluate(model, windows, {"logit": "logit"}, window=16, progress=False)
    with pytest.warns(DeprecationWarning, match="evaluate\\(model, data, lenses\\)"):
        old = evaluate(model, {"logit": "logit"}, windows, window=16, progress=False)
    assert old.values == new.values


def test_evaluate_sites_and_bad_input(model):
    windows = random_windows(2, 16, seed=4)
    ev = evaluate(model, windows, {"logit": "logit"}, window=16, sites="embed", progress=False)
    assert [s.name for s in ev.sites] == ["embed", "resid_post.2"]
    ev = evaluate(model, windows, {"logit": "logit"}, window=8, max_tokens=16, progress=False)
    assert ev.tokens == 16
    with pytest.raises(InputError, match="No lenses"):
        evaluate(model, windows, {}, window=16, progress=False)
    with pytest.raises(InputError, match="Cannot evaluate"):
        evaluate(model, windows, {"x": 42}, window=16, progress=False)
    with pytest.raises(InputError, match="shorter than one window"):
        evaluate(model, windows, {"logit": "logit"}, window=64, progress=False)
    with pytest.raises(InputError, match="Unknown metric"):
        ev.plot("nope")
    partial = TunedLens.identity(model, sites="0")
    jd = JacobianDecoder(FakeJacobianLens({1: torch.eye(32)}))
    ev = evaluate(model, windows, {"partial": partial, "j": jd}, window=16, progress=False)
    assert math.isnan(ev.values["partial"]["kl"][ev.sites.index(Site.resid_post(1))])
    assert not math.isnan(ev.values["j"]["kl"][ev.sites.index(Site.resid_post(1))])


# ---------------------------------------------------------------- honest reporting (issue 12)


def test_uniform_and_unigram_baselines_match_plain_pytorch(model):
    windows = random_windows(2, 16, seed=5)
    counts = torch.arange(1, model.cfg.d_vocab + 1, dtype=torch.float64)
    ev = evaluate(model, windows, {"logit": "logit"}, window=16, progress=False, unigram=counts, warn=False)
    with torch.no_grad():
        lp = model(windows).double().log_softmax(-1)  # [2, 16, V], the model's own output
    V = lp.shape[-1]
    ent = -(lp.exp() * lp).sum(-1)
    assert ev.baselines["uniform"]["kl"] == pytest.approx(float((math.log(V) - ent).mean()), rel=1e-5)
    assert ev.baselines["uniform"]["ce"] == pytest.approx(math.log(V), rel=1e-6)
    u = (counts / counts.sum()).log()
    kl_u = (lp.exp() * (lp - u)).sum(-1).mean()
    assert ev.baselines["unigram"]["kl"] == pytest.approx(float(kl_u), rel=1e-5)
    ce_u = -u[windows[:, 1:]].mean()
    assert ev.baselines["unigram"]["ce"] == pytest.approx(float(ce_u), rel=1e-5)
    agree = (lp.argmax(-1) == V - 1).double().mean()  # the unigram's top-1 is the last (largest) count
    assert ev.baselines["unigram"]["top1_agree"] == pytest.approx(float(agree))
    assert math.isnan(ev.baselines["uniform"]["top1_agree"])
    # the baselines are columns of the table, the pandas frame and the dict
    lines = ev.table().splitlines()
    assert lines[1].split() == ["site", "logit", "uniform", "unigram"]
    assert float(lines[2].split()[2]) == pytest.approx(ev.baselines["uniform"]["kl"], abs=1e-4)
    assert ev.to_pandas()["uniform_kl"].tolist() == [ev.baselines["uniform"]["kl"]] * len(ev.sites)
    assert ev.to_dict()["baselines"]["unigram"]["kl"] == ev.baselines["unigram"]["kl"]
    with pytest.raises(InputError, match="positive probability"):
        evaluate(model, windows, {"logit": "logit"}, window=16, progress=False, unigram=torch.zeros(model.cfg.d_vocab))


def test_means_with_and_without_the_embeddings(model):
    windows = random_windows(2, 16, seed=6)
    ev = evaluate(model, windows, {"logit": "logit"}, window=16, progress=False, warn=False)
    kl = ev.values["logit"]["kl"]  # embed, resid_post.0, .1, .2 (final)
    assert ev.mean("logit") == pytest.approx(sum(kl[:3]) / 3)
    assert ev.mean("logit", include_embed=False) == pytest.approx(sum(kl[1:3]) / 2)
    assert ev.mean("uniform", include_embed=False) == pytest.approx(ev.baselines["uniform"]["kl"])
    lines = ev.table().splitlines()
    assert "'mean' with the embeddings" in lines[0]
    assert lines[-2].startswith("mean no embed") and float(lines[-2].split()[3]) == pytest.approx(
        ev.mean("logit", include_embed=False), abs=1e-4)
    assert lines[-1].split()[0] == "mean"
    d = ev.to_dict()
    assert d["mean_kl_no_embed"]["logit"] == pytest.approx(ev.mean("logit", include_embed=False))
    assert "mean_kl includes the embeddings" in d["mean_note"]


def test_warns_when_a_lens_is_worse_than_the_logit_lens_or_uniform(model):
    windows = random_windows(2, 16, seed=7)
    bad = random_lens(model, seed=3, scale=30.0)  # confidently wrong translators
    with pytest.warns(UserWarning, match=r"Lens 'bad' is worse than the logit lens at \d+ of 4 sites.*uniform"):
        ev = evaluate(model, windows, {"logit": "logit", "bad": bad}, window=16, progress=False)
    assert ev.worse_sites("bad", "uniform") and ev.worse_sites("bad", "logit")
    assert Site.resid_post(2) not in ev.worse_sites("bad", "uniform")  # the final site is exact
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        evaluate(model, windows, {"logit": "logit", "bad": bad}, window=16, progress=False, warn=False)
        evaluate(model, windows, {"logit": "logit"}, window=16, progress=False)  # the logit lens is the reference
    assert not [w for w in seen if "Lens '" in str(w.message)]
