"""The training objective: KL(final || lens), chunked over positions, with a hand-written gradient.

The final distribution is computed once per block of positions and reused by every
site; logits exist only as ``[chunk_rows, d_vocab]`` buffers. Values come from the
one KL / log-softmax kernel of `lensbox.lenses` (``log_softmax``,
``kl_divergence``); the gradient through the softmax is written by hand
(``softmax(z) - p``), so no ``[rows, vocab]`` tensor is kept for autograd.
"""

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..core._adapter import ModelAdapter
from ..core._sites import Site
from ..lenses import Translators, kl_divergence, log_softmax
from ._distributed import Dist


def capture(adapter: ModelAdapter, tokens: Int[Tensor, "batch pos"], sites: Sequence[Site]) -> Dict[Site, Tensor]:
    """The residual streams at ``sites`` and the final site for a batch of windows."""
    final = Site.resid_post(adapter.n_layers - 1)
    return adapter.run_and_capture(tokens.to(adapter.device), sorted(set(sites) | {final}))


def kl_rows(
    adapter: ModelAdapter,
    normed: Float[Tensor, "m d_model"],
    ref_logprobs: Float[Tensor, "m d_vocab"],
    ref_probs: Float[Tensor, "m d_vocab"],
    *,
    want_grad: bool,
) -> Tuple[Float[Tensor, "m"], Optional[Float[Tensor, "m d_model"]]]:
    """KL(p || softmax(unembed(normed))) per row and, optionally, its gradient w.r.t. ``normed``."""
    logq = log_softmax(adapter.unembed(normed))  # [m, V]
    kl = kl_divergence(ref_logprobs, logq, ref_probs=ref_probs)
    if not want_grad:
        return kl, None
    q = logq.exp_().sub_(ref_probs)  # d KL / d z = softmax(z) - p
    return kl, q @ adapter.W_U.to(q.dtype).T


def pair_mask(step: int, micro: int, seed: int, n: int, n_sites: int, k: int) -> Tensor:
    """Which (site, position) pairs of a global micro-batch are decoded: k random sites per position."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + step * 10_007 + micro) % (2**62))
    idx = torch.rand(n, n_sites, generator=gen).topk(k, dim=1).indices
    mask = torch.zeros(n, n_sites, dtype=torch.bool)
    mask.scatter_(1, idx, True)
    return mask.T.contiguous()  # [site, n]


def micro_batch_kl(
    adapter: ModelAdapter,
    tr: Translators,
    streams: Dict[Site, Tensor],
    *,
    mask: Optional[Tensor],
    weight: float,
    chunk_rows: int,
    want_grad: bool,
) -> Tuple[Float[Tensor, "site"], Float[Tensor, "site"]]:
    """KL summed per site over the selected (site, position) pairs of one micro-batch.

    With ``want_grad`` the gradient of ``weight * sum(KL)`` is accumulated into the
    translators' ``.grad``. ``mask`` ``[site, n]`` selects pairs (None: all).
    Returns (KL sum per site, pair count per site).
    """
    dev = tr.weight.device
    final = streams[Site.resid_post(adapter.n_layers - 1)]
    F = final.reshape(-1, final.shape[-1]).to(dev)
    n = F.shape[0]
    H = torch.stack([streams[s].reshape(n, -1).to(dev) for s in tr.sites]).float()  # [S, n, d]
    with torch.set_grad_enabled(want_grad):
        N = adapter.final_norm(tr.forward_stacked(H).to(final.dtype)).float()  # [S, n, d]
    Nd = N.detach()
    G = torch.zeros_like(Nd) if want_grad else None
    sums = torch.zeros(2, len(tr.sites), dtype=torch.float64)  # KL sum, pair count
    with torch.no_grad():
        for p0 in range(0, n, chunk_rows):
            p1 = min(n, p0 + chunk_rows)
            flp = log_softmax(adapter.decode(F[p0:p1]))
            _chunk(adapter, Nd, G, sums, flp, flp.exp(), p0, p1, mask, weight, chunk_rows, want_grad)
    if G is not None:
        gW, gb = torch.autograd.grad(N, [tr.weight, tr.bias], G)
        if tr.weight.grad is None:
            tr.weight.grad, tr.bias.grad = gW, gb
        else:
            tr.weight.grad.add_(gW)
            tr.bias.grad.add_(gb)
    return sums[0], sums[1]


def _chunk(
    adapter: ModelAdapter,
    Nd: Tensor,
    G: Optional[Tensor],
    sums: Tensor,
    flp: Tensor,
    P: Tensor,
    p0: int,
    p1: int,
    mask: Optional[Tensor],
    weight: float,
    chunk_rows: int,
    want_grad: bool,
) -> None:
    """One block of positions ``p0:p1``: every site (no mask) or the masked (site, position) pairs."""
    if mask is None:
        for si in range(Nd.shape[0]):
            kl, g = kl_rows(adapter, Nd[si, p0:p1], flp, P, want_grad=want_grad)
            sums[0, si] += kl.double().sum()
            sums[1, si] += p1 - p0
            if G is not None and g is not None:
                G[si, p0:p1] = g * weight
        return
    sel = mask[:, p0:p1].nonzero()  # [(site, pos)] pairs, site-major
    for c0 in range(0, sel.shape[0], chunk_rows):
        pairs = sel[c0 : c0 + chunk_rows]
        s_idx, pos = pairs[:, 0].to(Nd.device), pairs[:, 1].to(Nd.device)
        kl, g = kl_rows(adapter, Nd[s_idx, p0 + pos], flp[pos], P[pos], want_grad=want_grad)
        sums[0].index_add_(0, s_idx.cpu(), kl.double().cpu())
        sums[1].index_add_(0, s_idx.cpu(), torch.ones(len(s_idx), dtype=torch.float64))
        if G is not None and g is not None:
            G[s_idx, p0 + pos] = g * weight


def validation_kl(
    adapter: ModelAdapter,
    tr: Translators,
    windows: Int[Tensor, "n pos"],
    *,
    batch_size: int = 4,
    chunk_rows: int = 512,
    dist: Optional[Dist] = None,
) -> List[float]:
    """Mean KL(final || lens) per translator site over ``windows`` (no gradients)."""
    d = dist or Dist(False)
    tot = torch.zeros(2, len(tr.sites), dtype=torch.float64)
    mine = windows[d.rank :: d.world]
    for i in range(0, mine.shape[0], batch_size):
        streams = capture(adapter, mine[i : i + batch_size], tr.sites)
        kl, cnt = micro_batch_kl(adapter, tr, streams, mask=None, weight=0.0, chunk_rows=chunk_rows, want_grad=False)
        tot[0] += kl
        tot[1] += cnt
    d.all_sum(tot)
    return [float(tot[0, s] / tot[1, s]) if tot[1, s] > 0 else math.nan for s in range(len(tr.sites))]
