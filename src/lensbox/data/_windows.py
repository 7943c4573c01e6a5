"""Token windows: the ONE path from text (or token ids) to fixed-length windows, and the train/val split.

`windows` is what training, probes, evaluation and the CLI all use. Text is
tokenized in pieces of about ``chunk_chars`` characters (cut after a newline), so
memory holds one piece's tokens, never the whole corpus's. `split_windows`
and `train_val_split` send window ``i`` to validation when a hash of
``(seed, i)`` falls below ``val_fraction``; `check_val_fraction` is the one
check of that fraction.
"""

import hashlib
import os
from typing import Callable, Iterable, Iterator, List, Literal, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

import torch
from jaxtyping import Int
from torch import Tensor

from .._errors import InputError
from ._text import iter_texts

__all__ = [
    "TokenizerLike",
    "WindowData",
    "batched",
    "check_val_fraction",
    "is_val",
    "split_windows",
    "token_windows",
    "train_val_split",
    "windows",
]


@runtime_checkable
class TokenizerLike(Protocol):
    """A tokenizer object as ``windows`` reads it: ``encode(text, add_special_tokens=False)`` (Hugging Face)."""

    def encode(self, text: str, add_special_tokens: bool = ...) -> Sequence[int]: ...


Tokenize = Union[Callable[[str], Sequence[int]], TokenizerLike]
WindowData = Union[str, "os.PathLike[str]", Tensor, Iterable[Union[str, "os.PathLike[str]", Tensor, Sequence[int]]]]


def windows(
    tokenize: Optional[Tokenize],
    data: WindowData,
    *,
    window: int = 256,
    max_tokens: Optional[int] = None,
    bos_id: Optional[int] = None,
    sep_id: Union[int, Literal["eos"], None] = "eos",
    stride: Optional[int] = None,
    kind: Literal["auto", "paths", "texts"] = "auto",
    d_vocab: Optional[int] = None,
    chunk_chars: int = 100_000,
) -> Iterator[Int[Tensor, "window"]]:
    """Stream fixed-length windows of token ids (1-D ``long`` tensors of ``window`` ids) from ``data``.

    ``data`` is one of:

    * text: a ``str``, a file or folder (``pathlib.Path``, UTF-8, folders read
      recursively), or an iterable of those, read lazily by
      `lensbox.data.read_texts`'s rules (``kind`` forces strings to be read as
      ``"texts"`` or ``"paths"``). Needs ``tokenize``;
    * token ids: a ``[n, window]`` tensor (its rows are the windows, taken as they are),
      or any other tensor / list of id lists / list of 1-D tensors (concatenated, then
      cut like text).

    ``tokenize`` is a function ``str -> ids`` that adds no special tokens (e.g.
    ``lambda s: tok.encode(s, add_special_tokens=False)``) or a tokenizer object with
    ``encode`` (called with ``add_special_tokens=False``); ``None`` for token data.

    Tokens run on across text boundaries with ``sep_id`` between texts: ``"eos"`` (the
    default) is the tokenizer object's ``eos_token_id`` when it has one (none for a
    plain function). With ``bos_id`` every window starts with it and holds
    ``window - 1`` text tokens. ``stride`` (default: the text part of a window, no
    overlap) is how far the next window starts. The tail that does not fill a window
    is dropped. ``max_tokens`` stops after ``max_tokens // window`` windows (it must
    hold at least one window). ``d_vocab`` checks every id against the vocabulary.

    For a ``[n, window]`` tensor: ``torch.stack(list(windows(...)))``.

    Raises `InputError` for bad settings at once, and (when iterated to the
    end) if the data holds fewer tokens than one window.
    """
    body = _check_settings(window, bos_id, stride, max_tokens, chunk_chars)
    limit = None if max_tokens is None else max_tokens // window
    if isinstance(data, Tensor) and data.ndim == 2 and data.shape[1] == window:
        return _rows(data, limit, d_vocab)
    token_data = _token_data(data)
    if token_data is not None:
        pieces: Iterable[List[int]] = token_data
        sep: Optional[int] = None
    else:
        fn, eos = _tokenize_fn(tokenize, d_vocab)
        sep = eos if sep_id == "eos" else sep_id
        pieces = _id_pieces(iter_texts(data, kind=kind), fn, sep, chunk_chars)  # type: ignore[arg-type]
    return _cut(pieces, window, body, bos_id, stride or body, limit, d_vocab)


def token_windows(
    texts: Iterable[str],
    tokenize: Callable[[str], Sequence[int]],
    window: int,
    *,
    bos_id: Optional[int],
    stride: Optional[int] = None,
    sep_id: Optional[int] = None,
    chunk_chars: int = 100_000,
) -> Iterator[Int[Tensor, "window"]]:
    """`windows` over texts given as strings (never read as paths), with an explicit ``sep_id``."""
    body = _check_settings(window, bos_id, stride, None, chunk_chars)
    pieces = _id_pieces(_strings(texts), _checked(tokenize), sep_id, chunk_chars)
    return _cut(pieces, window, body, bos_id, stride or body, None, None)


