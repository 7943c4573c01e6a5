"""Evaluating input probes on held-out text: `evaluate_probe` and the streaming `ProbeEvaluator`.

Per site and offset the evaluator counts top-1 and top-5 hits of

* ``ridge_dot`` / ``ridge_cos``: the ridge prediction decoded by the largest dot product
  or cosine against the rows of ``W_E``;
* ``softmax``: the softmax classifier's top classes;
* ``majority``: the most frequent target tokens of the training text (a constant guess);
* ``embed_t``: the untrained decoder ``resid @ W_E^T`` (no probe at all);

split by how often the target token occurred in the training text (frequency buckets).
It also measures the mean cosine between the ridge prediction and the true embedding
vector; `lensbox.probes._relation` adds how the weights relate to ``W_E`` / ``W_U``.
Scores against the vocabulary are computed in row chunks, so no ``[positions, vocab]``
tensor is held for a whole batch. The result is a `ProbeEvaluation`.
"""

import math
import time
import warnings
from collections.abc import Mapping, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import InputError, NonFiniteError
from ..core import ModelAdapter, ModelLike, SitesSpec, adapt
from ..core._sites import Site, resolve_site
from ._offsets import check_offsets_fit, valid_positions
from ._probe import InputProbe, progress_bar
from ._probe_io import MAX_WEIGHT
from ._relation import embedding_relation
from ._result import (
    DEFAULT_BUCKET_EDGES,
    TOP_K,
    Candidates,
    Method,
    ProbeEvaluation,
    bucket_labels,
    make_edges,
    rounded,
)
from ._windows import ProbeInputs, model_windows


def topk_against(
    pred: Float[Tensor, "n e"],
    table: Float[Tensor, "m e"],
    *,
    k: int = TOP_K,
    inv_norm: Float[Tensor, "m"] | None = None,
    chunk_rows: int = 512,
) -> Int[Tensor, "n k"]:
    """Row indices of ``table`` with the largest ``pred @ table.T`` (times ``inv_norm`` when given), chunked."""
    out = []
    kk = min(k, table.shape[0])
    for rows in pred.split(max(1, chunk_rows)):
        scores = rows @ table.T
        if inv_norm is not None:
            scores = scores * inv_norm
        out.append(scores.topk(kk, dim=-1).indices)
    top = torch.cat(out) if out else torch.zeros(0, kk, dtype=torch.long, device=pred.device)
    if kk < k:
        top = torch.cat([top, top[:, -1:].expand(-1, k - kk)], dim=-1)
    return top


def evaluation_sites(probe: InputProbe, adapter: ModelAdapter, sites: SitesSpec) -> list[Site]:
    """The sites to evaluate: all fitted ones (``sites=None``) or a subset of them."""
    if sites is None:
        return list(probe.fitted_sites)
    chosen = adapter.sites(sites)
    extra = [s.name for s in chosen if s not in probe.fitted_sites]
    if extra:
        raise InputError(
            "The probe was not trained at some of these sites.",
            expected="a subset of " + ", ".join(s.name for s in probe.fitted_sites),
            received=", ".join(extra),
            fix="evaluate at trained sites, or train the probe there",
        )
    return chosen


def evaluation_methods(probe: InputProbe) -> tuple[list[Method], Method]:
    """The methods scored for this probe, and the main one (softmax when trained, else ridge with its decoding)."""
    methods: list[Method] = []
    if probe.ridge:
        methods += ["ridge_dot", "ridge_cos"]
    if probe.softmax:
        methods.append("softmax")
    methods += ["majority", "embed_t"]
    if probe.softmax:
        return methods, "softmax"
    return methods, ("ridge_cos" if probe.decode == "cosine" else "ridge_dot")


