"""Fixtures for the TransformerLens 2.x / 3.x HookedTransformer tests.

These tests run in the extra environments that ``.ci/compat.sh`` builds
(transformer-lens 2.18 on transformers 4.x, 3.9 on transformers 5.x) and in the
main environment (4.x), where the HookedTransformer modules skip as a whole.
Model builders live in ``compat_models.py`` (a unique name, so no other conftest
shadows them).
"""

from typing import Any

import pytest

from compat_models import CHARS, SPECIALS


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A character-level fast tokenizer written to disk and read back (TransformerLens
    re-reads a tokenizer from its path to get a BOS-adding variant)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + list(CHARS))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    path = tmp_path_factory.mktemp("tiny_tokenizer")
    fast.save_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))


@pytest.fixture(scope="session")
def smollm2_hf() -> Any:
    """SmolLM2-135M-Instruct as a transformers model and tokenizer (lensbox's cached copy)."""
    from lensbox.models import load_hf_model

    model, tok, _ = load_hf_model(None, progress=False)
    return model, tok
