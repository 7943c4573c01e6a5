"""What every static figure shares: a headless figure, the font fallback, position and
site selection, the layer axis, and saving.

Figures are built without pyplot (no global figure registry, no GUI backend needed), so
they work headless and display once in a notebook.
"""

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Union

from .._errors import InputError
from .._io import atomic_file
from ..core._sites import Site, SiteKind, SitesSpec, parse_sites
from ._fonts import font_rc

#: Which positions (columns) a figure shows: ``None`` (all, or the last ``max_positions``),
#: an int k (the last k), a slice/range, a ``(start, stop)`` pair or a list of positions.
PositionSpec = Union[None, int, slice, range, Sequence[int], tuple[int, int]]
Number = Union[int, float]


def new_figure(width: float, height: float) -> Any:
    """A ``width`` x ``height`` inch matplotlib Figure on the Agg canvas (no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_and_axes(ax: Any, width: float, height: float) -> tuple[Any, Any]:
    """``(figure, axes)``: the caller's ``ax`` and its figure, or a new ``width`` x ``height`` figure."""
    if ax is not None:
        return ax.figure, ax
    fig = new_figure(width, height)
    return fig, fig.add_subplot()


def fonts_context() -> Any:
    """A matplotlib rc context with lensbox's font fallback list (CJK, Arabic, Cyrillic, symbols)."""
    import matplotlib

    return matplotlib.rc_context(font_rc())


def literal_text(texts: Iterable[Any]) -> None:
    """Draw these Text artists literally: a token such as ``$x$`` is not TeX."""
    for t in texts:
        t.set_parse_math(False)


def clip_label(label: str, max_chars: int) -> str:
    """Shorten a token label to ``max_chars`` characters, marking the cut with '…'."""
    if max_chars < 2 or len(label) <= max_chars:
        return label
    return label[: max_chars - 1] + "…"


def wrap_title(title: str, width_in: float, font_pt: float) -> str:
    """``title`` broken into lines that fit a figure ``width_in`` inches wide at ``font_pt`` points."""
    import textwrap

    chars = max(20, int(width_in * 72 / (0.56 * font_pt)))
    return "\n".join(textwrap.fill(line, chars) for line in title.split("\n"))


_POSITIONS_EXPECTED = "None, an int (last k), a slice, a (start, stop) pair or a list of positions"


def _explicit_positions(n: int, positions: Any) -> list[int]:
    try:
        raw = [int(p) for p in positions]
    except TypeError as exc:
        raise InputError(
            "Cannot read these positions.",
            expected=_POSITIONS_EXPECTED,
            received=f"{type(positions).__name__}: {positions!r}",
            fix="e.g. positions=slice(5, 20)",
        ) from exc
    bad = [p for p in raw if not -n <= p < n]
    if bad:
        raise InputError(
            "Positions out of range.",
            expected=f"positions in 0..{n - 1} (or negative from the end)",
            received=str(bad[:8]),
            fix="use result.tokens.shape[1] to see the length",
        )
    return sorted({p % n for p in raw})


def select_positions(n: int, positions: PositionSpec, *, default_max: int) -> list[int]:
    """Resolve a position window into sorted column indices.

    ``None``: every position, or the last ``default_max`` when there are more;
    an ``int`` k: the last k positions; a ``slice``/``range``; a ``(start, stop)`` pair;
    or an explicit list of positions (negative values count from the end).
    """
    if positions is None:
        return list(range(max(0, n - default_max), n))
    if isinstance(positions, bool):
        raise InputError(
            "Cannot read a bool as positions.",
            expected=_POSITIONS_EXPECTED,
            received=repr(positions),
            fix="e.g. positions=12 for the last 12 positions",
        )
    if isinstance(positions, int):
        if positions < 1:
            raise InputError(
                "The position window must hold at least one position.",
                expected="an int >= 1 (the last k positions)",
                received=str(positions),
                fix="e.g. positions=12",
            )
        return list(range(max(0, n - positions), n))
    if isinstance(positions, slice):
        cols = list(range(n))[positions]
    elif isinstance(positions, tuple) and len(positions) == 2 and all(isinstance(v, int) for v in positions):
        cols = list(range(n))[slice(*positions)]
    else:
        cols = _explicit_positions(n, positions)
    if not cols:
        raise InputError(
            "The position window is empty.",
            expected=f"at least one position of 0..{n - 1}",
            received=repr(positions),
            fix="widen the window",
        )
    return cols


