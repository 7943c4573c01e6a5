""":func:`analyze`: one forward pass for many analyzers; :func:`streams_from_cache` for a user's cache."""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from torch import Tensor

from .._errors import InputError
from ._adapter import Inputs, ModelAdapter, ModelLike, adapt
from ._analyzer import Analyzer
from ._registry import get_analyzer
from ._sites import Site

AnalyzerSpec = Union[str, Analyzer, Tuple[str, Mapping[str, Any]]]
"""A registered name, an :class:`Analyzer` instance, or ``(name, keyword arguments)``."""

HookFn = Callable[..., Any]


def _instantiate(spec: object) -> Analyzer:
    if isinstance(spec, Analyzer):
        return spec
    if isinstance(spec, str):
        return get_analyzer(spec)()
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str) and isinstance(spec[1], Mapping):
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
    model: ModelLike,
    inputs: Inputs,
    analyzers: Sequence[AnalyzerSpec] = ("logit_lens",),
    *,
    cache: Any = None,
    prepend_bos: Optional[bool] = None,
    fwd_hooks: Optional[Sequence[Tuple[str, HookFn]]] = None,
) -> Dict[str, Any]:
    """Run several analyzers over one forward pass.

    Args:
        model: a TransformerBridge or HookedTransformer (or a ModelAdapter).
        inputs: text, a list of equal-length texts, or token ids ``[batch, pos]``.
        analyzers: registered names, Analyzer instances, or ``(name, kwargs)`` pairs.
        cache: an ``ActivationCache`` (or dict hook name -> tensor) from a run on exactly
            these inputs; when given, the model is not run (and analyzers that need the
            model's logits receive ``logits=None``).
        fwd_hooks: TransformerLens ``(hook name, function)`` pairs added to the forward
            pass (e.g. an ablation); the analyzers see the streams they produce.

    Returns a dict from analyzer name to its result (a repeated name gets a ``#2`` suffix).
    """
    adapter = adapt(model)
    tokens = adapter.to_tokens(inputs, prepend_bos=prepend_bos)
    instances = [_instantiate(spec) for spec in analyzers]
    if not instances:
        raise InputError("No analyzers were given.", expected="at least one", received="[]", fix="analyzers=['logit_lens']")
    needed: List[Site] = sorted({s for a in instances for s in a.sites(adapter)})
    logits = None
    if cache is not None:
        if fwd_hooks:
            raise InputError(
                "fwd_hooks cannot act on a cache that was already computed.",
                expected="cache=None when fwd_hooks are given",
                received=f"a cache and {len(fwd_hooks)} hook(s)",
                fix="drop cache= so lensbox runs the model with your hooks, or add them when you make the cache",
            )
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
        keep = any(a.needs_logits for a in instances)
        streams, logits = adapter.capture(tokens, needed, keep_logits=keep, fwd_hooks=list(fwd_hooks or ()))
    results: Dict[str, Any] = {}
    for a in instances:
        key = a.name
        n = 2
        while key in results:
            key = f"{a.name}#{n}"
            n += 1
        own = {s: streams[s] for s in a.sites(adapter)}
        results[key] = a.run(adapter, own, tokens, logits=logits) if a.needs_logits else a.run(adapter, own, tokens)
    return results
