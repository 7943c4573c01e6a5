"""Direct logit attribution (issue 9 item 3): ``lensbox.logit_attribution``.

Exactness: the contributions add up to the model's own output logit (its forward pass, independent of
lensbox's decoder) at every position, on tiny bridges of several architectures; per-head contributions add
up to their layer's attn_out (+ b_O). Reference: TransformerLens's own recipe (``cache.stack_head_results`` /
``cache.decompose_resid`` + ``cache.logit_attrs``) on compatibility-mode bridges, whose folded final norm it
assumes (on a raw bridge TL's recipe leaves out the final norm's weight; lensbox does not).
"""

from typing import Any, Dict

import pytest
import torch

import lensbox
from lensbox import InputError, ModelError
from lensbox.lenses import LogitAttribution, logit_attribution


TOL = 1e-4


@pytest.fixture(scope="module")
def bridges(tiny_family: Any, tiny_lm: Any, tiny_lm_compat: Any) -> Any:
    cache: Dict[str, Any] = {"llama-raw": tiny_lm, "llama-compat": tiny_lm_compat}

    def get(name: str) -> Any:
        if name not in cache:
            family, mode = name.split("-")
            cache[name] = tiny_family(family, mode)  # session-wide (conftest)
        return cache[name]

    return get


def attn_rows(res: LogitAttribution) -> torch.Tensor:
    return torch.stack([res.contributions[..., res.components.index(f"attn_out.{i}")] for i in range(res.n_layers)], -1)


@pytest.mark.parametrize("name", ["gpt2-raw", "llama-raw", "neox-raw", "gemma2-raw"])
def test_contributions_add_up_to_the_model_logit(bridges: Any, tiny_tokens: torch.Tensor, name: str) -> None:
    model = bridges(name)
    with torch.no_grad():
        logits = model(tiny_tokens).float()  # the model's own forward pass
    res = lensbox.logit_attribution(model, tiny_tokens)
    assert res.contributions.shape == (*tiny_tokens.shape, len(res.components))
    assert res.components[-1] == "bias" and "mlp_out.1" in res.components
    assert res.components[:2] == (["tok_embed", "pos_embed"] if name.startswith("gpt2") else ["embed", "attn_out.0"])
    total = res.contributions.sum(-1)[:, :-1]
    want = logits[:, :-1].gather(-1, tiny_tokens[:, 1:, None])[..., 0]
    if name.startswith("gemma2"):
        # a final soft-cap: the contributions add up to the PRE-soft-cap logit, cap * tanh(sum / cap) is the output
        cap = res.softcap
        assert cap == 2.0 and float((total - want).abs().max()) > 0.01
        total = cap * torch.tanh(total / cap)
        assert res.heads is None  # Gemma-2's post-attention norm: heads do not add up to attn_out
        with pytest.raises(ModelError, match="post-attention norm"):
            logit_attribution(model, tiny_tokens, heads=True)
    torch.testing.assert_close(total, want, atol=TOL, rtol=0)
    assert res.contributions[:, -1].isnan().all() and res.error < TOL  # no next token at the last position
    if res.heads is not None:
        torch.testing.assert_close(res.heads.sum(-1) + res.attn_bias, attn_rows(res), atol=TOL, rtol=0, equal_nan=True)
        if name.startswith("gpt2"):
            assert res.attn_bias[:, :-1].abs().min() > 0  # GPT-2 has b_O, reported as its own term


@pytest.mark.parametrize("name", ["gpt2-compat", "llama-compat"])
def test_matches_transformer_lens_recipe(bridges: Any, tiny_tokens: torch.Tensor, name: str) -> None:
    model = bridges(name)
    target, minus = 17, 42
    res = logit_attribution(model, tiny_tokens, target=target, minus=minus)
    _, cache = model.run_with_cache(tiny_tokens)
    full = lambda t: torch.full_like(tiny_tokens, t)  # noqa: E731
    heads = cache.stack_head_results(layer=-1, incl_remainder=False)  # [layer*head, batch, pos, d_model]
    ref_heads = cache.logit_attrs(heads, tokens=full(target), incorrect_tokens=full(minus))
    ours = res.heads.reshape(*tiny_tokens.shape, -1).permute(2, 0, 1)
    torch.testing.assert_close(ours, ref_heads, atol=TOL, rtol=0)
    stack, labels = cache.decompose_resid(layer=-1, return_labels=True)
    ref = cache.logit_attrs(stack, tokens=full(target), incorrect_tokens=full(minus))
    names = [lab if lab in ("embed", "pos_embed") else "{1}.{0}".format(*lab.split("_", 1)) for lab in labels]
    names = ["tok_embed" if (n == "embed" and "pos_embed" in names) else n for n in names]
    assert names == res.components[:-1]
    torch.testing.assert_close(res.contributions[..., :-1].permute(2, 0, 1), ref, atol=TOL, rtol=0)
    with torch.no_grad():
        logits = model(tiny_tokens).float()
    torch.testing.assert_close(res.contributions.sum(-1), logits[..., target] - logits[..., minus], atol=TOL, rtol=0)


