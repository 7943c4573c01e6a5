import subprocess
import sys
import textwrap

import pytest
import torch

import lensbox
from lensbox import Analyzer, InputError, LensboxError, Site
from lensbox.core import get_analyzer

from models import tiny_bridge


class CountTokens(Analyzer):
    name = "count_tokens"

    def sites(self, adapter):
        return [Site.resid_post(1)]

    def run(self, adapter, streams, tokens):
        (act,) = streams.values()
        return {"n": tokens.numel(), "shape": tuple(act.shape)}


def test_register_and_analyze_one_pass():
    lensbox.register_analyzer("count_tokens", CountTokens, overwrite=True)
    assert "count_tokens" in lensbox.available_analyzers()
    bridge = tiny_bridge()
    calls = []
    bridge.add_hook("blocks.0.hook_resid_pre", lambda act, hook: calls.append(1))
    out = lensbox.analyze(bridge, "one two three", analyzers=["count_tokens", "logit_lens", ("logit_lens", {"k": 2})])
    bridge.reset_hooks()
    assert len(calls) == 1  # one forward pass for all analyzers
    assert out["count_tokens"]["shape"][2] == 32
    assert out["logit_lens#2"].top_ids.shape[-1] == 2
    assert out["logit_lens"].top_ids.shape[-1] == 5


def test_duplicate_name_rejected():
    lensbox.register_analyzer("dup_test", CountTokens, overwrite=True)
    lensbox.register_analyzer("dup_test", CountTokens)  # the same factory again: a no-op
    other = lambda: CountTokens()  # noqa: E731
    with pytest.raises(LensboxError, match="already registered"):
        lensbox.register_analyzer("dup_test", other)
    assert get_analyzer("dup_test") is CountTokens
    lensbox.register_analyzer("dup_test", other, overwrite=True)
    assert get_analyzer("dup_test") is other


class MyLens(CountTokens):
    name = "logit_lens"


def _fresh_registry_run(body: str) -> str:
    """Run ``body`` in a new interpreter (a registry nobody has looked anything up in yet)."""
    code = "import lensbox\nfrom lensbox.core import get_analyzer\n" + textwrap.dedent(body)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip()


def test_builtin_name_refused_before_any_lookup():
    out = _fresh_registry_run(
        """
        from lensbox import LensboxError
        try:
            lensbox.register_analyzer("logit_lens", object)
        except LensboxError as e:
            print("refused", "lensbox.lenses._logit:LogitLens" in str(e))
        print(get_analyzer("logit_lens").__name__)
        """
    )
    assert out.splitlines() == ["refused True", "LogitLens"]


def test_builtin_name_refused_after_a_lookup():
    from lensbox.lenses._logit import LogitLens

    assert get_analyzer("logit_lens") is LogitLens
    with pytest.raises(LensboxError, match="already registered") as info:
        lensbox.register_analyzer("logit_lens", MyLens)
    assert "built-in" in str(info.value) and "overwrite=True" in str(info.value)
    assert get_analyzer("logit_lens") is LogitLens


def test_overwrite_of_a_builtin_is_kept_in_either_order():
    # before any lookup (a fresh interpreter), then looked up, listed and analyzed
    out = _fresh_registry_run(
        """
        class Mine:
            pass
        lensbox.register_analyzer("logit_lens", Mine, overwrite=True)
        lensbox.available_analyzers()
        import lensbox.lenses, lensbox.probes  # importing every analyzer module changes nothing
        print(get_analyzer("logit_lens") is Mine, get_analyzer("tuned_lens").__name__)
        """
    )
    assert out == "True TunedLens"
    # after a lookup (this interpreter)
    from lensbox.lenses._logit import LogitLens
    from lensbox.core._registry import _REGISTERED

    assert get_analyzer("logit_lens") is LogitLens
    try:
        lensbox.register_analyzer("logit_lens", MyLens, overwrite=True)
        lensbox.available_analyzers()
        assert get_analyzer("logit_lens") is MyLens
        out = lensbox.analyze(tiny_bridge(), "one two", analyzers=["logit_lens"])
        assert set(out["logit_lens"]) == {"n", "shape"}  # MyLens ran, not the built-in
    finally:
        _REGISTERED.pop("logit_lens", None)
    assert get_analyzer("logit_lens") is LogitLens


def test_every_builtin_resolves_to_an_analyzer_class():
    from lensbox.core._registry import BUILTIN_ANALYZERS

    assert set(BUILTIN_ANALYZERS) <= set(lensbox.available_analyzers())
    for name, spec in BUILTIN_ANALYZERS.items():
        cls = get_analyzer(name)
        assert isinstance(cls, type) and issubclass(cls, Analyzer), spec
        assert cls.name == name, spec


