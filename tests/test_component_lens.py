"""The component lens (issue 9 item 2) against plain PyTorch on TransformerLens's own cache (4.x bridge, tiny Llama).

Reference recipe: the components from ``run_with_cache`` (``hook_embed``, ``blocks.i.hook_attn_out``,
``blocks.i.hook_mlp_out``), the final RMSNorm's scale from ``ln_final.hook_scale``, its weight,
``W_U`` / ``b_U``; the full ``[component, pos, vocab]`` product (fine on a tiny model) and ``topk``.
"""

import pytest
import torch

import lensbox
import lensbox.lenses._direction as direction_module
from lensbox import InputError, SiteError
from lensbox.cli import _common, main
from lensbox.lenses import ComponentLensResult, component_lens

K = 4


@pytest.fixture(scope="module")
def setup(tiny_lm, tiny_tokens):
    tokens = tiny_tokens
    with torch.no_grad():
        logits, cache = tiny_lm.run_with_cache(tokens)
    frozen = component_lens(tiny_lm, tokens, k=K)
    return tiny_lm, tokens, logits, cache, frozen


def _components(model, cache):
    names = ["hook_embed"]
    for i in range(model.cfg.n_layers):
        names += [f"blocks.{i}.hook_attn_out", f"blocks.{i}.hook_mlp_out"]
    return torch.stack([cache[n] for n in names], dim=1)  # [batch, comp, pos, d_model]


def _norm_weight(model):
    return dict(model.ln_final.named_parameters())["_original_component.weight"].detach()


def _check(out, full, tokens):
    top, bottom = full.topk(K, dim=-1), full.topk(K, dim=-1, largest=False)
    assert torch.equal(out.top_ids, top.indices) and torch.equal(out.bottom_ids, bottom.indices)
    assert torch.allclose(out.top_logits, top.values, atol=1e-5)
    assert torch.allclose(out.bottom_logits, bottom.values, atol=1e-5)
    nxt = tokens[:, 1:]
    ref_next = full[:, :, :-1].gather(-1, nxt[:, None, :, None].expand(-1, full.shape[1], -1, 1))[..., 0]
    assert torch.allclose(out.next_logit[:, :, :-1], ref_next, atol=1e-5)
    ref_rank = (full[:, :, :-1] > ref_next[..., None]).sum(-1)
    assert torch.equal(out.next_rank[:, :, :-1], ref_rank)
    assert out.next_logit[:, :, -1].isnan().all() and (out.next_rank[:, :, -1] == -1).all()


def test_frozen_matches_the_cache_recipe_and_adds_up(setup):
    model, tokens, logits, cache, out = setup
    assert [c.name for c in out.components] == ["embed", "attn_out.0", "mlp_out.0", "attn_out.1", "mlp_out.1",
                                                 "attn_out.2", "mlp_out.2"]
    comps = _components(model, cache)
    scale = cache["ln_final.hook_scale"][:, None]  # [batch, 1, pos, 1]: the final stream's RMS
    full = ((comps / scale * _norm_weight(model)) @ model.W_U).float()
    _check(out, full, tokens)
    assert out.norm == "frozen" and "frozen" in out.norm_meaning
    # Linear: every component's next-token logit plus b_U gives the model's own logit (RMSNorm: no norm bias).
    total = out.next_logit[:, :, :-1].sum(1) + model.b_U[tokens[:, 1:]]
    own = logits[:, :-1].gather(-1, tokens[:, 1:, None])[..., 0]
    assert torch.allclose(total, own, atol=1e-4)


def test_own_norm_decodes_each_output_as_a_stream(setup):
    model, tokens, _, cache, _ = setup
    out = component_lens(model, tokens, k=K, norm="own")
    full = (model.ln_final(_components(model, cache)) @ model.W_U + model.b_U).float()
    _check(out, full, tokens)
    assert out.norm == "own"


def test_heads_add_up_to_their_layer(setup, tiny_lm):
    model, tokens, _, _, frozen = setup
    heads = component_lens(model, tokens, k=K, sites="head.1.0,head.1.1,head.1.2,head.1.3")
    assert [c.name for c in heads.components] == [f"head.1.{h}" for h in range(4)]
    attn = frozen.next_logit[:, frozen.component_index("attn_out.1")]
    assert torch.allclose(heads.next_logit.sum(1)[:, :-1], attn[:, :-1], atol=1e-5)  # Llama: no b_O


