"""Token windows for probes: texts or token ids -> a ``[n_windows, window]`` tensor."""

from collections.abc import Iterable, Sequence

import torch
from jaxtyping import Int
from torch import Tensor

from .._errors import InputError
from ..core._adapter import ModelAdapter

ProbeInputs = str | Sequence[str] | Tensor | Iterable[Tensor]


def probe_windows(
    adapter: ModelAdapter,
    inputs: ProbeInputs,
    *,
    window: int = 256,
    max_tokens: int | None = None,
) -> Int[Tensor, "n pos"]:
    """Turn texts or token ids into a ``[n_windows, window]`` tensor of token ids.

    Texts are tokenized without special tokens, joined (with the end-of-text token between
    texts when the tokenizer has one) and cut into full windows of ``window`` tokens. If the
    text is shorter than one window, it becomes a single shorter window. ``max_tokens`` caps
    the total. A token tensor ``[n, pos]`` (or ``[pos]``) is used as it is, and so is an
    iterable of equal-length window tensors (e.g. from ``lensbox.data.split_windows``).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise InputError(
            "The probe window length must be an integer of at least 2.",
            expected="window >= 2 tokens (128 is a good default)",
            received=repr(window),
            fix="pass window=128",
        )
    if isinstance(inputs, Tensor):
        tokens = adapter.to_tokens(inputs)
        if max_tokens is not None:
            keep = max(1, int(max_tokens) // tokens.shape[1])
            tokens = tokens[:keep]
        return tokens
    if not isinstance(inputs, (str, Sequence)) and isinstance(inputs, Iterable):
        items = list(inputs)
        if items and all(isinstance(t, Tensor) for t in items):
            if len({tuple(t.shape) for t in items}) > 1:
                raise InputError(
                    "Token windows differ in length.",
                    expected="windows of one length",
                    received=f"lengths {sorted({t.shape[-1] for t in items})}",
                    fix="make all windows with the same window size",
                )
            stacked = torch.stack([t.reshape(-1) for t in items]).to(adapter.device)
            return probe_windows(adapter, stacked, window=window, max_tokens=max_tokens)
        inputs = items
    texts = [inputs] if isinstance(inputs, str) else list(inputs) if isinstance(inputs, Sequence) else None
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InputError(
            "Cannot read the probe's text.",
            expected="a string, a list of strings, or a token tensor [n_windows, pos]",
            received=f"{type(inputs).__name__}: {str(inputs)[:80]!r}",
            fix="pass text, e.g. lensbox.read_texts(lensbox.fetch_corpus('botchan'))",
        )
    tok = adapter._require_tokenizer(fix="pass token windows [n, pos] instead of text")
    sep = getattr(tok, "eos_token_id", None)
    ids: list[int] = []
    for i, text in enumerate(texts):
        if not text.strip():
            continue
        if ids and sep is not None:
            ids.append(int(sep))
        ids.extend(int(t) for t in tok(text, add_special_tokens=False)["input_ids"])
        if max_tokens is not None and len(ids) >= max_tokens:
            break
    if max_tokens is not None:
        ids = ids[: int(max_tokens)]
    if len(ids) < 2:
        raise InputError(
            "The probe's text is too short.",
            expected="at least 2 tokens of text",
            received=f"{len(ids)} tokens",
            fix="pass more text",
        )
    if adapter.n_ctx and window > adapter.n_ctx:
        window = adapter.n_ctx
    if len(ids) < window:
        return torch.tensor([ids], dtype=torch.long, device=adapter.device)
    n = len(ids) // window
    return torch.tensor(ids[: n * window], dtype=torch.long, device=adapter.device).view(n, window)