def test_analyzer_is_abstract():
    class NoRun(Analyzer):
        def sites(self, adapter):
            return []

    with pytest.raises(TypeError, match="abstract"):
        NoRun()


class WantsLogits(CountTokens):
    name = "wants_logits"
    needs_logits = True

    def run(self, adapter, streams, tokens, *, logits=None):
        return logits


def test_logits_reach_analyzers_that_ask():
    bridge = tiny_bridge()
    tokens = lensbox.adapt(bridge).to_tokens("one two three")
    out = lensbox.analyze(bridge, tokens, analyzers=[WantsLogits(), CountTokens()])
    with torch.no_grad():
        expected, cache = bridge.run_with_cache(tokens)
    assert torch.equal(out["wants_logits"], expected)
    assert out["count_tokens"]["n"] == tokens.numel()
    from_cache = lensbox.analyze(bridge, tokens, analyzers=[WantsLogits()], cache=cache)
    # a user's cache carries no logits: those of the cache check's pass follow from the cached final stream
    torch.testing.assert_close(from_cache["wants_logits"], expected)


def test_fwd_hooks_pass_through():
    bridge = tiny_bridge()
    tokens = lensbox.adapt(bridge).to_tokens("one two three")

    def zero(act, hook):
        return act * 0

    class Resid(CountTokens):
        name = "resid"

        def run(self, adapter, streams, tokens):
            return streams[Site.resid_post(1)]

    out = lensbox.analyze(bridge, tokens, analyzers=[Resid()], fwd_hooks=[("blocks.1.hook_resid_post", zero)])
    assert float(out["resid"].abs().max()) == 0.0
    plain = lensbox.analyze(bridge, tokens, analyzers=[Resid()])
    assert float(plain["resid"].abs().max()) > 0.0
    with pytest.raises(InputError, match="fwd_hooks cannot act on a cache"):
        lensbox.analyze(bridge, tokens, analyzers=[Resid()], cache={}, fwd_hooks=[("blocks.1.hook_resid_post", zero)])


def test_unknown_analyzer_lists_names():
    with pytest.raises(LensboxError) as info:
        get_analyzer("no_such")
    assert "logit_lens" in str(info.value) and "entry-point" in str(info.value)


def test_bad_spec():
    # analyze() is annotated, so the test run's type checker stops a bad spec first; without it
    # (a user's run) the spec reaches this check.
    from lensbox.core._analyze import _instantiate

    for bad in (42, ("logit_lens", 3), ("logit_lens",)):
        with pytest.raises(InputError, match="analyzer specification") as info:
            _instantiate(bad)
        assert repr(bad) in str(info.value)


def test_cache_missing_hooks():
    bridge = tiny_bridge()
    tokens = lensbox.adapt(bridge).to_tokens("one two")
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n == "blocks.0.hook_resid_pre")
    with pytest.raises(InputError) as info:
        lensbox.logit_lens(bridge, tokens, cache=cache)
    assert "blocks.2.hook_resid_post" in str(info.value) and "names_filter" in str(info.value)


def test_entry_point_plugin(tmp_path, monkeypatch):
    # A separate "package" exposes an analyzer through the lensbox.analyzers entry-point group. The registry
    # reads entry points on every lookup, so putting the package on sys.path here is the same as installing it
    # (this interpreter; the registry's cache of resolved names starts empty and is restored afterwards).
    from lensbox.core import _registry

    pkg = tmp_path / "plugin_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        textwrap.dedent(
            """
            from lensbox import Analyzer, Site

            class Norms(Analyzer):
                name = "norms"
                def sites(self, adapter):
                    return [Site.embed()]
                def run(self, adapter, streams, tokens):
                    return [float(v.norm()) for v in streams.values()]
            """
        )
    )
    dist = tmp_path / "plugin_pkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: plugin-pkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[lensbox.analyzers]\nnorms = plugin_pkg:Norms\n")
    assert "norms" not in lensbox.available_analyzers()
    monkeypatch.setattr(_registry, "_LOADED", {})
    monkeypatch.delitem(sys.modules, "plugin_pkg", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "norms" in lensbox.available_analyzers(), lensbox.available_analyzers()
        out = lensbox.analyze(tiny_bridge(), "hello there", analyzers=["norms"])
        assert len(out["norms"]) == 1 and out["norms"][0] > 0
        assert get_analyzer("norms").__module__ == "plugin_pkg"  # loaded from the entry point
    finally:
        sys.modules.pop("plugin_pkg", None)
