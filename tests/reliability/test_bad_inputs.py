"""Every bad input is a clear lensbox error, raised before any forward pass (issue 11, section 4).

Each test asserts the error type and the key words of its message. Under the suite's
jaxtyping + beartype hook a value the public signature itself excludes is refused by the
hook (a TypeError) before lensbox's own check; those tests accept either and check
lensbox's message on the unwrapped function as a user without the hook would see it.
"""

from typing import Any, Dict

import pytest
import torch
from torch import Tensor

import lensbox
from lensbox import InputError, LensboxError, SiteError
from lensbox.core import Site


def _cache(model: Any, tokens: Tensor) -> Dict[str, Tensor]:
    return dict(model.run_with_cache(tokens)[1].items())


def _no_forward(model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make any forward pass fail loudly: the error must come first."""

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the model ran before the input was checked")

    monkeypatch.setattr(model, "forward", boom)
    monkeypatch.setattr(model, "run_with_cache", boom)


# ----------------------------------------------------------------------------- text and token ids
def test_invalid_unicode_text(tiny_lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_forward(tiny_lm, monkeypatch)
    with pytest.raises(InputError, match=r"not valid Unicode(.|\n)*U\+D800(.|\n)*fix:"):
        lensbox.logit_lens(tiny_lm, "abc \ud800")
    with pytest.raises(InputError, match="not valid Unicode"):
        lensbox.logit_lens(tiny_lm, ["abc \ud800", "abc de"])


def test_raw_bytes_are_not_token_ids(tiny_lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _no_forward(tiny_lm, monkeypatch)
    with pytest.raises(InputError, match=r"Raw bytes are not token ids(.|\n)*decode"):
        lensbox.logit_lens(tiny_lm, b"\xff\xfe abc")
    with pytest.raises(InputError, match="Raw bytes"):
        lensbox.logit_lens(tiny_lm, bytearray(b"abc"))


# ----------------------------------------------------------------------------- sites
def test_float_sites(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    # The signature (SitesSpec) excludes floats: the type-checking hook may refuse first.
    with pytest.raises((SiteError, TypeError)):
        lensbox.logit_lens(tiny_lm, tiny_tokens, sites=3.0)  # type: ignore[arg-type]
    from lensbox.core._sites import parse_sites

    unchecked = getattr(parse_sites, "__wrapped__", parse_sites)
    with pytest.raises(SiteError, match=r"selection of sites(.|\n)*float: 3\.0(.|\n)*fix:"):
        unchecked(3.0, 3)


# ----------------------------------------------------------------------------- caches
def test_cache_that_is_not_a_cache(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    with pytest.raises(InputError, match=r"activation cache(.|\n)*list"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=[])
    with pytest.raises(InputError, match="activation cache"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache="hook_embed")


def test_dict_cache_with_wrong_width(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    cache = _cache(tiny_lm, tiny_tokens)
    cache["blocks.1.hook_resid_post"] = cache["blocks.1.hook_resid_post"][..., :16]
    with pytest.raises(InputError, match=r"blocks\.1\.hook_resid_post does not fit(.|\n)*d_model = 32(.|\n)*\(2, 12, 16\)"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)


def test_dict_cache_with_list_values(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    cache = _cache(tiny_lm, tiny_tokens)
    cache["blocks.1.hook_resid_post"] = cache["blocks.1.hook_resid_post"].tolist()
    with pytest.raises(InputError, match=r"blocks\.1\.hook_resid_post is not a tensor(.|\n)*list"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)


def test_dict_cache_mixing_batch_sizes(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    cache = _cache(tiny_lm, tiny_tokens)
    cache["blocks.1.hook_resid_post"] = cache["blocks.1.hook_resid_post"][:1]
    with pytest.raises(InputError, match="mixes activations of different batch or sequence sizes"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)


def _other_tokens(tiny_tokens: Tensor) -> Tensor:
    gen = torch.Generator().manual_seed(99)
    other = torch.randint(1, 300, tiny_tokens.shape, generator=gen)
    assert (other != tiny_tokens).float().mean() > 0.9
    return other


def test_cache_from_another_text_of_the_same_length(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    _, cache = tiny_lm.run_with_cache(_other_tokens(tiny_tokens))
    with pytest.raises(InputError, match=r"cache was not made from these inputs(.|\n)*hook_embed(.|\n)*positions differ"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)
    # The same cache with its own tokens is accepted and equals a fresh run.
    own = lensbox.logit_lens(tiny_lm, _other_tokens(tiny_tokens), cache=cache)
    fresh = lensbox.logit_lens(tiny_lm, _other_tokens(tiny_tokens))
    torch.testing.assert_close(own.kl_final, fresh.kl_final)


def test_cache_from_another_text_via_string_inputs(tiny_lm: Any) -> None:
    a, b = "1, 2, 3", "1, 2, 4"
    adapter = lensbox.adapt(tiny_lm)
    ta, tb = adapter.to_tokens(a), adapter.to_tokens(b)
    assert ta.shape == tb.shape and not torch.equal(ta, tb)
    _, cache = tiny_lm.run_with_cache(tb)
    with pytest.raises(InputError, match=r"not made from these inputs(.|\n)*1 of \d+ positions differ"):
        lensbox.logit_lens(tiny_lm, a, cache=cache)


def test_cache_mixing_two_inputs(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    other = _other_tokens(tiny_tokens)
    # Batch rows from two runs: row 1 of the cache is another text.
    mixed_rows = torch.stack([tiny_tokens[0], other[1]])
    with pytest.raises(InputError, match=r"not made from these inputs(.|\n)*first at \(batch 1, pos 0\)"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=_cache(tiny_lm, mixed_rows))
    # Hook points from two runs: the embedding stream comes from the other text.
    cache = _cache(tiny_lm, tiny_tokens)
    cache["blocks.0.hook_resid_pre"] = _cache(tiny_lm, other)["blocks.0.hook_resid_pre"]
    with pytest.raises(InputError, match=r"not made from these inputs(.|\n)*blocks\.0\.hook_resid_pre"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)


def _final_hook(model: Any) -> str:
    return f"blocks.{int(model.cfg.n_layers) - 1}.hook_resid_post"


def test_cache_stitched_from_two_runs_at_a_deeper_layer(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    """The embeddings are this text's, a deeper stream is another run's: every block is recomputed from its
    cached input (one check pass), so the stitch is found wherever it is."""
    other = _cache(tiny_lm, _other_tokens(tiny_tokens))
    for name in ("blocks.0.hook_resid_post", _final_hook(tiny_lm)):
        cache = _cache(tiny_lm, tiny_tokens)
        cache[name] = other[name]
        with pytest.raises(InputError, match=rf"mixes runs(.|\n)*{name} equal to what the model computes"):
            lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)
    cache = _cache(tiny_lm, tiny_tokens)  # one batch row of one deep stream
    cache[_final_hook(tiny_lm)] = cache[_final_hook(tiny_lm)].clone()
    cache[_final_hook(tiny_lm)][1] = other[_final_hook(tiny_lm)][1]
    with pytest.raises(InputError, match=r"mixes runs(.|\n)*first at \(batch 1, pos 0\)"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)


def test_cache_stitched_from_a_text_that_differs_only_at_the_last_token(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    """Same prefix, one other last token: only the last position of the stitched stream differs."""
    other_tokens = tiny_tokens.clone()
    other_tokens[:, -1] = (other_tokens[:, -1] % 299) + 1
    cache = _cache(tiny_lm, tiny_tokens)
    cache["blocks.1.hook_resid_post"] = _cache(tiny_lm, other_tokens)["blocks.1.hook_resid_post"]
    last = int(tiny_tokens.shape[1]) - 1
    with pytest.raises(InputError, match=rf"mixes runs(.|\n)*2 of 24 positions differ, first at \(batch 0, pos {last}\)"):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)


def test_cache_of_an_edited_forward_pass_is_refused(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    """A cache made under a hook that edits a stream is not the model's run: the fix points to fwd_hooks=."""
    adapter = lensbox.adapt(tiny_lm)
    name = adapter.hook_name(lensbox.core.Site.resid_post(0))

    def scale(act: Tensor, hook: Any = None) -> Tensor:
        return act * 1.5

    with tiny_lm.hooks(fwd_hooks=[(name, scale)]):
        _, cache = tiny_lm.run_with_cache(tiny_tokens)
    with pytest.raises(InputError, match=r"mixes runs(.|\n)*fwd_hooks="):
        lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)
    edited = lensbox.analyze(tiny_lm, tiny_tokens, ["logit_lens"], fwd_hooks=[(name, scale)])["logit_lens"]
    assert not torch.allclose(edited.kl_final, lensbox.logit_lens(tiny_lm, tiny_tokens).kl_final)


