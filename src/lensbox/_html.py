"""The small HTML building blocks behind every result's ``_repr_html_`` (Jupyter's rich display).

One style for all result types: a ``<div class="lensbox">`` holding a one-line heading
(bold object name, then plain text) and plain tables. Every piece of text (token labels
such as ``<filename>``, model names, paths) is escaped here, so callers pass plain strings
and never build markup from data themselves. Numbers are formatted by :func:`number`
(NaN as an em dash). No styling beyond inline attributes: the output must read the same
in JupyterLab, VS Code and a static HTML export.
"""

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

#: Shared by every table: compact cells, numbers right-aligned through ``number_cell``.
TABLE_STYLE = "border-collapse:collapse;font-size:12px"
CELL_STYLE = "padding:1px 6px;text-align:right"
HEAD_STYLE = "padding:1px 6px;text-align:left"


def escape(value: Any) -> str:
    """``str(value)`` with ``&``, ``<``, ``>`` and quotes escaped (safe in text and attributes)."""
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 4) -> str:
    """A number as text: integers as is, floats to ``digits`` significant digits, NaN/None as '—'."""
    if value is None:
        return "—"
    if isinstance(value, bool) or isinstance(value, int):
        return str(value)
    f = float(value)
    if math.isnan(f):
        return "—"
    return f"{f:.{digits}g}"


def heading(name: str, text: str = "") -> str:
    """The one-line heading of a display: the bold ``name`` then ``text`` (both escaped)."""
    return f"<b>{escape(name)}</b>" + (f" {escape(text)}" if text else "")


class Markup(str):
    """Text that is already HTML (built here); :func:`table` inserts it as is instead of escaping it."""


def cell(value: Any, *, header: bool = False, style: str = "", title: str | None = None) -> Markup:
    """One table cell holding ``value`` (escaped; floats through :func:`number`)."""
    tag = "th" if header else "td"
    text = value if isinstance(value, str) else number(value)
    base = HEAD_STYLE if header else CELL_STYLE
    attrs = f' style="{escape(base + (";" + style if style else ""))}"'
    if title is not None:
        attrs += f' title="{escape(title)}"'
    return Markup(f"<{tag}{attrs}>{escape(text)}</{tag}>")


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]], *, row_headers: bool = True) -> str:
    """A table: ``header`` as the first row, then ``rows`` (the first cell of each a row header).

    Cells may be plain values (escaped and formatted here) or cells built by :func:`cell`
    (:class:`Markup`, inserted as is), for per-cell shading or titles. A plain string is
    always escaped, even one that looks like markup (a token such as ``<td>``).
    """
    head = "".join(cell(h, header=True) for h in header)
    body = []
    for row in rows:
        cells = []
        for j, v in enumerate(row):
            if isinstance(v, Markup):
                cells.append(v)
            else:
                cells.append(cell(v, header=row_headers and j == 0))
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table style="{TABLE_STYLE}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """A two-column table of ``(name, value)`` pairs (settings, metadata)."""
    return table(["", ""], ([name, value if isinstance(value, str) else number(value)] for name, value in pairs))


def block(*parts: str, note: str = "") -> str:
    """The outer ``<div class="lensbox">`` around already-built parts, with an optional escaped note below."""
    tail = f'<div style="font-size:11px;color:#555">{escape(note)}</div>' if note else ""
    return '<div class="lensbox">' + "".join(parts) + tail + "</div>"


def last_columns(n: int, limit: int) -> list[int]:
    """The last ``limit`` of ``n`` column indices (wide results show their end, where the answer is)."""
    return list(range(max(0, n - limit), n))
