"""``lensbox attribute`` through ``lensbox.cli.main`` on the session-wide tiny Llama bridge (tiny tokenizer)."""

import pytest

from lensbox.cli import _common, main

PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.fixture
def tiny(monkeypatch, tiny_lm):
    monkeypatch.setattr(_common, "load_model", lambda args: tiny_lm)


def test_attribute_prints_and_writes(tiny, tmp_path, capsys):
    import pandas as pd

    import lensbox

    png, csv = tmp_path / "fig.png", tmp_path / "attr.csv"
    code = main(["-q", "attribute", PROMPT, "--target", "17", "--minus", "42", "--top", "6", "--out", str(png)])
    out = capsys.readouterr().out
    assert code == 0 and png.stat().st_size > 1000
    lines = out.strip().splitlines()
    ref = lensbox.logit_attribution(_common.load_model(None), PROMPT, target=17, minus=42)
    n = ref.tokens.shape[1]
    assert f"position {n - 1} " in lines[0] and f"{ref.target_label(-1)} [token minus token]" in lines[0]
    assert len(lines) == 1 + 6 + 1 and lines[-1].split()[0] == "sum"
    assert f"{float(ref.logit[0, -1]):+.3f}" in lines[-1]
    assert lines[1].split()[0] == ref.top(-1, n=1, heads=True)[0][0]
    assert main(["-q", "attribute", PROMPT, "--target", "top1", "--no-heads", "--out", str(csv)]) == 0
    df = pd.read_csv(csv)
    assert set(df.component) == set(ref.components) and df.position.max() == ref.tokens.shape[1] - 1


def test_attribute_bad_target_is_clear(tiny, capsys):
    code = main(["-q", "attribute", PROMPT, "--target", " Mary John"])
    err = capsys.readouterr().err
    assert code == 2 and "is not one token" in err and "fix:" in err


def test_attribute_bad_out_before_the_model(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(_common, "load_model", lambda args: pytest.fail("the model was loaded"))
    code = main(["-q", "attribute", PROMPT, "--out", str(tmp_path / "x.docx")])
    assert code == 2 and "x.docx" in capsys.readouterr().err
