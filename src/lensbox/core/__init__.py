"""lensbox.core: the hook-point machinery every analyzer uses."""

from ._sites import Site as Site, SiteKind as SiteKind, SitesSpec as SitesSpec
from ._adapter import ModelAdapter as ModelAdapter, ModelLike as ModelLike, adapt as adapt
from ._fingerprint import Fingerprint as Fingerprint, check_fingerprint as check_fingerprint
from ._analyzer import Analyzer as Analyzer
from ._registry import (
    available_analyzers as available_analyzers,
    get_analyzer as get_analyzer,
    register_analyzer as register_analyzer,
)
from ._analyze import analyze as analyze, streams_from_cache as streams_from_cache
