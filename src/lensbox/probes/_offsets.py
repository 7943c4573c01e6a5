"""Token offsets: which (position, target) pairs of a window a probe for offset ``k`` learns from.

Offset ``k`` pairs the activation at position ``p`` with the token at ``p + k`` (0 = this
token, -1 = the one before, +1 = the next one). The first ``skip_first`` positions of each
window are never used as inputs (position 0 holds the attention-sink activation).
"""

from collections.abc import Sequence

from .._errors import InputError

DEFAULT_OFFSETS: tuple[int, ...] = (0, -1, -2, -3, 1)


def check_offsets(offsets: object) -> list[int]:
    """The offsets as a list of distinct ints, or an `InputError` saying what is wrong."""
    if isinstance(offsets, (int, str)) or not isinstance(offsets, Sequence) or len(offsets) == 0:
        raise InputError(
            "Probe offsets must be a non-empty list of integers.",
            expected="e.g. offsets=(0, -1, -2, -3, 1): 0 = this token, -1 = the previous one, +1 = the next one",
            received=repr(offsets),
            fix="pass a list or tuple of ints",
        )
    out: list[int] = []
    for k in offsets:
        if isinstance(k, bool) or not isinstance(k, int):
            raise InputError(
                "Probe offsets must be integers.",
                expected="ints such as 0, -1, +1",
                received=f"{k!r} ({type(k).__name__})",
                fix="pass offsets=(0, -1, -2, -3, 1)",
            )
        if k in out:
            raise InputError(
                "Probe offsets repeat.",
                expected="each offset once",
                received=repr(list(offsets)),
                fix="remove the duplicate",
            )
        out.append(int(k))
    return out


def valid_positions(length: int, offset: int, skip_first: int) -> tuple[int, int]:
    """The half-open range of positions ``p`` of a window of ``length`` tokens that have a target at ``p + offset``."""
    lo = max(skip_first, -offset, 0)
    hi = min(length, length - offset)
    return lo, max(lo, hi)


def offset_label(offset: int) -> str:
    """``'0'``, ``'-1'``, ``'+1'``: how an offset is written in tables and messages."""
    return f"{offset:+d}" if offset else "0"


def check_offsets_fit(offsets: Sequence[int], length: int, skip_first: int) -> None:
    """Raise when an offset has no (position, target) pair in windows of ``length`` tokens."""
    for k in offsets:
        lo, hi = valid_positions(length, k, skip_first)
        if hi <= lo:
            need = max(skip_first, -k, 0) + max(k, 0) + 1
            raise InputError(
                f"Offset {offset_label(k)} falls outside every sequence.",
                expected=(
                    f"windows long enough to hold a position (after the first {skip_first} skipped) and the token "
                    f"{abs(k)} step(s) {'before' if k < 0 else 'after'} it: at least {need} tokens"
                ),
                received=f"windows of {length} tokens",
                fix=f"use longer windows (window={max(need, 2 * need)}) or drop offset {offset_label(k)}",
            )
