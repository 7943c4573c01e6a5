"""Registers lensbox's built-in analyzers (imported lazily by the registry)."""

from .lenses._geometry import ResidualNormsAnalyzer, TokenPlaneAnalyzer
from .lenses._logit import LogitLens
from .probes._probe import InputProbe
from .core._registry import register_analyzer
from .lenses._tuned import TunedLens

register_analyzer("logit_lens", LogitLens, overwrite=True)
register_analyzer("tuned_lens", TunedLens, overwrite=True)
register_analyzer("input_probe", InputProbe, overwrite=True)
register_analyzer("residual_norms", ResidualNormsAnalyzer, overwrite=True)
register_analyzer("token_plane", TokenPlaneAnalyzer, overwrite=True)
