"""The analyzer registry: name -> factory.

Three sources, looked up in this order:

1. names registered at run time with `register_analyzer`;
2. lensbox's built-ins, a static table of ``"module:attribute"`` strings resolved with
   `importlib` on first lookup (so ``core`` imports no analyzer module, and no
   import cycle exists);
3. the ``lensbox.analyzers`` entry-point group of installed packages.

A name owned by a built-in or an entry point, or registered before, can be taken only with
``overwrite=True``; whatever the order of calls, a registration is never replaced silently.
"""

import importlib
from typing import Any, Callable, Dict, List, Optional

from .._errors import LensboxError
from ._analyzer import Analyzer

ENTRY_POINT_GROUP = "lensbox.analyzers"

BUILTIN_ANALYZERS: Dict[str, str] = {
    "logit_lens": "lensbox.lenses._logit:LogitLens",
    "tuned_lens": "lensbox.lenses._tuned:TunedLens",
    "residual_norms": "lensbox.lenses._geometry:ResidualNormsAnalyzer",
    "token_plane": "lensbox.lenses._geometry:TokenPlaneAnalyzer",
    "component_lens": "lensbox.lenses._component:ComponentLens",
    "input_probe": "lensbox.probes._probe:InputProbe",
}
"""lensbox's own analyzers: name -> ``"module:attribute"`` of the class (tests resolve every entry)."""

Factory = Callable[..., Analyzer]

_REGISTERED: Dict[str, Factory] = {}  # register_analyzer calls
_LOADED: Dict[str, Factory] = {}  # built-ins and entry points, once resolved


def _entry_points() -> Dict[str, Any]:
    from importlib.metadata import entry_points

    eps = entry_points()
    group = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep for ep in group}


def _owner(name: str) -> Optional[str]:
    """Who already offers ``name`` (for messages), or None."""
    if name in _REGISTERED:
        return f"registered as {_REGISTERED[name]!r}"
    if name in BUILTIN_ANALYZERS:
        return f"lensbox's built-in {BUILTIN_ANALYZERS[name]}"
    eps = _entry_points()
    if name in eps:
        return f"the entry point {eps[name].value} ({ENTRY_POINT_GROUP})"
    return None


def register_analyzer(name: str, factory: Optional[Factory] = None, *, overwrite: bool = False) -> Any:
    """Register an analyzer class or factory under ``name`` (usable as a decorator).

    A name that a built-in, an installed entry point or an earlier registration already
    offers raises `LensboxError` unless ``overwrite=True``; registering the same
    factory again under its name is a no-op.
    """

    def add(f: Factory) -> Factory:
        if _REGISTERED.get(name) is not f and not overwrite:
            owner = _owner(name)
            if owner is not None:
                raise LensboxError(
                    f"An analyzer named {name!r} is already registered.",
                    expected="a new name",
                    received=f"{name!r}: {owner}",
                    fix="pick another name, or pass overwrite=True to replace it",
                )
        _REGISTERED[name] = f
        return f

    return add if factory is None else add(factory)


def available_analyzers() -> List[str]:
    """Names of every analyzer: registered, built-in, and offered by installed packages' entry points."""
    return sorted(set(_REGISTERED) | set(BUILTIN_ANALYZERS) | set(_entry_points()))


def _resolve(spec: str) -> Factory:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def get_analyzer(name: str) -> Factory:
    """The analyzer factory for ``name``: registered first, then built-in, then entry points."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _LOADED:
        return _LOADED[name]
    if name in BUILTIN_ANALYZERS:
        factory = _resolve(BUILTIN_ANALYZERS[name])
    else:
        eps = _entry_points()
        if name not in eps:
            raise LensboxError(
                f"No analyzer named {name!r}.",
                expected="one of " + ", ".join(available_analyzers()),
                received=repr(name),
                fix=(
                    "spell a registered name, register yours with lensbox.register_analyzer, "
                    f"or expose it in the '{ENTRY_POINT_GROUP}' entry-point group"
                ),
            )
        factory = eps[name].load()
    _LOADED[name] = factory
    return factory
