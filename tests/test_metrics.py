"""The metric table (lensbox.lenses._metrics): every metric read from a tiny-model result against a hand computation."""

from typing import Any, Callable, Dict

import pytest
import torch
from torch import Tensor

import lensbox
from lensbox import InputError
from lensbox.lenses import METRIC_TABLE, METRICS, Metric, get_metric, metric_names


def hand_logprobs(model: Any, tokens: Tensor) -> Tensor:
    """``[batch, site, pos, vocab]`` float64 log-probs of every default site, decoded by hand from a TL cache."""
    _, cache = model.run_with_cache(tokens)
    n = model.cfg.n_layers
    hooks = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n)]
    with torch.no_grad():
        lps = []
        for h in hooks:
            z = model.ln_final(cache[h]).double() @ model.W_U.double() + model.b_U.double()
            lps.append(z)
    return torch.stack(lps, dim=1)


@pytest.fixture(scope="module")
def case(tiny_lm: Any, tiny_tokens: Tensor) -> Dict[str, Any]:
    result = lensbox.logit_lens(tiny_lm, tiny_tokens)
    return {"result": result, "logits": hand_logprobs(tiny_lm, tiny_tokens), "tokens": tiny_tokens}


def expected_values(name: str, logits: Tensor, tokens: Tensor) -> Tensor:
    """Independent float64 computation of a per-cell metric (``[batch, site, pos]``)."""
    lp = logits.log_softmax(-1)
    p = lp.exp()
    batch, n_sites, n_pos, _ = lp.shape
    nxt = torch.zeros(batch, n_pos, dtype=torch.long)
    nxt[:, :-1] = tokens[:, 1:]
    next_lp = lp.gather(-1, nxt[:, None, :, None].expand(batch, n_sites, n_pos, 1))[..., 0]
    next_rank = (lp > next_lp[..., None]).sum(-1).double()
    next_lp[:, :, -1] = float("nan")
    next_rank[:, :, -1] = -1
    lpf, lpi = lp[:, -1:], lp[:, :1]
    final_top1 = lpf[:, 0].argmax(-1)
    ft_lp = lp.gather(-1, final_top1[:, None, :, None].expand(batch, n_sites, n_pos, 1))
    in_lp = lp.gather(-1, tokens[:, None, :, None].expand(batch, n_sites, n_pos, 1))  # the token at each position
    table: Dict[str, Callable[[], Tensor]] = {
        "top1": lambda: p.max(-1).values,
        "logit": lambda: logits.max(-1).values,
        "top1_logprob": lambda: lp.max(-1).values,
        "logprob": lambda: next_lp,
        "next_prob": lambda: next_lp.exp(),
        "rank": lambda: next_rank,
        "final_rank": lambda: (lp > ft_lp).sum(-1).double(),
        "input_rank": lambda: (lp > in_lp).sum(-1).double(),
        "kl": lambda: (lpf.exp() * (lpf - lp)).sum(-1),
        "kl_reverse": lambda: (p * (lp - lpf)).sum(-1),
        "kl_input": lambda: (lpi.exp() * (lpi - lp)).sum(-1),
        "kl_input_reverse": lambda: (p * (lp - lpi)).sum(-1),
        "entropy": lambda: -(p * lp).sum(-1),
        "ce": lambda: -next_lp,
    }
    return table[name]()


def test_every_result_metric_has_a_hand_computation() -> None:
    assert set(metric_names("result")) == set(METRICS)
    assert len(METRICS) == 14


def test_input_rank_reaches_every_consumer(case: Dict[str, Any]) -> None:
    """The table drives the CLI choices, to_pandas and the heatmap: input_rank appears in each, 1-based in plots."""
    from lensbox.cli._common import metric_choices
    from lensbox.plot import heatmap_values

    result = case["result"]
    assert "input_rank" in metric_choices("result")
    frame = result.to_pandas()
    assert frame["input_rank"].tolist() == result.input_rank.reshape(-1).tolist()
    # the input layer decodes its own token near the top; position 0 included (no -1 cells)
    assert int(result.input_rank.min()) >= 0
    shown = heatmap_values(result, "input_rank", batch=0)
    assert (shown == result.input_rank[0].double().numpy() + 1).all()


@pytest.mark.parametrize("name", metric_names("result"))
def test_metric_matches_hand_computation(case: Dict[str, Any], name: str) -> None:
    result = case["result"]
    got = result.metric(name).double()
    want = expected_values(name, case["logits"], case["tokens"])
    assert got.shape == want.shape == result.kl_final.shape
    assert torch.equal(got.isnan(), want.isnan())
    torch.testing.assert_close(got.nan_to_num(), want.nan_to_num(), atol=2e-4, rtol=1e-4)
    # The per-batch reader is the same numbers.
    m = get_metric(name)
    torch.testing.assert_close(m.values(result, batch=1), result.metric(name)[1], equal_nan=True)


@pytest.mark.parametrize("metric", METRIC_TABLE, ids=lambda m: m.name)
def test_aliases_resolve_to_their_metric(case: Dict[str, Any], metric: Metric) -> None:
    for alias in metric.aliases:
        assert get_metric(alias) is metric
        if metric.in_result:
            assert torch.equal(case["result"].metric(alias).nan_to_num(), case["result"].metric(metric.name).nan_to_num())


def test_table_records_are_complete() -> None:
    import matplotlib

    for m in METRIC_TABLE:
        assert m.description and m.label
        assert m.scale in {"prob", "linear", "rank"} and m.better in {"lower", "higher"}
        assert m.cmap in matplotlib.colormaps
    names = [k for m in METRIC_TABLE for k in (m.name, *m.aliases)]
    assert len(names) == len(set(names))
    assert metric_names("evaluation") == ("kl", "ce", "bpb", "top1_agree")


def test_kl_input_reverse_works(case: Dict[str, Any]) -> None:
    assert get_metric("kl_input_reverse").name == "kl_input_reverse"
    text = case["result"].table(metric="kl_input_reverse")
    assert "kl_input_reverse = KL(layer || input layer)" in text


def test_unknown_metric_lists_the_valid_names(case: Dict[str, Any]) -> None:
    with pytest.raises(InputError, match="kl_input_reverse") as info:
        get_metric("kl_inptu_reverse")
    assert "did you mean 'kl_input_reverse'" in str(info.value)
    with pytest.raises(InputError, match="for a LensResult"):
        case["result"].metric("bpb")
    with pytest.raises(InputError, match="for a LensEvaluation"):
        get_metric("entropy", scope="evaluation")


def test_logit_metric_without_raw_logits_is_refused(case: Dict[str, Any]) -> None:
    import dataclasses

    bare = dataclasses.replace(case["result"], top_logits=None)
    with pytest.raises(InputError, match="no raw logits"):
        bare.metric("logit")
