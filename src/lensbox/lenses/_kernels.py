"""The work-buffer kernels of the statistics engine (`lensbox.lenses._stats`).

Rows of logits live in float32 buffers whose vocabulary width is padded to a multiple of
1024; the kernels here read them: a readout that writes logits straight into a buffer, a
blocked top-k, packed rank counts, blocked batched dot products and the reference
distributions' normalisation.
"""

from typing import Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from ..core._adapter import ModelAdapter
from ._decoders import Decoder, EmbedTransposeDecoder, logit_softcap

# ----------------------------------------------------------------------------- layout
# Work buffers hold one chunk of (site, position) rows, site-major: row ``l * pc + p`` is
# site ``l0 + l`` at position ``p0 + p``. Their vocabulary width is padded to a multiple of
# VOCAB_QUANTUM so that (a) booleans can be counted as int64 words in groups of 128,
# (b) the blocked top-k sees whole 128-wide blocks and (c) sums against per-position
# vectors run as one batched matmul over 1024-wide blocks (see batched_dots).
VOCAB_QUANTUM = 1024
BLOCK = 128
# Padded vocabulary columns hold this logit: it never wins a comparison or a top-k, its
# exp() is (clamped to) ~1e-38 and that times it stays finite, so padding changes no statistic.
PAD_LOGIT = -1.0e30
# Centred logits are clamped here before exp(): float32 subnormals (exp below about -87)
# are very slow on x86, and such terms weigh under 1e-33 against the largest term, 1.
EXP_FLOOR = -87.0


class Readout:
    """Turns residual rows into float32 logits written straight into a work buffer.

    A decoder whose ``decode`` is the stock affine one (final norm, then ``W_U``/``b_U``,
    or ``W_E^T``) runs here as a final norm over whole streams (once, not per chunk)
    and one ``matmul(out=...)`` per chunk in float32, with the weights cast once. Any
    other decoder's ``decode`` is called on each chunk's raw rows.
    """

    def __init__(self, adapter: ModelAdapter, decoder: Decoder) -> None:
        self.adapter = adapter
        self.decoder = decoder
        self.weight: Optional[Tensor] = None  # [d_model, d_vocab] float32
        self.bias: Optional[Tensor] = None  # [d_vocab] float32; None when zero
        stock_adapter = type(adapter).decode is ModelAdapter.decode and type(adapter).unembed is ModelAdapter.unembed
        method = type(decoder).decode
        weight: Optional[Tensor] = None
        bias: Optional[Tensor] = None
        if stock_adapter and method is Decoder.decode:
            weight, bias = adapter.W_U, adapter.b_U
        elif method is EmbedTransposeDecoder.decode:
            weight = adapter.W_E.T
        self.cap = logit_softcap(adapter) if weight is not None else None  # decode() applies its own
        if weight is not None:
            self.weight = weight if weight.dtype == torch.float32 else weight.float()
            if bias is not None and bool(bias.any()):
                self.bias = bias.float()

    def same_as(self, other: "Readout") -> bool:
        """True when both give identical logits for identical rows."""
        return self.weight is not None and self.weight is other.weight and self.bias is other.bias

    def prepare(self, rows: Float[Tensor, "*lead d_model"]) -> Float[Tensor, "*lead d_model"]:
        """The row-wise part that can run on whole streams: the final norm (affine readouts)."""
        if self.weight is None:
            return rows
        return self.adapter.final_norm(rows).float()

    def logits_into(self, prepared: Float[Tensor, "n d_model"], out: Float[Tensor, "n width"]) -> None:
        """Write the logits of prepared rows into ``out[:, :d_vocab]``."""
        n_vocab = self.adapter.d_vocab
        target = out if out.shape[1] == n_vocab else out[:, :n_vocab]
        if self.weight is None:
            target.copy_(self.decoder.decode(self.adapter, prepared))
        elif self.bias is None:
            torch.matmul(prepared, self.weight, out=target)
        else:
            torch.addmm(self.bias, prepared, self.weight, out=target)
        if self.cap is not None and self.weight is not None:  # the model's logit soft-cap, in place
            target.div_(self.cap).tanh_().mul_(self.cap)


