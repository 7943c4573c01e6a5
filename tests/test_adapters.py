import dataclasses
import json

import pytest
import torch

import lensbox
from lensbox import ArtifactError, InputError, ModelError, Site, SiteError
from lensbox.core import Fingerprint, check_fingerprint

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
    fr, fc, fo = (lensbox.adapt(m).fingerprint for m in (raw, compat, other))
    assert lensbox.adapt(compat).generation == "bridge-compat"
    # compatibility mode folds and centres weights: the weight digests differ, the decoder agrees
    assert fr.weights != fc.weights and fr.decoder_ids == fc.decoder_ids
    assert fr.vocab == fc.vocab == fo.vocab is not None
    check_fingerprint(fr, fc, what="the lens")  # same model in another generation: accepted
    with pytest.raises(ModelError, match="fingerprint differs in decoder") as info:
        check_fingerprint(fr, fo, what="the tuned lens at ./lens")
    msg = str(info.value)
    assert msg.startswith("The tuned lens at ./lens was made for another model")
    assert str([r[0] for r in fr.decoder_ids]) in msg and str([r[0] for r in fo.decoder_ids]) in msg
    assert "check_fingerprint=False" in msg
    check_fingerprint(fr, fo, what="the lens", check=False)


def test_fingerprint_decoder_ids_are_the_decoders_top_tokens(bridge):
    a = lensbox.adapt(bridge)
    gen = torch.Generator().manual_seed(20240229)
    probes = torch.randn(8, a.d_model, generator=gen)
    with torch.no_grad():
        lp = (bridge.ln_final(probes) @ bridge.W_U + bridge.b_U).log_softmax(-1)
    top = lp.topk(3, dim=-1)
    assert [list(r) for r in a.fingerprint.decoder_ids] == top.indices.tolist()
    assert torch.allclose(torch.tensor(a.fingerprint.decoder_logprobs), top.values, atol=1e-4)
    assert (a.n_layers, a.d_model, a.d_vocab) == (a.fingerprint.n_layers, a.fingerprint.d_model, a.fingerprint.d_vocab)


def test_fingerprint_cached_per_model_and_refreshed_on_change():
    model = tiny_bridge(seed=0)
    first = lensbox.adapt(model).fingerprint
    assert lensbox.adapt(model).fingerprint is first  # a new adapter, the same model: cached
    name, p = next(iter(model.named_parameters()))
    saved = p.detach().clone()
    with torch.no_grad():
        p.add_(1.0)  # in place: the version counter moves
    changed = lensbox.adapt(model).fingerprint
    assert changed is not first and changed.weights != first.weights
    with torch.no_grad():
        p.copy_(saved)
    assert lensbox.adapt(model).fingerprint.weights == first.weights


def test_fingerprint_weights_cover_every_parameter(bridge):
    from lensbox.core._fingerprint import weights_digest

    model = tiny_bridge(seed=0)
    before = weights_digest(model)
    for name, p in model.named_parameters():
        saved = p.detach().clone()
        with torch.no_grad():
            p.view(-1)[-1] += 1e-3
        assert weights_digest(model) != before, name
        with torch.no_grad():
            p.copy_(saved)
    assert weights_digest(model) == before


def test_fingerprint_vocab_and_sizes_refused(bridge):
    fp = lensbox.adapt(bridge).fingerprint
    other_vocab = dataclasses.replace(fp, vocab="0123456789abcdef", weights=None)
    with pytest.raises(ModelError, match="differs in vocab") as info:
        check_fingerprint(other_vocab, fp, what="the probe")
    assert "0123456789abcdef (saved" in str(info.value) and f"{fp.vocab} (this model" in str(info.value)
    with pytest.raises(ModelError, match="differs in d_model") as info:
        check_fingerprint(dataclasses.replace(fp, d_model=64), fp, what="the probe")
    assert "expected: 64 (saved" in str(info.value) and "received: 32 (this model" in str(info.value)
    with pytest.raises(ModelError, match="records no model fingerprint"):
        check_fingerprint(None, fp, what="the probe")
    check_fingerprint(None, fp, what="the probe", check=False)


def test_fingerprint_logprob_tolerance(bridge):
    fp = lensbox.adapt(bridge).fingerprint
    shifted = lambda d: dataclasses.replace(  # noqa: E731
        fp, weights=None, decoder_logprobs=tuple((r[0] + d,) + r[1:] for r in fp.decoder_logprobs)
    )
    check_fingerprint(shifted(0.09), fp, what="the lens")
    with pytest.raises(ModelError, match="median difference 0.110 > 0.1"):
        check_fingerprint(shifted(0.11), fp, what="the lens")


def test_fingerprint_json_round_trip(bridge):
    fp = lensbox.adapt(bridge).fingerprint
    d = json.loads(json.dumps(fp.to_json()))
    assert Fingerprint.from_json(d) == fp
    legacy = fp()  # the decoder-only dict of lensbox 0.1
    old = Fingerprint.from_json(legacy)
    assert old.weights is None and old.decoder_ids == fp.decoder_ids
    check_fingerprint(old, fp, what="an old lens")
    for bad in ([1], {**d, "d_model": "32"}, {**d, "decoder_ids": None}, {**d, "fingerprint_version": 9}):
        with pytest.raises(ArtifactError, match="fingerprint stored in the lens cannot be read"):
            Fingerprint.from_json(bad, what="the lens")


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
