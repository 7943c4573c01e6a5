"""Small helpers shared by the example scripts and the documentation pages that run them.

Nothing here computes a statistic: the examples do that with lensbox. These helpers
only format numbers, tables and figures for the pages.
"""

import base64
import io
import math
import os
from pathlib import Path
from typing import Any, Iterable, List, Optional, Sequence


def num(x: float, digits: int = 2) -> str:
    """A number for prose: fixed decimals for moderate values, scientific for tiny ones, 'n/a' for NaN."""
    x = float(x)
    if math.isnan(x):
        return "n/a"
    if x != 0 and abs(x) < 10 ** (-digits):
        return f"{x:.1e}"
    return f"{x:.{digits}f}"


def pct(x: float, digits: int = 0) -> str:
    """A fraction as a percentage string."""
    return f"{100 * float(x):.{digits}f}%"


def code(label: str) -> str:
    """A token label as inline code (backticks inside are replaced so the markdown stays valid)."""
    return "`" + label.replace("`", "ˋ") + "`"


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A markdown pipe table."""
    def cell(v: Any) -> str:
        s = num(v) if isinstance(v, float) else str(v)
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def figure(fig: Any, alt: str, *, caption: Optional[str] = None, dpi: int = 110) -> str:
    """Embed a matplotlib figure in the page as a PNG (a data URI, so the page is self-contained); closes it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    alt_attr = alt.replace('"', "&quot;")
    kind = fig.get_label() if fig.get_label().startswith("lensbox-") else ""   # e.g. 'lensbox-heatmap'
    kind_attr = f' data-lensbox-figure="{kind}"' if kind else ""
    html = f'<figure class="lensbox-figure"><img alt="{alt_attr}"{kind_attr} src="data:image/png;base64,{data}">'
    if caption:
        html += f"<figcaption>{caption}</figcaption>"
    return html + "</figure>\n"


def first_index(values: Sequence[bool]) -> Optional[int]:
    """Index of the first True, or None."""
    for i, v in enumerate(values):
        if v:
            return i
    return None


def first_stable_index(values: Sequence[bool]) -> Optional[int]:
    """Index from which every later value is True (None when the last one is False)."""
    out: Optional[int] = None
    for i in range(len(values) - 1, -1, -1):
        if not values[i]:
            break
        out = i
    return out


def save_figures(namespace: dict, example: str) -> List[Path]:
    """For standalone runs: save every matplotlib figure in ``namespace`` under out/examples/<example>/."""
    from matplotlib.figure import Figure

    out = Path(os.environ.get("LENSBOX_EXAMPLES_OUT", "out/examples")) / example
    saved = []
    for name, value in namespace.items():
        if isinstance(value, Figure):
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{name}.png"
            value.savefig(path, dpi=120, bbox_inches="tight", facecolor="white")
            saved.append(path)
    for p in saved:
        print(f"wrote {p}")
    return saved


def where(site: Any, n_layers: int) -> str:
    """A site for prose: '`resid_post.21` (the output of block 21; blocks are 0..29)'."""
    name = getattr(site, "name", str(site))
    layer = getattr(site, "layer", None)
    if layer is None:
        return f"`{name}` (the input embeddings)"
    kind = getattr(getattr(site, "kind", None), "value", "")
    what = {"resid_post": "the output of", "resid_mid": "the middle of", "resid_pre": "the input of"}.get(kind, "block")
    return f"`{name}` ({what} block {layer}; blocks are numbered 0–{n_layers - 1})"


def listing(folder: Path) -> str:
    """The files of an artifact folder with their sizes."""
    return "\n".join(f"{p.name:<26} {p.stat().st_size:>12,} bytes" for p in sorted(folder.iterdir()))


def artifact_json(path: Path) -> str:
    """An artifact's JSON metadata, with long lists and strings shortened for a page."""
    import json

    def shorten(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: shorten(x) for k, x in v.items()}
        if isinstance(v, list):
            head = [shorten(x) for x in v[:3]]
            return head + [f"... {len(v) - 3} more"] if len(v) > 4 else [shorten(x) for x in v]
        if isinstance(v, str) and len(v) > 64:
            return v[:24] + "..." + v[-8:]
        return v

    import re

    text = json.dumps(shorten(json.loads(Path(path).read_text(encoding="utf-8"))), indent=2)
    # lists of plain values on one line
    return re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",\n")) + "]", text)


def artifact_key(model: Any, text: str, settings: dict) -> str:
    """A cache key for an artifact trained on ``text`` with ``settings``: the model's weight and
    vocabulary digests (its lensbox fingerprint), the text's SHA-256 and the settings, hashed.
    Another model, text or setting gives another key, so a cached artifact is never stale."""
    import hashlib
    import json

    import lensbox

    fingerprint = lensbox.adapt(model).fingerprint
    payload = {
        "model": [fingerprint.weights, fingerprint.vocab, fingerprint.n_layers, fingerprint.d_model],
        "text": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "settings": settings,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]
