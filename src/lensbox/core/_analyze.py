"""`analyze`: one forward pass for many analyzers; `streams_from_cache` for a user's cache."""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .._errors import InputError
from ._adapter import Inputs, ModelAdapter, ModelLike, adapt
from ._analyzer import Analyzer
from ._hooks import FwdHooks, check_fwd_hooks, refuse_hooks_with_cache
from ._registry import get_analyzer
from ._sites import Site

AnalyzerSpec = Union[str, Analyzer, Tuple[str, Mapping[str, Any]]]
"""A registered name, an `Analyzer` instance, or ``(name, keyword arguments)``."""


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
    _check_cache_type(cache)
    out: Dict[Site, Tensor] = {}
    missing = []
    for s in sites:
        name = adapter.hook_name(s)
        try:
            act = cache[name]
        except KeyError:
            missing.append(name)
            continue
        act = _checked_activation(adapter, name, act)
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
    shapes = {tuple(a.shape[:2]) for a in out.values()}
    if len(shapes) > 1:
        raise InputError(
            "The cache mixes activations of different batch or sequence sizes.",
            expected="every cached stream of the same [batch, pos] shape (one run of the model)",
            received=", ".join(f"{adapter.hook_name(s)} {tuple(a.shape)}" for s, a in list(out.items())[:6]),
            fix="make the cache with one model.run_with_cache(tokens) call",
        )
    return out


def _check_cache_type(cache: object) -> None:
    if isinstance(cache, (str, bytes)) or not (hasattr(cache, "keys") and hasattr(cache, "__getitem__")):
        raise InputError(
            "Cannot read this as an activation cache.",
            expected="a TransformerLens ActivationCache or a dict from hook name to tensor [batch, pos, d_model]",
            received=f"{type(cache).__name__}: {str(cache)[:60]!r}",
            fix="pass the cache returned by model.run_with_cache(tokens), or leave cache=None to let lensbox run the model",
        )


def _checked_activation(adapter: ModelAdapter, name: str, act: object) -> Tensor:
    """One cached stream as ``[batch, pos, d_model]``, or an InputError saying what is wrong with it."""
    if not isinstance(act, Tensor):
        raise InputError(
            f"The cached value for {name} is not a tensor.",
            expected=f"a torch.Tensor [batch, pos, {adapter.d_model}]",
            received=f"{type(act).__name__}",
            fix="pass the cache returned by model.run_with_cache(tokens) (or torch.tensor(value) each entry)",
        )
    if act.ndim == 2:
        act = act[None]
    if act.ndim != 3 or act.shape[-1] != adapter.d_model or not act.dtype.is_floating_point:
        raise InputError(
            f"The cached value for {name} does not fit this model's residual stream.",
            expected=f"a floating-point tensor [batch, pos, {adapter.d_model}] (d_model = {adapter.d_model})",
            received=f"shape {tuple(act.shape)}, dtype {act.dtype}",
            fix="pass a cache made by this model's run_with_cache on these inputs",
        )
    return act


#: Cosine similarity below which a cached embedding cannot be the embedding of the given token. The
#: cached vector is W_E[token] itself (up to a scale, or bfloat16 rounding: cosine > 0.999), while the
#: embeddings of related tokens on real models reach 0.7 (SmolLM2: ' France' / ' Spain').
_EMBED_MATCH = 0.99


def _reference_embed(adapter: ModelAdapter, tokens: Tensor, with_positions: bool) -> Optional[Tensor]:
    """``W_E[tokens]`` (plus learned positional embeddings when asked); None when they cannot be read."""
    w_e = adapter.W_E
    ref = w_e[tokens.to(w_e.device)].float()
    if not with_positions:
        return ref
    if str(getattr(adapter.model.cfg, "positional_embedding_type", "standard")) != "standard":
        return ref  # rotary / ALiBi / none: positions never enter the stream
    w_pos = getattr(adapter.model, "W_pos", None)
    if not isinstance(w_pos, Tensor) or w_pos.ndim != 2 or w_pos.shape[0] < tokens.shape[1]:
        return None
    return ref + w_pos[: tokens.shape[1]].float().to(ref.device)