class ProbeEvaluator:
    """Streams batches of captured activations and counts a fitted probe's hits."""

    def __init__(
        self,
        probe: InputProbe,
        adapter: ModelAdapter,
        *,
        sites: SitesSpec = None,
        candidates: Candidates = "vocab",
        chunk_rows: int = 512,
        bucket_edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
        rare_below: int = 10,
        frequent_from: int = 100,
    ) -> None:
        probe.require_fitted()
        check_weights_usable(probe)
        self.probe = probe
        self.adapter = adapter
        self.sites = evaluation_sites(probe, adapter, sites)
        if candidates not in ("vocab", "seen"):
            raise InputError(
                "Unknown candidate set for decoding.",
                expected="'vocab' (every token) or 'seen' (tokens seen in training)",
                received=repr(candidates),
                fix="use candidates='vocab'",
            )
        self.candidates = candidates
        self.chunk_rows = int(chunk_rows)
        self.offsets = list(probe.offsets)
        self.methods, self.main_method = evaluation_methods(probe)
        self.edges = make_edges(bucket_edges, rare_below, frequent_from)
        self.rare_below, self.frequent_from = int(rare_below), int(frequent_from)
        self.labels = bucket_labels(self.edges)
        counts = probe.token_counts
        if counts is None or counts.shape[0] != adapter.d_vocab:
            raise InputError(
                "The probe's token counts do not match this vocabulary.",
                expected=f"{adapter.d_vocab} counts",
                received=f"{None if counts is None else counts.shape[0]}",
                fix="train the probe on this model",
            )
        self.bucket_of = torch.searchsorted(torch.tensor(self.edges), counts.cpu(), right=True)
        W_E = adapter.W_E.detach().float()
        self.device = W_E.device
        if candidates == "seen":
            self.cand = torch.nonzero(counts > 0).reshape(-1).to(self.device)
        else:
            self.cand = torch.arange(adapter.d_vocab, device=self.device)
        self.W_E = W_E
        self.table = W_E[self.cand] if candidates == "seen" else W_E
        self.inv_norm = 1.0 / self.table.norm(dim=-1).clamp_min(1e-12)
        self.majority = {
            k: torch.tensor((probe.majority.get(k, []) + [0] * TOP_K)[:TOP_K], dtype=torch.long) for k in self.offsets
        }
        shape = (len(self.methods), len(self.sites), len(self.offsets), len(self.labels))
        self.n = torch.zeros(shape[1:], dtype=torch.long)
        self.c1 = torch.zeros(shape, dtype=torch.long)
        self.c5 = torch.zeros(shape, dtype=torch.long)
        self.cos_sum = torch.zeros(len(self.sites), len(self.offsets), dtype=torch.float64)
        self.cos_n = torch.zeros(len(self.sites), len(self.offsets), dtype=torch.float64)
        self.n_tokens = 0
        self.seconds = 0.0

    def _add(self, mi: int, si: int, oi: int, top: Int[Tensor, "n k"], target: Int[Tensor, "n"], bucket: Int[Tensor, "n"]) -> None:
        nb = len(self.labels)
        hit1 = (top[:, 0] == target).long().cpu()
        hit5 = (top == target[:, None]).any(-1).long().cpu()
        self.c1[mi, si, oi] += torch.bincount(bucket, weights=hit1.double(), minlength=nb).round().long()
        self.c5[mi, si, oi] += torch.bincount(bucket, weights=hit5.double(), minlength=nb).round().long()

    def update(
        self,
        streams: Mapping[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> None:
        """Count hits for one batch of windows."""
        t0 = time.perf_counter()
        probe = self.probe
        length = int(tokens.shape[1])
        check_offsets_fit(self.offsets, length, probe.skip_first)
        skip = min(probe.skip_first, length)
        self.n_tokens += int(tokens.numel())
        nb = len(self.labels)
        mi = {m: i for i, m in enumerate(self.methods)}
        for si, site in enumerate(self.sites):
            if site not in streams:
                raise InputError(
                    "The captured streams lack a site the evaluation needs.",
                    expected=site.name,
                    received=", ".join(s.name for s in streams),
                    fix="capture every probed site",
                )
            act = streams[site].detach().float()[:, skip:]
            d = act.shape[-1]
            base_top = self.cand[topk_against(act.reshape(-1, d), self.table, chunk_rows=self.chunk_rows)]
            base_top = base_top.view(act.shape[0], act.shape[1], TOP_K)
            for oi, k in enumerate(self.offsets):
                lo, hi = valid_positions(length, k, probe.skip_first)
                if hi <= lo:
                    continue
                x = act[:, lo - skip : hi - skip].reshape(-1, d)
                target = tokens[:, lo + k : hi + k].reshape(-1)
                bucket = self.bucket_of[target.cpu()]
                self.n[si, oi] += torch.bincount(bucket, minlength=nb)
                self._add(mi["embed_t"], si, oi, base_top[:, lo - skip : hi - skip].reshape(-1, TOP_K), target, bucket)
                maj = self.majority[k].to(target.device)[None].expand(target.shape[0], -1)
                self._add(mi["majority"], si, oi, maj, target, bucket)
                rp = probe.ridge.get((site, k))
                if rp is not None:
                    pred = rp.predict(x)
                    tops_dot, tops_cos = [], []
                    for rows in pred.split(max(1, self.chunk_rows)):
                        scores = rows @ self.table.T
                        tops_dot.append(scores.topk(TOP_K, dim=-1).indices)
                        tops_cos.append((scores * self.inv_norm).topk(TOP_K, dim=-1).indices)
                    self._add(mi["ridge_dot"], si, oi, self.cand[torch.cat(tops_dot)], target, bucket)
                    self._add(mi["ridge_cos"], si, oi, self.cand[torch.cat(tops_cos)], target, bucket)
                    true = self.W_E[target]
                    cos = torch.nn.functional.cosine_similarity(pred, true, dim=-1)
                    self.cos_sum[si, oi] += float(cos.double().sum())
                    self.cos_n[si, oi] += cos.shape[0]
                sp = probe.softmax.get((site, k))
                if sp is not None:
                    tops = torch.cat([sp.predict_topk(rows, TOP_K) for rows in x.split(max(1, self.chunk_rows))])
                    self._add(mi["softmax"], si, oi, tops.to(target.device), target, bucket)
        self.seconds += time.perf_counter() - t0

    def result(self, *, rank: int = 64, relation: bool = True) -> ProbeEvaluation:
        cos_true = torch.where(self.cos_n > 0, self.cos_sum / self.cos_n.clamp_min(1), torch.full_like(self.cos_sum, math.nan))
        rel = embedding_relation(self.probe, self.adapter, rank=rank, sites=self.sites) if relation else []
        for row in rel:
            if row["kind"] == "ridge":
                si = self.sites.index(resolve_site(row["site"], self.adapter.n_layers))
                row["cos_true"] = rounded(cos_true[si, self.offsets.index(row["offset"])])
        return ProbeEvaluation(
            model_name=self.adapter.model_name,
            sites=list(self.sites),
            offsets=list(self.offsets),
            methods=list(self.methods),
            buckets=list(self.labels),
            bucket_edges=list(self.edges),
            rare_below=self.rare_below,
            frequent_from=self.frequent_from,
            n=self.n.clone(),
            correct1=self.c1.clone(),
            correct5=self.c5.clone(),
            cos_true=cos_true.float(),
            relation=rel,
            main_method=self.main_method,
            candidates=self.candidates,
            n_train_tokens=int(self.probe.training.get("n_tokens", 0)),
            n_eval_tokens=int(self.n_tokens),
            n_model_layers=int(self.adapter.n_layers),
            seconds=float(self.seconds),
        )


def check_weights_usable(probe: InputProbe) -> None:
    """Refuse weights that are not finite or so large that the float32 scores overflow (every token would
    then rank alike and the accuracy read 0 % without a word); the same bound as at load."""
    for name, t in probe.tensors().items():
        if not t.dtype.is_floating_point or not t.numel():
            continue
        top = float(t.detach().abs().max())
        if not math.isfinite(top) or top > MAX_WEIGHT:
            raise NonFiniteError(
                f"The probe cannot be evaluated: its tensor {name!r} holds values that are not finite or too large.",
                expected=f"finite values of magnitude <= {MAX_WEIGHT:.0e} (fitted weights are of order 1)",
                received=f"values up to {top:.3g}",
                fix="refit the probe (InputProbe.fit) or reload its saved copy; do not edit its weights by hand",
            )


def evaluate_probe(
    model: ModelLike | InputProbe,
    data: ProbeInputs | ModelLike,
    probe: InputProbe | ProbeInputs,
    *,
    window: int = 256,
    max_tokens: int | None = None,
    batch_size: int = 4,
    sites: SitesSpec = None,
    progress: bool = True,
    candidates: Candidates = "vocab",
    chunk_rows: int = 512,
    rank: int = 64,
    bucket_edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
    rare_below: int = 10,
    frequent_from: int = 100,
    store_metrics: bool = False,
) -> ProbeEvaluation:
    """Evaluate a fitted `InputProbe` on held-out ``data`` (texts or token windows).

    Streams windows through the model (one forward pass per batch for all sites) and
    returns a `ProbeEvaluation` with top-1/top-5 accuracy per method, site, offset and
    training-frequency bucket, plus the baselines and the relation to ``W_E`` / ``W_U``.
    A ``[n, pos]`` token tensor is used as its rows; text is cut into windows of ``window``
    tokens (at most ``max_tokens`` in all). ``candidates='seen'`` decodes the ridge probe and
    the ``W_E^T`` baseline only over tokens seen in training (as the restricted softmax does).

    The probe is left as it is, unless ``store_metrics=True``: then the evaluation's summary
    is kept as ``probe.metrics`` (saved with the probe).

    The order ``evaluate_probe(probe, model, data)`` of lensbox 0.1 still works for now, with a
    ``DeprecationWarning``.
    """
    if isinstance(model, InputProbe) and not isinstance(probe, InputProbe):
        warnings.warn(
            "evaluate_probe(probe, model, data) is deprecated: pass evaluate_probe(model, data, probe).",
            DeprecationWarning,
            stacklevel=2,
        )
        model, data, probe = data, probe, model  # type: ignore[assignment]
    if not isinstance(probe, InputProbe) or isinstance(model, InputProbe):
        raise InputError(
            "evaluate_probe needs a model, data and a fitted probe, in that order.",
            expected="evaluate_probe(model, data, probe)",
            received=f"({type(model).__name__}, {type(data).__name__}, {type(probe).__name__})",
            fix="pass the model first, then the held-out text or token windows, then the InputProbe",
        )
    adapter = adapt(model)  # type: ignore[arg-type]
    probe.require_fitted()
    probe.check_model(adapter)
    windows = model_windows(adapter, data, window=window, max_tokens=max_tokens)  # type: ignore[arg-type]
    check_offsets_fit(probe.offsets, int(windows.shape[1]), probe.skip_first)
    ev = ProbeEvaluator(
        probe, adapter, sites=sites, candidates=candidates, chunk_rows=chunk_rows,
        bucket_edges=bucket_edges, rare_below=rare_below, frequent_from=frequent_from,
    )
    bar = progress_bar(int(windows.shape[0]), "probe evaluation", progress)
    for chunk in windows.split(max(1, int(batch_size))):
        streams = adapter.run_and_capture(chunk, ev.sites)
        ev.update(streams, chunk)
        bar.update(int(chunk.shape[0]))
    bar.close()
    result = ev.result(rank=rank)
    if store_metrics:
        probe.metrics = result.summary()
    return result
