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
    # compatibility mode folds the RMS norms into the weights: the weight digests differ, the behaviour agrees
    assert fr.weights != fc.weights and fr.behaviour is not None and fc.behaviour is not None
    assert fr.vocab == fc.vocab == fo.vocab is not None
    check_fingerprint(fr, fc, what="the lens")  # same model in another generation: accepted
    with pytest.raises(ModelError, match="fingerprint differs in behaviour at embed") as info:
        check_fingerprint(fr, fo, what="the tuned lens at ./lens")
    msg = str(info.value)
    assert msg.startswith("The tuned lens at ./lens was made for another model")
    assert "relative difference" in msg and "> 0.0002" in msg and "check_fingerprint=False" in msg
    check_fingerprint(fr, fo, what="the lens", check=False)


def _edited(edit, seed: int = 0):
    """The fingerprint of tiny_bridge(seed) after ``edit(named parameters)`` (in place, no grad)."""
    model = tiny_bridge(seed=seed)
    with torch.no_grad():
        edit(dict(model.named_parameters()))
    return lensbox.adapt(model).fingerprint


def _mlp(params, layer: int, part: str):
    return next(p for n, p in params.items() if f"layers.{layer}." in n and f"mlp.{part}" in n.replace("_original_component.", ""))


def test_fingerprint_refuses_an_edited_mlp_weight_or_a_scaled_layer(bridge):
    """issue 11: +5 on one MLP weight, or an MLP scaled by 3, is another model (the old decoder check passed both)."""
    fp = lensbox.adapt(bridge).fingerprint
    plus5 = _edited(lambda ps: _mlp(ps, 2, "gate_proj").view(-1)[3].add_(5.0))
    times3 = _edited(lambda ps: _mlp(ps, 0, "down_proj").mul_(3.0))
    for changed, first_site in ((plus5, "resid_post.2"), (times3, "resid_post.0")):
        assert changed.decoder_ids == fp.decoder_ids  # the final norm and unembedding are untouched
        with pytest.raises(ModelError, match=f"differs in behaviour at {first_site} \\(relative difference") as info:
            check_fingerprint(fp, changed, what="the lens")
        assert "check_fingerprint=False" in str(info.value)
    # float32-rounding-sized noise (1e-8 on every weight) changes the digest but stays inside the tolerance
    noisy = _edited(lambda ps: [p.add_(1e-8 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1))) for p in ps.values()])
    assert noisy.weights != fp.weights
    check_fingerprint(fp, noisy, what="the lens")


def test_fingerprint_refuses_a_layernorm_model_whose_writing_weights_were_centred():
    """Compatibility mode on a LayerNorm model centres the writing weights: the residual basis changes."""
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformer_lens.model_bridge import TransformerBridge

    from models import smollm2_tokenizer

    def gpt2(compat: bool):
        torch.manual_seed(0)
        hf = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4)).eval()
        model = TransformerBridge.boot_transformers("gpt2", hf_model=hf, tokenizer=smollm2_tokenizer())
        if compat:
            model.enable_compatibility_mode()
        return model

    raw, centred = gpt2(False), gpt2(True)
    fr, fc = lensbox.adapt(raw).fingerprint, lensbox.adapt(centred).fingerprint
    with torch.no_grad():  # independent check: the processed model's embed stream is the raw one, centred
        tokens = torch.tensor([[1, 2, 3]])
        _, c_raw = raw.run_with_cache(tokens)
        _, c_cen = centred.run_with_cache(tokens)
    e_raw, e_cen = c_raw["blocks.0.hook_resid_pre"], c_cen["blocks.0.hook_resid_pre"]
    torch.testing.assert_close(e_cen, e_raw - e_raw.mean(-1, keepdim=True), atol=1e-5, rtol=1e-4)
    with pytest.raises(ModelError, match="differs in behaviour at embed"):
        check_fingerprint(fr, fc, what="the lens")


def test_fingerprint_behaviour_is_the_models_streams_at_the_probe_tokens(bridge):
    from lensbox.core._fingerprint import N_POSITIONS, probe_directions, probe_tokens

    a = lensbox.adapt(bridge)
    ids = probe_tokens(a.d_vocab, a.n_ctx)
    assert len(ids) == 16 and ids == probe_tokens(a.d_vocab) and all(0 <= i < a.d_vocab for i in ids)
    with torch.no_grad():
        logits, cache = bridge.run_with_cache(torch.tensor([ids]))
    dirs = torch.tensor(probe_directions(a.d_model))
    rec = dict(a.fingerprint.behaviour)
    assert list(rec) == ["embed", "resid_post.0", "resid_post.1", "resid_post.2", "final"]
    for name, hook in (("embed", "blocks.0.hook_resid_pre"), ("resid_post.2", "blocks.2.hook_resid_post")):
        x = cache[hook][0, -N_POSITIONS:]
        want = torch.cat([x.norm(dim=-1), (x @ dirs.T).T.reshape(-1)])
        torch.testing.assert_close(torch.tensor(rec[name]), want, rtol=1e-3, atol=1e-6)
    lp = logits[0, -N_POSITIONS:].log_softmax(-1)
    nxt = torch.tensor(ids[-N_POSITIONS + 1:] + ids[:1])
    want = torch.cat([lp.max(-1).values, lp[torch.arange(N_POSITIONS), nxt], lp.mean(-1)])
    torch.testing.assert_close(torch.tensor(rec["final"]), want, rtol=1e-3, atol=1e-6)
    assert len(json.dumps(a.fingerprint.to_json())) < 3000  # small: ~0.25 KB per layer


