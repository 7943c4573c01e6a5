"""The component lens on a HookedTransformer (TransformerLens 2.18 / 3.9), unfolded and with the final norm folded.

Reference: the HookedTransformer's own ``run_with_cache`` (``hook_embed``, ``blocks.i.hook_attn_out`` /
``hook_mlp_out``, ``ln_final.hook_scale``), its ``ln_final.w`` where not folded into ``W_U``, and a topk
over the full ``[component, pos, vocab]`` product in plain PyTorch.
"""

import pytest
import torch

pytest.importorskip("transformer_lens.HookedTransformer", exc_type=ImportError)

import lensbox  # noqa: E402
from lensbox.lenses import component_lens  # noqa: E402
from lensbox.models._convert import to_hooked_transformer  # noqa: E402

from compat_models import tiny_llama  # noqa: E402

K = 3


@pytest.fixture(scope="module", params=[False, True], ids=["unfolded", "fold_ln"])
def ht(request, tiny_tokenizer):
    return to_hooked_transformer(tiny_llama(), tiny_tokenizer, fold_ln=request.param)


def test_frozen_matches_the_cache_recipe_and_adds_up(ht):
    tokens = lensbox.adapt(ht).to_tokens("the cat sat on the mat.")
    with torch.no_grad():
        logits, cache = ht.run_with_cache(tokens)
    names = ["hook_embed"] + [f"blocks.{i}.hook_{k}_out" for i in range(ht.cfg.n_layers) for k in ("attn", "mlp")]
    comps = torch.stack([cache[n] for n in names], dim=1)  # [batch, comp, pos, d_model]
    weight = getattr(ht.ln_final, "w", None)
    normed = comps / cache["ln_final.hook_scale"][:, None]
    full = ((normed * weight if weight is not None else normed) @ ht.W_U).float()
    out = component_lens(ht, tokens, k=K)
    assert [c.name for c in out.components][:3] == ["embed", "attn_out.0", "mlp_out.0"]
    top = full.topk(K, dim=-1)
    assert torch.equal(out.top_ids, top.indices)
    assert torch.allclose(out.top_logits, top.values, atol=1e-5)
    nxt = tokens[:, 1:]
    total = out.next_logit[:, :, :-1].sum(1) + ht.b_U[nxt]
    assert torch.allclose(total, logits[:, :-1].gather(-1, nxt[..., None])[..., 0], atol=1e-4)
    heads = component_lens(ht, tokens, k=K, sites=[f"head.2.{h}" for h in range(4)])
    attn = out.next_logit[:, out.component_index("attn_out.2")]
    assert torch.allclose(heads.next_logit.sum(1)[:, :-1], attn[:, :-1], atol=1e-5)
