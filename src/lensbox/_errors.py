"""The one exception family of lensbox.

Every error lensbox raises on purpose is a `LensboxError`. Messages follow
one layout: what was expected, what was received, and how to fix it.

`check_int` and `check_choice` are the two option checks every layer shares (an integer
option with a lower bound, a fixed-choice option); both raise `InputError`.
"""

from typing import Iterable, Optional


class LensboxError(Exception):
    """Base class of every error lensbox raises on purpose."""

    def __init__(
        self,
        problem: str,
        *,
        expected: Optional[str] = None,
        received: Optional[str] = None,
        fix: Optional[str] = None,
    ) -> None:
        self.problem = problem
        self.expected = expected
        self.received = received
        self.fix = fix
        lines = [problem]
        if expected is not None:
            lines.append(f"  expected: {expected}")
        if received is not None:
            lines.append(f"  received: {received}")
        if fix is not None:
            lines.append(f"  fix: {fix}")
        super().__init__("\n".join(lines))


class SiteError(LensboxError, KeyError):
    """An unknown hook site, or a layer index the model does not have."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return Exception.__str__(self)


class InputError(LensboxError, ValueError):
    """Inputs that cannot be analysed: empty, too long, wrong device or dtype."""


class ModelError(LensboxError, TypeError):
    """An object lensbox cannot adapt, or an artifact made for another model."""


class NonFiniteError(LensboxError, FloatingPointError):
    """NaN or infinite activations or losses."""


class ArtifactError(LensboxError, OSError):
    """A saved lens or probe directory that is missing files, corrupted or from the future."""


def check_int(name: str, value: object, lowest: int = 1) -> None:
    """Refuse ``value`` (an `InputError` naming option ``name``) unless it is an int >= ``lowest``; a bool is no int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise InputError(
            f"Invalid {name}.",
            expected=f"an integer >= {lowest}",
            received=f"{name}={value!r}",
            fix=f"pass {name}={max(lowest, 1)} or more",
        )


def check_choice(
    name: str,
    value: object,
    choices: Iterable[str],
    *,
    what: Optional[str] = None,
    extra: str = "",
    fix: Optional[str] = None,
) -> None:
    """Refuse ``value`` (an `InputError`) unless it is one of ``choices``.

    ``what`` names the option in the message (default ``name``); ``extra`` is appended to the
    list of choices (e.g. ``" or a TunedLens"``); ``fix`` replaces the default advice (the first choice).
    """
    options = tuple(choices)
    if value not in options:
        raise InputError(
            f"Unknown {what or name}.",
            expected=" | ".join(repr(c) for c in options) + extra,
            received=f"{name}={value!r}",
            fix=fix or f"pass {name}={options[0]!r}",
        )
