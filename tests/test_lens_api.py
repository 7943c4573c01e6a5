"""The lens entry points' conventions: signatures, class layout, string tables."""

import inspect

import pytest
import torch

import lensbox
from lensbox import InputError
from lensbox.lenses import LogitLens, TunedLens, residual_norms, token_plane_trajectory, tuned_lens
from lensbox.lenses._lens import LensAnalyzer

from test_tuned_lens_models import TEXT, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=0)


def test_both_lenses_share_one_abstract_base() -> None:
    assert not issubclass(TunedLens, LogitLens)
    assert issubclass(TunedLens, LensAnalyzer) and issubclass(LogitLens, LensAnalyzer)
    with pytest.raises(TypeError):
        LensAnalyzer()  # abstract


def test_same_keywords_and_defaults() -> None:
    logit = inspect.signature(lensbox.logit_lens).parameters
    tuned = inspect.signature(tuned_lens).parameters
    for name in ("sites", "include_mid", "k", "chunk_rows", "on_nonfinite", "cache", "prepend_bos"):
        assert tuned[name].default == logit[name].default, name
        assert tuned[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(tuned)[:3] == ["model", "inputs", "lens"]
    assert inspect.signature(residual_norms).parameters["sites"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(inspect.signature(lensbox.lenses.evaluate).parameters)[:3] == ["model", "data", "lenses"]


def test_tuned_lens_mid_sites_and_nonfinite_policy(model) -> None:
    lens = TunedLens.identity(model, include_mid=True)
    res = tuned_lens(model, TEXT[:30], lens, include_mid=True)
    assert [s.name for s in res.sites if s.kind.value == "resid_mid"] == ["resid_mid.0", "resid_mid.1", "resid_mid.2"]
    ref = lensbox.logit_lens(model, TEXT[:30], include_mid=True)
    torch.testing.assert_close(res.kl_final, ref.kl_final, atol=1e-5, rtol=1e-5)  # identity lens = logit lens

    tokens = lensbox.adapt(model).to_tokens(TEXT[:30])
    streams = dict(model.run_with_cache(tokens)[1].items())
    streams["blocks.0.hook_resid_post"] = streams["blocks.0.hook_resid_post"].clone()
    streams["blocks.0.hook_resid_post"][:, 2] = float("nan")
    marked = tuned_lens(model, tokens, lens, cache=streams, on_nonfinite="mark")
    i = marked.site_index("resid_post.0")
    assert torch.isnan(marked.kl_final[0, i, 2]) and not torch.isnan(marked.kl_final[0, i, 3])
    with pytest.raises(lensbox.NonFiniteError):
        tuned_lens(model, tokens, lens, cache=streams)


def test_residual_norms_sites_are_keyword_only(model) -> None:
    with pytest.raises(TypeError):
        residual_norms(model, TEXT[:20], "1")  # type: ignore[misc]
    norms = residual_norms(model, TEXT[:20], sites="embed,1")
    assert [s.name for s in norms.sites] == ["embed", "resid_post.1"]
    text = norms.table()
    assert isinstance(text, str)
    last_row = text.splitlines()[2].split()
    assert last_row[0] == "resid_post.1"
    assert float(last_row[-1]) == pytest.approx(float(norms.norms[0, 1, -1]), rel=1e-3)


def test_token_plane_table(model) -> None:
    traj = token_plane_trajectory(model, TEXT[:20], tokens=(5, 7))
    rows = traj.table().splitlines()
    assert rows[1].split()[0] == "embed"
    assert float(rows[1].split()[3]) == pytest.approx(float(traj.logits[0, 0, 0]), abs=1e-3)


def test_lens_result_table_is_a_string_with_the_metric(model) -> None:
    res = lensbox.logit_lens(model, TEXT[:20])
    text = res.table(metric="entropy")
    assert isinstance(text, str) and "entropy = entropy, nats" in text
    with pytest.raises(InputError, match="Unknown metric"):
        res.table(metric="nope")
