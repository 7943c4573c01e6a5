"""to_hooked_transformer on tiny random Llamas, checked against the Hugging Face forward pass."""

import pytest
import torch

pytest.importorskip("transformer_lens.HookedTransformer", exc_type=ImportError)

from transformer_lens import HookedTransformer  # noqa: E402

from lensbox import ModelError  # noqa: E402
from lensbox.models._convert import to_hooked_transformer  # noqa: E402

from compat_models import tiny_llama  # noqa: E402


def tokens(seed: int = 1, batch: int = 2, pos: int = 12) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, 300, (batch, pos), generator=gen)


def hf_logits(model, toks):
    with torch.no_grad():
        return model(toks).logits


@pytest.mark.parametrize("n_kv_heads", [2, 4])  # grouped-query and plain multi-head attention
@pytest.mark.parametrize("fold_ln", [False, True])
def test_logits_match_hugging_face(n_kv_heads, fold_ln):
    hf = tiny_llama(n_kv_heads=n_kv_heads)
    ht = to_hooked_transformer(hf, fold_ln=fold_ln)
    assert isinstance(ht, HookedTransformer)
    assert ht.cfg.normalization_type == ("RMSPre" if fold_ln else "RMS")
    assert ht.cfg.n_key_value_heads == (None if n_kv_heads == 4 else n_kv_heads)
    toks = tokens()
    with torch.no_grad():
        got = ht(toks)
    assert (got - hf_logits(hf, toks)).abs().max() <= 1e-4


def sharpen_attention(model, factor: float = 6.0):
    """Larger query/key weights give peaked attention, so the positional rotation shows in the logits."""
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(factor)
            layer.self_attn.k_proj.weight.mul_(factor)
    return model


def test_rotary_base_comes_from_the_config():
    hf = sharpen_attention(tiny_llama(rope_theta=50000.0))
    ht = to_hooked_transformer(hf)
    assert ht.cfg.rotary_base == 50000.0
    toks = tokens()
    with torch.no_grad():
        got = ht(toks)
    # The same weights under TransformerLens's default base give other logits:
    # the match above is sensitive to the base.
    other = sharpen_attention(tiny_llama(rope_theta=10000.0))
    assert (got - hf_logits(hf, toks)).abs().max() <= 1e-4
    assert (got - hf_logits(other, toks)).abs().max() > 1e-3


def test_llama3_rope_scaling():
    scaling = {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    hf = sharpen_attention(tiny_llama(rope_scaling=scaling))
    ht = to_hooked_transformer(hf)
    assert ht.cfg.use_NTK_by_parts_rope is True
    toks = tokens(pos=20)
    with torch.no_grad():
        got = ht(toks)
    assert (got - hf_logits(hf, toks)).abs().max() <= 1e-4
    plain = sharpen_attention(tiny_llama())  # same seed, same weights, no scaling
    assert (got - hf_logits(plain, toks)).abs().max() > 1e-3


def test_attention_biases_are_kept():
    hf = tiny_llama(attention_bias=True)
    with torch.no_grad():
        for layer in hf.model.layers:
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                getattr(layer.self_attn, proj).bias.normal_(0.0, 0.5)
    ht = to_hooked_transformer(hf, fold_ln=True, fold_value_biases=True)
    toks = tokens()
    with torch.no_grad():
        got = ht(toks)
    assert (got - hf_logits(hf, toks)).abs().max() <= 1e-4


def test_center_unembed_keeps_log_probs_and_centres_W_U():
    hf = tiny_llama()
    ht = to_hooked_transformer(hf, fold_ln=True, center_unembed=True)
    assert ht.W_U.mean(-1).abs().max() <= 1e-6
    toks = tokens()
    with torch.no_grad():
        got = ht(toks).log_softmax(-1)
    assert (got - hf_logits(hf, toks).log_softmax(-1)).abs().max() <= 1e-4


def test_the_hugging_face_model_is_not_modified():
    hf = tiny_llama()
    before = {k: v.clone() for k, v in hf.state_dict().items()}
    to_hooked_transformer(hf, fold_ln=True, center_unembed=True, fold_value_biases=True)
    after = hf.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_dtype_and_context_options():
    hf = tiny_llama()
    ht = to_hooked_transformer(hf, dtype=torch.float64, n_ctx=32, model_name="tiny")
    assert ht.W_U.dtype == torch.float64 and ht.cfg.n_ctx == 32 and ht.cfg.model_name == "tiny"
    assert next(hf.parameters()).dtype == torch.float32
    toks = tokens()
    with torch.no_grad():
        got = ht(toks)
    assert (got.float() - hf_logits(hf, toks)).abs().max() <= 1e-4
    default = to_hooked_transformer(hf)
    assert default.cfg.n_ctx == 64  # max_position_embeddings, under the 2048 cap


def test_non_llama_model_is_refused():
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=16))
    with pytest.raises(ModelError) as info:
        to_hooked_transformer(gpt2)
    assert "Llama" in str(info.value) and "gpt2" in str(info.value)


def test_unsupported_rope_scaling_is_refused():
    hf = tiny_llama(rope_scaling={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(ModelError) as info:
        to_hooked_transformer(hf)
    assert "linear" in str(info.value)


def test_hooked_class_must_subclass_hooked_transformer():
    with pytest.raises(ModelError):
        to_hooked_transformer(tiny_llama(), hooked_class=torch.nn.Module)
