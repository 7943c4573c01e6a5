"""The token windows a probe trains or is evaluated on: `lensbox.data.windows` for one model.

Texts and files are cut by `lensbox.data.windows` with the model's tokenizer (no
special tokens, the end-of-text token between texts); token ids are checked against the
model's vocabulary. A ``[n, pos]`` token tensor, or an iterable of equal-length window
tensors (e.g. from `lensbox.data.split_windows`), is used as its rows whatever
``window`` says. A window longer than the model's context is refused.
"""

import os
from collections.abc import Iterable, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from .._errors import InputError
from ..core import ModelAdapter
from ..data import windows

ProbeInputs = str | os.PathLike[str] | Sequence[str] | Tensor | Iterable[Tensor]


def model_windows(
    adapter: ModelAdapter,
    data: ProbeInputs,
    *,
    window: int = 256,
    max_tokens: int | None = None,
) -> Int[Tensor, "n pos"]:
    """``data`` as a ``[n_windows, window]`` tensor of token ids on the model's device."""
    if not isinstance(data, (str, os.PathLike, Tensor)) and isinstance(data, Iterable):
        items = list(data)
        data = _stacked(items) if items and all(isinstance(t, Tensor) for t in items) else items
    if isinstance(data, Tensor) and data.ndim == 2:
        window = int(data.shape[1])  # the rows are the windows
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise InputError(
            "The window length must be an integer of at least 2.",
            expected="window >= 2 tokens (256 by default)",
            received=repr(window),
            fix="pass window=256",
        )
    adapter.check_window(window, what="probe")
    rows = list(windows(adapter.tokenizer, data, window=window, max_tokens=max_tokens, d_vocab=adapter.d_vocab))
    return torch.stack(rows).to(adapter.device)


def _stacked(items: list[Tensor]) -> Tensor:
    shapes = {tuple(t.shape) for t in items}
    if len(shapes) > 1:
        raise InputError(
            "Token windows differ in length.",
            expected="windows of one length",
            received=f"shapes {sorted(shapes)[:4]}",
            fix="make all windows with the same window size",
        )
    return torch.stack([t.reshape(-1) for t in items])
