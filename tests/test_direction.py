"""Direction readout (issue 9 item 4) against plain PyTorch topk on the full ``[n, vocab]`` product."""

import pytest
import torch

import lensbox.lenses._direction as direction_module
from lensbox import InputError, NonFiniteError
from lensbox.lenses import DirectionLens, DirectionReadout, TunedLens, read_direction


@pytest.fixture(scope="module")
def directions(tiny_lm):
    gen = torch.Generator().manual_seed(7)
    return torch.randn(37, tiny_lm.cfg.d_model, generator=gen)


def _reference(model, rows, k, norm):
    with torch.no_grad():
        x = model.ln_final(rows) if norm == "final" else rows
        full = (x @ model.W_U).float()  # [n, vocab]: fine for a reference on a tiny model
    top = full.topk(k, dim=-1)
    bottom = full.topk(k, dim=-1, largest=False)
    return top, bottom


@pytest.mark.parametrize("norm", ["none", "final"])
def test_matches_full_topk_in_small_chunks(tiny_lm, directions, norm, monkeypatch):
    shapes = []
    original = direction_module.block_logits

    def spy(rows, block):
        out = original(rows, block)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(direction_module, "block_logits", spy)
    out = read_direction(tiny_lm, directions, k=6, norm=norm, chunk_directions=8, chunk_vocab=50)
    top, bottom = _reference(tiny_lm, directions, 6, norm)
    assert torch.equal(out.top_ids, top.indices) and torch.equal(out.bottom_ids, bottom.indices)
    assert torch.allclose(out.top_logits, top.values, atol=1e-5)
    assert torch.allclose(out.bottom_logits, bottom.values, atol=1e-5)
    # Memory bound: no work block is wider than the chunks (37 directions x 320 tokens never exists at once).
    assert max(r for r, _ in shapes) == 8 and max(c for _, c in shapes) == 50
    assert len(shapes) == 5 * 7  # ceil(37/8) direction chunks x ceil(320/50) vocabulary chunks
    whole = read_direction(tiny_lm, directions, k=6, norm=norm, chunk_directions=1000, chunk_vocab=10_000)
    assert torch.equal(whole.top_ids, out.top_ids) and torch.allclose(whole.top_logits, out.top_logits, atol=1e-6)
    assert out.norm == norm and out.norm_meaning == direction_module.NORM_MEANING[norm]


def test_final_norm_drops_the_length(tiny_lm, directions):
    lens = DirectionLens(tiny_lm, k=4, norm="final")
    a, b = lens(directions[:3]), lens(directions[:3] * 10.0)
    assert torch.equal(a.top_ids, b.top_ids) and torch.allclose(a.top_logits, b.top_logits, atol=1e-4)
    plain = read_direction(tiny_lm, directions[:3] * 10.0, k=4)
    assert torch.allclose(plain.top_logits, 10.0 * read_direction(tiny_lm, directions[:3], k=4).top_logits, atol=1e-4)


def test_result_views_and_one_vector(tiny_lm, directions):
    out = read_direction(tiny_lm, directions[0], k=3, labels=["probe row"])
    assert isinstance(out, DirectionReadout) and len(out) == 1 and out.labels == ["probe row"]
    df = out.to_pandas()
    assert len(df) == 6 and set(df["side"]) == {"top", "bottom"}
    assert df[df.side == "top"]["logit"].tolist() == out.top_logits[0].tolist()
    text = out.table()
    assert "probe row" in text and "promotes" in text and "suppresses" in text and "W_U" in text
    assert "<table" in out._repr_html_()
    assert out.top_labels[0][0] == lensbox_label(tiny_lm, int(out.top_ids[0, 0]))
    bias = TunedLens.identity(tiny_lm).translators.bias  # a tuned-lens translator bias reads too (zeros here)
    assert read_direction(tiny_lm, bias, k=2).top_ids.shape == (bias.shape[0], 2)


def lensbox_label(model, token_id):
    import lensbox

    return lensbox.adapt(model).token_label(token_id)


def test_bad_directions_get_clear_errors(tiny_lm, directions):
    with pytest.raises(InputError, match="width") as info:
        read_direction(tiny_lm, torch.randn(4, 31))
    assert "d_model = 32" in info.value.expected and "(4, 31)" in info.value.received and info.value.fix
    with pytest.raises(InputError, match="one label per direction"):
        read_direction(tiny_lm, directions[:2], labels=["a"])
    with pytest.raises(InputError, match="larger than the vocabulary"):
        read_direction(tiny_lm, directions[:2], k=10_000)
    bad = directions[:3].clone()
    bad[1, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="NaN"):
        read_direction(tiny_lm, bad)