def test_top1_target_and_token_strings(bridges: Any, tiny_tokenizer: Any, tiny_tokens: torch.Tensor) -> None:
    model = bridges("llama-raw")
    with torch.no_grad():
        logits = model(tiny_tokens).float()
    res = logit_attribution(model, tiny_tokens, target="top1", heads=False, chunk_rows=5)
    assert torch.equal(res.target_ids, logits.argmax(-1)) and res.heads is None
    torch.testing.assert_close(res.contributions.sum(-1), logits.max(-1).values, atol=TOL, rtol=0)
    one = next(t for t in (" the", " a", "the", "e") if len(tiny_tokenizer.encode(t, add_special_tokens=False)) == 1)
    tid = tiny_tokenizer.encode(one, add_special_tokens=False)[0]
    by_text = logit_attribution(model, tiny_tokens, target=one)
    assert (by_text.target_ids == tid).all()
    torch.testing.assert_close(by_text.contributions, logit_attribution(model, tiny_tokens, target=tid).contributions)


def test_chunked_heads_equal_unchunked(bridges: Any, tiny_tokens: torch.Tensor) -> None:
    model = bridges("gpt2-raw")
    a = logit_attribution(model, tiny_tokens, chunk_rows=512)
    b = logit_attribution(model, tiny_tokens, chunk_rows=5)  # 12 positions in chunks of 5, 5, 2
    torch.testing.assert_close(a.heads, b.heads, atol=1e-6, rtol=0, equal_nan=True)