def test_fingerprint_behaviour_ignores_dropout_in_training_mode():
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformer_lens.model_bridge import TransformerBridge

    from models import smollm2_tokenizer

    torch.manual_seed(0)
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=2, n_head=4, resid_pdrop=0.5))
    model = TransformerBridge.boot_transformers("gpt2", hf_model=hf.eval(), tokenizer=smollm2_tokenizer())
    want = lensbox.adapt(model).fingerprint
    model.train()
    with torch.no_grad():
        hf.transformer.h[0].mlp.c_fc.weight.add_(0.0)  # a new version counter: recomputed, in training mode
    got = lensbox.adapt(model).fingerprint
    assert got is not want and got.behaviour == want.behaviour and model.training


def test_fingerprint_behaviour_tolerance(bridge):
    from lensbox.core._fingerprint import BEHAVIOUR_RTOL

    fp = lensbox.adapt(bridge).fingerprint
    rec = dict(fp.behaviour)
    scale = sum(rec["resid_post.1"][:8]) / 8  # the site's mean norm

    def nudged(rel: float):
        b = tuple((n, (v[0] + rel * scale,) + v[1:] if n == "resid_post.1" else v) for n, v in fp.behaviour)
        return dataclasses.replace(fp, weights=None, behaviour=b)

    check_fingerprint(nudged(0.9 * BEHAVIOUR_RTOL), fp, what="the lens")
    with pytest.raises(ModelError, match="behaviour at resid_post.1 \\(relative difference 0.00022 > 0.0002"):
        check_fingerprint(nudged(1.1 * BEHAVIOUR_RTOL), fp, what="the lens")


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
    # the embedding (49152 x 32 values) is above SAMPLE_LIMIT: an element the strided sample skips still counts
    W_E = next(p for n, p in model.named_parameters() if "embed_tokens" in n)
    with torch.no_grad():
        W_E.view(-1)[1] += 5.0
    assert weights_digest(model) != before


def test_bit_checksums_are_exact_and_position_weighted():
    from lensbox.core._fingerprint import bit_checksums

    t = torch.randn(3 * (1 << 16) + 5)
    sums = bit_checksums(t)
    words = t.view(torch.int32).to(torch.int64)
    words = torch.cat([words, words.new_zeros((-words.numel()) % (1 << 16))]).view(-1, 1 << 16)
    want = (words * (torch.arange(1 << 16) % 251 + 1)).sum(-1)  # python ints would agree too
    assert torch.equal(sums, want) and sums.shape == (4,)
    swapped = t.clone()
    swapped[[0, 1]] = swapped[[1, 0]]
    assert not torch.equal(bit_checksums(swapped), sums)
    odd = t[:7].to(torch.bfloat16)  # 14 bytes: read as uint8 words
    want_odd = (odd.view(torch.uint8).to(torch.int64) * (torch.arange(14) % 251 + 1)).sum()
    assert bit_checksums(odd).tolist() == [int(want_odd)]


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


def _v1_dict(fp: Fingerprint) -> dict:
    """The decoder-only dict lensbox 0.1 stored."""
    return {"d_model": fp.d_model, "d_vocab": fp.d_vocab, "n_layers": fp.n_layers, "digest": "x",
            "top_ids": [list(r) for r in fp.decoder_ids], "top_logprobs": [list(r) for r in fp.decoder_logprobs]}


def test_lensbox_0_1_fingerprints_use_the_decoder_check(bridge):
    old = Fingerprint.from_json(_v1_dict(lensbox.adapt(bridge).fingerprint))
    assert old.weights is None and old.behaviour is None
    fp = lensbox.adapt(bridge).fingerprint
    shifted = lambda d: dataclasses.replace(  # noqa: E731
        old, decoder_logprobs=tuple((r[0] + d,) + r[1:] for r in old.decoder_logprobs)
    )
    check_fingerprint(shifted(0.09), fp, what="the lens")
    with pytest.raises(ModelError, match="median difference 0.110 > 0.1"):
        check_fingerprint(shifted(0.11), fp, what="the lens")
    other = lensbox.adapt(tiny_bridge(seed=1)).fingerprint
    with pytest.raises(ModelError, match="differs in decoder"):
        check_fingerprint(old, other, what="the lens")


def test_fingerprint_json_round_trip(bridge):
    fp = lensbox.adapt(bridge).fingerprint
    d = json.loads(json.dumps(fp.to_json()))
    assert Fingerprint.from_json(d) == fp
    assert Fingerprint.from_json(json.loads(json.dumps(d, sort_keys=True))) == fp  # site order restored
    old = Fingerprint.from_json(_v1_dict(fp))
    assert old.weights is None and old.decoder_ids == fp.decoder_ids
    check_fingerprint(old, fp, what="an old lens")
    for bad in ([1], {**d, "d_model": "32"}, {**d, "decoder_ids": None}, {**d, "fingerprint_version": 9},
                {**d, "behaviour": None}, {**d, "behaviour": {"embed": ["x"]}}, {**d, "behaviour": [1.0]}):
        with pytest.raises(ArtifactError, match="fingerprint stored in the lens cannot be read"):
            Fingerprint.from_json(bad, what="the lens")


def test_version_2_fingerprints_match_on_equal_weights_only(bridge):
    """Written earlier in this version: weights digest and decoder, no behaviour record."""
    fp = lensbox.adapt(bridge).fingerprint
    v2 = {k: v for k, v in fp.to_json().items() if k != "behaviour"} | {"fingerprint_version": 2}
    old = Fingerprint.from_json(v2)
    assert old.behaviour is None and old.weights == fp.weights
    check_fingerprint(old, fp, what="the lens")
    compat = lensbox.adapt(tiny_bridge(seed=0, compat=True)).fingerprint
    with pytest.raises(ModelError, match="predates lensbox's behaviour record") as info:
        check_fingerprint(old, compat, what="the lens")
    assert "check_fingerprint=False" in str(info.value)


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
