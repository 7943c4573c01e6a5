"""The chunked statistics engine behind every lens.

In one pass over chunks of (site, position) rows it computes, per site and position:
top-k tokens, log-prob and rank of the next token and of the final top-1, the rank of
the input token (the token at that position), KL to the
final and to the input-layer distribution in both directions, entropy and
cross-entropy. The work buffers (two float32 and two boolean ``[chunk_rows, vocab]``
arrays) are allocated once per call, whatever the sequence length; no
``[sites, positions, vocab]`` tensor ever exists.

Cost is dominated by the unembedding matmul. Per chunk the rest is a handful of passes
over the logits: a blocked top-k (which also yields the max), three packed comparison
counts for the ranks, one clamped ``exp``, two batched matmuls for every sum against the
final / input distributions (blocked over the vocabulary for float32 accuracy) and one
product-sum for the entropy. Per-row results are kept raw (max, sums, dot products) and
turned into statistics once at the end, so per-chunk work is a few large ops.

Numerics: the reference distributions are normalised with cascade sums (not
``log_softmax``, whose float32 normaliser is ~2e-5 off over a 49k vocabulary), and
``sum_v q_v log p_v`` keeps ``sum_v q_v`` explicitly; on SmolLM2, whose embedding-layer
logits reach +-200, every statistic stays within 1e-4 of a float64 computation.
"""

from typing import Dict, Literal, Optional, Sequence, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..core._adapter import ModelAdapter
from ._decoders import Decoder, logit_softcap
from ._kernels import (
    EXP_FLOOR,
    PAD_LOGIT,
    Readout,
    batched_dots,
    count_greater,
    padded_width,
    reference_parts,
    blocked_topk,
    topk_ids,
)
from .._errors import InputError, ModelError, NonFiniteError
from ..core._sites import Site

#: What to do with NaN / inf activations: raise NonFiniteError, or mark those cells' statistics NaN.
NonFinitePolicy = Literal["raise", "mark"]

STAT_FIELDS = (
    "next_logprob",
    "next_rank",
    "final_top1_logprob",
    "final_top1_rank",
    "input_rank",
    "kl_final",
    "kl_final_reverse",
    "kl_input",
    "kl_input_reverse",
    "entropy",
)


def check_finite(streams: Dict[Site, Tensor], on_nonfinite: str = "raise") -> Dict[Site, Tensor]:
    """Find NaN/inf activations; raise, or return a per-site ``[batch, pos]`` mask of bad cells."""
    if on_nonfinite not in {"raise", "mark"}:
        raise InputError(
            "Unknown on_nonfinite policy.",
            expected="'raise' or 'mark'",
            received=repr(on_nonfinite),
            fix="use on_nonfinite='raise' (default) or 'mark' (NaN statistics for those cells)",
        )
    acts = list(streams.values())
    if acts and len({(a.shape, a.dtype, a.device) for a in acts}) == 1:
        # One stacked check (a handful of ops) in the common, all-finite case.
        if bool(torch.isfinite(torch.stack(acts)).all()):
            return {}
    bad: Dict[Site, Tensor] = {}
    for site, act in streams.items():
        mask = ~torch.isfinite(act).all(dim=-1)
        if bool(mask.any()):
            bad[site] = mask
    if bad and on_nonfinite == "raise":
        details = []
        for site, mask in list(bad.items())[:6]:
            where = mask.nonzero().tolist()[:4]
            details.append(f"{site.name} at (batch, pos) {where}")
        raise NonFiniteError(
            "Activations contain NaN or inf; statistics over them would be meaningless.",
            expected="finite residual streams",
            received="; ".join(details) + (" ..." if len(bad) > 6 else ""),
            fix=(
                "check the model's dtype (fp16 overflows: try float32 or bfloat16) and inputs; or pass "
                "on_nonfinite='mark' to get NaN statistics for exactly those cells"
            ),
        )
    return bad