def check_cache_matches_tokens(
    adapter: ModelAdapter, cache: Any, streams: Dict[Site, Tensor], tokens: Tensor
) -> None:
    """Refuse a cache whose embeddings are not those of ``tokens`` (another text of the same length, mixed runs).

    Compares, position by position, the cached ``hook_embed`` (and the cached embedding stream
    ``blocks.0.hook_resid_pre``) with the model's embedding of ``tokens``; direction only (cosine),
    so models that scale or normalise the embedding still match.
    """
    with torch.no_grad():
        _check_embeddings(adapter, cache, streams, tokens)


def _check_embeddings(adapter: ModelAdapter, cache: Any, streams: Dict[Site, Tensor], tokens: Tensor) -> None:
    checks = []
    try:
        embed = cache["hook_embed"]
    except (KeyError, TypeError):
        embed = None
    if isinstance(embed, Tensor) and embed.ndim in (2, 3):
        embed = embed if embed.ndim == 3 else embed[None]
        if embed.shape[-1] == adapter.d_model and tuple(embed.shape[:2]) == tuple(tokens.shape):
            checks.append(("hook_embed", embed, _reference_embed(adapter, tokens, with_positions=False)))
    if Site.embed() in streams:
        ref = _reference_embed(adapter, tokens, with_positions=True)
        if ref is not None:
            checks.append((adapter.hook_name(Site.embed()), streams[Site.embed()], ref))
    for name, cached, ref in checks:
        cos = torch.nn.functional.cosine_similarity(cached.float().to(ref.device), ref, dim=-1)
        bad = (cos < _EMBED_MATCH).nonzero()
        if len(bad):
            where = ", ".join(f"(batch {int(b)}, pos {int(p)})" for b, p in bad[:5].tolist())
            raise InputError(
                "The cache was not made from these inputs: its embeddings belong to other tokens.",
                expected=f"{name} equal (in direction) to the embedding of the given tokens",
                received=f"{len(bad)} of {tokens.numel()} positions differ, first at {where}"
                f" (cosine {float(cos[tuple(bad[0].tolist())]):.2f})",
                fix="pass the same inputs that produced the cache (cache from model.run_with_cache(tokens) on exactly "
                "these tokens, in one call), or drop cache= and let lensbox run the model",
            )


#: Largest relative difference (per position, ``|cached - recomputed| / |recomputed|``) between a cached
#: stream and what the model computes from the cached stream before it. A cache made by one run of the
#: same model differs by float rounding only (about 1e-6 in float32: batch shapes change the summation
#: order); a stream from another text differs by order 1 at every position after the first other token.
#: The looser bound applies when the model or the cache is in half precision (a bfloat16 cache of a
#: float32 model rounds each stream by up to 4e-3).
_CONSISTENT = {torch.float16: 5e-2, torch.bfloat16: 5e-2}
_CONSISTENT_DEFAULT = 1e-3


