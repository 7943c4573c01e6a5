import pytest
import torch

import lensbox
from lensbox import InputError, ModelError, Site, SiteError

from models import tiny_bridge


@pytest.fixture(scope="module")
def bridge():
    return tiny_bridge()


def test_sizes_and_hook_names(bridge):
    a = lensbox.adapt(bridge)
    assert (a.n_layers, a.d_model, a.d_vocab) == (3, 32, 49152)
    assert a.generation == "bridge"
    names = set(bridge.hook_dict)
    for s in a.sites("all", include_mid=True):
        assert a.hook_name(s) in names
    assert a.hook_name("resid_pre.2") == "blocks.2.hook_resid_pre"


def test_decode_reproduces_model_logits(bridge):
    a = lensbox.adapt(bridge)
    tokens = a.to_tokens("The quick brown fox")
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(tokens)
    decoded = a.decode(cache["blocks.2.hook_resid_post"])
    assert (decoded - logits).abs().max() <= 1e-4


def test_run_and_capture_matches_run_with_cache(bridge):
    a = lensbox.adapt(bridge)
    tokens = a.to_tokens("one two three four")
    sites = [Site.embed(), Site.resid_mid(1), Site.resid_post(2)]
    got = a.run_and_capture(tokens, sites)
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens)
    for s in sites:
        torch.testing.assert_close(got[s], cache[a.hook_name(s)])


def test_fingerprint_stable_across_compat_and_distinct_across_models():
    raw, compat, other = tiny_bridge(seed=0), tiny_bridge(seed=0, compat=True), tiny_bridge(seed=1)
    fr, fc, fo = (lensbox.adapt(m).fingerprint() for m in (raw, compat, other))
    assert fr["top_ids"] == fc["top_ids"]
    assert fr["digest"] != fo["digest"]
    assert lensbox.adapt(compat).generation == "bridge-compat"


def test_not_a_model():
    with pytest.raises(ModelError) as info:
        lensbox.adapt(torch.nn.Linear(3, 3))
    msg = str(info.value)
    assert "TransformerBridge" in msg and "HookedTransformer" in msg and "torch.nn.modules.linear.Linear" in msg


def test_empty_text(bridge):
    with pytest.raises(InputError, match="empty text"):
        lensbox.logit_lens(bridge, "   ")


def test_too_long(bridge):
    a = lensbox.adapt(bridge)
    with pytest.raises(InputError) as info:
        a.to_tokens(torch.zeros(1, a.n_ctx + 1, dtype=torch.long))
    assert f"at most {a.n_ctx} tokens" in str(info.value) and "truncate" in str(info.value)


def test_float_tokens_and_out_of_vocab(bridge):
    a = lensbox.adapt(bridge)
    with pytest.raises(InputError, match="integers"):
        a.to_tokens(torch.zeros(1, 4))
    with pytest.raises(InputError, match="outside the model's vocabulary"):
        a.to_tokens(torch.tensor([[1, 49152]]))


def test_unequal_batch(bridge):
    with pytest.raises(InputError, match="different lengths"):
        lensbox.logit_lens(bridge, ["short", "a much longer sentence than the first"])


def test_tokens_on_other_device(bridge):
    meta = torch.zeros(1, 3, dtype=torch.long, device="meta")
    with pytest.raises(InputError) as info:
        lensbox.adapt(bridge).to_tokens(meta)
    assert "different devices" in str(info.value) and "meta" in str(info.value)


def test_cache_in_other_dtype_is_decoded_in_float32(bridge):
    # A bf16 cache against an fp32 model: statistics still come out float32 and close to the fp32 run.
    a = lensbox.adapt(bridge)
    tokens = a.to_tokens("a b c d e")
    with torch.no_grad():
        _, cache = bridge.run_with_cache(tokens)
    half = {k: v.to(torch.bfloat16) for k, v in cache.items()}
    r16 = lensbox.logit_lens(bridge, tokens, cache=half)
    r32 = lensbox.logit_lens(bridge, tokens, cache=cache)
    assert r16.kl_final.dtype == torch.float32
    assert (r16.entropy - r32.entropy).abs().max() < 0.1


def test_unknown_layer_in_lens(bridge):
    with pytest.raises(SiteError, match="0..2"):
        lensbox.logit_lens(bridge, "hello", sites=[7])
