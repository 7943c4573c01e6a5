"""lensbox.core: the hook-point machinery every analyzer uses."""

from ._sites import Site as Site, SiteKind as SiteKind, SitesSpec as SitesSpec
from ._adapter import ModelAdapter as ModelAdapter, ModelLike as ModelLike, adapt as adapt
from ._fingerprint import Fingerprint as Fingerprint, check_fingerprint as check_fingerprint