def test_bad_inputs_are_refused(bridges: Any, tiny_tokenizer: Any, tiny_tokens: torch.Tensor) -> None:
    model = bridges("llama-raw")
    several = "Paris France capital"
    pieces = tiny_tokenizer.encode(several, add_special_tokens=False)
    assert len(pieces) > 1
    with pytest.raises(InputError, match=rf"not one token(.|\n)*{len(pieces)} tokens"):
        logit_attribution(model, tiny_tokens, target=several)
    with pytest.raises(InputError, match=r"outside the vocabulary(.|\n)*0\.\.319"):
        logit_attribution(model, tiny_tokens, target=5, minus=320)

    def truncate(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        return act[..., :-1]

    with pytest.raises(InputError, match=r"hook on blocks.1.hook_mlp_out returned a tensor of another shape"):
        logit_attribution(model, tiny_tokens, fwd_hooks=[("blocks.1.hook_mlp_out", truncate)])
    with pytest.raises(InputError, match="no hook point"):
        logit_attribution(model, tiny_tokens, fwd_hooks=[("blocks.9.hook_mlp_out", truncate)])
    with pytest.raises(lensbox.SiteError, match=r"Head 7 does not exist(.|\n)*0\.\.3"):
        lensbox.adapt(model).head_outputs(0, torch.zeros(1, 2, 4, 8), heads=[7])


@pytest.mark.parametrize("bad", ["Paris France capital", 320, True, " the@text-without-tokenizer"])
def test_attribution_and_token_plane_refuse_a_bad_token_alike(
    bridges: Any, tiny_tokens: torch.Tensor, monkeypatch: pytest.MonkeyPatch, bad: Any
) -> None:
    """One reading of user tokens (core.token_id): the same bad token gets the same InputError from both callers."""
    model = bridges("llama-raw")
    if isinstance(bad, str) and bad.endswith("without-tokenizer"):
        monkeypatch.setattr(model, "tokenizer", None)
    errors = []
    for call in (
        lambda: logit_attribution(model, tiny_tokens, target=bad),
        lambda: lensbox.token_plane_trajectory(model, tiny_tokens, (bad, 5)),
    ):
        with pytest.raises(lensbox.LensboxError) as info:
            call()
        errors.append(info.value)
    a, b = errors
    assert type(a) is type(b) is InputError
    assert (a.expected, a.received) == (b.expected, b.received) and a.fix and b.fix


def test_edited_run_is_attributed(bridges: Any, tiny_tokens: torch.Tensor) -> None:
    model = bridges("llama-raw")

    def zero(act: torch.Tensor, hook: Any = None) -> torch.Tensor:
        return torch.zeros_like(act)

    def zero_head_2(z: torch.Tensor, hook: Any = None) -> torch.Tensor:
        z = z.clone()
        z[:, :, 2] = 0.0
        return z

    edits = [("blocks.1.hook_attn_out", zero)]
    res = logit_attribution(model, tiny_tokens, fwd_hooks=edits, heads=False)
    assert float(res.contributions[:, :-1, res.components.index("attn_out.1")].abs().max()) == 0.0
    with torch.no_grad(), model.hooks(fwd_hooks=edits):
        logits = model(tiny_tokens).float()
    want = logits[:, :-1].gather(-1, tiny_tokens[:, 1:, None])[..., 0]
    torch.testing.assert_close(res.contributions.sum(-1)[:, :-1], want, atol=TOL, rtol=0)
    with pytest.raises(ModelError, match=r"heads of each layer(.|\n)*edit blocks.i.attn.hook_z instead"):
        logit_attribution(model, tiny_tokens, fwd_hooks=edits)
    res = logit_attribution(model, tiny_tokens, fwd_hooks=[("blocks.0.attn.hook_z", zero_head_2)])
    assert float(res.heads[:, :-1, 0, 2].abs().max()) == 0.0 and float(res.heads[:, :-1, 0, 1].abs().max()) > 0


def test_views(bridges: Any, tiny_tokens: torch.Tensor) -> None:
    res = logit_attribution(bridges("gpt2-raw"), tiny_tokens, target=17, minus=42)
    df = res.to_pandas()
    assert len(df) == tiny_tokens.numel() * len(res.components)
    assert abs(df[(df.batch == 1) & (df.position == 3)].contribution.sum() - float(res.logit[1, 3])) < TOL
    dh = res.to_pandas(heads=True)
    assert len(dh) == tiny_tokens.numel() * res.n_layers * 5 and set(dh["head"].dropna()) == {0, 1, 2, 3}
    text = res.table(-1, n=5, heads=True)
    assert "sum" in text and "model logit" in text and len(text.splitlines()) == 7
    top = res.top(-1, n=3)
    assert len(top) == 3 and abs(top[0][1]) >= abs(top[2][1])
    fig = res.plot(position=4)
    assert len(fig.axes[0].patches) == len(res.components)
    fig = res.plot("heads", position=4)
    assert fig.axes[0].images[0].get_array().shape == (res.n_layers, 4)
    with pytest.raises(InputError, match="outside this result"):
        res.table(99)


@pytest.mark.smollm2
def test_smollm2_exact_at_every_position(smollm2_model: Any) -> None:
    model = smollm2_model
    text = "When Mary and John went to the store, John gave a drink to Mary. The capital of France is Paris."
    tokens = lensbox.adapt(model).to_tokens(text)
    with torch.no_grad():
        logits = model(tokens).float()
    res = logit_attribution(model, tokens)
    assert res.heads.shape == (1, tokens.shape[1], 30, 9)  # 9 query heads over 3 key/value heads
    want = logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    torch.testing.assert_close(res.contributions.sum(-1)[:, :-1], want, atol=TOL, rtol=0)
    torch.testing.assert_close(res.heads.sum(-1) + res.attn_bias, attn_rows(res), atol=TOL, rtol=0, equal_nan=True)
    diff = logit_attribution(model, "When Mary and John went to the store, John gave a drink to", target=" Mary",
                             minus=" John")
    with torch.no_grad():
        out = model(lensbox.adapt(model).to_tokens("When Mary and John went to the store, John gave a drink to"))
    mary, john = diff.target_ids[0, -1], diff.minus_ids[0, -1]
    assert abs(float(diff.contributions[0, -1].sum()) - float(out[0, -1, mary] - out[0, -1, john])) < TOL
    torch.testing.assert_close(diff.heads.sum(-1) + diff.attn_bias, attn_rows(diff), atol=TOL, rtol=0)
