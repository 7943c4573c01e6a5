"""Edited activations (issue 9 item 5): ``fwd_hooks=`` on analyze() and every lens entry point, on the 4.x bridge.

Independent reference: the model's own ``run_with_hooks`` / ``run_with_cache`` on the same
edits, decoded with plain PyTorch (final norm, W_U, log_softmax, topk).
"""

import pytest
import torch

import lensbox
from lensbox import InputError, Site
from lensbox.lenses import LogitLens, TunedLens, evaluate

LAYER = 1  # the ablated block of the 3-block tiny model


def zero(act, hook):
    return act * 0


@pytest.fixture(scope="module")
def setup(tiny_lm, tiny_tokens):
    tokens = tiny_tokens[:1]
    other = tiny_tokens[1:2]
    ablate = [(f"blocks.{LAYER}.hook_attn_out", zero)]
    plain = lensbox.logit_lens(tiny_lm, tokens, include_mid=True)
    edited = lensbox.logit_lens(tiny_lm, tokens, include_mid=True, fwd_hooks=ablate)
    return tiny_lm, tokens, other, ablate, plain, edited


def _reference_topk(model, tokens, hook_name, fwd_hooks, k=5):
    """Top-k log-probs of the logit lens at ``hook_name``, from TransformerLens's own cache of an edited run."""
    store = {}

    def grab(act, hook):
        store["x"] = act.detach().clone()

    with torch.no_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks) + [(hook_name, grab)])
        lp = torch.log_softmax((model.ln_final(store["x"]) @ model.W_U + model.b_U).float(), -1)
    return lp.topk(k, dim=-1), torch.log_softmax(logits.float(), -1).topk(k, dim=-1)


def test_ablation_leaves_earlier_sites_and_changes_later_ones(setup):
    model, tokens, _, _, plain, edited = setup
    names = [s.name for s in plain.sites]
    assert names == ["embed", "resid_mid.0", "resid_post.0", "resid_mid.1", "resid_post.1", "resid_mid.2", "resid_post.2"]
    for i, site in enumerate(plain.sites):
        before = site.depth < Site.resid_mid(LAYER).depth  # resid_mid.1 is the first stream the edit reaches
        diff = float((plain.top_logprobs[0, i] - edited.top_logprobs[0, i]).abs().max())
        if before:
            assert diff <= 1e-6, site
            assert torch.equal(plain.top_ids[0, i], edited.top_ids[0, i])
        else:
            assert diff > 1e-3, site


def test_edited_sites_match_an_independent_edited_run(setup):
    model, tokens, _, ablate, _, edited = setup
    for site in ("resid_mid.1", "resid_post.2"):
        (ref_vals, ref_ids), (final_vals, final_ids) = _reference_topk(
            model, tokens, lensbox.adapt(model).hook_name(site), ablate
        )
        i = edited.site_index(site)
        assert torch.allclose(edited.top_logprobs[0, i], ref_vals[0].cpu(), atol=1e-5)
        assert torch.equal(edited.top_ids[0, i], ref_ids[0].cpu())
    # The final site passed the final-site check: it is the edited model's own output distribution.
    i = edited.site_index("final")
    assert torch.allclose(edited.top_logprobs[0, i], final_vals[0].cpu(), atol=1e-5)
    assert torch.equal(edited.final_top1[0], final_ids[0, :, 0].cpu())


def test_patching_a_stream_reproduces_the_other_prompts_statistics(setup):
    model, tokens, other, _, _, _ = setup
    site = "resid_post.0"
    name = lensbox.adapt(model).hook_name(site)
    with torch.no_grad():
        _, cache = model.run_with_cache(other, names_filter=[name])
    donor = cache[name]

    def patch(act, hook):
        return donor.to(act.dtype)

    patched = lensbox.logit_lens(model, tokens, fwd_hooks=[(name, patch)])
    source = lensbox.logit_lens(model, other)
    for s in ("resid_post.0", "resid_post.1", "final"):  # the patched site and everything computed from it
        i = patched.site_index(s)
        assert torch.allclose(patched.top_logprobs[0, i], source.top_logprobs[0, i], atol=1e-6)
        assert torch.equal(patched.top_ids[0, i], source.top_ids[0, i])
        assert torch.allclose(patched.entropy[0, i], source.entropy[0, i], atol=1e-5)
    i = patched.site_index("embed")  # the embeddings stay the prompt's own
    assert not torch.equal(patched.top_ids[0, i], source.top_ids[0, i])


def test_every_entry_point_takes_fwd_hooks(setup):
    model, tokens, _, ablate, _, edited = setup
    via_call = LogitLens(include_mid=True)(model, tokens, fwd_hooks=ablate)
    assert torch.equal(via_call.top_logprobs, edited.top_logprobs)
    identity = TunedLens.identity(model)
    tuned = lensbox.tuned_lens(model, tokens, identity, fwd_hooks=ablate)
    called = identity(model, tokens, fwd_hooks=ablate)
    logit = lensbox.logit_lens(model, tokens, sites=tuned.sites, fwd_hooks=ablate)
    assert torch.allclose(tuned.top_logprobs, logit.top_logprobs, atol=1e-6)
    assert torch.equal(called.top_ids, tuned.top_ids)
    norms_plain = lensbox.residual_norms(model, tokens)
    norms_edit = lensbox.residual_norms(model, tokens, fwd_hooks=ablate)
    assert torch.equal(norms_plain.norms[:, : LAYER + 1], norms_edit.norms[:, : LAYER + 1])
    assert not torch.allclose(norms_plain.norms[:, LAYER + 1 :], norms_edit.norms[:, LAYER + 1 :])
    data = torch.cat([tokens, tokens], dim=0)
    ev_plain = evaluate(model, data, {"logit": "logit"}, window=12, progress=False)
    ev_edit = evaluate(model, data, {"logit": "logit"}, window=12, progress=False, fwd_hooks=ablate)
    assert ev_plain.mean("logit") != ev_edit.mean("logit")


def test_hooks_with_a_cache_are_refused(setup):
    model, tokens, _, ablate, _, _ = setup
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    with pytest.raises(InputError, match="fwd_hooks cannot act on a cache") as info:
        lensbox.logit_lens(model, tokens, cache=cache, fwd_hooks=ablate)
    assert info.value.fix and "drop cache=" in info.value.fix


def test_bad_hooks_get_clear_errors_and_leave_the_model_untouched(setup):
    model, tokens, _, _, plain, _ = setup
    name = f"blocks.{LAYER}.hook_attn_out"
    with pytest.raises(InputError, match="returned a tensor of another shape") as info:
        lensbox.logit_lens(model, tokens, fwd_hooks=[(name, lambda act, hook: act[:, :3])])
    assert "shape (1, 12, 32)" in info.value.expected and "(1, 3, 32)" in info.value.received
    with pytest.raises(InputError, match="not a tensor"):
        lensbox.logit_lens(model, tokens, fwd_hooks=[(name, lambda act, hook: 3.0)])
    with pytest.raises(InputError, match="no hook point 'blocks.1.hook_nope'"):
        lensbox.logit_lens(model, tokens, fwd_hooks=[("blocks.1.hook_nope", zero)])
    again = lensbox.logit_lens(model, tokens, include_mid=True)  # no hook stayed attached
    assert torch.equal(again.top_logprobs, plain.top_logprobs)
