"""Tiny models for the tuned-lens and training tests (no tests here; imported by them and their subprocesses).

The model is a random Llama (3 blocks, d_model 32, vocabulary 300) with a byte-level
tokenizer built locally (256 byte tokens + one end-of-text token), so text can be
tokenized without any download, and a vocabulary small enough for fast training.
``initializer_range=0.3`` makes its next-token distributions far from uniform, so
lens statistics are not all near zero.
"""

import functools
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from models import build_tiny_hf_llama  # noqa: E402


@functools.lru_cache(maxsize=None)
def byte_tokenizer_dir() -> str:
    """A saved byte-level BPE tokenizer (no merges): 256 byte tokens plus '<|endoftext|>' = 256."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    d = tempfile.mkdtemp(prefix="lensbox-bytetok-")
    fast.save_pretrained(d)
    return d


def byte_tokenizer():
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast.from_pretrained(byte_tokenizer_dir())


def tiny_hf(seed: int = 0, n_layers: int = 3, d_model: int = 32, vocab: int = 300, init: float = 0.3):
    """The random Llama of these tests: ``models.build_tiny_hf_llama`` with the byte tokenizer's vocabulary.

    Its weights depend only on the arguments (the builder seeds torch and restores the RNG after).
    """
    return build_tiny_hf_llama(vocab=vocab, n_layers=n_layers, d_model=d_model, seed=seed, init=init)


def tiny_model(seed: int = 0, n_layers: int = 3, d_model: int = 32, compat: bool = False):
    """A TransformerBridge over :func:`tiny_hf` with the byte tokenizer."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(
        f"tiny-llama-bytes-s{seed}", hf_model=tiny_hf(seed, n_layers, d_model), tokenizer=byte_tokenizer()
    )
    if compat:
        bridge.enable_compatibility_mode()
    return bridge


def save_tiny_hf_dir(path, seed: int = 0) -> str:
    """Write the tiny model + tokenizer as a Hugging Face directory (for the CLI's --model)."""
    tiny_hf(seed).save_pretrained(str(path), safe_serialization=True)
    byte_tokenizer().save_pretrained(str(path))
    return str(path)


def random_windows(n: int, window: int, seed: int = 0):
    """Token windows of random byte ids (no end-of-text token)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, window), generator=gen)


TEXT = (
    "It was a bright cold day in April, and the clocks were striking thirteen. "
    "The hallway smelt of boiled cabbage and old rag mats. At one end of it a coloured poster, "
    "too large for indoor display, had been tacked to the wall. "
)