def test_chunks_bound_the_work_and_change_nothing(setup, monkeypatch):
    model, tokens, _, _, frozen = setup
    shapes = []
    original = direction_module.block_logits

    def spy(rows, block):
        out = original(rows, block)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(direction_module, "block_logits", spy)
    small = component_lens(model, tokens, k=K, chunk_rows=10, chunk_vocab=128)
    assert max(r for r, _ in shapes) == 10 and max(c for _, c in shapes) == 128
    assert torch.equal(small.top_ids, frozen.top_ids) and torch.equal(small.next_rank, frozen.next_rank)
    assert torch.allclose(small.next_logit, frozen.next_logit, atol=1e-5, equal_nan=True)


def test_result_views(setup):
    _, tokens, _, _, out = setup
    assert isinstance(out, ComponentLensResult)
    df = out.to_pandas()
    assert len(df) == tokens.numel() * len(out.components)
    row = df[(df.component == "mlp_out.1") & (df.pos == 3) & (df.batch == 1)].iloc[0]
    i = out.component_index("mlp_out.1")
    assert row.next_logit == pytest.approx(float(out.next_logit[1, i, 3]))
    assert row.top1_token == out.top_labels[1][i][3][0]
    text = out.table(pos=3)
    assert "attn_out.2" in text and "promotes" in text and "frozen" in text
    assert out.statistic("next_rank")[0, :, -1].isnan().all()
    fig = out.plot("next_logit", positions=6)
    assert len(fig.axes[0].texts) == 6 * len(out.components)
    with pytest.raises(InputError, match="statistic"):
        out.statistic("kl")


def test_bad_choices_are_refused(setup):
    model, tokens, _, _, _ = setup
    with pytest.raises(SiteError, match="not residual streams"):
        component_lens(model, tokens, sites="resid_post.1,attn_out.1")
    with pytest.raises(SiteError, match="block 1: it has 4 heads"):
        component_lens(model, tokens, sites="head.1.9")
    with pytest.raises(SiteError, match="not in this result"):
        component_lens(model, tokens, sites="attn_out.0").component_index("mlp_out.0")


def test_cli_lens_routes_component_sites(setup, monkeypatch, tmp_path, capsys):
    model = setup[0]
    monkeypatch.setattr(_common, "load_model", lambda args: model)
    csv = tmp_path / "components.csv"
    code = main(["-q", "lens", "The capital of France is", "--sites", "attn_out.1,mlp_out.1", "--out", str(csv)])
    out = capsys.readouterr().out
    assert code == 0 and "attn_out.1" in out and "mlp_out.1" in out and "promotes" in out
    import pandas as pd

    df = pd.read_csv(csv)
    assert set(df.component) == {"attn_out.1", "mlp_out.1"}
    expected = component_lens(model, "The capital of France is", sites="attn_out.1,mlp_out.1")
    assert df[df.component == "mlp_out.1"].next_logit.tolist()[:-1] == pytest.approx(
        expected.next_logit[0, 1, :-1].tolist(), abs=1e-5)
    assert lensbox.component_lens is component_lens


def test_layernorm_model_adds_up_to_its_own_logits(tiny_family, tiny_tokens):
    """GPT-2 (LayerNorm with a bias, learned positions): centred components, the norm bias as the leftover term."""
    model = tiny_family("gpt2", "raw")
    with torch.no_grad():
        logits = model(tiny_tokens).float()
    out = component_lens(model, tiny_tokens, sites="tok_embed,pos_embed,attn_out.0,mlp_out.0,attn_out.1,mlp_out.1", k=2)
    norm_bias = dict(model.ln_final.named_parameters())["_original_component.bias"].detach()
    leftover = (norm_bias @ model.W_U + model.b_U)[tiny_tokens[:, 1:]]
    total = out.next_logit[:, :, :-1].sum(1) + leftover
    torch.testing.assert_close(total, logits[:, :-1].gather(-1, tiny_tokens[:, 1:, None])[..., 0], atol=1e-4, rtol=0)
    embed = component_lens(model, tiny_tokens, sites="embed", k=2)
    torch.testing.assert_close(out.next_logit[:, :2].sum(1), embed.next_logit[:, 0], atol=1e-5, rtol=0, equal_nan=True)
