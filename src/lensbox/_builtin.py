"""Registers lensbox's built-in analyzers (imported lazily by the registry)."""

from ._geometry import ResidualNormsAnalyzer, TokenPlaneAnalyzer
from ._logit_lens import LogitLens
from ._probe import InputProbe
from ._registry import register_analyzer
from ._tuned_lens import TunedLens

register_analyzer("logit_lens", LogitLens, overwrite=True)
register_analyzer("tuned_lens", TunedLens, overwrite=True)
register_analyzer("input_probe", InputProbe, overwrite=True)
register_analyzer("residual_norms", ResidualNormsAnalyzer, overwrite=True)
register_analyzer("token_plane", TokenPlaneAnalyzer, overwrite=True)
