"""Component sites (issue 9 item 1): attn_out.i, mlp_out.i, head.i.h, tok_embed, pos_embed.

Parsing and validation, the hook each resolves to, and the decomposition they promise, checked against
the model's own cached activations (run_with_cache, an independent path) on tiny TransformerBridges
(raw and compatibility mode): GPT-2 (learned positions, b_O), Llama (grouped-query attention, no b_O).
"""

from typing import Any, Dict, Tuple

import pytest
import torch

import lensbox
from lensbox import SiteError
from lensbox.core import Site, SiteKind
from lensbox.core._sites import component_sites, parse_sites, resolve_site



def test_parse_component_names() -> None:
    assert resolve_site("attn_out.3", 30) == Site.attn_out(3) == Site(SiteKind.ATTN_OUT, 3)
    assert resolve_site("blocks.3.hook_mlp_out", 30) == Site.mlp_out(3)
    assert resolve_site("mlp_out.-1", 30) == Site.mlp_out(29)
    assert resolve_site("head.3.7", 30, n_heads=9) == Site.head_out(3, 7)
    assert resolve_site("L3H7", 30, n_heads=9) == Site.head_out(3, 7)
    assert resolve_site("head.3.-1", 30, n_heads=9) == Site.head_out(3, 8)
    assert resolve_site("pos_embed", 30) == Site.pos_embed() and resolve_site("tok_embed", 30) == Site.tok_embed()
    assert Site.head_out(3, 7).name == "head.3.7" and str(Site.attn_out(2)) == "attn_out.2"
    assert Site.attn_out(0).is_component and not Site.attn_out(0).is_residual
    assert Site.embed().is_residual and Site.resid_mid(1).is_residual and not Site.embed().is_component


def test_head_out_of_range_names_the_range() -> None:
    with pytest.raises(SiteError) as info:
        resolve_site("head.3.99", 30, n_heads=9)
    msg = str(info.value)
    assert "Head 99" in msg and "0..8" in msg and "9 heads" in msg
    with pytest.raises(SiteError, match=r"block 3 has 9 heads(.|\n)*0\.\.8"):
        resolve_site(Site.head_out(3, 9), 30, n_heads=9)
    with pytest.raises(SiteError, match="Layer 30 does not exist"):
        resolve_site("attn_out.30", 30)
    with pytest.raises(SiteError, match="needs an integer head"):
        Site(SiteKind.HEAD, 3)
    with pytest.raises(SiteError, match="Only head sites"):
        Site(SiteKind.ATTN_OUT, 3, 1)


def test_order_puts_components_before_the_stream_holding_them() -> None:
    got = sorted([Site.resid_post(0), Site.mlp_out(0), Site.head_out(0, 1), Site.resid_mid(0), Site.attn_out(0),
                  Site.head_out(0, 0), Site.embed(), Site.tok_embed(), Site.pos_embed()])
    assert [s.name for s in got] == ["embed", "tok_embed", "pos_embed", "attn_out.0", "head.0.0", "head.0.1",
                                      "resid_mid.0", "mlp_out.0", "resid_post.0"]
    assert [s.name for s in component_sites(2)] == ["embed", "attn_out.0", "mlp_out.0", "attn_out.1", "mlp_out.1"]
    split = component_sites(1, n_heads=2, pos_embed=True, split_embed=True)
    assert [s.name for s in split] == ["tok_embed", "pos_embed", "head.0.0", "head.0.1", "mlp_out.0"]


def test_residual_selections_refuse_components() -> None:
    with pytest.raises(SiteError, match=r"component outputs are not residual-stream sites(.|\n)*attn_out.3"):
        parse_sites("embed,attn_out.3", 5)
    assert parse_sites("embed,attn_out.3", 5, components=True) == [Site.embed(), Site.attn_out(3)]


# ----------------------------------------------------------------------------- on tiny bridges
@pytest.fixture(scope="module")
def bridges(tiny_family: Any, tiny_lm: Any, tiny_lm_compat: Any) -> Any:
    cache: Dict[Tuple[str, bool], Any] = {("llama", False): tiny_lm, ("llama", True): tiny_lm_compat}

    def get(family: str, compat: bool) -> Any:
        if (family, compat) not in cache:
            cache[(family, compat)] = tiny_family(family, "compat" if compat else "raw")  # session-wide (conftest)
        return cache[(family, compat)]

    return get


