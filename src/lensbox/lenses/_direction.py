"""Direction readout: which tokens an arbitrary vector in the residual space promotes and suppresses.

A *direction* is any vector of width ``d_model``: a steering vector, an SAE decoder row, a
probe's weight row, the difference of two token embeddings, a tuned-lens translator's bias.
Its readout is ``d @ W_U``, one logit per vocabulary token: the tokens with the largest
logits are the ones the direction pushes up when added to the residual stream, the most
negative ones those it pushes down.

`vocab_extremes` is the bounded-memory engine (also used by the component lens): rows
times ``W_U`` one block of vocabulary columns at a time, merging a running top-k and bottom-k,
so ``[rows, vocab]`` is never held; `read_direction` / `DirectionLens` apply it to
chunks of directions and return a `DirectionReadout`.
"""

import dataclasses
from typing import Any, Dict, List, Literal, NamedTuple, Optional, Sequence, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import _html
from .._errors import InputError, NonFiniteError, check_choice, check_int
from ..core._adapter import ModelAdapter, ModelLike, adapt

DirectionNorm = Literal["none", "final"]
"""How a direction reaches ``W_U``: ``"none"`` (``d @ W_U`` as it is) or ``"final"`` (through the final norm first)."""

NORM_MEANING: Dict[str, str] = {
    "none": "d @ W_U: the direction as it is, no final norm and no unembedding bias (linear in d)",
    "final": (
        "final_norm(d) @ W_U: the direction passed through the model's final norm as if it were a residual "
        "stream, so its length drops out and the norm's gain reweights its coordinates (a LayerNorm also "
        "removes its mean and adds its bias); no unembedding bias"
    ),
}


class Extremes(NamedTuple):
    """What `vocab_extremes` returns: per row, the top-k and bottom-k entries (and a target's value and rank)."""

    top_values: Float[Tensor, "n k"]
    top_ids: Int[Tensor, "n k"]
    bottom_values: Float[Tensor, "n k"]
    bottom_ids: Int[Tensor, "n k"]
    #: ``(rows @ weight + bias)[i, targets[i]]``; None without ``targets``.
    target_values: Optional[Float[Tensor, "n"]]
    #: How many entries of row ``i`` exceed its target's (0 = the target is the largest); None without ``targets``.
    target_ranks: Optional[Int[Tensor, "n"]]


def vocab_extremes(
    rows: Float[Tensor, "n d_model"],
    weight: Float[Tensor, "d_model d_vocab"],
    k: int,
    *,
    bias: Optional[Float[Tensor, "d_vocab"]] = None,
    targets: Optional[Int[Tensor, "n"]] = None,
    chunk_vocab: int = 8192,
) -> Extremes:
    """The ``k`` largest and ``k`` smallest entries of ``rows @ weight (+ bias)`` per row, one vocabulary block at a time.

    Returns an `Extremes` (top sorted descending, bottom ascending; float32). With
    ``targets`` (one vocabulary id per row) it also gives each target's value and rank (how
    many entries exceed it). Peak extra memory is ``[n, chunk_vocab + 2k]`` floats, never
    ``[n, d_vocab]``.
    """
    n, n_vocab = rows.shape[0], weight.shape[1]
    rows = rows.float()
    dev = rows.device
    top_v = torch.full((n, 0), 0.0, device=dev)
    top_i = torch.zeros((n, 0), dtype=torch.long, device=dev)
    bot_v, bot_i = top_v, top_i
    target_v = torch.zeros(n, device=dev) if targets is not None else None
    target_r = torch.zeros(n, dtype=torch.long, device=dev) if targets is not None else None
    if targets is not None:  # the targets' values first, so each block can count the entries above them
        cols = weight[:, targets.to(weight.device)].to(device=dev, dtype=torch.float32)  # [d_model, n]
        target_v = (rows * cols.T).sum(-1)
        if bias is not None:
            target_v = target_v + bias.to(dev, torch.float32)[targets.to(dev)]
    for v0 in range(0, n_vocab, chunk_vocab):
        block = block_logits(rows, weight[:, v0 : v0 + chunk_vocab])
        if bias is not None:
            block += bias[v0 : v0 + chunk_vocab].to(dev, torch.float32)
        kk = min(k, block.shape[1])
        hv, hi = block.topk(kk, dim=-1)
        lv, li = block.topk(kk, dim=-1, largest=False)
        top_v, top_i = _merge(top_v, top_i, hv, hi + v0, k, largest=True)
        bot_v, bot_i = _merge(bot_v, bot_i, lv, li + v0, k, largest=False)
        if target_v is not None and target_r is not None and targets is not None:
            above = block > target_v[:, None]
            # the target's own entry, recomputed in this block, may differ from target_v by rounding: never count it
            local = targets.to(dev) - v0
            mine = (local >= 0) & (local < block.shape[1])
            above[mine, local[mine]] = False
            target_r += above.sum(-1)
    return Extremes(top_v, top_i, bot_v, bot_i, target_v, target_r)