def _check_settings(
    window: int, bos_id: Optional[int], stride: Optional[int], max_tokens: Optional[int], chunk_chars: int
) -> int:
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or (bos_id is not None and window < 2):
        raise InputError(
            "The window is too short.",
            expected="window >= 2 with a BOS token, >= 1 without",
            received=f"window={window!r}, bos_id={bos_id}",
            fix="use a longer window, e.g. 128",
        )
    if stride is not None and stride < 1:
        raise InputError(
            "The stride must be positive.",
            expected="stride >= 1",
            received=f"stride={stride}",
            fix="leave stride=None for windows that do not overlap",
        )
    if max_tokens is not None and max_tokens < window:
        raise InputError(
            "max_tokens is smaller than one window.",
            expected=f"max_tokens >= window={window} (whole windows are used)",
            received=f"max_tokens={max_tokens}",
            fix=f"pass max_tokens={window} or more, or a smaller window",
        )
    if chunk_chars < 1:
        raise InputError("chunk_chars must be positive.", expected=">= 1", received=str(chunk_chars), fix="keep 100000")
    return window - (1 if bos_id is not None else 0)


def _rows(data: Tensor, limit: Optional[int], d_vocab: Optional[int]) -> Iterator[Tensor]:
    if data.dtype.is_floating_point or data.dtype == torch.bool:
        raise InputError("Token ids must be integers.", expected="an integer tensor", received=str(data.dtype),
                         fix="pass token ids from the tokenizer")
    rows = data[:limit] if limit is not None else data
    if rows.numel():
        _check_ids(rows.reshape(-1).tolist(), d_vocab)
    for row in rows:
        yield row.to(torch.long).cpu()


def _token_data(data: object) -> Optional[List[List[int]]]:
    """Token ids as one piece per row/list, or None when ``data`` is text."""
    if isinstance(data, Tensor):
        if data.dtype.is_floating_point or data.dtype == torch.bool:
            raise InputError("Token ids must be integers.", expected="an integer tensor", received=str(data.dtype),
                             fix="pass token ids from the tokenizer")
        return [data.reshape(-1).tolist()]
    if isinstance(data, (list, tuple)) and data:
        first = data[0]
        if isinstance(first, Tensor) or (isinstance(first, (list, tuple)) and first and isinstance(first[0], int)):
            return [_as_ids(x, 0) for x in data]
    return None


def _tokenize_fn(tokenize: Optional[Tokenize], d_vocab: Optional[int]) -> Tuple[Callable[[str], List[int]], Optional[int]]:
    if tokenize is None:
        raise InputError(
            "Text needs a tokenizer to become token windows.",
            expected="a tokenize function or a tokenizer (or token ids instead of text)",
            received="tokenize=None",
            fix="pass the model's tokenizer, or a [n_windows, window] token tensor",
        )
    encode = getattr(tokenize, "encode", None)
    if not callable(encode):
        return _checked(tokenize), None  # type: ignore[arg-type]
    eos = getattr(tokenize, "eos_token_id", None)
    ok = isinstance(eos, int) and eos >= 0 and (d_vocab is None or eos < d_vocab)
    return _checked(lambda s: encode(s, add_special_tokens=False)), (eos if ok else None)


def _checked(tokenize: Callable[[str], Sequence[int]]) -> Callable[[str], List[int]]:
    return lambda s: _as_ids(tokenize(s), len(s))


def _strings(texts: Iterable[object]) -> Iterator[str]:
    for k, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(
                "token_windows needs texts as strings.",
                expected="an iterable of str (see read_texts)",
                received=f"item {k} of type {type(text).__name__}",
                fix="pass read_texts(paths) or a list of strings",
            )
        yield text


def _cut(
    pieces: Iterable[List[int]],
    window: int,
    body: int,
    bos_id: Optional[int],
    step: int,
    limit: Optional[int],
    d_vocab: Optional[int],
) -> Iterator[Tensor]:
    prefix = [] if bos_id is None else [int(bos_id)]
    buf: List[int] = []
    skip = total = produced = 0
    for ids in pieces:
        _check_ids(ids, d_vocab)
        total += len(ids)
        if skip:
            drop = min(skip, len(ids))
            ids, skip = ids[drop:], skip - drop
        buf.extend(ids)
        while len(buf) >= body:
            if limit is not None and produced >= limit:
                return
            yield torch.tensor(prefix + buf[:body], dtype=torch.long)
            produced += 1
            if step <= len(buf):
                del buf[:step]
            else:
                skip = step - len(buf)
                buf.clear()
    if produced == 0:
        raise InputError(
            "The texts are shorter than one window.",
            expected=f"at least {body} text tokens for window={window}" + (" (one slot is BOS)" if prefix else ""),
            received=f"{total} tokens",
            fix="use a shorter window or more text",
        )


