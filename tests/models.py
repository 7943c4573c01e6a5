"""Small model builders shared by the tests (plain functions; ``conftest.py`` wraps them in fixtures).

A module with a unique name, so ``from models import ...`` never picks up another directory's
``conftest``."""

import functools
from pathlib import Path
from typing import Any

import torch


@functools.lru_cache(maxsize=None)
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    from lensbox.models._loading import default_model_dir

    return AutoTokenizer.from_pretrained(str(default_model_dir(progress=False)))


TINY_CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome. ",
    "Once upon a time a small model read the same small words again and again. ",
    "It was the best of times, it was the worst of times, it was the age of wisdom. ",
    "def add(a, b):\n    return a + b\n",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10. Naïve café über straße!",
]
TINY_VOCAB = 320  # model vocabulary; the tokenizer uses ids below 300


def build_tiny_tokenizer(directory: Path) -> Any:
    """Train a 300-token byte-level BPE on TINY_CORPUS, save it in ``directory`` and load it back."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<bos>", "<eos>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(TINY_CORPUS * 3, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<bos>", eos_token="<eos>", pad_token="<eos>")
    fast.save_pretrained(str(directory))
    return AutoTokenizer.from_pretrained(str(directory))


def build_tiny_hf_llama(
    *,
    vocab: int = TINY_VOCAB,
    n_layers: int = 3,
    d_model: int = 32,
    seed: int = 0,
    init: float = 0.3,
    tie: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Any:
    """A random-weight Hugging Face Llama (deterministic for a given seed)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=d_model,
        intermediate_size=2 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        initializer_range=init,
        tie_word_embeddings=tie,
        rope_theta=10000.0,
    )
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(cfg).eval()
    finally:
        torch.random.set_rng_state(gen_state)
    return model.to(dtype)


def build_tiny_lm(tokenizer: Any, *, compat: bool = False, hf_model: Any = None, **hf_kwargs: Any) -> Any:
    """A TransformerBridge around ``hf_model`` (or a fresh ``build_tiny_hf_llama(**hf_kwargs)``)."""
    from transformer_lens.model_bridge import TransformerBridge

    hf = hf_model if hf_model is not None else build_tiny_hf_llama(**hf_kwargs)
    dtype = next(hf.parameters()).dtype
    bridge = TransformerBridge.boot_transformers("tiny-llama", hf_model=hf, tokenizer=tokenizer, dtype=dtype)
    if compat:
        bridge.enable_compatibility_mode()
    return bridge.eval()


def tiny_hf_llama(seed: int = 0, n_layers: int = 3, vocab: int = 49152, d_model: int = 32):
    """A random-weight Llama with SmolLM2's vocabulary size, tied embeddings and HF's default init."""
    return build_tiny_hf_llama(vocab=vocab, n_layers=n_layers, d_model=d_model, seed=seed, init=0.02, tie=True)


def tiny_bridge(seed: int = 0, n_layers: int = 3, compat: bool = False):
    """A random-weight Llama TransformerBridge with SmolLM2's tokenizer (vocab 49152, d_model 32)."""
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(
        "tiny-llama", hf_model=tiny_hf_llama(seed, n_layers), tokenizer=smollm2_tokenizer()
    )
    if compat:
        bridge.enable_compatibility_mode()
    return bridge




# ----------------------------------------------------------------------------- the architecture matrix
#: Families the matrix tests boot as tiny random TransformerBridges (each with the feature the lens must
#: decode right): GPT-2 (LayerNorm, learned positions, tied embeddings), GPT-NeoX (parallel attention and
#: MLP, partial rotary, untied), Llama (RMSNorm, grouped-query attention, gated MLP), Gemma-2 (final-logit
#: and attention soft-caps), Qwen2 (biased q/k/v projections).
ARCH_FAMILIES = ("gpt2", "neox", "llama", "gemma2", "qwen2")


def _hf_config(family: str, *, vocab: int, n_layers: int, d_model: int, init: float) -> Any:
    import transformers as tf

    common = dict(vocab_size=vocab, initializer_range=init, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    if family == "gpt2":
        return tf.GPT2Config(n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=128, **common)
    if family == "neox":
        return tf.GPTNeoXConfig(
            hidden_size=d_model, num_hidden_layers=n_layers, num_attention_heads=4, intermediate_size=2 * d_model,
            rotary_pct=0.5, use_parallel_residual=True, max_position_embeddings=128, tie_word_embeddings=False,
            **common,
        )
    if family == "llama":
        return tf.LlamaConfig(
            hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, **common,
        )
    if family == "gemma2":
        return tf.Gemma2Config(
            hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers, num_attention_heads=4,
            num_key_value_heads=2, head_dim=d_model // 4, max_position_embeddings=128, final_logit_softcapping=2.0,
            attn_logit_softcapping=5.0, query_pre_attn_scalar=d_model // 4, sliding_window=64, **common,
        )
    if family == "qwen2":
        return tf.Qwen2Config(
            hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=False, **common,
        )
    raise ValueError(f"unknown family {family!r}; known: {ARCH_FAMILIES}")


def build_tiny_hf(
    family: str, *, vocab: int = TINY_VOCAB, n_layers: int = 2, d_model: int = 32, seed: int = 0, init: float = 0.3
) -> Any:
    """A random-weight Hugging Face causal LM of ``family`` (one of ARCH_FAMILIES), built offline from its config
    (deterministic for a given seed). Every 1-D parameter (biases, norm scales and shifts, which HF initialises
    to 0 or 1) gets 0.1 x N(0, 1) added, so a decoder that dropped a bias or a norm's affine part would show."""
    from transformers import AutoModelForCausalLM

    cfg = _hf_config(family, vocab=vocab, n_layers=n_layers, d_model=d_model, init=init)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = AutoModelForCausalLM.from_config(cfg).eval()
        with torch.no_grad():
            for param in model.parameters():
                if param.ndim == 1:
                    param.add_(0.1 * torch.randn_like(param))
        return model
    finally:
        torch.random.set_rng_state(gen_state)
