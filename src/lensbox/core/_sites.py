"""Typed residual-stream sites.

Inside lensbox a place in the residual stream is a `Site`, never a bare hook
string. Adapters turn a site into the hook name of one TransformerLens generation.
"""

import dataclasses
import enum
import re
from typing import Iterable, Mapping, Optional, Sequence, Union

from .._errors import SiteError


class SiteKind(str, enum.Enum):
    """Where in the residual stream a site sits."""

    EMBED = "embed"
    RESID_PRE = "resid_pre"
    RESID_MID = "resid_mid"
    RESID_POST = "resid_post"

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True, order=False)
class Site:
    """A residual-stream site: the input embeddings, or a block's resid_pre/mid/post.

    ``Site.embed()`` is the stream entering block 0 (token plus positional embeddings);
    ``Site.resid_post(i)`` is the stream leaving block ``i``; ``Site.resid_mid(i)``
    sits inside block ``i`` after attention and before the MLP.
    """

    kind: SiteKind
    layer: Optional[int] = None

    def __post_init__(self) -> None:
        kind = SiteKind(self.kind)
        object.__setattr__(self, "kind", kind)
        if kind is SiteKind.EMBED:
            if self.layer not in (None, 0):
                raise SiteError(
                    "The embed site has no layer index.",
                    expected="Site.embed()",
                    received=f"Site(kind='embed', layer={self.layer})",
                    fix="use Site.embed(), or Site.resid_pre(i) for the stream entering block i",
                )
            object.__setattr__(self, "layer", None)
        elif kind is SiteKind.RESID_PRE and self.layer == 0:
            # The stream entering block 0 is the embedding stream: one name for one tensor.
            object.__setattr__(self, "kind", SiteKind.EMBED)
            object.__setattr__(self, "layer", None)
        elif not isinstance(self.layer, int) or isinstance(self.layer, bool):
            raise SiteError(
                f"Site kind {kind.value!r} needs an integer layer index.",
                expected=f"Site.{kind.value}(layer) with an int layer",
                received=f"layer={self.layer!r}",
                fix=f"write e.g. Site.{kind.value}(3) or the string '{kind.value}.3'",
            )

    @classmethod
    def embed(cls) -> "Site":
        return cls(SiteKind.EMBED)

    @classmethod
    def resid_pre(cls, layer: int) -> "Site":
        return cls(SiteKind.RESID_PRE, layer)

    @classmethod
    def resid_mid(cls, layer: int) -> "Site":
        return cls(SiteKind.RESID_MID, layer)

    @classmethod
    def resid_post(cls, layer: int) -> "Site":
        return cls(SiteKind.RESID_POST, layer)

    @property
    def depth(self) -> int:
        """Position along the residual stream: embed=0, resid_mid.i=2i+1, resid_post.i=2i+2."""
        if self.kind is SiteKind.EMBED:
            return 0
        layer = int(self.layer or 0)
        return {
            SiteKind.RESID_PRE: 2 * layer,
            SiteKind.RESID_MID: 2 * layer + 1,
            SiteKind.RESID_POST: 2 * layer + 2,
        }[self.kind]

    @property
    def name(self) -> str:
        """Short label: ``embed``, ``resid_post.3``, ..."""
        if self.kind is SiteKind.EMBED:
            return "embed"
        return f"{self.kind.value}.{self.layer}"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Site({self.name!r})"

    def __lt__(self, other: "Site") -> bool:
        return (self.depth, self.kind.value) < (other.depth, other.kind.value)


SiteLike = Union[Site, str, int]
"""One site: a `Site`, a name such as ``"resid_mid.3"`` or ``"final"``, or a layer index (its resid_post)."""

SitesSpec = Union[None, str, int, Site, Iterable[SiteLike]]
"""What every ``sites=`` argument accepts: ``None`` or ``"all"`` (embeddings + every resid_post),
one site, a comma-separated string (``"embed,0,5-9,final"``; ranges mean resid_post), or an
iterable of sites, names and layer indices."""

_PATTERN = re.compile(
    r"^(?:blocks\.(?P<hl>-?\d+)\.hook_(?P<hk>resid_pre|resid_mid|resid_post)"
    r"|(?P<k>resid_pre|resid_mid|resid_post|pre|mid|post)[._ :\[]?(?P<l>-?\d+)\]?)$"
)

_ALIASES_EMBED = {"embed", "embeddings", "embedding", "input", "hook_embed", "emb"}
_ALIASES_FINAL = {"final", "last", "out", "output"}


