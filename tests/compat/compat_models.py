"""Model builders for the TransformerLens 2.x / 3.x HookedTransformer tests (plain functions)."""

import importlib
import string
from typing import Any, Optional

import torch

CHARS = string.ascii_lowercase + string.digits + " .,!?"
SPECIALS = ["<unk>", "<s>", "</s>"]


def hooked_transformer_class() -> Optional[type]:
    """``transformer_lens.HookedTransformer``, or None where it does not exist (4.x)."""
    try:
        module = importlib.import_module("transformer_lens.HookedTransformer")
    except ImportError:
        return None
    return getattr(module, "HookedTransformer", None)


def tiny_llama(
    *,
    seed: int = 0,
    n_kv_heads: int = 2,
    rope_theta: float = 50000.0,
    vocab: int = 300,
    **extra: Any,
) -> Any:
    """A random-weight Llama (3 blocks, d_model 32) with a RoPE base other than 10000."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=64,
        rope_theta=rope_theta,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        **extra,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        # Non-trivial norm weights, so folding them is visible in the weights.
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.5 * torch.randn_like(p))
    return model


def char_ids(text: str) -> list:
    return [len(SPECIALS) + CHARS.index(c) for c in text]
