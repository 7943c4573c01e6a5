"""The analyzer registry and :func:`analyze`.

An analyzer declares which residual-stream sites it needs and turns the captured
streams into a result. :func:`analyze` runs one forward pass that stores only the
union of those sites (or reads them from an ``ActivationCache`` you already have)
and hands each analyzer its streams. Other packages add analyzers through the
``lensbox.analyzers`` entry-point group without touching lensbox.
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from jaxtyping import Float, Int
from torch import Tensor

from ._adapter import Inputs, ModelAdapter, adapt
from .._errors import InputError, LensboxError
from ._sites import Site

ENTRY_POINT_GROUP = "lensbox.analyzers"


class Analyzer:
    """Base class for analyzers. Subclass, set ``name``, implement ``sites`` and ``run``."""

    name: str = "analyzer"

    def sites(self, adapter: ModelAdapter) -> List[Site]:
        """The residual-stream sites this analyzer needs."""
        raise NotImplementedError

    def run(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> Any:
        """Compute the result from the captured streams."""
        raise NotImplementedError


_REGISTRY: Dict[str, Callable[..., Analyzer]] = {}


def register_analyzer(name: str, factory: Optional[Callable[..., Analyzer]] = None, *, overwrite: bool = False) -> Any:
    """Register an analyzer class or factory under ``name`` (usable as a decorator)."""

    def add(f: Callable[..., Analyzer]) -> Callable[..., Analyzer]:
        if name in _REGISTRY and _REGISTRY[name] is not f and not overwrite:
            raise LensboxError(
                f"An analyzer named {name!r} is already registered.",
                expected="a new name",
                received=f"{name!r} -> {_REGISTRY[name]!r}",
                fix="pick another name or pass overwrite=True",
            )
        _REGISTRY[name] = f
        return f

    return add if factory is None else add(factory)


def _entry_points() -> Dict[str, Any]:
    from importlib.metadata import entry_points

    eps = entry_points()
    group = eps.select(group=ENTRY_POINT_GROUP) if hasattr(eps, "select") else eps.get(ENTRY_POINT_GROUP, [])
    return {ep.name: ep for ep in group}


def available_analyzers() -> List[str]:
    """Names of registered analyzers, including those offered by installed packages' entry points."""
    from .. import _builtin  # noqa: F401  (registers the built-in analyzers)

    return sorted(set(_REGISTRY) | set(_entry_points()))


def get_analyzer(name: str) -> Callable[..., Analyzer]:
    """The analyzer factory registered as ``name`` (built-ins, then entry points)."""
    from .. import _builtin  # noqa: F401

    if name in _REGISTRY:
        return _REGISTRY[name]
    eps = _entry_points()
    if name in eps:
        factory = eps[name].load()
        _REGISTRY[name] = factory
        return factory
    raise LensboxError(
        f"No analyzer named {name!r}.",
        expected="one of " + ", ".join(available_analyzers()),
        received=repr(name),
        fix=f"spell a registered name, register yours with lensbox.register_analyzer, or expose it in the '{ENTRY_POINT_GROUP}' entry-point group",
    )


AnalyzerSpec = Union[str, Analyzer, Tuple[str, Mapping[str, Any]]]


def _instantiate(spec: Any) -> Analyzer:
    if isinstance(spec, Analyzer):
        return spec
    if isinstance(spec, str):
        return get_analyzer(spec)()
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        return get_analyzer(spec[0])(**dict(spec[1]))
    raise InputError(
        "Cannot read this analyzer specification.",
        expected="a registered name, an Analyzer instance, or (name, kwargs)",
        received=repr(spec),
        fix="e.g. analyzers=['logit_lens', ('logit_lens', {'k': 10})]",
    )


def streams_from_cache(adapter: ModelAdapter, cache: Any, sites: Sequence[Site]) -> Dict[Site, Tensor]:
    """Pick the streams for ``sites`` out of an ActivationCache or a dict keyed by hook name."""
    out: Dict[Site, Tensor] = {}
    missing = []
    for s in sites:
        name = adapter.hook_name(s)
        try:
            act = cache[name]
        except KeyError:
            missing.append(name)
            continue
        if act.ndim == 2:
            act = act[None]
        if act.device != adapter.device and adapter.is_dispatched:
            act = act.to(adapter.device)  # a model split with device_map: statistics run beside W_U
        elif act.device != adapter.device:
            raise InputError(
                "The cached activations and the model are on different devices.",
                expected=f"activations on {adapter.device}",
                received=f"{name} on {act.device}",
                fix="move the cache (cache.to(device)) or the model so they match",
            )
        out[s] = act
    if missing:
        raise InputError(
            "The activation cache lacks hook points these analyzers need.",
            expected=", ".join(adapter.hook_name(s) for s in sites),
            received=f"missing {missing[:6]}{' ...' if len(missing) > 6 else ''}",
            fix="rerun model.run_with_cache(tokens) without a names_filter, or let lensbox.analyze run the model",
        )
    return out


def analyze(
    model: Any,
    inputs: Inputs,
    analyzers: Sequence[Any] = ("logit_lens",),
    *,
    cache: Any = None,
    prepend_bos: Optional[bool] = None,
) -> Dict[str, Any]:
    """Run several analyzers over one forward pass.

    Args:
        model: a TransformerBridge or HookedTransformer (or a ModelAdapter).
        inputs: text, a list of equal-length texts, or token ids ``[batch, pos]``.
        analyzers: registered names, Analyzer instances, or ``(name, kwargs)`` pairs.
        cache: an ``ActivationCache`` (or dict hook name -> tensor) from a run on exactly
            these inputs; when given, the model is not run.

    Returns a dict from analyzer name to its result (a repeated name gets a ``#2`` suffix).
    """
    adapter = adapt(model)
    tokens = adapter.to_tokens(inputs, prepend_bos=prepend_bos)
    instances = [_instantiate(spec) for spec in analyzers]
    if not instances:
        raise InputError("No analyzers were given.", expected="at least one", received="[]", fix="analyzers=['logit_lens']")
    needed: List[Site] = sorted({s for a in instances for s in a.sites(adapter)})
    if cache is not None:
        streams = streams_from_cache(adapter, cache, needed)
        got = next(iter(streams.values())).shape[:2] if streams else tokens.shape
        if tuple(got) != tuple(tokens.shape):
            raise InputError(
                "The cache was made from inputs of another shape.",
                expected=f"activations for tokens of shape {tuple(tokens.shape)}",
                received=f"activations of shape {tuple(got)}",
                fix="pass the same inputs that produced the cache",
            )
    else:
        streams = adapter.run_and_capture(tokens, needed)
    results: Dict[str, Any] = {}
    for a in instances:
        key = a.name
        n = 2
        while key in results:
            key = f"{a.name}#{n}"
            n += 1
        results[key] = a.run(adapter, {s: streams[s] for s in a.sites(adapter)}, tokens)
    return results