def test_filtered_cache_of_the_right_text_is_accepted(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    _, cache = tiny_lm.run_with_cache(tiny_tokens, names_filter=lambda n: n.endswith(("resid_pre", "resid_post")))
    assert "hook_embed" not in cache.keys()
    res = lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache)
    torch.testing.assert_close(res.kl_final, lensbox.logit_lens(tiny_lm, tiny_tokens).kl_final)


# ----------------------------------------------------------------------------- results
def test_table_batch_out_of_range(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    result = lensbox.logit_lens(tiny_lm, tiny_tokens)
    with pytest.raises(InputError, match=r"Batch row out of range(.|\n)*0\.\.1(.|\n)*batch=3"):
        result.table(batch=3)
    with pytest.raises(InputError, match="Batch row out of range"):
        result.top_tokens("final", 0, batch=2)
    with pytest.raises(InputError, match="Batch row out of range"):
        result.mean_over_positions("entropy", batch=-3)
    assert result.table(batch=-1) == result.table(batch=1)


def test_mark_leaves_no_real_token_id_at_bad_final_positions(tiny_lm: Any, tiny_tokens: Tensor) -> None:
    n_layers = int(tiny_lm.cfg.n_layers)
    cache = _cache(tiny_lm, tiny_tokens)
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    cache[final] = cache[final].clone()
    cache[final][1, 5, 7] = float("nan")
    clean = lensbox.logit_lens(tiny_lm, tiny_tokens)
    marked = lensbox.logit_lens(tiny_lm, tiny_tokens, cache=cache, on_nonfinite="mark")
    assert int(marked.final_top1[1, 5]) == -1
    keep = torch.ones_like(clean.final_top1, dtype=torch.bool)
    keep[1, 5] = False
    assert torch.equal(marked.final_top1[keep], clean.final_top1[keep])
    assert (marked.top_ids[1, marked.site_index("final"), 5] == -1).all()


def test_every_error_here_is_a_lensbox_error() -> None:
    assert issubclass(InputError, LensboxError) and issubclass(SiteError, LensboxError)
    assert Site.embed().name == "embed"


# ----------------------------------------------------------------------------- the cache check on other families
CACHE_CASES = [("gpt2", "raw"), ("gpt2", "compat"), ("gemma2", "raw"), ("gemma2", "compat"), ("neox", "raw"), ("qwen2", "raw")]


@pytest.mark.parametrize(("family", "mode"), CACHE_CASES, ids=[f"{f}-{m}" for f, m in CACHE_CASES])
def test_cache_check_across_families(tiny_family: Any, tiny_tokens: Tensor, family: str, mode: str) -> None:
    """Learned positions (GPT-2), a scaled embedding (Gemma-2), rotary (NeoX, Qwen2): the own cache is
    accepted with the same numbers as a fresh run, another text's cache (or a deeper stream of it) is refused."""
    model = tiny_family(family, mode)
    own = lensbox.logit_lens(model, tiny_tokens, cache=model.run_with_cache(tiny_tokens)[1])
    torch.testing.assert_close(own.kl_final, lensbox.logit_lens(model, tiny_tokens).kl_final)
    _, other = model.run_with_cache(_other_tokens(tiny_tokens))
    with pytest.raises(InputError, match="not made from these inputs"):
        lensbox.logit_lens(model, tiny_tokens, cache=other)
    stitched = dict(model.run_with_cache(tiny_tokens)[1].items())
    deep = lensbox.adapt(model).hook_name(Site.resid_post(1))
    stitched[deep] = other[deep]
    with pytest.raises(InputError, match="mixes runs"):
        lensbox.logit_lens(model, tiny_tokens, cache=stitched)


# ----------------------------------------------------------------------------- windows beyond the context
def test_training_window_beyond_context(tiny_lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lensbox.training import train_tuned_lens

    n_ctx = int(tiny_lm.cfg.n_ctx)
    _no_forward(tiny_lm, monkeypatch)
    with pytest.raises(InputError, match=rf"training window is longer than the model's context(.|\n)*n_ctx = {n_ctx}"):
        train_tuned_lens(tiny_lm, "some text " * 10, window=n_ctx + 1, steps=1, progress=False)


def test_evaluation_window_beyond_context(tiny_lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    n_ctx = int(tiny_lm.cfg.n_ctx)
    _no_forward(tiny_lm, monkeypatch)
    with pytest.raises(InputError, match=rf"evaluation window is longer than the model's context(.|\n)*window={n_ctx + 1}"):
        lensbox.lenses.evaluate(tiny_lm, "some text " * 10, {"logit": "logit"}, window=n_ctx + 1, progress=False)


# ----------------------------------------------------------------------------- read_texts
def test_read_texts_single_string_follows_its_docstring(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lensbox.data import read_texts

    monkeypatch.chdir(tmp_path)
    assert read_texts("Hello world") == ["Hello world"]  # whitespace: the text itself
    assert read_texts("two\nlines") == ["two\nlines"]
    (tmp_path / "notes.txt").write_text("from a file\n", encoding="utf-8")
    assert read_texts("notes.txt") == ["from a file\n"]  # an existing file is read
    for missing in ("corpus", "data/missing.txt"):  # a bare word or a path: an error, never one word of text
        with pytest.raises(InputError, match="does not exist"):
            read_texts(missing)
    assert read_texts("corpus", kind="texts") == ["corpus"]


# ----------------------------------------------------------------------------- probe weights
def test_probe_with_absurd_weights_is_refused_at_load(tiny_lm: Any, tmp_path: Any) -> None:
    from lensbox.probes import InputProbe
    from lensbox.probes._probe_io import write_probe

    gen = torch.Generator().manual_seed(3)
    probe = InputProbe(["embed"], offsets=(0,), kinds=("ridge",)).fit(
        tiny_lm, torch.randint(1, 300, (16, 12), generator=gen), batch_size=16, progress=False
    )
    InputProbe.load(probe.save(tmp_path / "fine"))  # the fitted weights load
    tensors = probe.tensors()
    key = next(k for k in tensors if k.endswith("/weight"))
    tensors[key] = tensors[key] * 0 + 1e30
    path = write_probe(tmp_path / "huge", meta=probe.config(), tensors=tensors, overwrite=False)
    with pytest.raises(lensbox.ArtifactError, match=r"magnitude(.|\n)*1e\+30"):
        InputProbe.load(path)


@pytest.mark.smollm2
def test_cache_of_a_related_text_is_refused_on_smollm2(smollm2_model: Any) -> None:
    """Real embeddings of related tokens are close (cosine 0.7 for ' France' / ' Spain'): still refused."""
    adapter = lensbox.adapt(smollm2_model)
    a = adapter.to_tokens("The capital of France is Paris, and the capital of Italy is")
    b = adapter.to_tokens("The capital of Spain is Madrid, and the capital of Italy is")
    assert a.shape == b.shape
    _, cache = smollm2_model.run_with_cache(a)
    with pytest.raises(InputError, match=r"not made from these inputs(.|\n)*2 of 14 positions differ"):
        lensbox.logit_lens(smollm2_model, b, cache=cache)
    lensbox.logit_lens(smollm2_model, a, cache=cache)  # its own text is accepted


def test_probe_with_absurd_weights_in_memory_is_refused_before_evaluating(tiny_lm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights set to 1e30 after fitting (never saved): evaluation raises instead of reporting 0 %."""
    from lensbox.probes import InputProbe, evaluate_probe

    gen = torch.Generator().manual_seed(3)
    data = torch.randint(1, 300, (16, 12), generator=gen)
    probe = InputProbe(["embed"], offsets=(0,), kinds=("ridge",)).fit(tiny_lm, data, batch_size=16, progress=False)
    assert evaluate_probe(tiny_lm, data, probe, progress=False).accuracy().max() > 0  # the fitted probe works
    with torch.no_grad():
        next(iter(probe.ridge.values())).weight.fill_(1e30)
    _no_forward(tiny_lm, monkeypatch)
    with pytest.raises(lensbox.NonFiniteError, match=r"cannot be evaluated(.|\n)*ridge/(.|\n)*1e\+30"):
        evaluate_probe(tiny_lm, data, probe, progress=False)