CASES = [("gpt2", False), ("llama", False), ("llama", True)]  # llama: the session-wide tiny_lm (GQA, 3 blocks)


@pytest.mark.parametrize("family, compat", CASES, ids=[f"{f}-{'compat' if c else 'raw'}" for f, c in CASES])
def test_components_add_up_on_bridges(bridges: Any, tiny_tokens: torch.Tensor, family: str, compat: bool) -> None:
    model = bridges(family, compat)
    adapter = lensbox.adapt(model)
    assert adapter.n_heads == 4 and adapter.has_pos_embed == (family == "gpt2") and not adapter.has_attn_post_norm
    names = adapter.hook_names(component_sites(adapter.n_layers, n_heads=adapter.n_heads) + ["final"])
    _, cache = model.run_with_cache(tiny_tokens)
    assert set(names) <= set(cache.keys())
    assert adapter.hook_name("head.1.3") == "blocks.1.attn.hook_z" and adapter.hook_name("tok_embed") == "hook_embed"
    total = cache["blocks.0.hook_resid_pre"].clone()
    for i in range(adapter.n_layers):
        z = cache[f"blocks.{i}.attn.hook_z"]
        heads = adapter.head_outputs(i, z)  # [batch, pos, n_heads, d_model]
        assert heads.shape == (*tiny_tokens.shape, 4, adapter.d_model)
        attn = heads.sum(-2) + adapter.b_O(i)
        torch.testing.assert_close(attn, cache[f"blocks.{i}.hook_attn_out"], atol=1e-5, rtol=1e-5)
        # a chosen subset, computed per chunk of positions, equals the same heads of the full computation
        part = adapter.head_outputs(i, z[:, 3:7], heads=[2, -1])
        torch.testing.assert_close(part, heads[:, 3:7][:, :, [2, 3]], atol=1e-6, rtol=1e-6)
        total += cache[f"blocks.{i}.hook_attn_out"] + cache[f"blocks.{i}.hook_mlp_out"]
    torch.testing.assert_close(total, cache[f"blocks.{adapter.n_layers - 1}.hook_resid_post"], atol=1e-5, rtol=1e-5)
    if family == "gpt2":
        torch.testing.assert_close(cache["hook_embed"] + cache["hook_pos_embed"], cache["blocks.0.hook_resid_pre"])
        assert adapter.b_O(0).abs().sum() > 0
    else:
        with pytest.raises(SiteError, match="no positional embedding"):
            adapter.site("pos_embed")
        assert adapter.b_O(0).abs().sum() == 0  # bias-free: zeros, not an error
        assert model.cfg.n_key_value_heads == 2  # grouped-query: hook_z still has one slot per query head


def test_capture_head_and_component_sites(bridges: Any, tiny_tokens: torch.Tensor) -> None:
    model = bridges("llama", False)
    adapter = lensbox.adapt(model)
    sites = adapter.sites("head.1.2,attn_out.1,mlp_out.0,tok_embed", components=True)
    store, _ = adapter.capture(tiny_tokens, sites)
    _, cache = model.run_with_cache(tiny_tokens)
    z = cache["blocks.1.attn.hook_z"][:, :, 2]
    torch.testing.assert_close(store[Site.head_out(1, 2)], z @ model.blocks[1].attn.W_O[2], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(store[Site.attn_out(1)], cache["blocks.1.hook_attn_out"])
    torch.testing.assert_close(store[Site.mlp_out(0)], cache["blocks.0.hook_mlp_out"])
    with pytest.raises(SiteError, match=r"Head 4 does not exist(.|\n)*0\.\.3"):
        adapter.site("head.0.4")
    with pytest.raises(SiteError, match="component outputs"):
        lensbox.logit_lens(model, tiny_tokens, sites="attn_out.1")
    assert "head.i.h" in adapter.valid_sites() and "0..3" in adapter.valid_sites()


def test_head_outputs_refuses_a_wrong_shape(bridges: Any) -> None:
    adapter = lensbox.adapt(bridges("llama", False))
    with pytest.raises(lensbox.ModelError, match=r"hook_z has the wrong shape(.|\n)*\[\.\.\., pos, 4, 8\]"):
        adapter.head_outputs(0, torch.zeros(1, 5, 2, 8))