def _chunks(text: str, size: int) -> Iterator[str]:
    """Pieces of about ``size`` characters, cut after a newline (else a space) where possible."""
    start, n = 0, len(text)
    while n - start > size:
        end = start + size
        cut = text.rfind("\n", start + size // 2, end)
        if cut < 0:
            cut = text.rfind(" ", start + size // 2, end)
        cut = end if cut < 0 else cut + 1
        yield text[start:cut]
        start = cut
    if start < n:
        yield text[start:]


def _as_ids(ids: object, chunk_len: int) -> List[int]:
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    if isinstance(ids, (list, tuple)) and len(ids) == 1 and isinstance(ids[0], (list, tuple)):
        ids = ids[0]  # a batch of one
    if isinstance(ids, (list, tuple)) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        return list(ids)
    raise InputError(
        "The tokenize function returned something other than token ids.",
        expected="a list of ints (or a 1-D tensor)",
        received=f"{type(ids).__name__} for a text of {chunk_len} characters",
        fix="return ids without special tokens, e.g. lambda s: tok.encode(s, add_special_tokens=False)",
    )


def _id_pieces(
    texts: Iterable[str], tokenize: Callable[[str], List[int]], sep_id: Optional[int], chunk_chars: int
) -> Iterator[List[int]]:
    """Token ids of the texts, piece by piece, with ``sep_id`` between texts."""
    for k, text in enumerate(texts):
        if sep_id is not None and k > 0:
            yield [int(sep_id)]
        for piece in _chunks(text, chunk_chars):
            yield tokenize(piece)


def _check_ids(ids: Sequence[int], d_vocab: Optional[int]) -> None:
    if d_vocab is not None and ids and (min(ids) < 0 or max(ids) >= d_vocab):
        raise InputError(
            "Token ids fall outside the model's vocabulary.",
            expected=f"ids in 0..{d_vocab - 1}",
            received=f"ids in {min(ids)}..{max(ids)}",
            fix="tokenize with this model's own tokenizer",
        )


# ----------------------------------------------------------------------------- the train/val split
def is_val(index: int, val_fraction: float, seed: int) -> bool:
    """Whether window number ``index`` belongs to the validation part (a hash of ``(seed, index)``)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64 < val_fraction


def check_val_fraction(val_fraction: float) -> None:
    """The one check of a validation fraction: a number in [0, 1)."""
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0.0 <= val_fraction < 1.0:
        raise InputError(
            "val_fraction must be in [0, 1).",
            expected="a fraction such as 0.05 (0 for no validation)",
            received=repr(val_fraction),
            fix="pass val_fraction=0.05 for 5% validation windows, or 0 to skip validation",
        )


def split_windows(
    windows: Iterable[Int[Tensor, "window"]], part: Literal["train", "val"], *, val_fraction: float = 0.1, seed: int = 0
) -> Iterator[Int[Tensor, "window"]]:
    """Keep the training or the validation windows of a stream, reproducibly.

    Window number ``i`` goes to validation when a hash of ``(seed, i)`` falls
    below ``val_fraction``, so the same corpus, tokenizer and window settings
    always give the same split, without storing it. Use non-overlapping windows
    (the default stride) so validation text is never seen in training.
    """
    check_val_fraction(val_fraction)
    want_val = part == "val"
    return (w for i, w in enumerate(windows) if is_val(i, val_fraction, seed) == want_val)


def train_val_split(
    windows: Iterable[Int[Tensor, "window"]], *, val_fraction: float = 0.1, seed: int = 0
) -> Tuple[Int[Tensor, "n_train window"], Int[Tensor, "n_val window"]]:
    """Stack the windows into a training and a validation tensor (same rule as `split_windows`)."""
    check_val_fraction(val_fraction)
    train: List[Tensor] = []
    val: List[Tensor] = []
    width: Optional[int] = None
    for i, w in enumerate(windows):
        if width is None:
            width = int(w.shape[-1])
        (val if is_val(i, val_fraction, seed) else train).append(w)
    n = len(train) + len(val)
    if not train or (val_fraction > 0 and not val):
        raise InputError(
            "Too few windows to split into training and validation parts.",
            expected=f"at least one window in each part (val_fraction={val_fraction})",
            received=f"{n} windows: {len(train)} train, {len(val)} validation",
            fix="use more text, a shorter window, or a larger val_fraction",
        )
    empty = torch.empty((0, width or 0), dtype=torch.long)
    return torch.stack(train), (torch.stack(val) if val else empty)


def batched(
    windows: Iterable[Int[Tensor, "window"]], batch_size: int, *, drop_last: bool = False
) -> Iterator[Int[Tensor, "batch window"]]:
    """Group windows into ``[batch, window]`` tensors; the last batch may be smaller unless ``drop_last``."""
    if batch_size < 1:
        raise InputError(
            "batch_size must be positive.", expected=">= 1", received=str(batch_size), fix="use e.g. batch_size=8"
        )
    group: List[Tensor] = []
    for w in windows:
        if group and w.shape != group[0].shape:
            raise InputError(
                "Windows in one batch have different lengths.",
                expected=f"length {tuple(group[0].shape)}",
                received=f"length {tuple(w.shape)}",
                fix="make all windows with the same token_windows(window=...)",
            )
        group.append(w)
        if len(group) == batch_size:
            yield torch.stack(group)
            group = []
    if group and not drop_last:
        yield torch.stack(group)
