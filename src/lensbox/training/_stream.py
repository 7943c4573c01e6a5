"""The training text as windows: which are validation, which are trained on, and in what order.

Windows come from `lensbox.data.windows` (texts joined by the EOS token, no
BOS). `lensbox.data.split_windows` sends window ``i`` to validation by a hash
of ``(seed, i)``; the first validation windows, up to ``max_val_tokens``, are the
validation set and are never trained on. The run trains on the first
``train_windows`` training windows, shuffled per epoch through a buffer seeded by
``(seed, epoch)``; `Batches` tracks the position so a resumed run continues
exactly where the checkpoint left off.
"""

import hashlib
import itertools
import os
import random
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Union

import torch
from jaxtyping import Int
from torch import Tensor

from .._errors import InputError
from ..core._adapter import ModelAdapter
from ..data import check_val_fraction, split_windows, windows

DataLike = Union[str, "os.PathLike[str]", Tensor, Iterable[Any], Callable[[], Any]]


def fresh(data: Any) -> Any:
    """The data itself, or a fresh iterable from a factory; one-shot iterators are refused."""
    if callable(data) and not isinstance(data, (Tensor, str, os.PathLike)):
        return data()  # a factory of fresh iterables, e.g. lambda: my_generator()
    if isinstance(data, (str, os.PathLike, Tensor)):
        return data
    if iter(data) is data:
        raise InputError(
            "Training data must be readable more than once (for validation, epochs and resume).",
            expected="a list of texts, file paths, a token tensor, or a function returning a fresh iterator",
            received=f"a one-shot iterator ({type(data).__name__})",
            fix="pass list(texts), or a factory such as `lambda: read_my_texts()`",
        )
    return data


def is_token_data(data: Any) -> bool:
    if isinstance(data, Tensor):
        return True
    if isinstance(data, (list, tuple)) and data:
        first = data[0]
        return isinstance(first, Tensor) or (
            isinstance(first, (list, tuple)) and len(first) > 0 and all(isinstance(t, int) for t in first)
        )
    return False


def raw_windows(adapter: ModelAdapter, data: DataLike, window: int) -> Iterator[List[int]]:
    """Consecutive ``window``-token windows of the data, in corpus order, as lists (via ``lensbox.data.windows``)."""
    data = fresh(data)
    tok = None
    if not is_token_data(data):
        tok = adapter._require_tokenizer(fix="pass token ids (a [n_windows, window] tensor) instead of text")
    for w in windows(tok, data, window=window, d_vocab=adapter.d_vocab):
        yield w.tolist()


def describe_data(data: DataLike) -> Dict[str, Any]:
    """A JSON description of the training data for the lens's config."""
    if isinstance(data, Tensor):
        return {"kind": "token tensor", "shape": list(data.shape)}
    if isinstance(data, str):
        return {"kind": "text", "chars": len(data), "sha256": hashlib.sha256(data.encode()).hexdigest()[:16]}
    if isinstance(data, os.PathLike):
        return {"kind": "files", "paths": [str(data)]}
    if isinstance(data, (list, tuple)):
        paths = [str(x) for x in data if isinstance(x, os.PathLike)]
        texts = [x for x in data if isinstance(x, str)]
        out: Dict[str, Any] = {"kind": "list", "items": len(data)}
        if paths:
            out["paths"] = paths[:20] + (["..."] if len(paths) > 20 else [])
        if texts:
            h = hashlib.sha256()
            for t in texts:
                h.update(t.encode())
            out.update(texts=len(texts), chars=sum(len(t) for t in texts), sha256=h.hexdigest()[:16])
        return out
    return {"kind": type(data).__name__}


class WindowStream:
    """The validation windows and the (capped) training windows of the data, re-read on demand."""

    def __init__(
        self,
        adapter: ModelAdapter,
        data: DataLike,
        *,
        window: int,
        seed: int,
        val_fraction: float,
        max_val_tokens: int,
        shuffle_buffer: int,
        train_windows: Optional[int] = None,
    ) -> None:
        check_val_fraction(val_fraction)
        self.adapter, self.data, self.window, self.seed = adapter, data, window, seed
        self.val_fraction = val_fraction
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.limit = train_windows
        max_val = max_val_tokens // window if val_fraction > 0 else 0
        val = [w for w in itertools.islice(self._part("val"), max_val)] if max_val else []
        self.val = torch.stack(val) if val else torch.zeros((0, window), dtype=torch.long)
        digest = hashlib.sha256(self.val.numpy().astype("<i8").tobytes())
        self.available = 0
        for w in self.train_windows():
            digest.update(w.numpy().astype("<i8").tobytes())
            self.available += 1
        #: SHA-256 of the token ids of every validation and training window: a checkpoint records it,
        #: so a run is never resumed on other data.
        self.sha256 = digest.hexdigest()
        if self.available == 0 and self.limit != 0:
            raise InputError(
                "The training data is shorter than one training window.",
                expected=f"at least one {window}-token window for training besides the validation windows"
                f" (val_fraction={val_fraction})",
                received=f"{len(val)} validation window(s) and no training window",
                fix="pass more text, a smaller window=, or val_fraction=0",
            )

    def _part(self, part: str) -> Iterator[Tensor]:
        raw = (torch.tensor(w, dtype=torch.long) for w in raw_windows(self.adapter, self.data, self.window))
        if self.val_fraction <= 0:
            return raw if part == "train" else iter(())
        return split_windows(raw, part, val_fraction=self.val_fraction, seed=self.seed)  # type: ignore[arg-type]

    def train_windows(self) -> Iterator[Tensor]:
        """The training windows in corpus order, at most ``train_windows`` of them."""
        return itertools.islice(self._part("train"), self.limit)

    def epoch(self, epoch: int) -> Iterator[Tensor]:
        """The training windows in the shuffled order of ``epoch``."""
        rng = random.Random(f"lensbox-shuffle:{self.seed}:{epoch}")
        buf: List[Tensor] = []
        for w in self.train_windows():
            if len(buf) < self.shuffle_buffer:
                buf.append(w)
                continue
            j = rng.randrange(len(buf))
            yield buf[j]
            buf[j] = w
        rng.shuffle(buf)
        yield from buf


class Batches:
    """Global batches of training windows with a resumable position (epoch, windows taken in the epoch)."""

    def __init__(self, stream: WindowStream, epoch: int = 0, taken: int = 0) -> None:
        self.stream = stream
        self.epoch, self.taken = epoch, 0
        self._it = stream.epoch(epoch)
        for _ in range(taken):
            self._next()

    def _next(self) -> Tensor:
        for _attempt in range(2):
            try:
                w = next(self._it)
                self.taken += 1
                return w
            except StopIteration:
                self.epoch += 1  # the run announced that it passes over the text more than once
                self.taken = 0
                self._it = self.stream.epoch(self.epoch)
        raise InputError("The training data yielded no windows.", expected="some text", received="none")

    def take(self, n: int) -> Int[Tensor, "n pos"]:
        return torch.stack([self._next() for _ in range(n)])