# ----------------------------------------------------------------------------- the KL kernel
def log_softmax(logits: Float[Tensor, "*rows vocab"]) -> Float[Tensor, "*rows vocab"]:
    """Float32 log-softmax over the last axis, normalised with a cascade sum.

    ``torch.log_softmax`` / ``torch.logsumexp`` compute the float32 normaliser with an error
    of up to ~2e-5 over a 49k vocabulary; weighted by logits of size ~50..200 that is a
    KL error of ~1e-3 nats. Here the logits are centred on their (detached) maximum and
    ``sum(exp(.))`` is a plain ``torch.sum`` (pairwise), which stays within float32
    rounding. Differentiable. This is the normalisation `lens_statistics` applies to
    its reference distributions, and what `kl_divergence` expects.
    """
    x = logits.float()
    centred = x - x.detach().amax(dim=-1, keepdim=True)
    total = centred.clamp(min=EXP_FLOOR).exp().sum(dim=-1, keepdim=True)
    return centred - total.log()


def kl_divergence(
    ref_logprobs: Float[Tensor, "*rows vocab"],
    logprobs: Float[Tensor, "*rows vocab"],
    *,
    ref_probs: Optional[Float[Tensor, "*rows vocab"]] = None,
) -> Float[Tensor, "*rows"]:
    """``KL(ref || other) = sum_v p_v (log p_v - log q_v)`` per row, in nats.

    Both arguments are log-probabilities from `log_softmax`. The sum runs over the
    difference of log-probabilities (never ``sum p log p - sum p z + lse``, which cancels
    large terms), so identical rows give exactly 0 and the final site of every lens is
    exact. ``ref_probs`` (``exp(ref_logprobs)``) may be passed when it is reused across calls.
    """
    p = ref_logprobs.exp() if ref_probs is None else ref_probs
    return (p * (ref_logprobs - logprobs)).sum(dim=-1)


# ----------------------------------------------------------------------------- refuse rather than guess
#: Largest difference (nats) allowed between the model's own log-probabilities and the decoded
#: final stream's, on the model's top tokens, for a float32 model. Exact decoding agrees to
#: ~2e-5 (float32 rounding of logits of size ~30-200: SmolLM2 measured); a missing soft-cap,
#: logit scale, bias or norm is off by 1e-2 to several nats. Half-precision models add four
#: rounding steps of their largest logit (see `_final_excess`).
FINAL_LOGPROB_TOLERANCE = 1e-3
_CHECK_TOP = 8


def _final_excess(
    model_logits: Float[Tensor, "pc d_vocab"], ours: Float[Tensor, "pc d_vocab"]
) -> Float[Tensor, "2"]:
    """``[largest excess over the tolerance, largest difference]`` between the model's log-probs and ``ours``,
    on the model's top tokens of each row (nats; excess > 0 means "does not reproduce")."""
    eps = torch.finfo(model_logits.dtype).eps if model_logits.dtype.is_floating_point else 0.0
    z = model_logits.to(ours.device).float()
    # Two passes over the rows (a fused logsumexp and a top-k): logsumexp's ~2e-5 normaliser error is far
    # below the tolerance, and only the top entries are normalised.
    top_z, top = z.topk(min(_CHECK_TOP, z.shape[-1]), dim=-1)
    theirs = top_z - torch.logsumexp(z, dim=-1, keepdim=True)
    diff = (theirs - ours.gather(-1, top)).abs().amax(dim=-1)
    tol = FINAL_LOGPROB_TOLERANCE + 4.0 * eps * z.abs().amax(dim=-1) if eps > 2e-7 else FINAL_LOGPROB_TOLERANCE
    return torch.stack([(diff - tol).max(), diff.max()])


def _refuse_mismatch(adapter: ModelAdapter, worst: Tensor) -> None:
    excess, diff = (float(v) for v in worst.cpu())
    if not excess > 0:
        return
    cap = logit_softcap(adapter)
    raise ModelError(
        f"Decoding the final residual stream of this {type(adapter.model).__name__} ({adapter.model_name}) does not "
        "reproduce the model's own output distribution, so every lens statistic would be wrong.",
        expected=f"final-site log-probabilities within {FINAL_LOGPROB_TOLERANCE:g} nats of log_softmax(model logits)",
        received=f"{diff:.4g} nats apart on the model's top tokens (logit soft-cap read from the config: {cap})",
        fix=(
            "the model changes its logits after the unembedding in a way lensbox does not read (a logit soft-cap or "
            "scale missing from cfg.output_logits_soft_cap, a custom final norm or unembedding bias); set the config "
            "field, convert the model with lensbox.to_hooked_transformer, or report the architecture"
        ),
    )


