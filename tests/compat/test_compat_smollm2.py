"""lensbox on SmolLM2-135M-Instruct converted to a HookedTransformer (transformer-lens 2.x/3.x)."""

import pytest
import torch

pytest.importorskip("transformer_lens.HookedTransformer", exc_type=ImportError)

import lensbox  # noqa: E402
from lensbox import Site  # noqa: E402
from lensbox.models._convert import to_hooked_transformer  # noqa: E402

import compat_checks as checks  # noqa: E402

pytestmark = pytest.mark.smollm2

PROMPT = "The capital of France is"
# The same ids under transformers 4.x (whose SmolLM2 tokenizer adds BOS itself) and 5.x
# (whose tokenizer does not, so TransformerLens prepends it): BOS is id 1, <|im_start|>.
PROMPT_IDS = [1, 504, 3575, 282, 4649, 314]


@pytest.fixture(scope="module", params=[False, True], ids=["unfolded", "fold_ln"])
def ht(request, smollm2_hf):
    hf, tok = smollm2_hf
    return to_hooked_transformer(hf, tok, fold_ln=request.param)


@pytest.fixture(scope="module")
def toks(ht):
    return lensbox.adapt(ht).to_tokens(PROMPT)


def test_config_reads_rope_base_and_sizes(ht):
    assert ht.cfg.rotary_base == 100000.0
    assert (ht.cfg.n_layers, ht.cfg.d_model, ht.cfg.n_heads, ht.cfg.n_key_value_heads) == (30, 576, 9, 3)
    assert ht.cfg.n_ctx == 2048


def test_token_ids_are_the_same_in_every_generation(ht, toks):
    assert toks.tolist() == [PROMPT_IDS]
    assert ht.to_tokens(PROMPT).tolist() == [PROMPT_IDS]


def test_log_probs_match_hugging_face(ht, toks, smollm2_hf):
    hf, _ = smollm2_hf
    with torch.no_grad():
        ours = ht(toks).log_softmax(-1)
        ref = hf(toks).logits.log_softmax(-1)
    assert (ours - ref).abs().max() <= 1e-3
    assert ours[0, -1].argmax() == ref[0, -1].argmax()


def test_adapter_sizes_and_hook_names(ht):
    checks.check_adapter(ht, n_layers=30, d_model=576, d_vocab=49152)


def test_decode_reproduces_logits(ht, toks):
    checks.check_decode_reproduces_logits(ht, toks)


def test_run_and_capture_matches_run_with_cache(ht, toks):
    sites = [Site.embed(), Site.resid_mid(7), Site.resid_pre(15), Site.resid_post(15), Site.resid_post(29)]
    checks.check_run_and_capture(ht, toks, sites)


def test_streams_match_hugging_face_hidden_states(ht, toks, smollm2_hf):
    hf, _ = smollm2_hf
    checks.check_streams_match_hugging_face(ht, hf, toks)


def test_logit_lens_equals_final_norm_and_unembed_by_hand(ht, toks):
    # Every resid_post and resid_mid of a spread of blocks (the first, middle and last ones).
    checks.check_logit_lens_by_hand(ht, toks, sites="embed,0,1,14,15,28,29")


def test_fingerprint_matches_the_hugging_face_decoder(ht, smollm2_hf):
    """The fingerprint's decoder record is the HF final norm + lm_head, folded or not."""
    hf, _ = smollm2_hf
    fp = lensbox.adapt(ht).fingerprint
    gen = torch.Generator().manual_seed(20240229)  # the probe vectors the decoder record decodes
    probes = torch.randn(8, 576, generator=gen)
    with torch.no_grad():
        ref = hf.lm_head(hf.model.norm(probes)).log_softmax(-1).topk(3, dim=-1)
    assert [list(r) for r in fp.decoder_ids] == ref.indices.tolist()
    assert torch.allclose(torch.tensor(fp.decoder_logprobs), ref.values, atol=1e-3)
