"""`lensbox train-probe` / `lensbox eval-probe` on a tiny random model saved as a Hugging Face directory."""

import json
import random

import pandas as pd
import pytest

from lensbox.cli import main

from models import smollm2_tokenizer, tiny_hf_llama


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_model")
    tiny_hf_llama(seed=0, n_layers=2).save_pretrained(path, safe_serialization=True)
    smollm2_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    rng = random.Random(0)
    words = "the cat dog sat on a mat and ran far away from home plasma star light".split()
    path = tmp_path_factory.mktemp("text") / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(120)), encoding="utf-8")
    return path


def test_train_then_eval(model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "probe"
    code = main(
        [
            "--quiet", "train-probe", str(text_file), "--model", str(model_dir), "--window", "16",
            "--max-tokens", "800", "--sites", "embed,0", "--offsets=0,-1", "--kinds", "ridge,softmax", "--epochs", "2",
            "--eval-tokens", "160", "--out", str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "k=-1" in printed and "embed" in printed
    cfg = json.loads((out / "probe.json").read_text())
    assert cfg["offsets"] == [0, -1] and cfg["kinds"] == ["ridge", "softmax"]
    assert cfg["training"]["data"]["window"] == 16 and cfg["training"]["data"]["part"] == "train"
    assert cfg["metrics"]["n_eval_tokens"] > 0

    csv, js, png = tmp_path / "acc.csv", tmp_path / "acc.json", tmp_path / "acc.png"
    code = main(
        [
            "eval-probe", str(out), "--model", str(model_dir), "--max-tokens", "160", "--out", str(csv),
            "--out", str(js), "--out", str(png), "--method", "ridge_cos", "--update", "-q",
        ]
    )
    assert code == 0
    table = pd.read_csv(csv)
    assert {"method", "site", "layer_depth", "offset", "bucket", "n", "top1", "top5"} <= set(table.columns)
    assert set(table["method"]) == {"ridge_dot", "ridge_cos", "softmax", "majority", "embed_t"}
    row = table[(table.method == "ridge_cos") & (table.site == "embed") & (table.offset == 0) & (table.bucket == "all")]
    assert float(row["top1"].iloc[0]) > 0.9  # embeddings hold the input token
    payload = json.loads(js.read_text())
    assert {r["kind"] for r in payload["relation"]} == {"ridge", "softmax"}
    assert png.stat().st_size > 1000


def test_eval_rejects_another_model(model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "probe"
    assert main(
        [
            "--quiet", "train-probe", str(text_file), "--model", str(model_dir), "--window", "16",
            "--max-tokens", "400", "--sites", "embed", "--offsets=0", "--out", str(out),
        ]
    ) == 0
    other = tmp_path / "other_model"
    tiny_hf_llama(seed=5, n_layers=2).save_pretrained(other, safe_serialization=True)
    smollm2_tokenizer().save_pretrained(other)
    capsys.readouterr()
    code = main(["--quiet", "eval-probe", str(out), "--model", str(other), "--max-tokens", "64"])
    assert code == 2
    assert "another model" in capsys.readouterr().err


def test_bad_offsets_message(model_dir, text_file, tmp_path, capsys, monkeypatch):
    # old spellings (--text, --tokens) still work; the offsets are checked before the model loads
    from lensbox.cli import _common

    monkeypatch.setattr(_common, "load_model", lambda args: pytest.fail("the model was loaded"))
    code = main(
        [
            "--quiet", "train-probe", "--model", str(model_dir), "--text", str(text_file), "--window", "8",
            "--tokens", "200", "--sites", "embed", "--offsets=0,x", "--out", str(tmp_path / "p"),
        ]
    )
    assert code == 2
    assert "Cannot read --offsets" in capsys.readouterr().err