def check_cache_is_one_run(
    adapter: ModelAdapter, streams: Dict[Site, Tensor], tokens: Tensor, *, keep_logits: bool = False
) -> Optional[Tensor]:
    """Refuse a cache stitched from several runs (hook points or batch rows from another text).

    Runs the model once on ``tokens`` with every cached stream put in place of the model's own as
    the forward pass reaches it, and compares each cached stream with what the model computed there
    from the cached stream before it: each block is recomputed from its cached input, so a stream
    that another run produced (at any depth, in any batch row, at any position after the first
    token where the two texts differ) is refused. Positions where either value is not finite are
    left to the analyzers' ``on_nonfinite`` policy. Costs one forward pass of the model (the
    lenses themselves decode every site, which costs more). Returns that pass's logits when asked
    (they follow from the cached final stream, so the lens's final-site check can run on them).
    """
    by_hook: Dict[str, Tensor] = {}
    for s in sorted(streams):  # site order: the order the forward pass reaches them
        by_hook.setdefault(adapter.hook_name(s), streams[s])
    order = {name: i for i, name in enumerate(by_hook)}
    found: List[Tuple[int, str, float, Tuple[int, int], int]] = []

    def make_hook(name: str, cached: Tensor) -> Callable[..., Tensor]:
        def hook(act: Tensor, hook: Any = None) -> Tensor:
            mine = cached.to(device=act.device, dtype=act.dtype).reshape(act.shape)
            own = act.detach().float()
            diff = (mine.float() - own).norm(dim=-1) / own.norm(dim=-1).clamp_min(1e-12)
            tol = max(_CONSISTENT.get(act.dtype, _CONSISTENT_DEFAULT), _CONSISTENT.get(cached.dtype, _CONSISTENT_DEFAULT))
            bad = ((diff > tol) & torch.isfinite(diff)).nonzero()
            if len(bad):
                b, p = (int(v) for v in bad[0].tolist())
                found.append((order.get(name, 0), name, float(diff[b, p]), (b, p), len(bad)))
            return mine

        return hook

    hooks = [(name, make_hook(name, act)) for name, act in by_hook.items()]
    was_training = adapter.model.training
    adapter.model.eval()  # dropout would make the recomputation random
    try:
        with torch.no_grad():
            out = adapter.model.run_with_hooks(tokens, fwd_hooks=hooks, return_type="logits" if keep_logits else None)
    finally:
        adapter.model.train(was_training)
    if found:
        _, name, worst, (b, p), n_bad = min(found)
        names = list(by_hook)
        before = names[names.index(name) - 1] if names.index(name) > 0 else "the tokens"
        raise InputError(
            "The cache was not made by one run of this model on these inputs: it mixes runs.",
            expected=f"{name} equal to what the model computes from {before} (up to rounding)",
            received=f"{n_bad} of {tokens.numel()} positions differ, first at (batch {b}, pos {p}) "
            f"(relative difference {worst:.3g})",
            fix="make the cache with one model.run_with_cache(tokens) call on exactly these tokens, without "
            "hooks that edit the streams; to analyse an edited forward pass, drop cache= and pass the hooks as "
            "lensbox.analyze(model, tokens, analyzers, fwd_hooks=[...])",
        )
    if not keep_logits or out is None or not bool(torch.isfinite(out).all()):
        return None  # non-finite cached streams are the analyzers' on_nonfinite business, not the final check's
    return out.detach().to(adapter.device)


def analyze(
    model: ModelLike,
    inputs: Inputs,
    analyzers: Sequence[AnalyzerSpec] = ("logit_lens",),
    *,
    cache: Any = None,
    prepend_bos: Optional[bool] = None,
    fwd_hooks: FwdHooks = None,
) -> Dict[str, Any]:
    """Run several analyzers over one forward pass.

    Args:
        model: a TransformerBridge or HookedTransformer (or a ModelAdapter).
        inputs: text, a list of equal-length texts, or token ids ``[batch, pos]``.
        analyzers: registered names, Analyzer instances, or ``(name, kwargs)`` pairs.
        cache: an ``ActivationCache`` (or dict hook name -> tensor) from a run on exactly
            these inputs; when given, its streams are analysed, after one check pass of the
            model that refuses a cache of other inputs or stitched from several runs
            (`check_cache_is_one_run`; analyzers that need logits receive the logits that
            follow from the cached final stream).
        fwd_hooks: TransformerLens ``(hook name, function)`` pairs added to the forward
            pass, before lensbox's own hooks: an ablation (``("blocks.5.hook_attn_out",
            lambda act, hook: act * 0)``) or a patch. Every analyzer reads the *edited*
            streams, and lenses check their final site against the edited run's own logits.
            A function returns None or a tensor of the activation's shape (anything else
            raises `lensbox.InputError`); an unknown hook name is refused before the
            run; combined with ``cache=`` it is refused (a cache cannot be edited after the fact).

    Returns a dict from analyzer name to its result (a repeated name gets a ``#2`` suffix).
    """
    adapter = adapt(model)
    if cache is not None:
        refuse_hooks_with_cache(fwd_hooks)
    hooks = check_fwd_hooks(adapter, fwd_hooks)
    tokens = adapter.to_tokens(inputs, prepend_bos=prepend_bos)
    instances = [_instantiate(spec) for spec in analyzers]
    if not instances:
        raise InputError("No analyzers were given.", expected="at least one", received="[]", fix="analyzers=['logit_lens']")
    needed: List[Site] = sorted({s for a in instances for s in a.sites(adapter)})
    logits = None
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
        check_cache_matches_tokens(adapter, cache, streams, tokens)
        logits = check_cache_is_one_run(adapter, streams, tokens, keep_logits=any(a.needs_logits for a in instances))
    else:
        keep = any(a.needs_logits for a in instances)
        streams, logits = adapter.capture(tokens, needed, keep_logits=keep, fwd_hooks=hooks)
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
