"""The one exception family of lensbox.

Every error lensbox raises on purpose is a `LensboxError`. Messages follow
one layout: what was expected, what was received, and how to fix it.
"""

from typing import Optional


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
