"""Writing your own analyzer, registering it, and shipping it as a plugin with an entry point."""

# --8<-- [start:analyzer]
import torch
import lensbox
from lensbox import Analyzer, Site


class NormGrowth(Analyzer):
    """Analyzer ``norm_growth``: by what factor each stretch of blocks grows the residual stream."""

    name = "norm_growth"

    def __init__(self, every: int = 5) -> None:
        self.every = every

    def sites(self, adapter):
        # The residual-stream sites this analyzer needs; lensbox captures only these.
        return [Site.embed()] + [Site.resid_post(i) for i in range(self.every - 1, adapter.n_layers, self.every)]

    def run(self, adapter, streams, tokens):
        # streams: {Site: [batch, pos, d_model]} for exactly the sites above.
        sites = self.sites(adapter)
        norms = torch.stack([streams[s].float().norm(dim=-1) for s in sites], dim=1)  # [batch, site, pos]
        growth = norms[:, 1:] / norms[:, :-1]
        return {
            "steps": [f"{a.name} -> {b.name}" for a, b in zip(sites, sites[1:])],
            "median_growth": growth[0, :, 1:].median(-1).values.tolist(),  # start token left out
        }
# --8<-- [end:analyzer]

# --8<-- [start:register]
lensbox.register_analyzer("norm_growth", NormGrowth, overwrite=True)

model = lensbox.load_model()
out = lensbox.analyze(model, "The capital of France is Paris.", ["logit_lens", ("norm_growth", {"every": 6})])
print(sorted(out))                    # one forward pass fed both analyzers
for step, g in zip(out["norm_growth"]["steps"], out["norm_growth"]["median_growth"]):
    print(f"{step:32s} x{g:.2f}")
# --8<-- [end:register]

# --8<-- [start:package]
# What `pip install` of a plugin package leaves on disk, written by hand into a temporary
# directory: the package itself and a .dist-info with the entry point. importlib.metadata
# (and so lensbox) finds entry points of anything on sys.path this way.
import sys
import tempfile
import textwrap
from pathlib import Path

site_dir = Path(tempfile.mkdtemp(prefix="lensbox-plugin-"))
pkg = site_dir / "lensbox_norm_growth"
pkg.mkdir()
(pkg / "__init__.py").write_text(textwrap.dedent('''
    import torch
    from lensbox import Analyzer, Site

    class NormGrowth(Analyzer):
        name = "norm_growth_plugin"

        def __init__(self, every: int = 10) -> None:
            self.every = every

        def sites(self, adapter):
            return [Site.embed()] + [Site.resid_post(i) for i in range(self.every - 1, adapter.n_layers, self.every)]

        def run(self, adapter, streams, tokens):
            sites = self.sites(adapter)
            norms = torch.stack([streams[s].float().norm(dim=-1) for s in sites], dim=1)
            return (norms[:, 1:] / norms[:, :-1])[0, :, 1:].median(-1).values.tolist()
'''))
dist = site_dir / "lensbox_norm_growth-0.1.0.dist-info"
dist.mkdir()
(dist / "METADATA").write_text("Metadata-Version: 2.1\nName: lensbox-norm-growth\nVersion: 0.1.0\n")
(dist / "entry_points.txt").write_text("[lensbox.analyzers]\nnorm_growth_plugin = lensbox_norm_growth:NormGrowth\n")
sys.path.insert(0, str(site_dir))

print("norm_growth_plugin" in lensbox.available_analyzers())
result = lensbox.analyze(model, "The capital of France is Paris.", ["norm_growth_plugin"])
print(result)
# --8<-- [end:package]

if __name__ == "__main__":
    pass
