"""`lensbox train-lens` and `lensbox eval-lens` through lensbox.cli.main."""

import json

import pytest

from lensbox.cli import main
from lensbox.lenses._tuned import TunedLens

from test_tuned_lens_models import save_tiny_hf_dir


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    model_dir = save_tiny_hf_dir(root / "model")
    text = root / "train.txt"
    text.write_text("\n".join(" ".join(f"t{i * 5 + j}" for j in range(10)) for i in range(40)), encoding="utf-8")
    return root, model_dir, text


def test_train_then_eval(setup, capsys):
    root, model_dir, text = setup
    out = root / "lens"
    ckpt = root / "ckpt"
    argv = ["-q", "train-lens", str(text), "--model", model_dir, "--window", "16", "--batch-size", "2",
            "--steps", "2", "--val-fraction", "0.2", "--max-val-tokens", "32", "--checkpoint-dir", str(ckpt),
            "--checkpoint-every", "1", "--out", str(out)]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["saved"] == str(out) and printed["train_tokens"] == 64
    lens = TunedLens.load(out)
    assert lens.config["training"]["steps"] == 2 and lens.config["training"]["init"] == "lstsq"
    assert (ckpt / "checkpoint.json").is_file()
    # the same --out again: refused before training, and the saved lens is untouched
    before = (out / "translators.safetensors").read_bytes()
    assert main(argv[:-4] + ["--out", str(out)]) == 2
    assert "overwrite" in capsys.readouterr().err
    assert (out / "translators.safetensors").read_bytes() == before
    # an existing checkpoint without --resume is refused too
    assert main(argv[:-2] + ["--out", str(root / "lens2")]) == 2
    assert "resume" in capsys.readouterr().err

    csv, png, js = root / "ev.csv", root / "ev.png", root / "ev.json"
    ev_argv = ["-q", "eval-lens", str(text), "--model", model_dir, "--window", "16", "--lens", f"tuned={out}",
               "--out", str(csv), "--out", str(png), "--out", str(js)]
    # the lens's own training text is refused (its config.json records it) ...
    assert main(ev_argv) == 2
    err = capsys.readouterr().err
    assert "the text lens 'tuned' was trained on" in err and "--held-out" in err
    assert not csv.exists()
    # ... and --held-out scores exactly the windows its training run held out
    rc = main(ev_argv + ["--held-out"])
    assert rc == 0
    shown = capsys.readouterr().out
    assert "resid_post.1" in shown and "tuned" in shown and "mean" in shown
    data = json.loads(js.read_text())
    from transformers import AutoTokenizer

    from lensbox.data import split_windows, windows

    tok = AutoTokenizer.from_pretrained(model_dir)
    n_val = sum(1 for _ in split_windows(windows(tok, [text], window=16), "val", val_fraction=0.2, seed=0))
    assert n_val > 0 and data["tokens"] == n_val * 16
    assert data["lenses"] == ["logit", "tuned"]
    assert data["mean_kl"]["tuned"] < data["mean_kl"]["logit"]
    assert csv.read_text().startswith("lens,site,kl,ce,bpb,top1_agree")
    assert png.stat().st_size > 1000


def test_cli_bad_input(setup, capsys):
    root, model_dir, text = setup
    assert main(["-q", "eval-lens", str(text), "--model", model_dir, "--lens", str(root / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    tiny = root / "tiny.txt"
    tiny.write_text("short", encoding="utf-8")
    assert main(["-q", "train-lens", str(tiny), "--model", model_dir, "--out", str(root / "y"), "--window", "16"]) == 2
    assert "shorter than one" in capsys.readouterr().err
    # The default window (256) is longer than this model's context (128): refused first.
    assert main(["-q", "train-lens", str(tiny), "--model", model_dir, "--out", str(root / "y")]) == 2
    assert "longer than the model's context" in capsys.readouterr().err
