import pytest

from lensbox.cli import main


@pytest.mark.smollm2
def test_lens_table_and_outputs(tmp_path, capsys):
    csv = tmp_path / "lens.csv"
    code = main(["-q", "lens", "The capital of France is", "--layers", "embed,25-29", "--out", str(csv)])
    out = capsys.readouterr().out
    assert code == 0
    assert "resid_post.29" in out and "Paris" in out
    import pandas as pd

    df = pd.read_csv(csv)
    assert set(df.site) == {"embed", "resid_post.25", "resid_post.26", "resid_post.27", "resid_post.28", "resid_post.29"}
    last = df[(df.site == "resid_post.29")].sort_values("pos").iloc[-1]
    assert last.top1_token.strip("␣") == "Paris"


@pytest.mark.smollm2
def test_lens_bad_layer_is_clear(capsys):
    code = main(["-q", "lens", "hello", "--layers", "99"])
    err = capsys.readouterr().err
    assert code == 2 and "Layer 99 does not exist" in err and "fix:" in err


def test_unknown_output_format(tmp_path):
    from lensbox import LensboxError
    from lensbox.cli import write_result

    with pytest.raises(LensboxError, match="Unknown output format"):
        write_result(object(), tmp_path / "x.docx")


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "lens" in capsys.readouterr().out
