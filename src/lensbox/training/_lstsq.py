"""The least-squares start: closed-form affine translators from accumulated normal equations.

For each site the final residual stream is regressed on the site's stream (both
scale-normalised when the final norm is scale invariant); ``X^T X`` and ``X^T Y``
are summed over the windows (and over processes), then solved with a ridge
towards the identity. The same sums over held-out windows give the held-out squared
error of any candidate translator exactly (`LstsqStats.mse`), which is how
`._select` picks the ridge strength per site. ``solve`` also gives the bias-only and
low-rank translators (the tuned-lens paper's ablations).
"""

from typing import Literal, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ..core._adapter import ModelAdapter


def scale_invariant_norm(adapter: ModelAdapter) -> bool:
    """True when final_norm(c x) == final_norm(x) for c > 0 (LayerNorm, RMSNorm, their folded forms)."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(4, adapter.d_model, generator=gen).to(adapter.device, adapter.dtype) * 10
    with torch.no_grad():
        a, b = adapter.final_norm(x).float(), adapter.final_norm(3 * x).float()
    return bool(torch.allclose(a, b, rtol=1e-2, atol=1e-3 * float(a.abs().max()) + 1e-6))


class LstsqStats:
    """Accumulated normal equations for regressing the final stream on each site's stream.

    With a scale-invariant final norm the target for row ``i`` is ``f_i / rms(f_i)``
    and the regressors are ``[h_i, 1] / rms(h_i)``: each token counts once whatever
    its norm, and the fitted map sends ``h`` to ``rms(h) * f / rms(f)``, which the
    final norm cannot tell from ``f``.
    """

    def __init__(self, n_sites: int, d_model: int, scale_invariant: bool) -> None:
        self.xtx = torch.zeros(n_sites, d_model + 1, d_model + 1, dtype=torch.float64)
        self.xty = torch.zeros(n_sites, d_model + 1, d_model, dtype=torch.float64)
        self.yty = torch.zeros((), dtype=torch.float64)
        self.rows = 0
        self.scale_invariant = scale_invariant

    def add(self, H: Float[Tensor, "site n d_model"], F: Float[Tensor, "n d_model"]) -> None:
        H, F = H.float(), F.float()
        ones = torch.ones(*H.shape[:2], 1, dtype=H.dtype, device=H.device)
        X = torch.cat([H, ones], dim=-1)
        Y = F
        if self.scale_invariant:
            X = X / H.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
            Y = F / F.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
        self.xtx += torch.bmm(X.transpose(1, 2), X).double().cpu()
        self.xty += torch.matmul(X.transpose(1, 2), Y).double().cpu()
        self.yty += Y.double().pow(2).sum().cpu()
        self.rows += F.shape[0]

    def mse(self, weight: Float[Tensor, "site d_model d_model"], bias: Float[Tensor, "site d_model"]) -> Tensor:
        """Mean squared error per row of the translators (in the fitted, scale-normalised space) on these sums: ``[site]``."""
        S, d1, d = self.xty.shape
        M = torch.cat([torch.eye(d, dtype=torch.float64) + weight.double().transpose(1, 2), bias.double()[:, None, :]], 1)
        quad = (M * torch.bmm(self.xtx, M)).sum(dim=(1, 2))
        cross = (M * self.xty).sum(dim=(1, 2))
        return (self.yty - 2 * cross + quad) / max(self.rows, 1)

    def solve(
        self, ridge: float, kind: Literal["affine", "bias", "lowrank"] = "affine", rank: int = 16
    ) -> Tuple[Tensor, Tensor]:
        """Ridge-regularised (towards the identity) solutions as (weight [S,d,d], bias [S,d]) in translator form.

        ``kind='bias'``: ``weight = 0`` and the best bias alone; ``'lowrank'``: the ridge
        solution's weight truncated to its top ``rank`` singular directions, the bias refitted.
        """
        S, d1, d = self.xty.shape
        if kind == "bias":
            b = (self.xty[:, d] - self.xtx[:, d, :d]) / self.xtx[:, d, d, None].clamp_min(1e-12)
            return torch.zeros(S, d, d), b.float()
        eye_aug = torch.zeros(d1, d, dtype=torch.float64)
        eye_aug[:d, :d] = torch.eye(d, dtype=torch.float64)
        W = torch.zeros(S, d, d, dtype=torch.float64)
        b = torch.zeros(S, d, dtype=torch.float64)
        for s in range(S):
            A = self.xtx[s]
            lam = ridge * float(torch.diagonal(A).mean()) + 1e-12
            M = torch.linalg.solve(A + lam * torch.eye(d1, dtype=torch.float64), self.xty[s] + lam * eye_aug)
            W[s] = M[:d].T - torch.eye(d, dtype=torch.float64)
            b[s] = M[d]
        if kind == "lowrank":
            W = low_rank(W, rank)
            # the best bias for the truncated weight: mean residual of the fitted rows
            A = torch.eye(d, dtype=torch.float64) + W.transpose(1, 2)
            num = self.xty[:, d] - torch.einsum("sd,sde->se", self.xtx[:, d, :d], A)
            b = num / self.xtx[:, d, d, None].clamp_min(1e-12)
        return W.float(), b.float()


def low_rank(weight: Float[Tensor, "site d d"], rank: int) -> Float[Tensor, "site d d"]:
    """Each ``weight[s]`` truncated to its top ``rank`` singular directions (exact SVD)."""
    U, S, Vh = torch.linalg.svd(weight, full_matrices=False)
    r = min(rank, S.shape[-1])
    return (U[..., :r] * S[..., None, :r]) @ Vh[..., :r, :]
