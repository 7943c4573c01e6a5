"""The options of an `InputProbe`: probe kinds, decoding rule, penalty, skipped positions.

Each ``check_*`` returns the canonical value or raises `InputError` saying
what is expected; the constructor and the CLI use them.
"""

from collections.abc import Sequence
from typing import Literal

from .._errors import InputError

ProbeKind = Literal["ridge", "softmax"]
Decode = Literal["cosine", "dot", "cos"]
PROBE_KINDS: tuple[ProbeKind, ...] = ("ridge", "softmax")


def check_kinds(kinds: str | Sequence[str]) -> list[ProbeKind]:
    """The probe kinds in canonical order (a comma-separated string is accepted too)."""
    items = [kinds] if isinstance(kinds, str) else list(kinds)
    items = [s.strip() for item in items for s in str(item).split(",") if s.strip()]
    bad = [k for k in items if k not in PROBE_KINDS]
    if bad or not items:
        raise InputError(
            "Unknown probe kind.",
            expected="'ridge' (closed-form map to the embedding vector) and/or 'softmax' (classifier)",
            received=repr(kinds),
            fix="e.g. kinds=('ridge', 'softmax')",
        )
    return sorted(set(items), key=PROBE_KINDS.index)  # type: ignore[arg-type]


def check_decode(decode: str) -> Literal["cosine", "dot"]:
    """The decoding rule's canonical name ('cos' is read as 'cosine')."""
    names: dict[str, Literal["cosine", "dot"]] = {"dot": "dot", "cosine": "cosine", "cos": "cosine"}
    if decode not in names:
        raise InputError(
            "Unknown decoding rule for the ridge probe.",
            expected="'dot' (largest dot product with a W_E row) or 'cosine' (largest cosine)",
            received=repr(decode),
            fix="use decode='cosine'",
        )
    return names[decode]


def check_alpha(alpha: float) -> float:
    """The ridge penalty as a float >= 0."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
        raise InputError(
            "The ridge penalty must be a number >= 0.",
            expected="alpha >= 0 (e.g. 1e-3)",
            received=repr(alpha),
            fix="pass alpha=1e-3",
        )
    return float(alpha)


def check_skip_first(skip_first: int) -> int:
    """The number of window positions left out at the start (>= 0)."""
    if isinstance(skip_first, bool) or not isinstance(skip_first, int) or skip_first < 0:
        raise InputError(
            "skip_first must be an integer >= 0.",
            expected="0 or more positions",
            received=repr(skip_first),
            fix="use skip_first=1 (drop the attention-sink position)",
        )
    return int(skip_first)
