import subprocess
import sys
import textwrap

import pytest

import lensbox
from lensbox import Analyzer, InputError, LensboxError, Site

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
    with pytest.raises(LensboxError, match="already registered"):
        lensbox.register_analyzer("dup_test", lambda: CountTokens())


def test_unknown_analyzer_lists_names():
    with pytest.raises(LensboxError) as info:
        lensbox.get_analyzer("no_such")
    assert "logit_lens" in str(info.value) and "entry-point" in str(info.value)


def test_bad_spec():
    with pytest.raises(InputError, match="analyzer specification"):
        lensbox.analyze(tiny_bridge(), "hi", analyzers=[42])


def test_cache_missing_hooks():
    bridge = tiny_bridge()
    tokens = lensbox.adapt(bridge).to_tokens("one two")
    _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n == "blocks.0.hook_resid_pre")
    with pytest.raises(InputError) as info:
        lensbox.logit_lens(bridge, tokens, cache=cache)
    assert "blocks.2.hook_resid_post" in str(info.value) and "names_filter" in str(info.value)


def test_entry_point_plugin(tmp_path):
    # A separate "package" exposes an analyzer through the lensbox.analyzers entry-point group.
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
    code = textwrap.dedent(
        f"""
        import sys
        sys.path[:0] = [{str(tmp_path)!r}, {str(__import__('pathlib').Path(__file__).parent)!r}]
        import lensbox
        from models import tiny_bridge
        assert "norms" in lensbox.available_analyzers(), lensbox.available_analyzers()
        out = lensbox.analyze(tiny_bridge(), "hello there", analyzers=["norms"])
        assert len(out["norms"]) == 1 and out["norms"][0] > 0
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_import_has_no_side_effects():
    code = (
        "import sys; import lensbox; "
        "bad = [m for m in ('transformer_lens', 'transformers', 'matplotlib', 'plotly', 'sklearn', 'pandas') if m in sys.modules]; "
        "print(bad)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