def select_rows(result: Any, sites: SitesSpec) -> list[int]:
    """Rows of ``result`` (a ``LensResult``) for ``sites``, sorted; ``None`` or ``"all"``: every row.

    ``sites`` is read as everywhere in lensbox (one site, ``"embed,0,5-9,final"``, a list of
    sites, names or layer indices); each site must be one the result holds.
    """
    if sites is None or (isinstance(sites, str) and sites.strip().lower() in {"all", ""}):
        return list(range(len(result.sites)))
    return sorted({result.site_index(s) for s in parse_sites(sites, result.n_model_layers)})


def check_batch(result: Any, batch: int) -> int:
    """``batch`` as a row index of ``result.tokens`` (negative counts from the end); raises if out of range."""
    n = int(result.tokens.shape[0])
    if not -n <= batch < n:
        raise InputError(
            "Batch row out of range.",
            expected=f"a batch index in 0..{n - 1}",
            received=str(batch),
            fix="pick one of the inputs you passed",
        )
    return batch % n


def site_axis_label(site: Site) -> str:
    """Short label of a site for an axis: 'embed', 'pre 3', 'mid 3', 'post 3'."""
    if site.kind is SiteKind.EMBED:
        return "embed"
    short = {SiteKind.RESID_PRE: "pre", SiteKind.RESID_MID: "mid", SiteKind.RESID_POST: "post"}[site.kind]
    return f"{short} {site.layer}"


def site_x(site: Site) -> float:
    """x coordinate of a site on a layer axis: embed = -1, resid_post.i = i, resid_mid.i = i - 0.5."""
    return site.depth / 2.0 - 1.0


_LAYER_XLABEL = "layer (residual stream after block i; embed = input embeddings)"


def layer_ticks(ax: Any, sites: Sequence[Site] | Sequence[float], *, max_ticks: int = 12,
                xlabel: str = _LAYER_XLABEL) -> None:
    """Integer layer ticks on the x axis of ``ax`` spanning ``sites`` (or their x coordinates), 'embed' at -1."""
    from matplotlib.ticker import MaxNLocator

    xs = sorted({site_x(s) if isinstance(s, Site) else float(s) for s in sites})
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=max(2, max_ticks)))
    lo, hi = xs[0], xs[-1]
    ax.set_xlim(lo - 0.5, hi + 0.5)
    ticks = [t for t in ax.get_xticks() if lo - 1e-9 <= t <= hi + 1e-9]
    if lo <= -1.0:
        # The embeddings get their own tick; drop integer ticks too close to it to read.
        step = (ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
        ticks = [-1.0] + [t for t in ticks if t >= -1.0 + max(1.0, 0.75 * step)]
    ax.set_xticks(ticks, ["embed" if t == -1 else str(int(t)) for t in ticks])
    ax.set_xlabel(xlabel)


# ---------------------------------------------------------------------------- saving
_FORMATS = (".png", ".svg", ".pdf")


def save_figure(fig: Any, path: Union[str, "os.PathLike[str]"], *, dpi: int = 150) -> Path:
    """Write ``fig`` to ``path`` (``.png``, ``.svg`` or ``.pdf``, chosen by the suffix); returns the path.

    SVG text is stored as outlines, so the file looks the same on machines without the fonts.
    The file is written atomically: an interrupted save leaves the previous file (or none).
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in _FORMATS:
        raise InputError(
            "Unsupported figure format.",
            expected="a path ending in .png, .svg or .pdf",
            received=str(p),
            fix=f"e.g. {p.with_suffix('.png')}",
        )
    p.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib

    with atomic_file(p, suffix=suffix) as tmp, matplotlib.rc_context({"svg.fonttype": "path", "pdf.fonttype": 42}):
        fig.savefig(tmp, format=suffix[1:], dpi=dpi, bbox_inches="tight", facecolor="white")
    return p


save = save_figure
