"""Typed sites: places in the residual stream, and the outputs the blocks write into it.

Inside lensbox a place in the model is a `Site`, never a bare hook string.
Adapters turn a site into the hook name of one TransformerLens generation.

Two families of sites:

* **residual sites** (what the lenses decode): ``embed`` (the stream entering block 0),
  ``resid_pre.i``, ``resid_mid.i``, ``resid_post.i``;
* **component sites** (what a part of the model *writes* into the stream): ``tok_embed``
  (the token embedding, TransformerLens's ``hook_embed``), ``pos_embed`` (the learned
  positional embedding, only on models that add one to the stream), ``attn_out.i`` and
  ``mlp_out.i`` (a block's attention and MLP outputs, biases included), and ``head.i.h``
  (head ``h`` of block ``i``: ``z[..., h, :] @ W_O[h]``, read from ``hook_z``; it excludes the
  attention output bias ``b_O``, which belongs to the layer, not to a head).

The decomposition every attribution relies on (exact up to float rounding):

```text
resid_post.{last} = embed + sum_i attn_out.i + sum_i mlp_out.i
embed             = tok_embed + pos_embed          (models with learned positions)
embed             = tok_embed                      (rotary / ALiBi / no positions)
attn_out.i        = sum_h head.i.h + b_O[i]        (models without a post-attention norm)
```

``embed`` is both a residual site and the embedding component (one name, one tensor);
`component_sites` gives the canonical list of summands.
"""

import dataclasses
import enum
import re
from typing import Iterable, Mapping, Optional, Sequence, Union

from .._errors import SiteError


class SiteKind(str, enum.Enum):
    """What a site is: a residual stream (embed, resid_*) or a component output (the rest)."""

    EMBED = "embed"
    RESID_PRE = "resid_pre"
    RESID_MID = "resid_mid"
    RESID_POST = "resid_post"
    TOK_EMBED = "tok_embed"
    POS_EMBED = "pos_embed"
    ATTN_OUT = "attn_out"
    MLP_OUT = "mlp_out"
    HEAD = "head"

    def __str__(self) -> str:
        return self.value


#: Kinds that are residual streams (what the lenses decode).
RESIDUAL_KINDS = frozenset({SiteKind.EMBED, SiteKind.RESID_PRE, SiteKind.RESID_MID, SiteKind.RESID_POST})
#: Kinds that are outputs written into the stream (``embed`` is also the whole embedding component).
COMPONENT_KINDS = frozenset(
    {SiteKind.TOK_EMBED, SiteKind.POS_EMBED, SiteKind.ATTN_OUT, SiteKind.MLP_OUT, SiteKind.HEAD}
)
_NO_LAYER = (SiteKind.EMBED, SiteKind.TOK_EMBED, SiteKind.POS_EMBED)
# Order among sites of equal depth: components before the stream that holds them.
_RANK = {
    SiteKind.EMBED: 0, SiteKind.TOK_EMBED: 1, SiteKind.POS_EMBED: 2, SiteKind.ATTN_OUT: 3, SiteKind.HEAD: 4,
    SiteKind.MLP_OUT: 3, SiteKind.RESID_POST: 5, SiteKind.RESID_PRE: 6, SiteKind.RESID_MID: 7,
}


