"""Edited activations: the ``fwd_hooks=`` every lensbox entry point accepts, checked before the run.

A forward hook is a TransformerLens ``(hook name, function)`` pair; the function receives the
activation at that hook point (and ``hook=`` the hook point) and returns ``None`` (read only)
or a tensor of the same shape that replaces the activation (an ablation, a patch). lensbox adds
the pairs to the one forward pass it makes, before its own capture hooks, so every stream it
reads, and the output logits the final-site check compares against, come from the edited run.

`check_fwd_hooks` validates the pairs up front (a name the model lacks is refused before
any work, listing the valid ones) and wraps each function so that one returning a value of
another shape, or something that is not a tensor, raises an `lensbox.InputError`
naming the hook, instead of an obscure shape error deeper in the model.
"""

from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from torch import Tensor

from .._errors import InputError
from ._adapter import ModelAdapter

HookFn = Callable[..., Any]
"""A TransformerLens forward-hook function: ``fn(activation, hook) -> None | Tensor`` (same shape)."""

HookName = Union[str, Callable[[str], bool]]
"""A hook point's name (``"blocks.5.hook_attn_out"``) or a name filter, as TransformerLens accepts."""

FwdHooks = Optional[Sequence[Tuple[HookName, HookFn]]]
"""What every ``fwd_hooks=`` argument accepts: None (no edits) or ``(hook name, function)`` pairs."""


def _example_names(adapter: ModelAdapter) -> str:
    last = adapter.n_layers - 1
    return f"'hook_embed', 'blocks.{last}.hook_attn_out', 'blocks.0.hook_mlp_out', 'blocks.{last}.attn.hook_z', ..."


def _checked(name: str, fn: HookFn) -> HookFn:
    """``fn`` wrapped so that a replacement of the wrong shape or type is refused with a clear error."""

    def hook(activation: Tensor, hook: Any = None, **kwargs: Any) -> Any:
        out = fn(activation, hook=hook, **kwargs)
        if out is None:
            return None
        if not isinstance(out, Tensor):
            raise InputError(
                f"The forward hook on {name} returned something that is not a tensor.",
                expected=f"None (read only) or a tensor of shape {tuple(activation.shape)} replacing the activation",
                received=f"{type(out).__name__}: {str(out)[:60]!r}",
                fix="return the edited activation (e.g. `return act * 0`) or None",
            )
        if tuple(out.shape) != tuple(activation.shape):
            raise InputError(
                f"The forward hook on {name} returned a tensor of another shape than the activation it replaces.",
                expected=f"shape {tuple(activation.shape)} (the activation's)",
                received=f"shape {tuple(out.shape)}",
                fix="edit the activation in place or return a tensor of the same shape "
                "(e.g. `act[:, :, 3] = 0; return act`, or `return act * mask`)",
            )
        return out

    hook.__wrapped__ = fn  # type: ignore[attr-defined]
    return hook


def check_fwd_hooks(adapter: ModelAdapter, fwd_hooks: FwdHooks) -> List[Tuple[HookName, HookFn]]:
    """Validate ``fwd_hooks`` for ``adapter``'s model and return them with shape-checked functions.

    Refuses (with `lensbox.InputError`, before the model runs) anything that is not a
    sequence of ``(name, function)`` pairs and a name the model has no hook point for.
    """
    if fwd_hooks is None:
        return []
    if isinstance(fwd_hooks, (str, bytes)) or not isinstance(fwd_hooks, Sequence):
        raise InputError(
            "Cannot read fwd_hooks.",
            expected="a list of (hook name, function) pairs",
            received=f"{type(fwd_hooks).__name__}: {str(fwd_hooks)[:60]!r}",
            fix="e.g. fwd_hooks=[('blocks.5.hook_attn_out', lambda act, hook: act * 0)]",
        )
    hook_dict = getattr(adapter.model, "hook_dict", None)
    out: List[Tuple[HookName, HookFn]] = []
    for pair in fwd_hooks:
        pair_ok = isinstance(pair, (tuple, list)) and len(pair) == 2
        if not (pair_ok and callable(pair[1]) and (isinstance(pair[0], str) or callable(pair[0]))):
            raise InputError(
                "Each forward hook must be a (hook name, function) pair.",
                expected="a tuple (str, callable), e.g. ('blocks.5.hook_attn_out', zero)",
                received=f"{type(pair).__name__}: {str(pair)[:60]!r}",
                fix="pass fwd_hooks=[(name, fn), ...]",
            )
        name, fn = pair
        if isinstance(name, str):
            if hook_dict is not None and name not in hook_dict:
                raise InputError(
                    f"This model has no hook point {name!r}.",
                    expected=f"a hook name of this model, e.g. {_example_names(adapter)}",
                    received=repr(name),
                    fix="list the names with sorted(model.hook_dict)",
                )
            out.append((name, _checked(name, fn)))
        else:
            out.append((name, fn))  # a name filter: TransformerLens resolves it; the functions are its own
    return out


def refuse_hooks_with_cache(fwd_hooks: FwdHooks) -> None:
    """Forward hooks edit a forward pass: they cannot act on activations someone already cached."""
    if fwd_hooks:
        raise InputError(
            "fwd_hooks cannot act on a cache that was already computed.",
            expected="cache=None when fwd_hooks are given",
            received=f"a cache and {len(fwd_hooks)} hook(s)",
            fix="drop cache= so lensbox runs the model with your hooks (a cache must come from the unedited model)",
        )


__all__ = ["FwdHooks", "HookFn", "HookName", "check_fwd_hooks", "refuse_hooks_with_cache"]