def valid_site_names(n_layers: int) -> str:
    """A human-readable list of the site names a model with ``n_layers`` blocks accepts."""
    last = n_layers - 1
    return (
        f"'embed', 'final' (= resid_post.{last}), 'resid_pre.i', 'resid_mid.i', 'resid_post.i' "
        f"for i in 0..{last} (negative i counts from the end), a bare integer i (= resid_post.i), "
        f"or a hook name such as 'blocks.{last}.hook_resid_post'"
    )


def resolve_site(site: SiteLike, n_layers: int) -> Site:
    """Turn a `Site`, a site string or an int into a validated `Site`."""
    if isinstance(site, Site):
        if site.layer is not None and not 0 <= site.layer < n_layers:
            raise SiteError(
                f"Site {site.name} is outside this model.",
                expected=f"a layer index in 0..{n_layers - 1}",
                received=str(site.layer),
                fix=f"choose one of {valid_site_names(n_layers)}",
            )
        return site
    if isinstance(site, bool) or not isinstance(site, (int, str)):
        raise SiteError(
            "Cannot read this as a residual-stream site.",
            expected="a lensbox.Site, a site string or an int layer",
            received=f"{type(site).__name__}: {site!r}",
            fix=f"use one of {valid_site_names(n_layers)}",
        )
    if isinstance(site, int):
        kind, layer = SiteKind.RESID_POST, site
    else:
        text = site.strip().lower()
        if text in _ALIASES_EMBED:
            return Site.embed()
        if text in _ALIASES_FINAL:
            return Site.resid_post(n_layers - 1)
        if re.fullmatch(r"-?\d+", text):
            kind, layer = SiteKind.RESID_POST, int(text)
        else:
            m = _PATTERN.match(text)
            if m is None:
                raise SiteError(
                    f"Unknown site {site!r}.",
                    expected=valid_site_names(n_layers),
                    received=repr(site),
                    fix="spell the site as one of the expected forms",
                )
            raw_kind = m.group("hk") or m.group("k")
            raw_kind = raw_kind if raw_kind.startswith("resid") else f"resid_{raw_kind}"
            kind = SiteKind(raw_kind)
            layer = int(m.group("hl") if m.group("hl") is not None else m.group("l"))
    if not -n_layers <= layer < n_layers:
        raise SiteError(
            f"Layer {layer} does not exist in a model with {n_layers} blocks.",
            expected=f"a layer index in 0..{n_layers - 1} (or -{n_layers}..-1 from the end)",
            received=str(layer),
            fix=f"choose one of {valid_site_names(n_layers)}",
        )
    return Site(kind, layer % n_layers)


def default_sites(n_layers: int, *, include_mid: bool = False) -> list:
    """The input embeddings and every block's resid_post (and resid_mid when asked): n_layers + 1 streams."""
    sites = [Site.embed()]
    for i in range(n_layers):
        if include_mid:
            sites.append(Site.resid_mid(i))
        sites.append(Site.resid_post(i))
    return sites


def parse_sites(
    spec: SitesSpec,
    n_layers: int,
    *,
    include_mid: bool = False,
) -> list:
    """Resolve a user's site selection into a sorted, duplicate-free list of sites.

    ``spec`` may be ``None`` or ``"all"`` (embeddings + every resid_post), a single
    site, a comma-separated string (``"embed,0,5-9,final"``; ranges mean resid_post),
    or an iterable of sites.
    """
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in {"all", ""}):
        return default_sites(n_layers, include_mid=include_mid)
    items: Sequence[SiteLike]
    if isinstance(spec, str):
        items = []
        for part in spec.split(","):
            part = part.strip()
            if not part:
                continue
            m = re.fullmatch(r"(-?\d+)\s*(?:-|:|\.\.)\s*(-?\d+)", part)
            if m:
                lo, hi = int(m.group(1)), int(m.group(2))
                items.extend(range(lo, hi + 1))
            else:
                items.append(part)
    elif isinstance(spec, (Site, int)) and not isinstance(spec, bool):
        items = [spec]
    elif isinstance(spec, Iterable) and not isinstance(spec, (bytes, bytearray, Mapping)):
        items = list(spec)
    else:
        raise SiteError(
            "Cannot read this as a selection of sites.",
            expected=f"None or 'all', a site, a comma-separated string, or a list of sites: {valid_site_names(n_layers)}",
            received=f"{type(spec).__name__}: {spec!r}",
            fix="e.g. sites='embed,0-3,final' or sites=[0, 5, 'final']",
        )
    if not items:
        raise SiteError(
            "No sites were selected.",
            expected="at least one site",
            received=repr(spec),
            fix=f"use 'all' or one of {valid_site_names(n_layers)}",
        )
    resolved = sorted({resolve_site(s, n_layers) for s in items})
    if include_mid:
        mids = {Site.resid_mid(s.layer) for s in resolved if s.kind is SiteKind.RESID_POST}
        resolved = sorted(set(resolved) | mids)
    return resolved
