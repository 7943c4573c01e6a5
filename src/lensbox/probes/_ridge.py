"""Ridge regression from streamed sufficient statistics, in float64.

`RidgeStatistics` accumulates ``[X - c, 1]^T [X - c, 1]`` and ``[X - c, 1]^T Y`` for
one site and several offsets batch by batch (memory ``O(d_model^2)`` whatever the corpus
size); `solve_ridge` turns them into a `RidgeProbe` with a scale-free penalty.
"""

import math
import warnings
from collections.abc import Sequence
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import InputError, NonFiniteError
from ._maps import RidgeProbe
from ._offsets import offset_label, valid_positions

Products = Literal["float32", "float64"]


class RidgeStatistics:
    """Streamed sufficient statistics of one site for several offsets.

    Rows are shifted by a fixed reference (the first batch's mean) before they are
    accumulated, so the centred Gram matrix suffers no cancellation when activations sit
    far from the origin. ``X^T X`` is accumulated once over all rows, plus small Gram
    matrices of the few rows at each window's edges that serve only some offsets (subtracted
    for the offsets they do not serve); ``X^T Y`` for all offsets is one product against the
    concatenated targets.

    Each batch's products are computed in ``products`` ('float32', the default, about twice
    as fast; or 'float64') on the shifted rows and added into float64 accumulators.
    """

    def __init__(self, d_in: int, d_out: int, offsets: Sequence[int], *, products: Products = "float32") -> None:
        if products not in ("float32", "float64"):
            raise InputError(
                "Unknown precision for the ridge statistics.",
                expected="'float32' (per-batch products, float64 sums) or 'float64'",
                received=repr(products),
                fix="use products='float32'",
            )
        self.dtype = torch.float32 if products == "float32" else torch.float64
        self.d_in, self.d_out = int(d_in), int(d_out)
        self.offsets = list(offsets)
        self.shift: Tensor | None = None
        self.grams: dict[tuple[object, ...], Tensor] = {}
        self.xty: dict[int, Tensor] = {}

    def update(
        self,
        x: Float[Tensor, "batch pos d_in"],
        tokens: Int[Tensor, "batch pos"],
        embed: Float[Tensor, "vocab d_out"],
        skip_first: int,
    ) -> None:
        b, length, d = x.shape
        rows_lo = min(skip_first, length)
        body = x[:, rows_lo:]
        if body.numel() == 0:
            return
        if self.shift is None:
            self.shift = body.reshape(-1, d).double().mean(0)
        n_pos = length - rows_lo
        xa = torch.empty(b, n_pos, d + 1, dtype=self.dtype, device=x.device)
        xa[..., :d] = body.to(self.dtype) - self.shift.to(device=x.device, dtype=self.dtype)
        xa[..., d] = 1.0
        flat = xa.reshape(-1, d + 1)
        # X^T X over every row once; rows that serve only some offsets are also kept by signature
        self._add_gram(None, flat.T @ flat)
        ranges = {k: valid_positions(length, k, skip_first) for k in self.offsets}
        sigs: dict[tuple[bool, ...], list[int]] = {}
        for p in range(rows_lo, length):
            sig = tuple(ranges[k][0] <= p < ranges[k][1] for k in self.offsets)
            if not all(sig):
                sigs.setdefault(sig, []).append(p - rows_lo)
        for sig, pos in sigs.items():
            rows = xa[:, pos].reshape(-1, d + 1)
            self._add_gram(sig, rows.T @ rows)
        # X^T Y for every offset in one product: targets outside the window contribute zero rows
        e = self.d_out
        y = torch.zeros(b, n_pos, len(self.offsets) * e, dtype=self.dtype, device=x.device)
        for j, k in enumerate(self.offsets):
            lo, hi = ranges[k]
            if hi > lo:
                y[:, lo - rows_lo : hi - rows_lo, j * e : (j + 1) * e] = embed[tokens[:, lo + k : hi + k]].to(self.dtype)
        xty = (flat.T @ y.reshape(-1, len(self.offsets) * e)).double()
        for j, k in enumerate(self.offsets):
            part = xty[:, j * e : (j + 1) * e]
            if k in self.xty:
                self.xty[k] += part
            else:
                self.xty[k] = part.clone()

    def _add_gram(self, sig: tuple[bool, ...] | None, g: Tensor) -> None:
        key = ("all",) if sig is None else sig
        g = g.double()
        if key in self.grams:
            self.grams[key] += g
        else:
            self.grams[key] = g.clone()

    def gram(self, offset: int) -> Float[Tensor, "D D"]:
        """``[X - shift, 1]^T [X - shift, 1]`` over the rows that serve ``offset``."""
        i = self.offsets.index(offset)
        total = self.grams[("all",)].clone()
        for sig, g in self.grams.items():
            if sig != ("all",) and not sig[i]:
                total -= g
        return total

    def n_samples(self, offset: int) -> int:
        """How many rows serve ``offset`` (the bias entry of its Gram matrix)."""
        return int(round(float(self.gram(offset)[-1, -1])))

    def solve(self, offset: int, alpha: float, *, where: str = "") -> RidgeProbe:
        """The ridge map for ``offset`` with penalty ``alpha`` (see `solve_ridge`)."""
        if offset not in self.xty or self.shift is None:
            raise InputError(
                f"No training rows reached offset {offset_label(offset)}{where}.",
                expected="at least one position whose target token lies inside its window",
                received="none",
                fix="use longer windows or drop this offset",
            )
        return solve_ridge(self.gram(offset), self.xty[offset], self.shift, alpha, where=where)