@dataclasses.dataclass(frozen=True, order=False)
class Site:
    """A site: a residual stream or a component's output (see the module docstring).

    ``Site.embed()`` is the stream entering block 0 (token plus positional embeddings);
    ``Site.resid_post(i)`` is the stream leaving block ``i``; ``Site.resid_mid(i)``
    sits inside block ``i`` after attention and before the MLP. ``Site.attn_out(i)``,
    ``Site.mlp_out(i)``, ``Site.head_out(i, h)``, ``Site.tok_embed()`` and ``Site.pos_embed()``
    are what the model writes into the stream.
    """

    kind: SiteKind
    layer: Optional[int] = None
    head: Optional[int] = None

    def __post_init__(self) -> None:
        kind = SiteKind(self.kind)
        object.__setattr__(self, "kind", kind)
        if kind is not SiteKind.HEAD and self.head is not None:
            raise SiteError(
                f"Only head sites have a head index; {kind.value!r} has none.",
                expected=f"Site.{kind.value}(...) without head=, or Site.head_out(layer, head)",
                received=f"Site(kind={kind.value!r}, layer={self.layer}, head={self.head})",
                fix="drop head=, or write e.g. Site.head_out(3, 7) / the string 'head.3.7'",
            )
        if kind is SiteKind.HEAD and (not isinstance(self.head, int) or isinstance(self.head, bool)):
            raise SiteError(
                "A head site needs an integer head index.",
                expected="Site.head_out(layer, head) with int layer and head",
                received=f"head={self.head!r}",
                fix="write e.g. Site.head_out(3, 7) or the string 'head.3.7'",
            )
        if kind in _NO_LAYER:
            if self.layer not in (None, 0) or (kind is not SiteKind.EMBED and self.layer is not None):
                raise SiteError(
                    f"The {kind.value} site has no layer index.",
                    expected=f"Site.{kind.value}()",
                    received=f"Site(kind={kind.value!r}, layer={self.layer})",
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

    @classmethod
    def tok_embed(cls) -> "Site":
        return cls(SiteKind.TOK_EMBED)

    @classmethod
    def pos_embed(cls) -> "Site":
        return cls(SiteKind.POS_EMBED)

    @classmethod
    def attn_out(cls, layer: int) -> "Site":
        return cls(SiteKind.ATTN_OUT, layer)

    @classmethod
    def mlp_out(cls, layer: int) -> "Site":
        return cls(SiteKind.MLP_OUT, layer)

    @classmethod
    def head_out(cls, layer: int, head: int) -> "Site":
        """Head ``head`` of block ``layer`` (the string form is ``'head.layer.head'``)."""
        return cls(SiteKind.HEAD, layer, head)

    @property
    def is_residual(self) -> bool:
        """True for residual-stream sites (embed, resid_pre/mid/post), which the lenses decode."""
        return self.kind in RESIDUAL_KINDS

    @property
    def is_component(self) -> bool:
        """True for what a part of the model writes: tok_embed, pos_embed, attn_out, mlp_out, head."""
        return self.kind in COMPONENT_KINDS

    @property
    def depth(self) -> int:
        """Position along the residual stream: embed=0, resid_mid.i=2i+1, resid_post.i=2i+2.

        A component sits at the depth of the stream it is first part of: attn_out.i and
        head.i.h at 2i+1 (resid_mid.i), mlp_out.i at 2i+2 (resid_post.i), embeddings at 0.
        """
        if self.kind in _NO_LAYER:
            return 0
        layer = int(self.layer or 0)
        return {
            SiteKind.RESID_PRE: 2 * layer,
            SiteKind.RESID_MID: 2 * layer + 1,
            SiteKind.RESID_POST: 2 * layer + 2,
            SiteKind.ATTN_OUT: 2 * layer + 1,
            SiteKind.HEAD: 2 * layer + 1,
            SiteKind.MLP_OUT: 2 * layer + 2,
        }[self.kind]

    @property
    def name(self) -> str:
        """Short label: ``embed``, ``resid_post.3``, ``attn_out.3``, ``head.3.7``, ..."""
        if self.kind in _NO_LAYER:
            return self.kind.value
        if self.kind is SiteKind.HEAD:
            return f"head.{self.layer}.{self.head}"
        return f"{self.kind.value}.{self.layer}"

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"Site({self.name!r})"

    def _key(self) -> tuple:
        return (self.depth, _RANK[self.kind], -1 if self.head is None else self.head)

    def __lt__(self, other: "Site") -> bool:
        return self._key() < other._key()


SiteLike = Union[Site, str, int]
"""One site: a `Site`, a name such as ``"resid_mid.3"``, ``"attn_out.3"``, ``"head.3.7"`` or
``"final"``, or a layer index (its resid_post)."""

SitesSpec = Union[None, str, int, Site, Iterable[SiteLike]]
"""What every ``sites=`` argument accepts: ``None`` or ``"all"`` (embeddings + every resid_post),
one site, a comma-separated string (``"embed,0,5-9,final"``; ranges mean resid_post), or an
iterable of sites, names and layer indices."""

_PATTERN = re.compile(
    r"^(?:blocks\.(?P<hl>-?\d+)\.hook_(?P<hk>resid_pre|resid_mid|resid_post|attn_out|mlp_out)"
    r"|(?P<k>resid_pre|resid_mid|resid_post|pre|mid|post|attn_out|mlp_out)[._ :\[]?(?P<l>-?\d+)\]?)$"
)
_HEAD_PATTERN = re.compile(r"^(?:head[._ :]?(?P<l>-?\d+)[._ :](?P<h>-?\d+)|l(?P<l2>-?\d+)h(?P<h2>-?\d+))$")

_ALIASES_EMBED = {"embed", "embeddings", "embedding", "input", "hook_embed", "emb"}
_ALIASES_FINAL = {"final", "last", "out", "output"}
_ALIASES_TOK_EMBED = {"tok_embed", "token_embed", "w_e"}
_ALIASES_POS_EMBED = {"pos_embed", "hook_pos_embed", "positional_embed", "w_pos"}


def valid_site_names(n_layers: int, n_heads: Optional[int] = None) -> str:
    """A human-readable list of the site names a model with ``n_layers`` blocks accepts."""
    last = n_layers - 1
    heads = f"0..{n_heads - 1}" if n_heads else "0..n_heads-1"
    return (
        f"'embed', 'final' (= resid_post.{last}), 'resid_pre.i', 'resid_mid.i', 'resid_post.i' "
        f"for i in 0..{last} (negative i counts from the end), a bare integer i (= resid_post.i), "
        f"or a hook name such as 'blocks.{last}.hook_resid_post'; component outputs: 'tok_embed', "
        f"'pos_embed' (models with learned positions), 'attn_out.i', 'mlp_out.i', 'head.i.h' "
        f"(or 'L{{i}}H{{h}}') for h in {heads}"
    )


def _out_of_range(what: str, value: int, size: int, context: str, names: str) -> SiteError:
    return SiteError(
        f"{what} {value} does not exist {context}.",
        expected=f"a {what.lower()} index in 0..{size - 1} (or -{size}..-1 from the end)",
        received=str(value),
        fix=f"choose one of {names}",
    )


def _check_site(site: Site, n_layers: int, n_heads: Optional[int]) -> Site:
    names = valid_site_names(n_layers, n_heads)
    if site.layer is not None and not 0 <= site.layer < n_layers:
        raise SiteError(
            f"Site {site.name} is outside this model.",
            expected=f"a layer index in 0..{n_layers - 1}",
            received=str(site.layer),
            fix=f"choose one of {names}",
        )
    if site.kind is SiteKind.HEAD and (site.head < 0 or (n_heads is not None and site.head >= n_heads)):
        raise SiteError(
            f"Site {site.name} is outside this model: block {site.layer} has {n_heads} heads.",
            expected=f"a head index in 0..{int(n_heads or 0) - 1}" if n_heads else "a head index >= 0",
            received=str(site.head),
            fix=f"choose one of {names}",
        )
    return site


def resolve_site(site: SiteLike, n_layers: int, *, n_heads: Optional[int] = None) -> Site:
    """Turn a `Site`, a site string or an int into a validated `Site`.

    ``n_heads`` (heads per block) bounds head indices; without it any head index >= 0 passes.
    """
    names = valid_site_names(n_layers, n_heads)
    if isinstance(site, Site):
        return _check_site(site, n_layers, n_heads)
    if isinstance(site, bool) or not isinstance(site, (int, str)):
        raise SiteError(
            "Cannot read this as a site.",
            expected="a lensbox.Site, a site string or an int layer",
            received=f"{type(site).__name__}: {site!r}",
            fix=f"use one of {names}",
        )
    head: Optional[int] = None
    if isinstance(site, int):
        kind, layer = SiteKind.RESID_POST, site
    else:
        text = site.strip().lower()
        if text in _ALIASES_EMBED:
            return Site.embed()
        if text in _ALIASES_FINAL:
            return Site.resid_post(n_layers - 1)
        if text in _ALIASES_TOK_EMBED:
            return Site.tok_embed()
        if text in _ALIASES_POS_EMBED:
            return Site.pos_embed()
        m_head = _HEAD_PATTERN.match(text)
        if re.fullmatch(r"-?\d+", text):
            kind, layer = SiteKind.RESID_POST, int(text)
        elif m_head is not None:
            kind = SiteKind.HEAD
            layer = int(m_head.group("l") if m_head.group("l") is not None else m_head.group("l2"))
            head = int(m_head.group("h") if m_head.group("h") is not None else m_head.group("h2"))
        else:
            m = _PATTERN.match(text)
            if m is None:
                raise SiteError(
                    f"Unknown site {site!r}.",
                    expected=names,
                    received=repr(site),
                    fix="spell the site as one of the expected forms",
                )
            raw_kind = m.group("hk") or m.group("k")
            if raw_kind in ("pre", "mid", "post"):
                raw_kind = f"resid_{raw_kind}"
            kind = SiteKind(raw_kind)
            layer = int(m.group("hl") if m.group("hl") is not None else m.group("l"))
    if not -n_layers <= layer < n_layers:
        raise _out_of_range("Layer", layer, n_layers, f"in a model with {n_layers} blocks", names)
    if head is not None and n_heads is not None:
        if not -n_heads <= head < n_heads:
            raise _out_of_range("Head", head, n_heads, f"in block {layer % n_layers}: it has {n_heads} heads", names)
        head %= n_heads
    elif head is not None and head < 0:
        raise SiteError(
            f"Head {head} cannot count from the end without the model's head count.",
            expected="a head index >= 0",
            received=str(head),
            fix="pass a non-negative head, or resolve the site through the model's adapter",
        )
    return Site(kind, layer % n_layers, head)


def default_sites(n_layers: int, *, include_mid: bool = False) -> list:
    """The input embeddings and every block's resid_post (and resid_mid when asked): n_layers + 1 streams."""
    sites = [Site.embed()]
    for i in range(n_layers):
        if include_mid:
            sites.append(Site.resid_mid(i))
        sites.append(Site.resid_post(i))
    return sites


def component_sites(
    n_layers: int, *, n_heads: Optional[int] = None, pos_embed: bool = False, split_embed: bool = False
) -> list:
    """The summands of the final residual stream, in depth order.

    ``[embed, attn_out.0, mlp_out.0, ...]``; with ``split_embed`` and ``pos_embed`` (the model adds
    learned positions) ``embed`` becomes ``tok_embed, pos_embed``. With ``n_heads`` each
    ``attn_out.i`` is replaced by ``head.i.0 .. head.i.{n_heads-1}``; the attention output bias
    ``b_O[i]`` is then a further summand the caller adds (it belongs to no head).
    """
    sites = [Site.tok_embed(), Site.pos_embed()] if (split_embed and pos_embed) else [Site.embed()]
    for i in range(n_layers):
        if n_heads:
            sites.extend(Site.head_out(i, h) for h in range(n_heads))
        else:
            sites.append(Site.attn_out(i))
        sites.append(Site.mlp_out(i))
    return sites


def _refuse_components(resolved: Sequence[Site], spec: object) -> None:
    comps = [s.name for s in resolved if s.is_component]
    if comps:
        raise SiteError(
            "This analysis reads residual streams; component outputs are not residual-stream sites.",
            expected="residual sites: 'embed', 'resid_pre.i', 'resid_mid.i', 'resid_post.i', 'final', or an int",
            received=f"{', '.join(comps[:6])}{' ...' if len(comps) > 6 else ''} in sites={spec!r}",
            fix=(
                "use lensbox.logit_attribution (or the component lens) for component outputs, or the residual "
                "stream they write into (attn_out.i -> resid_mid.i, mlp_out.i -> resid_post.i)"
            ),
        )


def parse_sites(
    spec: SitesSpec,
    n_layers: int,
    *,
    include_mid: bool = False,
    n_heads: Optional[int] = None,
    components: bool = False,
) -> list:
    """Resolve a user's site selection into a sorted, duplicate-free list of sites.

    ``spec`` may be ``None`` or ``"all"`` (embeddings + every resid_post), a single
    site, a comma-separated string (``"embed,0,5-9,final"``; ranges mean resid_post),
    or an iterable of sites. Component sites (``attn_out.3``, ``head.3.7``, ...) are
    refused with a `SiteError` unless ``components`` is true.
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
            expected=f"None or 'all', a site, a comma-separated string, or a list of sites: {valid_site_names(n_layers, n_heads)}",
            received=f"{type(spec).__name__}: {spec!r}",
            fix="e.g. sites='embed,0-3,final' or sites=[0, 5, 'final']",
        )
    if not items:
        raise SiteError(
            "No sites were selected.",
            expected="at least one site",
            received=repr(spec),
            fix=f"use 'all' or one of {valid_site_names(n_layers, n_heads)}",
        )
    resolved = sorted({resolve_site(s, n_layers, n_heads=n_heads) for s in items})
    if not components:
        _refuse_components(resolved, spec)
    if include_mid:
        mids = {Site.resid_mid(s.layer) for s in resolved if s.kind is SiteKind.RESID_POST}
        resolved = sorted(set(resolved) | mids)
    return resolved