def block_logits(rows: Float[Tensor, "n d_model"], block: Float[Tensor, "d_model v"]) -> Float[Tensor, "n v"]:
    """``rows @ block`` in float32: the one product the readout computes (one vocabulary block at a time)."""
    return rows @ block.to(device=rows.device, dtype=torch.float32)


def _merge(values: Tensor, ids: Tensor, new_values: Tensor, new_ids: Tensor, k: int, *, largest: bool) -> Tuple[Tensor, Tensor]:
    both_v = torch.cat([values, new_values], dim=1)
    both_i = torch.cat([ids, new_ids], dim=1)
    v, j = both_v.topk(min(k, both_v.shape[1]), dim=-1, largest=largest)
    return v, both_i.gather(1, j)


@dataclasses.dataclass
class DirectionReadout:
    """The tokens each direction promotes (largest logits) and suppresses (most negative logits).

    Row ``i`` of every tensor belongs to direction ``i`` (named ``labels[i]``). ``top_logits`` is
    sorted descending, ``bottom_logits`` ascending; ``norm`` says how the directions reached
    ``W_U`` and ``norm_meaning`` spells it out.
    """

    model_name: str
    norm: str
    norm_meaning: str
    labels: List[str]
    direction_norms: Float[Tensor, "n"]
    top_ids: Int[Tensor, "n k"]
    top_logits: Float[Tensor, "n k"]
    top_labels: List[List[str]]
    bottom_ids: Int[Tensor, "n k"]
    bottom_logits: Float[Tensor, "n k"]
    bottom_labels: List[List[str]]

    def __len__(self) -> int:
        return len(self.labels)

    def to_pandas(self) -> Any:
        """One row per (direction, side, rank): ``direction, label, side ('top'/'bottom'), rank, token_id, token, logit``."""
        import pandas as pd

        rows: Dict[str, List[Any]] = {k: [] for k in ("direction", "label", "side", "rank", "token_id", "token", "logit")}
        for side, ids, logits, labels in (
            ("top", self.top_ids, self.top_logits, self.top_labels),
            ("bottom", self.bottom_ids, self.bottom_logits, self.bottom_labels),
        ):
            id_rows, logit_rows = ids.tolist(), logits.tolist()
            for d in range(len(self.labels)):
                for r, (tid, v) in enumerate(zip(id_rows[d], logit_rows[d])):
                    rows["direction"].append(d)
                    rows["label"].append(self.labels[d])
                    rows["side"].append(side)
                    rows["rank"].append(r)
                    rows["token_id"].append(tid)
                    rows["token"].append(labels[d][r])
                    rows["logit"].append(v)
        return pd.DataFrame(rows).sort_values(["direction", "side", "rank"], ascending=[True, False, True], ignore_index=True)

    def table(self, *, max_directions: int = 20, k: Optional[int] = None) -> str:
        """A text table: per direction, its top tokens (logit) and its bottom tokens (logit)."""
        k = self.top_ids.shape[1] if k is None else min(k, self.top_ids.shape[1])
        lines = []
        for d in range(min(len(self.labels), max_directions)):
            top = ", ".join(f"{t!r} {v:+.2f}" for t, v in zip(self.top_labels[d][:k], self.top_logits[d, :k].tolist()))
            bot = ", ".join(f"{t!r} {v:+.2f}" for t, v in zip(self.bottom_labels[d][:k], self.bottom_logits[d, :k].tolist()))
            lines.append(f"{self.labels[d]}  (|d| = {float(self.direction_norms[d]):.3g})")
            lines.append(f"  promotes:   {top}")
            lines.append(f"  suppresses: {bot}")
        if len(self.labels) > max_directions:
            lines.append(f"... {len(self.labels) - max_directions} more directions")
        lines.append(f"logits = {self.norm_meaning}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"DirectionReadout(model={self.model_name!r}, directions={len(self.labels)}, k={self.top_ids.shape[1]}, "
            f"norm={self.norm!r})"
        )

    def _repr_html_(self, max_directions: int = 50) -> str:
        """Jupyter's rich display: per direction (the first ``max_directions``) the tokens it promotes and suppresses."""
        def side(labels: List[str], logits: Tensor) -> str:
            return ", ".join(f"{t!r} {v:+.2f}" for t, v in zip(labels, logits.tolist()))

        rows = [[self.labels[d], side(self.top_labels[d], self.top_logits[d]), side(self.bottom_labels[d], self.bottom_logits[d])]
                for d in range(min(len(self.labels), max_directions))]
        more = len(self.labels) - len(rows)
        return _html.block(
            _html.heading("DirectionReadout", f"on {self.model_name}: {self.norm_meaning}"),
            _html.table(["direction", "promotes", "suppresses"], rows),
            note=f"... {more} more directions" if more > 0 else "",
        )


class DirectionLens:
    """Reads directions of one model: ``DirectionLens(model, k=10)(directions)`` -> `DirectionReadout`.

    Args:
        model: the hooked model whose unembedding reads the directions.
        k: how many top and bottom tokens to keep per direction.
        norm: ``"none"`` (default: ``d @ W_U``) or ``"final"`` (the model's final norm first);
            see `NORM_MEANING` (also stated in every result).
        chunk_directions: directions per work chunk.
        chunk_vocab: vocabulary columns per work chunk; memory is ``chunk_directions x chunk_vocab``
            floats, however many directions there are.
    """

    def __init__(
        self,
        model: ModelLike,
        *,
        k: int = 5,
        norm: DirectionNorm = "none",
        chunk_directions: int = 256,
        chunk_vocab: int = 8192,
    ) -> None:
        self.adapter: ModelAdapter = adapt(model)
        check_choice("norm", norm, NORM_MEANING, what="norm convention for a direction",
                     fix="norm='none' reads d @ W_U; norm='final' applies the final norm first")
        for name, value in (("k", k), ("chunk_directions", chunk_directions), ("chunk_vocab", chunk_vocab)):
            check_int(name, value)
        if k > self.adapter.d_vocab:
            raise InputError(
                "k is larger than the vocabulary.",
                expected=f"k <= d_vocab = {self.adapter.d_vocab}",
                received=f"k={k}",
                fix=f"use k={min(5, self.adapter.d_vocab)}",
            )
        self.k, self.norm = k, norm
        self.chunk_directions, self.chunk_vocab = chunk_directions, chunk_vocab

    def check(self, directions: Tensor) -> Float[Tensor, "n d_model"]:
        """``directions`` as ``[n, d_model]`` on the unembedding's device, or a clear error."""
        d_model = self.adapter.d_model
        if not isinstance(directions, Tensor):
            raise InputError(
                "Directions must be a tensor.",
                expected=f"a float tensor [n, {d_model}] (or one vector [{d_model}])",
                received=f"{type(directions).__name__}",
                fix="stack your vectors with torch.stack([...])",
            )
        if directions.ndim == 1:
            directions = directions[None]
        if directions.ndim != 2 or directions.shape[-1] != d_model or not directions.dtype.is_floating_point:
            raise InputError(
                "The directions do not have the model's width.",
                expected=f"a float tensor [n, d_model] with d_model = {d_model} (or one vector [{d_model}])",
                received=f"shape {tuple(directions.shape)}, dtype {directions.dtype}",
                fix=(
                    "pass vectors in this model's residual space: e.g. model.W_E[a] - model.W_E[b], a probe's "
                    "weight rows, an SAE's W_dec rows, or a tuned lens's translators.bias"
                ),
            )
        if directions.shape[0] == 0:
            raise InputError("No directions were given.", expected="at least one row", received="shape (0, d_model)")
        bad = ~torch.isfinite(directions).all(dim=-1)
        if bool(bad.any()):
            rows = bad.nonzero()[:, 0].tolist()
            raise NonFiniteError(
                "Some directions hold NaN or infinite values.",
                expected="finite vectors",
                received=f"{len(rows)} non-finite row(s), first {rows[:5]}",
                fix="drop or repair those rows",
            )
        return directions.detach().to(self.adapter.device)

    def __call__(
        self, directions: Float[Tensor, "*n d_model"], *, labels: Optional[Sequence[str]] = None
    ) -> DirectionReadout:
        """Read ``directions`` (``[n, d_model]`` or one ``[d_model]`` vector); ``labels`` name the rows."""
        directions = self.check(directions)
        n = directions.shape[0]
        if labels is not None and len(labels) != n:
            raise InputError(
                "There must be one label per direction.",
                expected=f"{n} labels",
                received=f"{len(labels)} labels",
                fix="pass labels=None for 'direction 0', 'direction 1', ...",
            )
        adapter = self.adapter
        parts: List[Tuple[Tensor, ...]] = []
        with torch.no_grad():
            for d0 in range(0, n, self.chunk_directions):
                rows = directions[d0 : d0 + self.chunk_directions]
                if self.norm == "final":
                    rows = adapter.final_norm(rows.to(adapter.dtype))
                parts.append(tuple(vocab_extremes(rows, adapter.W_U, self.k, chunk_vocab=self.chunk_vocab))[:4])
        top_v, top_i, bot_v, bot_i = (torch.cat([p[j] for p in parts]).cpu() for j in range(4))
        names: Dict[int, str] = {}

        def label(t: int) -> str:
            if t not in names:
                names[t] = adapter.token_label(t)
            return names[t]

        return DirectionReadout(
            model_name=adapter.model_name,
            norm=self.norm,
            norm_meaning=NORM_MEANING[self.norm],
            labels=list(labels) if labels is not None else [f"direction {i}" for i in range(n)],
            direction_norms=directions.float().norm(dim=-1).cpu(),
            top_ids=top_i,
            top_logits=top_v,
            top_labels=[[label(t) for t in row] for row in top_i.tolist()],
            bottom_ids=bot_i,
            bottom_logits=bot_v,
            bottom_labels=[[label(t) for t in row] for row in bot_i.tolist()],
        )

    read = __call__


def read_direction(
    model: ModelLike,
    directions: Float[Tensor, "*n d_model"],
    *,
    k: int = 5,
    norm: DirectionNorm = "none",
    labels: Optional[Sequence[str]] = None,
    chunk_directions: int = 256,
    chunk_vocab: int = 8192,
) -> DirectionReadout:
    """Decode arbitrary residual-space vectors through the unembedding: the tokens each one promotes and suppresses.

    ``directions`` is ``[n, d_model]`` (or one ``[d_model]`` vector): steering vectors, SAE decoder
    rows, probe weight rows, ``model.W_E[a] - model.W_E[b]``, a tuned lens's ``translators.bias``.
    ``norm="none"`` reads ``d @ W_U``; ``norm="final"`` passes each direction through the model's
    final norm first, as if it were a residual stream (its length then drops out). Neither adds the
    unembedding bias. Work runs in chunks of ``chunk_directions x chunk_vocab``, so thousands of
    directions never hold ``[n, d_vocab]`` at once.

    Examples:
        ```python
        paris, london = model.to_single_token(" Paris"), model.to_single_token(" London")
        out = read_direction(model, model.W_E[paris] - model.W_E[london], k=10)
        print(out.table())
        ```
    """
    lens = DirectionLens(model, k=k, norm=norm, chunk_directions=chunk_directions, chunk_vocab=chunk_vocab)
    return lens(directions, labels=labels)


__all__ = ["DirectionLens", "DirectionNorm", "DirectionReadout", "Extremes", "NORM_MEANING", "block_logits", "read_direction", "vocab_extremes"]