# Per-row raw quantities gathered chunk by chunk; the statistics are derived from them
# once at the end (few large ops instead of many small ones per chunk).
_RAW_FLOAT = {
    "top": None,  # [k] top-k raw logits, descending
    "chosen": 2,  # raw logits of the next token and the final top-1 (the input token's is only ranked)
    "q_dot_x": 2,  # sum_v q_v logits_v for q = final, input probabilities
    "sums": 3,  # sum_v e_v, sum_v e_v lp_final_v, sum_v e_v lp_input_v (e = exp(logits - max))
    "e_dot_c": 1,  # sum_v e_v (logits_v - max)
}


def lens_statistics(
    adapter: ModelAdapter,
    streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
    sites: Sequence[Site],
    tokens: Int[Tensor, "batch pos"],
    decoder: Decoder,
    *,
    final: Float[Tensor, "batch pos d_model"],
    k: int = 5,
    chunk_rows: int = 512,
    on_nonfinite: str = "raise",  # a NonFinitePolicy; str so that a bad value gets the InputError below
    model_logits: Optional[Float[Tensor, "batch pos d_vocab"]] = None,
) -> Dict[str, Tensor]:
    """Compute every lens statistic in bounded memory.

    Args:
        streams: per site, the residual stream as the decoder should see it (already
            passed through ``decoder.prepare``); must include ``Site.embed()``.
        final: the model's final residual stream, decoded with the plain final norm +
            unembedding to give the reference ("final") distribution.
        k: how many top tokens to keep per cell.
        chunk_rows: most (site, position) rows decoded at once; the work buffers take
            about ``chunk_rows x vocab x 10`` bytes (two float32, two boolean).
        model_logits: the logits the model's forward pass returned; when given, the decoded
            final stream must reproduce their log-softmax (`FINAL_LOGPROB_TOLERANCE`),
            checked chunk by chunk on the reference rows already decoded, else `ModelError`.

    Returns a dict of float32 / int64 CPU tensors shaped ``[batch, layer, pos]``
    (``top_ids`` / ``top_logprobs`` ``[batch, layer, pos, k]``, ``final_top1`` ``[batch, pos]``),
    whatever the model's dtype.
    """
    _check_arguments(adapter, streams, sites, k, chunk_rows)
    embed = Site.embed()
    final_site = Site.resid_post(adapter.n_layers - 1)
    bad = check_finite({**streams, final_site: final}, on_nonfinite)
    batch, n_pos = tokens.shape
    n_sites = len(sites)
    n_vocab = adapter.d_vocab
    dev = adapter.device

    # A chunk is sites l0:l1 x positions p0:p1 (all sites at once whenever they fit).
    sites_per_chunk = min(n_sites, chunk_rows)
    pos_chunk = min(n_pos, max(1, chunk_rows // sites_per_chunk))
    width = padded_width(n_vocab)
    logits_buf, exp_buf, flag_buf, ref_buf, lp_buf = _buffers(pos_chunk * sites_per_chunk, pos_chunk, width, dev)
    acc = _Raw((batch, n_sites, n_pos), k, dev)
    next_tokens = torch.zeros((batch, n_pos), dtype=torch.long, device=dev)
    next_tokens[:, :-1] = tokens[:, 1:].to(dev)
    input_tokens = tokens.to(dev)

    readout = Readout(adapter, decoder)
    reference = readout if type(decoder).decode is Decoder.decode else Readout(adapter, Decoder())
    one_group = sites_per_chunk == n_sites
    index_of = {s: i for i, s in enumerate(sites)}
    # With every site in one chunk, the final and input rows are decoded there anyway.
    reuse_final = one_group and final_site in index_of and reference.same_as(readout) and streams[final_site] is final
    reuse_input = one_group and embed in index_of
    _check_logits_shape(adapter, model_logits, (batch, n_pos, n_vocab))
    with torch.no_grad():
        for b in range(batch):
            # [site, pos, d_model] for this batch row, final-normed once for affine readouts.
            prepared = readout.prepare(torch.stack([streams[s][b] for s in sites]))
            for p0 in range(0, n_pos, pos_chunk):
                p1 = min(n_pos, p0 + pos_chunk)
                pc = p1 - p0
                first: Optional[Tensor] = None
                if one_group:
                    first = _chunk_logits(readout, prepared, 0, n_sites, p0, p1, logits_buf)
                    by_site = first.view(n_sites, pc, width)
                ref_logits = ref_buf[: 2 * pc].view(2, pc, width)
                if reuse_final:
                    ref_logits[0].copy_(by_site[index_of[final_site]])
                else:
                    reference.logits_into(reference.prepare(final[b, p0:p1]), ref_logits[0])
                if reuse_input:
                    ref_logits[1].copy_(by_site[index_of[embed]])
                else:
                    readout.logits_into(readout.prepare(streams[embed][b, p0:p1]), ref_logits[1])
                lp_rows = lp_buf[:, :pc]  # [1, final log-probs, input log-probs]
                p_rows, argmax = acc.reference(b, p0, p1, ref_logits, lp_rows, n_vocab)
                if model_logits is not None:
                    acc.worst = torch.maximum(acc.worst, _final_excess(model_logits[b, p0:p1], lp_rows[1, :, :n_vocab]))
                picks = torch.stack([next_tokens[b, p0:p1], argmax, input_tokens[b, p0:p1]], dim=-1)  # [pc, 3]
                for l0 in range(0, n_sites, sites_per_chunk):
                    l1 = min(n_sites, l0 + sites_per_chunk)
                    logits = first if first is not None else _chunk_logits(readout, prepared, l0, l1, p0, p1, logits_buf)
                    first = None
                    acc.add(logits, (b, slice(l0, l1), slice(p0, p1)), picks, p_rows, lp_rows, flag_buf, exp_buf, n_vocab)
    if model_logits is not None:
        _refuse_mismatch(adapter, acc.worst)
    res = {name: t.cpu() for name, t in acc.finish().items()}
    # Where a site's distribution IS the reference (same stream, same decoding), its KL to
    # that reference is exactly 0; the fused sums above would leave float32 rounding
    # (~1e-5 with logits of size ~100), so write the exact value.
    if final_site in index_of and streams[final_site] is final and reference is readout:
        for name in ("kl_final", "kl_final_reverse"):
            res[name][:, index_of[final_site]] = 0.0
    if embed in index_of:
        for name in ("kl_input", "kl_input_reverse"):
            res[name][:, index_of[embed]] = 0.0
    if bad:
        _mark_bad(res, bad, sites, adapter.n_layers)
    return res


def _check_arguments(
    adapter: ModelAdapter, streams: Dict[Site, Tensor], sites: Sequence[Site], k: int, chunk_rows: int
) -> None:
    if k < 1 or k > adapter.d_vocab:
        raise InputError("top-k out of range.", expected=f"1 <= k <= {adapter.d_vocab}", received=str(k), fix="use k=5")
    if chunk_rows < 1:
        raise InputError("chunk_rows must be positive.", expected=">= 1", received=str(chunk_rows), fix="use 512")
    if not sites:
        raise InputError(
            "No sites to decode.", expected="at least one residual-stream site", received="[]", fix="pass sites=None for all"
        )
    if Site.embed() not in streams:
        raise InputError(
            "The input-layer stream is needed for KL-to-input statistics.",
            expected="streams to contain Site.embed()",
            received=str(sorted(s.name for s in streams)),
            fix="capture the 'embed' site too",
        )


def _buffers(max_rows: int, pos_chunk: int, width: int, dev: torch.device) -> Tuple[Tensor, ...]:
    """The work buffers, allocated once per call: logits, exp, two flag rows, reference logits, reference log-probs."""
    return (
        torch.empty((max_rows, width), device=dev),
        torch.empty((max_rows, width), device=dev),
        torch.empty((2, max_rows, width), dtype=torch.bool, device=dev),
        torch.full((2 * pos_chunk, width), PAD_LOGIT, device=dev),
        torch.ones((3, pos_chunk, width), device=dev),  # row 0 stays 1 (for sum e)
    )


def _check_logits_shape(adapter: ModelAdapter, model_logits: Optional[Tensor], shape: Tuple[int, int, int]) -> None:
    if model_logits is not None and tuple(model_logits.shape) != shape:
        raise ModelError(
            "The model's logits do not match its decoder's vocabulary.",
            expected=f"logits of shape {list(shape)}",
            received=f"{list(model_logits.shape)} from {type(adapter.model).__name__}",
            fix="lensbox cannot check this model's decoding; report the architecture",
        )


class _Raw:
    """Per-cell raw quantities (``[batch, site, pos, .]``), filled chunk by chunk; `finish` turns them into statistics."""

    def __init__(self, cells: Tuple[int, int, int], k: int, dev: torch.device) -> None:
        self.cells, self.k, self.dev = cells, k, dev
        self.raw = {name: torch.zeros((*cells, k if m is None else m), device=dev) for name, m in _RAW_FLOAT.items()}
        self.ranks = torch.zeros((*cells, 3), dtype=torch.long, device=dev)  # next token, final top-1, input token
        self.top_ids = torch.zeros((*cells, k), dtype=torch.long, device=dev)
        self.top_local: Optional[Tensor] = None
        batch, _, n_pos = cells
        self.ref_neg_h = torch.zeros((batch, 2, n_pos), device=dev)  # sum p log p of the final / input distribution
        self.ref_p_sum = torch.zeros((batch, 2, n_pos), device=dev)
        self.final_top1 = torch.zeros((batch, n_pos), dtype=torch.long, device=dev)
        self.worst = torch.full((2,), -1.0, device=dev)  # the final-site check (see _final_excess)

    def reference(self, b: int, p0: int, p1: int, ref_logits: Tensor, lp_rows: Tensor, n_vocab: int) -> Tuple[Tensor, Tensor]:
        """Normalise the final and input rows into ``lp_rows[1:]``; returns their probabilities and the final argmax."""
        p_rows, neg_h, argmax = reference_parts(ref_logits, lp_rows[1:], n_vocab)
        self.final_top1[b, p0:p1] = argmax[0]
        self.ref_neg_h[b, :, p0:p1] = neg_h
        self.ref_p_sum[b, :, p0:p1] = p_rows.sum(dim=-1)
        return p_rows, argmax[0]

    def add(
        self,
        logits: Tensor,
        cell: Tuple[int, slice, slice],
        picks: Tensor,
        p_rows: Tensor,
        lp_rows: Tensor,
        flag_buf: Tensor,
        exp_buf: Tensor,
        n_vocab: int,
    ) -> None:
        """Take one chunk's rows (``logits``, site-major, overwritten in place) into the raw quantities of ``cell``."""
        k, raw = self.k, self.raw
        lc, pc = cell[1].stop - cell[1].start, cell[2].stop - cell[2].start
        n, width = lc * pc, logits.shape[1]
        # Everything that needs the raw logits first ...
        top_values, top_ids, top_local = blocked_topk(logits, k, n_vocab)
        raw["top"][cell] = top_values.view(lc, pc, k)
        self.top_ids[cell] = top_ids.view(lc, pc, k)
        if top_local is not None:
            if self.top_local is None:
                self.top_local = torch.zeros((*self.cells, k), dtype=torch.long, device=self.dev)
            self.top_local[cell] = top_local.view(lc, pc, k)
        chosen = logits.gather(1, picks[None].expand(lc, pc, 3).reshape(n, 3))
        raw["chosen"][cell] = chosen[:, :2].view(lc, pc, 2)
        self.ranks[cell] = count_greater(logits, chosen, flag_buf[:, :n]).view(lc, pc, 3)
        raw["q_dot_x"][cell] = batched_dots(logits.view(lc, pc, width), p_rows)
        # ... then centre, exponentiate and take the sums over e = exp(logits - max).
        centred = logits.sub_(top_values[:, :1])
        e = torch.exp(centred.clamp_(min=EXP_FLOOR), out=exp_buf[:n])
        raw["sums"][cell] = batched_dots(e.view(lc, pc, width), lp_rows)
        raw["e_dot_c"][cell] = torch.mul(e, centred, out=centred).sum(dim=-1).view(lc, pc, 1)

    def finish(self) -> Dict[str, Tensor]:
        return _finish(
            self.raw, self.ranks, self.top_ids, self.top_local, self.ref_neg_h, self.ref_p_sum, self.final_top1
        )


def _chunk_logits(
    readout: Readout,
    prepared: Float[Tensor, "site pos d_model"],
    l0: int,
    l1: int,
    p0: int,
    p1: int,
    buf: Tensor,
) -> Tensor:
    """Decode sites ``l0:l1`` x positions ``p0:p1`` into ``buf``, site-major; returns the used rows."""
    rows = prepared[l0:l1, p0:p1]
    n = rows.shape[0] * rows.shape[1]
    logits = buf[:n]
    readout.logits_into(rows.reshape(n, -1), logits)
    n_vocab = readout.adapter.d_vocab
    if logits.shape[1] > n_vocab:  # the previous chunk's in-place work overwrote the padding
        logits[:, n_vocab:].fill_(PAD_LOGIT)
    return logits


def _finish(
    raw: Dict[str, Tensor],
    ranks: Tensor,
    top_ids: Tensor,
    top_local: Optional[Tensor],
    ref_neg_h: Tensor,
    ref_p_sum: Tensor,
    final_top1: Tensor,
) -> Dict[str, Tensor]:
    """The statistics from the per-row raw quantities, all cells at once.

    With ``c = logits - max``, ``e = exp(c)`` and ``S = sum e``: lse = max + log S,
    log p = logits - lse, sum p log p = (e . c) / S - log S, and for a reference
    distribution q, sum q log p = (q . logits) - lse * sum q (sum q is 1 only up to float32
    rounding, and lse can be ~200, so it is kept).
    """
    total = raw["sums"][..., 0]
    log_total = total.log()
    lse = raw["top"][..., 0] + log_total  # [batch, site, pos]
    p_dot_lp = raw["e_dot_c"][..., 0] / total - log_total  # -entropy
    p_dot_qlp = raw["sums"][..., 1:] / total[..., None]  # [.., 2]: sum p log q
    q_sum = ref_p_sum.transpose(1, 2)[:, None]  # [batch, 1, pos, 2]
    q_dot_lp = raw["q_dot_x"] - lse[..., None] * q_sum  # [.., 2]: sum q log p
    q_neg_h = ref_neg_h.transpose(1, 2)[:, None]  # [batch, 1, pos, 2]: sum q log q
    kl = q_neg_h - q_dot_lp  # KL(q || layer)
    kl_reverse = p_dot_lp[..., None] - p_dot_qlp  # KL(layer || q)
    chosen = raw["chosen"] - lse[..., None]
    no_next = torch.zeros_like(final_top1, dtype=torch.bool)
    no_next[:, -1] = True
    no_next = no_next[:, None].expand_as(lse)
    if top_local is not None:
        top_ids = topk_ids(top_ids, top_local)
    res = {
        "next_logprob": chosen[..., 0].masked_fill(no_next, float("nan")),
        "next_rank": ranks[..., 0].masked_fill(no_next, -1),
        "final_top1_logprob": chosen[..., 1],
        "final_top1_rank": ranks[..., 1],
        "input_rank": ranks[..., 2],
        # KL can come out a hair below zero from rounding; clamp only that rounding.
        "kl_final": kl[..., 0].clamp(min=0.0),
        "kl_final_reverse": kl_reverse[..., 0].clamp(min=0.0),
        "kl_input": kl[..., 1].clamp(min=0.0),
        "kl_input_reverse": kl_reverse[..., 1].clamp(min=0.0),
        "entropy": -p_dot_lp,
        "top_ids": top_ids,
        "top_logprobs": raw["top"] - lse[..., None],
        "top_logits": raw["top"],
        "final_top1": final_top1,
    }
    res["cross_entropy"] = -res["next_logprob"]
    return res


def _mark_bad(res: Dict[str, Tensor], bad: Dict[Site, Tensor], sites: Sequence[Site], n_layers: int) -> None:
    """Set statistics of non-finite cells to NaN (ranks and token ids -1) so they cannot be averaged in silently."""

    def blank(names: Sequence[str], mask: Tensor, site_index: Optional[int]) -> None:
        for name in names:
            t = res[name]
            fill = float("nan") if t.dtype.is_floating_point else -1
            if site_index is None:  # every site at those (batch, pos) cells
                t.transpose(0, 1)[:, mask] = fill
            else:
                t[:, site_index][mask] = fill

    per_site = [name for name, t in res.items() if t.ndim >= 3]
    for i, site in enumerate(sites):
        if site in bad:
            blank(per_site, bad[site].cpu(), i)
    final_site = Site.resid_post(n_layers - 1)
    if final_site in bad:
        blank(["kl_final", "kl_final_reverse", "final_top1_logprob", "final_top1_rank"], bad[final_site].cpu(), None)
        # The model's own top-1 is undefined there: -1 (never a real token id), not argmax's 0.
        res["final_top1"][bad[final_site].cpu()] = -1
    if Site.embed() in bad:
        blank(["kl_input", "kl_input_reverse"], bad[Site.embed()].cpu(), None)
