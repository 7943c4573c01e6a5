"""The default model says what it is (issue 10, item 4): a Q4_1 GGUF dequantized to float32.

The real SmolLM2 weights are replaced by a tiny random Llama folder standing in for the cached,
dequantized directory, so this runs offline in the quick suite; everything after the cache
(booting the bridge from the hub name, the reported name, results, figures) is the real code path.
"""

import dataclasses

import pytest
import torch

import lensbox
from lensbox.core import Fingerprint, adapt, check_fingerprint
from lensbox.models import DEFAULT_MODEL, DEFAULT_MODEL_LABEL, _loading

LABEL = "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)"


@pytest.fixture
def fake_default(tmp_path, tiny_tokenizer_path, monkeypatch):
    from transformers import AutoTokenizer

    from models import build_tiny_hf_llama

    directory = tmp_path / "hf-transformers-stand-in"
    build_tiny_hf_llama(seed=3).save_pretrained(str(directory))
    AutoTokenizer.from_pretrained(str(tiny_tokenizer_path)).save_pretrained(str(directory))
    monkeypatch.setattr(_loading, "default_model_dir", lambda progress=True: directory)
    from transformer_lens.model_bridge import TransformerBridge

    booted = []
    original = TransformerBridge.boot_transformers

    def spy(name, **kwargs):
        booted.append(name)
        return original(name, **kwargs)

    monkeypatch.setattr(TransformerBridge, "boot_transformers", spy)
    return booted


def test_the_default_model_reports_its_quantization(fake_default, tiny_tokens):
    assert DEFAULT_MODEL_LABEL == LABEL
    model = lensbox.load_model(progress=False)
    assert fake_default == [DEFAULT_MODEL]  # TransformerLens still boots from the hub name
    assert model.cfg.model_name == LABEL
    adapter = adapt(model)
    assert adapter.model_name == LABEL
    result = lensbox.logit_lens(model, tiny_tokens)
    assert result.model_name == LABEL
    assert LABEL in repr(result) and LABEL in result._repr_html_()

    from lensbox.plot import plot_heatmap

    fig = plot_heatmap(result)
    titles = [ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""]
    assert any(LABEL in t for t in titles), titles
    assert not any("HuggingFaceTB/" in t for t in titles)

    # The fingerprint records the new name but does not compare names: an artifact saved under the
    # old name (the hub name) still matches this model, and the label shows in its messages.
    current = adapter.fingerprint
    assert current.model_name == LABEL
    check_fingerprint(dataclasses.replace(current, model_name=DEFAULT_MODEL), current, what="an old lens")
    assert Fingerprint.from_json(current.to_json()).model_name == LABEL


def test_other_dtypes_and_other_models_are_named_honestly(fake_default, tmp_path, tiny_tokenizer_path):
    model = lensbox.load_model(dtype=torch.bfloat16, progress=False)
    assert model.cfg.model_name == "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32, loaded as bfloat16)"
    # A model that is not the default keeps its own name (here a local folder's name).
    other = lensbox.load_model(_loading.default_model_dir(), progress=False)
    assert other.cfg.model_name == "hf-transformers-stand-in"
