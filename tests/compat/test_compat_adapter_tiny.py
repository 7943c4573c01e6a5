"""lensbox on a HookedTransformer converted from a tiny random Llama."""

import pytest
import torch

pytest.importorskip("transformer_lens.HookedTransformer", exc_type=ImportError)

from transformer_lens import HookedTransformer  # noqa: E402

import lensbox  # noqa: E402
from lensbox import Site  # noqa: E402
from lensbox.models._convert import to_hooked_transformer  # noqa: E402

import compat_checks as checks  # noqa: E402
from compat_models import char_ids, tiny_llama  # noqa: E402

TEXT = "the cat sat on the mat."


@pytest.fixture(scope="module")
def hf():
    return tiny_llama()


@pytest.fixture(scope="module", params=[False, True], ids=["unfolded", "fold_ln"])
def ht(request, hf, tiny_tokenizer):
    return to_hooked_transformer(hf, tiny_tokenizer, fold_ln=request.param)


@pytest.fixture(scope="module")
def toks(ht):
    return lensbox.adapt(ht).to_tokens(TEXT)


def test_adapter_sizes_and_hook_names(ht):
    adapter = checks.check_adapter(ht, n_layers=3, d_model=32, d_vocab=300)
    assert adapter.hook_name("embed") == "blocks.0.hook_resid_pre"
    assert adapter.hook_name("resid_mid.1") == "blocks.1.hook_resid_mid"


def test_to_tokens_prepends_bos_once(ht):
    adapter = lensbox.adapt(ht)
    expected = [[1] + char_ids(TEXT)]
    assert adapter.to_tokens(TEXT).tolist() == expected
    assert ht.to_tokens(TEXT).tolist() == expected
    assert adapter.to_tokens(TEXT, prepend_bos=False).tolist() == [char_ids(TEXT)]


def test_decode_reproduces_logits(ht, toks):
    checks.check_decode_reproduces_logits(ht, toks)


def test_run_and_capture_matches_run_with_cache(ht, toks):
    sites = [Site.embed(), Site.resid_mid(0), Site.resid_pre(1), Site.resid_post(1), Site.resid_post(2)]
    checks.check_run_and_capture(ht, toks, sites)


def test_streams_match_hugging_face_hidden_states(ht, hf, toks):
    checks.check_streams_match_hugging_face(ht, hf, toks)


def test_logit_lens_equals_final_norm_and_unembed_by_hand(ht):
    batch = torch.randint(3, 300, (2, 9), generator=torch.Generator().manual_seed(3))
    checks.check_logit_lens_by_hand(ht, batch)


def test_subclass_is_adapted(hf, tiny_tokenizer):
    class MyHT(HookedTransformer):  # how sae-lens's HookedSAETransformer extends it
        pass

    sub = to_hooked_transformer(hf, tiny_tokenizer, hooked_class=MyHT)
    assert type(sub) is MyHT
    checks.check_adapter(sub, n_layers=3, d_model=32, d_vocab=300)
    toks = lensbox.adapt(sub).to_tokens(TEXT)
    checks.check_decode_reproduces_logits(sub, toks)
    checks.check_run_and_capture(sub, toks, [Site.embed(), Site.resid_post(2)])
