"""Rich display (``_repr_html_``) of every result type, on tiny models.

Each display must be well-formed HTML built only from the tags lensbox emits (so a token
such as ``<filename>`` that was not escaped shows up as a stray tag), must contain the key
numbers of the result (formatted as ``lensbox._html.number`` formats them, read from the
result's own tensors), and must escape text taken from the model or the data.
"""

from html.parser import HTMLParser

import pytest
import torch

import lensbox
from lensbox import _html
from lensbox.lenses import evaluate
from lensbox.probes import InputProbe

from models import tiny_bridge
from test_tuned_lens import random_lens

ALLOWED = {"div", "b", "table", "thead", "tbody", "tr", "th", "td"}
NASTY = "<filename>"  # a real SmolLM2 token: must show as text, never as a tag


class _Checker(HTMLParser):
    """Collects text and checks nesting: every tag allowed, every opened tag closed in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        assert tag in ALLOWED, f"unexpected tag <{tag}> (unescaped text?)"
        self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(markup: str) -> str:
    """Check ``markup`` and return its text (entities decoded)."""
    assert markup.startswith('<div class="lensbox">'), markup[:60]
    checker = _Checker()
    checker.feed(markup)
    checker.close()
    assert checker.stack == [], f"unclosed tags {checker.stack}"
    return "\n".join(checker.text)


@pytest.fixture(scope="module")
def model():
    return tiny_bridge(seed=0, n_layers=2)


def test_helpers_escape_everything_they_are_given():
    row = [NASTY, 0.123456, float("nan"), None, 7]
    markup = _html.block(_html.heading("X<y>", "a & b"), _html.table(["h<1>", "h2", "h3", "h4", "h5"], [row]),
                         note="n<o>te")
    text = parse(markup)
    assert NASTY not in markup and "&lt;filename&gt;" in markup
    for piece in (NASTY, "0.1235", "—", "7", "X<y>", "a & b", "h<1>", "n<o>te"):
        assert piece in text
    # a string that merely looks like a cell is escaped too; only cell() output passes as markup
    assert "&lt;td&gt;" in _html.table(["a"], [["<td>x</td>"]])
    assert _html.table(["a"], [[_html.cell("v", title='say "hi"')]]).count("<td") == 1


def test_lens_result(model):
    result = lensbox.logit_lens(model, torch.arange(5, 13)[None])
    result.input_labels[0][3] = NASTY
    result.top_labels[0][1][2][0] = NASTY
    markup = result._repr_html_()
    text = parse(markup)
    assert NASTY not in markup and NASTY in text
    assert "cell = top-1 token" in text
    for i, site in enumerate(result.sites):
        assert site.name in text
        for p in range(8):
            prob = result.top_logprobs[0, i, p, 0].exp().item()
            assert f'title="p={prob:.3f}"' in markup
    # a long input shows its last positions and says so
    wide = result._repr_html_(max_positions=3)
    assert "the last 3 of 8 positions" in parse(wide) and result.input_labels[0][4] not in parse(wide).split("\n")[3:6]


def test_lens_evaluation(model):
    gen = torch.Generator().manual_seed(3)
    windows = torch.randint(0, 200, (3, 10), generator=gen)
    ev = evaluate(model, windows, {"logit": "logit", NASTY: random_lens(model, seed=1)}, window=10, progress=False)
    markup = ev._repr_html_()
    text = parse(markup)
    assert NASTY not in markup and f"{NASTY}: kl" in text
    assert "30 tokens in 3 windows" in text
    for lens in ev.lenses:
        for metric in ("kl", "ce", "bpb", "top1_agree"):
            for v in ev.values[lens][metric]:
                assert _html.number(v) in text
        assert _html.number(ev.mean(lens, "kl")) in text


def test_tuned_lens(model):
    lens = random_lens(model, seed=2)
    lens.config["model_name"] = "tiny <model>"
    lens.config["metrics"] = {"val_kl_per_site": {"embed": 1.25}, "val_kl_mean": 1.25, "val_tokens": 64}
    markup = lens._repr_html_()
    text = parse(markup)
    assert "tiny <model>" in text and "&lt;model&gt;" in markup
    tr = lens.translators
    for i, site in enumerate(tr.sites):
        assert site.name in text
        assert _html.number(torch.linalg.matrix_norm(tr.weight[i].detach()).item()) in text
        assert _html.number(tr.bias[i].detach().norm().item()) in text
    assert "1.25" in text and "64" in text
    assert "no translators" in parse(lensbox.TunedLens()._repr_html_())


def test_input_probe_and_probe_evaluation(model):
    gen = torch.Generator().manual_seed(1)
    windows = torch.randint(0, 200, (24, 12), generator=gen)
    probe = InputProbe(["embed", "resid_post.1"], offsets=(0, -1))
    assert "not fitted" in parse(probe._repr_html_())
    probe.fit(model, windows, batch_size=8, progress=False)
    probe.model_name = "tiny <model>"
    text = parse(probe._repr_html_())
    assert "fitted" in text and "tiny <model>" in text and "embed .. resid_post.1" in text
    assert str(probe.training["n_tokens"]) in text

    ev = probe.evaluate(model, windows[:6], progress=False)
    ev.model_name = NASTY
    markup = ev._repr_html_()
    text = parse(markup)
    assert NASTY not in markup and NASTY in text
    acc = ev.accuracy(k=1)
    for si, site in enumerate(ev.sites):
        assert site.name in text
        for oi in range(len(ev.offsets)):
            assert f"{100 * acc[si, oi].item():.1f}" in text
    assert "k=0" in text and "k=-1" in text


def test_geometry_results(model):
    norms = lensbox.residual_norms(model, torch.arange(5, 11)[None])
    norms.input_labels[0][2] = NASTY
    markup = norms._repr_html_()
    text = parse(markup)
    assert NASTY not in markup and NASTY in text
    for v in norms.norms[0].reshape(-1).tolist():
        assert _html.number(v) in text

    traj = lensbox.token_plane_trajectory(model, torch.arange(5, 11)[None], tokens=(5, 7))
    text = parse(traj._repr_html_())
    for v in torch.cat([traj.coords[0], traj.logits[0]], dim=1).reshape(-1).tolist():
        assert _html.number(v) in text


def test_logit_attribution_and_direction_readout(model):
    att = lensbox.logit_attribution(model, torch.arange(5, 11)[None])
    att.model_name = NASTY
    markup = att._repr_html_()
    text = parse(markup)
    assert NASTY not in markup and NASTY in text
    p = 4  # target "next": the last position with a target
    assert f"position {p}" in text
    for name, v in att.top(p, n=10):
        assert name in text and _html.number(v) in text
    assert _html.number(float(att.logit[0, p])) in text and _html.number(float(att.contributions[0, p].sum())) in text

    from lensbox.lenses import read_direction

    out = read_direction(model, torch.randn(3, model.cfg.d_model, generator=torch.Generator().manual_seed(0)), k=3,
                         labels=["a", NASTY, "c"])
    markup = out._repr_html_()
    text = parse(markup)
    assert NASTY not in markup and NASTY in text and "promotes" in text
    for d in range(3):
        assert f"{out.top_labels[d][0]!r} {float(out.top_logits[d, 0]):+.2f}" in text


def test_component_lens_result(model):
    out = lensbox.component_lens(model, torch.arange(5, 11)[None])
    out.model_name = NASTY
    markup = out._repr_html_()
    text = parse(markup)
    assert NASTY not in markup and NASTY in text and out.norm_meaning in text
    p = out.tokens.shape[1] - 1
    for ci, comp in enumerate(out.components):
        assert comp.name in text
        assert f"{out.top_labels[0][ci][p][0]} {float(out.top_logits[0, ci, p, 0]):+.2f}" in text
        assert f"{out.bottom_labels[0][ci][p][0]} {float(out.bottom_logits[0, ci, p, 0]):+.2f}" in text