def solve_ridge(
    gram: Float[Tensor, "D D"],
    xty: Float[Tensor, "D e"],
    shift: Float[Tensor, "d"],
    alpha: float,
    *,
    where: str = "",
) -> RidgeProbe:
    """Solve ridge regression from augmented sufficient statistics.

    ``gram`` and ``xty`` are ``[X - shift, 1]^T [X - shift, 1]`` and ``[X - shift, 1]^T Y``.
    The bias is not penalised; the penalty on the weights is
    ``alpha * trace(centred Gram) / d`` (scale-free: the same ``alpha`` suits every layer).
    """
    d = gram.shape[0] - 1
    n = float(gram[-1, -1])
    if n <= 0:
        raise InputError(
            f"No training rows{where}.",
            expected="at least one training position",
            received="0",
            fix="pass more text",
        )
    if alpha < 0 or not math.isfinite(alpha):
        raise InputError(
            "The ridge penalty must be a finite number >= 0.",
            expected="alpha >= 0 (e.g. 1e-3)",
            received=repr(alpha),
            fix="pass alpha=1e-3",
        )
    mean_x = gram[:d, -1] / n
    mean_y = xty[-1] / n
    g = gram[:d, :d] - n * torch.outer(mean_x, mean_x)
    g = 0.5 * (g + g.T)
    c = xty[:d] - n * torch.outer(mean_x, mean_y)
    if not bool(torch.isfinite(g).all()) or not bool(torch.isfinite(c).all()):
        raise NonFiniteError(
            f"The probe's training statistics hold NaN or infinite values{where}.",
            expected="finite activations",
            received="non-finite X^T X or X^T Y",
            fix="check the model for overflow (run it in float32)",
        )
    lam = float(alpha) * float(torch.trace(g)) / max(d, 1)
    if n < d + 1:
        if lam > 0:
            detail = f"the fit is determined mostly by the penalty (alpha={alpha:g})"
        else:
            detail = "with alpha=0 the system is singular; lensbox returns the minimum-norm solution"
        warnings.warn(
            f"Ridge probe{where}: only {int(n)} training rows for {d} activation dimensions; {detail}. "
            f"Fix: train on more text (at least {d + 1} rows, ideally 10x that) or raise alpha.",
            UserWarning,
            stacklevel=3,
        )
    if lam > 0:
        eye = torch.eye(d, dtype=g.dtype, device=g.device)
        chol, info = torch.linalg.cholesky_ex(g + lam * eye)
        if int(info) == 0:
            w = torch.cholesky_solve(c, chol)
        else:  # pragma: no cover - numerically indefinite; fall back to the eigen-solution
            evals, evecs = torch.linalg.eigh(g)
            w = evecs @ ((evecs.T @ c) / (evals.clamp_min(0) + lam)[:, None])
    else:
        w = torch.linalg.pinv(g, hermitian=True) @ c
    b = mean_y - (shift.to(w.dtype) + mean_x) @ w
    return RidgeProbe(weight=w.float(), bias=b.float(), n_samples=int(round(n)), penalty=lam)