def padded_width(n_vocab: int) -> int:
    return -(-n_vocab // VOCAB_QUANTUM) * VOCAB_QUANTUM


def blocked_topk(logits: Float[Tensor, "n width"], k: int, n_vocab: int) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Top-k along the vocabulary, sorted, in about one cheap pass.

    The k largest entries lie inside the k blocks with the largest maxima (a block
    outside them is beaten by k block maxima at least as large as any of its entries),
    so only ``k * 128`` candidates per row go through a real top-k. Returns
    ``(values, block_ids, local)`` (ids = ``topk_ids(block_ids, local)``), or
    ``(values, ids, None)`` when k is too large for the blocked search.
    """
    n, width = logits.shape
    n_blocks = width // BLOCK
    if k > min(n_blocks, 32):
        values, ids = logits[:, :n_vocab].topk(k, dim=-1)
        return values, ids, None
    blocks = logits.view(n, n_blocks, BLOCK)
    block_ids = blocks.amax(dim=-1).topk(k, dim=-1, sorted=False).indices  # [n, k]
    cand = blocks.gather(1, block_ids[:, :, None].expand(n, k, BLOCK)).view(n, k * BLOCK)
    values, local = cand.topk(k, dim=-1)
    return values, block_ids, local


def topk_ids(block_ids: Tensor, local: Tensor) -> Tensor:
    """Vocabulary ids from the blocked top-k's (block of each candidate, candidate index)."""
    return block_ids.gather(-1, local // BLOCK) * BLOCK + local % BLOCK


def count_greater(values: Float[Tensor, "n width"], thresholds: Float[Tensor, "n t"], flags: Tensor) -> Tensor:
    """Per row and threshold, how many entries are strictly greater (a 0-based rank): ``[n, t]``.

    ``flags`` is a ``[g, n, width]`` boolean buffer; thresholds are counted ``g`` at a time
    (so ``g`` may be smaller than ``t``). Summing booleans is slow on CPU; instead each
    boolean row is read as int64 words of 8 flags, summed in groups of 128 words (every
    byte lane stays <= 128, no carries) and the byte lanes added at the end.
    """
    n, n_thresholds = thresholds.shape
    group = flags.shape[0]
    counts = []
    for j0 in range(0, n_thresholds, group):
        g = min(group, n_thresholds - j0)
        for j in range(g):
            torch.gt(values, thresholds[:, j0 + j : j0 + j + 1], out=flags[j])
        words = flags[:g].view(torch.int64).view(g, n, -1, 128).sum(dim=-1)  # [g, n, width / 1024]
        counts.append(words.view(torch.uint8).view(g, n, -1).sum(dim=-1))
    return torch.cat(counts).T if len(counts) > 1 else counts[0].T


def batched_dots(rows: Float[Tensor, "lc pc width"], vectors: Float[Tensor, "m pc width"]) -> Tensor:
    """``sum_v rows[l, p, v] * vectors[j, p, v]`` (each position's rows against its own vectors): ``[lc, pc, m]``.

    One batched matmul whose batch runs over (position, 1024-wide vocabulary block) and
    whose partial results are then summed: a single BLAS accumulation over ~49k float32
    terms loses ~1e-5 relative accuracy, 1024-term blocks keep it near 1e-7.
    """
    lc, pc, width = rows.shape
    m = vectors.shape[0]
    n_blocks = width // VOCAB_QUANTUM
    rows = rows.contiguous()
    vectors = vectors.contiguous()
    # Batch index p * n_blocks + j starts at element (p * width + j * 1024) in both tensors.
    a = rows.as_strided((pc * n_blocks, lc, VOCAB_QUANTUM), (VOCAB_QUANTUM, pc * width, 1))
    b = vectors.as_strided((pc * n_blocks, VOCAB_QUANTUM, m), (VOCAB_QUANTUM, 1, pc * width))
    parts = torch.bmm(a, b).view(pc, n_blocks, lc, m)
    return parts.sum(dim=1).transpose(0, 1)


def reference_parts(
    logits: Float[Tensor, "2 pc width"], lp_out: Float[Tensor, "2 pc width"], n_vocab: int
) -> Tuple[Tensor, Tensor, Tensor]:
    """Final (index 0) and input (index 1) distributions per position: log-probs written into
    ``lp_out``, probabilities, sum p log p and argmax; log-probs and probabilities are 0 in
    the padding columns (where ``logits`` holds PAD_LOGIT).

    Normalised with ``torch.sum`` (cascade summation) rather than ``log_softmax``, whose
    float32 normaliser can be ~2e-5 off over a 49k vocabulary: these probabilities weight
    every layer's log-probs (down to about -300 at the embeddings), so their normaliser
    must be right to float32 precision.
    """
    top, argmax = logits.max(dim=-1, keepdim=True)
    lp = torch.sub(logits, top, out=lp_out)
    p = lp.clamp(min=EXP_FLOOR).exp_()
    total = p.sum(dim=-1, keepdim=True)
    lp.sub_(total.log())
    p /= total
    if lp.shape[-1] > n_vocab:
        lp[..., n_vocab:] = 0.0
        p[..., n_vocab:] = 0.0
    neg_entropy = (p * lp).sum(-1)
    return p, neg_entropy, argmax[..., 0]


