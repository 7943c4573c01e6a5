"""Evaluating input probes on held-out text, and how their maps relate to the embedding.

Per site and offset the evaluator counts top-1 and top-5 hits of

* ``ridge_dot`` / ``ridge_cos``: the ridge prediction decoded by the largest dot product
  or cosine against the rows of ``W_E``;
* ``softmax``: the softmax classifier's top classes;
* ``majority``: the most frequent target tokens of the training text (a constant guess);
* ``embed_t``: the untrained decoder ``resid @ W_E^T`` (no probe at all);

split by how often the target token occurred in the training text (frequency buckets),
so that rare and frequent tokens can be compared. It also measures the mean cosine
between the ridge prediction and the true embedding vector, and, from the weights alone,
the principal angles between each probe's input subspace and the top singular subspaces
of ``W_E`` and ``W_U``. Scores against the vocabulary are computed in row chunks, so no
``[positions, vocab]`` tensor is held for a whole batch.
"""

import dataclasses
import math
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..core._adapter import ModelAdapter, adapt
from .._errors import InputError
from ._probe import (
    InputProbe,
    ProbeInputs,
    check_offsets_fit,
    offset_label,
    probe_windows,
    valid_positions,
)
from ..core._sites import Site, resolve_site

METHODS: Tuple[str, ...] = ("ridge_dot", "ridge_cos", "softmax", "majority", "embed_t")
METHOD_DESCRIPTIONS: Dict[str, str] = {
    "ridge_dot": "ridge map to the embedding vector, decoded by the largest dot product with W_E rows",
    "ridge_cos": "ridge map to the embedding vector, decoded by the largest cosine with W_E rows",
    "softmax": "softmax classifier",
    "majority": "baseline: the most frequent target tokens of the training text",
    "embed_t": "baseline: the untrained decoder resid @ W_E^T",
}
DEFAULT_BUCKET_EDGES: Tuple[int, ...] = (1, 10, 100, 1000)
_K = 5


def bucket_labels(edges: Sequence[int]) -> List[str]:
    """Labels of the frequency buckets cut at ``edges`` (a count of 0 is 'unseen' when 1 is an edge)."""
    labels = []
    lows = [0] + list(edges)
    for i, lo in enumerate(lows):
        hi = edges[i] if i < len(edges) else None
        if hi is None:
            labels.append(f"{lo}+")
        elif lo == 0 and hi == 1:
            labels.append("unseen")
        elif hi - 1 == lo:
            labels.append(str(lo))
        else:
            labels.append(f"{lo}-{hi - 1}")
    return labels


def _make_edges(edges: Sequence[int], rare_below: int, frequent_from: int) -> List[int]:
    if not (1 <= rare_below <= frequent_from):
        raise InputError(
            "Rare/frequent thresholds are out of order.",
            expected="1 <= rare_below <= frequent_from (training counts)",
            received=f"rare_below={rare_below}, frequent_from={frequent_from}",
            fix="e.g. rare_below=10, frequent_from=100",
        )
    bad = [e for e in edges if isinstance(e, bool) or not isinstance(e, int) or e < 1]
    if bad:
        raise InputError(
            "Frequency bucket edges must be positive integers (training counts).",
            expected="e.g. (1, 10, 100, 1000)",
            received=repr(list(edges)),
            fix="pass increasing positive counts",
        )
    return sorted(set(int(e) for e in edges) | {1, int(rare_below), int(frequent_from)})


# ====================================================================== result
@dataclasses.dataclass
class ProbeEvaluation:
    """Held-out accuracy of input probes per method, site, offset and frequency bucket.

    ``n[site, offset, bucket]`` counts evaluated positions; ``correct1`` / ``correct5``
    count top-1 / top-5 hits per method. Buckets are training-text counts of the target
    token (``bucket_edges``); 'rare' groups seen tokens with fewer than ``rare_below``
    training occurrences and 'frequent' those with at least ``frequent_from``.
    ``cos_true`` is the mean cosine between the ridge prediction and the true embedding
    vector (NaN without a ridge probe). ``relation`` holds one row per fitted probe on how
    its weights relate to ``W_E`` and ``W_U``.
    """

    model_name: str
    sites: List[Site]
    offsets: List[int]
    methods: List[str]
    buckets: List[str]
    bucket_edges: List[int]
    rare_below: int
    frequent_from: int
    n: Int[Tensor, "site offset bucket"]
    correct1: Int[Tensor, "method site offset bucket"]
    correct5: Int[Tensor, "method site offset bucket"]
    cos_true: Float[Tensor, "site offset"]
    relation: List[Dict[str, Any]]
    main_method: str
    candidates: str
    n_train_tokens: int
    n_eval_tokens: int
    n_model_layers: int
    seconds: float = 0.0

    # ------------------------------------------------------------------ lookup
    def _groups(self) -> Dict[str, List[int]]:
        lows = [0] + list(self.bucket_edges)
        rare = [i for i, lo in enumerate(lows) if lo >= 1 and (i < len(self.bucket_edges) and self.bucket_edges[i] <= self.rare_below)]
        frequent = [i for i, lo in enumerate(lows) if lo >= self.frequent_from]
        groups = {"all": list(range(len(self.buckets)))}
        for i, label in enumerate(self.buckets):
            groups[label] = [i]
        groups["rare"] = rare
        groups["frequent"] = frequent
        return groups

    def _method_index(self, method: Optional[str]) -> int:
        m = self.main_method if method is None else method
        if m not in self.methods:
            raise InputError(
                f"No method {m!r} in this evaluation.",
                expected="one of " + ", ".join(self.methods),
                received=repr(m),
                fix="pick one of the expected methods",
            )
        return self.methods.index(m)

    def accuracy(
        self, method: Optional[str] = None, *, k: int = 1, bucket: str = "all"
    ) -> Float[Tensor, "site offset"]:
        """Top-``k`` accuracy (k = 1 or 5) per site and offset, within a bucket ('all', 'rare', 'frequent', a label)."""
        groups = self._groups()
        if bucket not in groups:
            raise InputError(
                f"Unknown bucket {bucket!r}.",
                expected="one of " + ", ".join(groups),
                received=repr(bucket),
                fix="use 'all', 'rare', 'frequent' or a bucket label",
            )
        if k not in (1, 5):
            raise InputError("Accuracy is kept for top-1 and top-5.", expected="k=1 or k=5", received=str(k), fix="use k=1 or 5")
        mi = self._method_index(method)
        idx = groups[bucket]
        hits = (self.correct1 if k == 1 else self.correct5)[mi][..., idx].sum(-1).double()
        total = self.n[..., idx].sum(-1).double()
        return torch.where(total > 0, hits / total.clamp_min(1), torch.full_like(hits, math.nan)).float()

    # ------------------------------------------------------------------ tables
    def to_pandas(self) -> Any:
        """Long table: one row per (method, site, offset, bucket) with n, top1, top5."""
        import pandas as pd

        rows: List[Dict[str, Any]] = []
        groups = self._groups()
        for bucket, idx in groups.items():
            n = self.n[..., idx].sum(-1)
            for mi, method in enumerate(self.methods):
                c1 = self.correct1[mi][..., idx].sum(-1)
                c5 = self.correct5[mi][..., idx].sum(-1)
                for si, site in enumerate(self.sites):
                    for oi, off in enumerate(self.offsets):
                        nn = int(n[si, oi])
                        rows.append(
                            {
                                "method": method,
                                "site": site.name,
                                "layer_depth": site.depth,
                                "offset": off,
                                "bucket": bucket,
                                "n": nn,
                                "top1": float(c1[si, oi]) / nn if nn else math.nan,
                                "top5": float(c5[si, oi]) / nn if nn else math.nan,
                            }
                        )
        return pd.DataFrame(rows)

    def accuracy_table(
        self, method: Optional[str] = None, *, buckets: Union[str, Sequence[str]] = ("all", "rare", "frequent")
    ) -> Any:
        """Plot data: columns site, layer_depth, offset, top1, top5, bucket (plus n, method) for one method.

        ``method`` defaults to the probe's main method (softmax when trained, else the
        ridge probe with its decoding rule). ``buckets`` picks the token-frequency buckets:
        by default 'all', 'rare' and 'frequent'; ``'every'`` keeps each fine bucket too.
        Feed it to ``lensbox.plot.plot_probe_accuracy``.
        """
        m = self.methods[self._method_index(method)]
        df = self.to_pandas()
        df = df[df["method"] == m]
        if buckets != "every":
            wanted = [buckets] if isinstance(buckets, str) else list(buckets)
            known = set(self._groups())
            bad = [b for b in wanted if b not in known]
            if bad:
                raise InputError(
                    f"Unknown bucket {bad[0]!r}.",
                    expected="'every' or names among " + ", ".join(known),
                    received=repr(buckets),
                    fix="use buckets=('all', 'rare', 'frequent')",
                )
            df = df[df["bucket"].isin(wanted)]
        return df[["site", "layer_depth", "offset", "top1", "top5", "bucket", "n", "method"]].reset_index(drop=True)

    def rare_vs_frequent(self, method: Optional[str] = None) -> Any:
        """Plot data for rare against frequent target tokens (bucket 'rare' / 'frequent')."""
        return self.accuracy_table(method, buckets=["rare", "frequent"])

    def relation_table(self) -> Any:
        """How each probe's weights relate to W_E / W_U (one row per kind, site and offset)."""
        import pandas as pd

        return pd.DataFrame(self.relation)

    def summary(self) -> Dict[str, Any]:
        """A JSON-ready digest: top-1/top-5 per method, site and offset (all tokens, rare, frequent)."""
        out: Dict[str, Any] = {
            "n_train_tokens": self.n_train_tokens,
            "n_eval_tokens": self.n_eval_tokens,
            "candidates": self.candidates,
            "main_method": self.main_method,
            "rare_below": self.rare_below,
            "frequent_from": self.frequent_from,
            "sites": [s.name for s in self.sites],
            "offsets": list(self.offsets),
            "accuracy": {},
            "cos_true": {},
        }
        for method in self.methods:
            per: Dict[str, Any] = {}
            for bucket in ("all", "rare", "frequent"):
                t1 = self.accuracy(method, k=1, bucket=bucket)
                t5 = self.accuracy(method, k=5, bucket=bucket)
                per[bucket] = {
                    f"{s.name}/{off}": [_r(t1[si, oi]), _r(t5[si, oi])]
                    for si, s in enumerate(self.sites)
                    for oi, off in enumerate(self.offsets)
                }
            out["accuracy"][method] = per
        for si, s in enumerate(self.sites):
            for oi, off in enumerate(self.offsets):
                out["cos_true"][f"{s.name}/{off}"] = _r(self.cos_true[si, oi])
        return out

    def table(self, method: Optional[str] = None, *, k: int = 1, bucket: str = "all") -> str:
        """A text grid: one row per site, one column per offset, top-k accuracy in percent."""
        m = self.methods[self._method_index(method)]
        acc = self.accuracy(m, k=k, bucket=bucket)
        base = self.accuracy("embed_t", k=k, bucket=bucket) if "embed_t" in self.methods else None
        head = "site".ljust(14) + "".join(f"k={offset_label(o)}".rjust(8) for o in self.offsets)
        if base is not None:
            head += "   W_E^T k=0".rjust(12)
        lines = [head, "-" * len(head)]
        zero = self.offsets.index(0) if 0 in self.offsets else None
        for si, s in enumerate(self.sites):
            cells = "".join(_pct(acc[si, oi]).rjust(8) for oi in range(len(self.offsets)))
            if base is not None and zero is not None:
                cells += _pct(base[si, zero]).rjust(12)
            lines.append(s.name.ljust(14) + cells)
        maj = self.accuracy("majority", k=k, bucket=bucket) if "majority" in self.methods else None
        note = f"top-{k} accuracy (%) of {m} ({METHOD_DESCRIPTIONS.get(m, m)}); bucket {bucket!r}"
        if maj is not None and zero is not None:
            note += f"; majority baseline at k=0: {_pct(maj[0, zero]).strip()}%"
        return "\n".join(lines + [note])

    def __repr__(self) -> str:
        return (
            f"ProbeEvaluation(model={self.model_name!r}, sites={len(self.sites)}, offsets={self.offsets}, "
            f"methods={self.methods}, eval_tokens={self.n_eval_tokens}, train_tokens={self.n_train_tokens}, "
            f"candidates={self.candidates!r})\n" + self.table()
        )


def _r(v: Any) -> Optional[float]:
    f = float(v)
    return None if math.isnan(f) else round(f, 5)


def _pct(v: Any) -> str:
    f = float(v)
    return "-" if math.isnan(f) else f"{100 * f:.1f}"


# ====================================================================== accumulation
def topk_against(
    pred: Float[Tensor, "n e"],
    table: Float[Tensor, "m e"],
    *,
    k: int = _K,
    inv_norm: Optional[Float[Tensor, "m"]] = None,
    chunk_rows: int = 256,
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


class ProbeEvaluator:
    """Streams batches of captured activations and counts a fitted probe's hits."""

    def __init__(
        self,
        probe: InputProbe,
        adapter: ModelAdapter,
        *,
        sites: Any = None,
        candidates: str = "vocab",
        chunk_rows: int = 256,
        bucket_edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
        rare_below: int = 10,
        frequent_from: int = 100,
    ) -> None:
        probe._require_fitted()
        self.probe = probe
        self.adapter = adapter
        if sites is None:
            self.sites = list(probe.fitted_sites)
        else:
            chosen = adapter.sites(sites)
            extra = [s.name for s in chosen if s not in probe.fitted_sites]
            if extra:
                raise InputError(
                    "The probe was not trained at some of these sites.",
                    expected="a subset of " + ", ".join(s.name for s in probe.fitted_sites),
                    received=", ".join(extra),
                    fix="evaluate at trained sites, or train the probe there",
                )
            self.sites = chosen
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
        self.methods: List[str] = []
        if probe.ridge:
            self.methods += ["ridge_dot", "ridge_cos"]
        if probe.softmax:
            self.methods.append("softmax")
        self.methods += ["majority", "embed_t"]
        if probe.softmax:
            self.main_method = "softmax"
        else:
            self.main_method = "ridge_cos" if probe.decode == "cosine" else "ridge_dot"
        self.edges = _make_edges(bucket_edges, rare_below, frequent_from)
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
            k: torch.tensor((probe.majority.get(k, []) + [0] * _K)[:_K], dtype=torch.long) for k in self.offsets
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
            base_top = base_top.view(act.shape[0], act.shape[1], _K)
            for oi, k in enumerate(self.offsets):
                lo, hi = valid_positions(length, k, probe.skip_first)
                if hi <= lo:
                    continue
                x = act[:, lo - skip : hi - skip].reshape(-1, d)
                target = tokens[:, lo + k : hi + k].reshape(-1)
                bucket = self.bucket_of[target.cpu()]
                self.n[si, oi] += torch.bincount(bucket, minlength=nb)
                self._add(mi["embed_t"], si, oi, base_top[:, lo - skip : hi - skip].reshape(-1, _K), target, bucket)
                maj = self.majority[k].to(target.device)[None].expand(target.shape[0], -1)
                self._add(mi["majority"], si, oi, maj, target, bucket)
                rp = probe.ridge.get((site, k))
                if rp is not None:
                    pred = rp.predict(x)
                    tops_dot, tops_cos = [], []
                    for rows in pred.split(max(1, self.chunk_rows)):
                        scores = rows @ self.table.T
                        tops_dot.append(scores.topk(_K, dim=-1).indices)
                        tops_cos.append((scores * self.inv_norm).topk(_K, dim=-1).indices)
                    self._add(mi["ridge_dot"], si, oi, self.cand[torch.cat(tops_dot)], target, bucket)
                    self._add(mi["ridge_cos"], si, oi, self.cand[torch.cat(tops_cos)], target, bucket)
                    true = self.W_E[target]
                    cos = torch.nn.functional.cosine_similarity(pred, true, dim=-1)
                    self.cos_sum[si, oi] += float(cos.double().sum())
                    self.cos_n[si, oi] += cos.shape[0]
                sp = probe.softmax.get((site, k))
                if sp is not None:
                    tops = torch.cat([sp.predict_topk(rows, _K) for rows in x.split(max(1, self.chunk_rows))])
                    self._add(mi["softmax"], si, oi, tops.to(target.device), target, bucket)
        self.seconds += time.perf_counter() - t0

    def result(self, *, rank: int = 64, relation: bool = True) -> ProbeEvaluation:
        cos_true = torch.where(self.cos_n > 0, self.cos_sum / self.cos_n.clamp_min(1), torch.full_like(self.cos_sum, math.nan))
        rel = embedding_relation(self.probe, self.adapter, rank=rank, sites=self.sites) if relation else []
        for row in rel:
            if row["kind"] == "ridge":
                si = self.sites.index(resolve_site(row["site"], self.adapter.n_layers))
                row["cos_true"] = _r(cos_true[si, self.offsets.index(row["offset"])])
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


# ====================================================================== relation to W_E / W_U
def top_singular_subspace(matrix: Float[Tensor, "a b"], rank: int, *, side: str) -> Float[Tensor, "dim r"]:
    """Orthonormal basis of the top-``rank`` singular subspace on one side of ``matrix``.

    ``side='left'`` spans columns (``a``-dimensional), ``side='right'`` spans rows (``b``-dimensional).
    Uses the eigendecomposition of the small Gram matrix, so a tall ``W_E`` costs ``O(V d^2)``.
    """
    m = matrix.detach().double()
    gram = m @ m.T if side == "left" else m.T @ m
    evals, evecs = torch.linalg.eigh(gram)
    r = min(int(rank), evecs.shape[1])
    return evecs[:, -r:].flip(-1).float()


def principal_angle_cosines(a: Float[Tensor, "d r"], b: Float[Tensor, "d s"]) -> Float[Tensor, "q"]:
    """Cosines of the principal angles between the column spans of orthonormal ``a`` and ``b``."""
    return torch.linalg.svdvals(a.double().T @ b.double()).float()


def embedding_relation(
    probe: InputProbe,
    model: Any,
    *,
    rank: int = 64,
    sites: Optional[Sequence[Site]] = None,
) -> List[Dict[str, Any]]:
    """How each fitted probe relates to the model's ``W_E`` and ``W_U``.

    For every (kind, site, offset): the probe's input subspace is the span of the top-``r``
    left singular vectors of its weight (the residual directions it reads). Reported:

    * ``mean_cos2_W_E`` / ``mean_cos2_W_U``: mean squared cosine of the principal angles
      between that subspace and the top-``r`` singular subspace of ``W_E`` (its rows) and
      ``W_U`` (its columns); ``chance`` = r / d_model is the expectation for a random subspace;
    * ``energy_in_W_E_top``: the share of the weight's squared norm lying in ``W_E``'s top-``r``
      subspace (chance r / d_model as well);
    * softmax only: ``class_cos_W_E`` / ``class_cos_W_U``, the mean cosine between the
      probe's weight column for a token and that token's ``W_E`` row / ``W_U`` column.
    """
    adapter = adapt(model)
    probe._require_fitted()
    d = adapter.d_model
    r = max(1, min(int(rank), d // 2))
    W_E = adapter.W_E.detach().float()
    W_U = adapter.W_U.detach().float()
    q_e = top_singular_subspace(W_E, r, side="right")
    q_u = top_singular_subspace(W_U, r, side="left")
    chance = r / d
    wanted = set(sites) if sites is not None else set(probe.fitted_sites)
    rows: List[Dict[str, Any]] = []
    items: List[Tuple[str, Site, int, Tensor, Optional[Tensor]]] = []
    for (s, k), p in probe.ridge.items():
        items.append(("ridge", s, k, p.weight, None))
    for (s, k), p in probe.softmax.items():
        items.append(("softmax", s, k, p.weight, p.classes))
    for kind, s, k, weight, classes in items:
        if s not in wanted:
            continue
        w = weight.to(q_e.device).float()
        q_p = top_singular_subspace(w, r, side="left")
        cos_e = principal_angle_cosines(q_p, q_e)
        cos_u = principal_angle_cosines(q_p, q_u)
        energy = float((q_e.T @ w).pow(2).sum() / w.pow(2).sum().clamp_min(1e-30))
        row: Dict[str, Any] = {
            "kind": kind,
            "site": s.name,
            "layer_depth": s.depth,
            "offset": k,
            "rank": r,
            "chance": round(chance, 5),
            "mean_cos2_W_E": round(float(cos_e.pow(2).mean()), 5),
            "mean_cos2_W_U": round(float(cos_u.pow(2).mean()), 5),
            "max_cos_W_E": round(float(cos_e.max()), 5),
            "energy_in_W_E_top": round(energy, 5),
        }
        if classes is not None:
            cls = classes.to(W_E.device)
            cols = w.T  # [classes, d]
            row["class_cos_W_E"] = round(float(torch.nn.functional.cosine_similarity(cols, W_E[cls], dim=-1).mean()), 5)
            row["class_cos_W_U"] = round(float(torch.nn.functional.cosine_similarity(cols, W_U.T[cls], dim=-1).mean()), 5)
        rows.append(row)
    return rows


# ====================================================================== entry point
def evaluate_probe(
    probe: InputProbe,
    model: Any,
    inputs: ProbeInputs,
    *,
    window: int = 128,
    max_tokens: Optional[int] = None,
    batch_size: int = 8,
    sites: Any = None,
    candidates: str = "vocab",
    chunk_rows: int = 256,
    rank: int = 64,
    bucket_edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
    rare_below: int = 10,
    frequent_from: int = 100,
    store_metrics: bool = True,
    progress: bool = False,
) -> ProbeEvaluation:
    """Evaluate a fitted :class:`InputProbe` on held-out ``inputs`` (texts or token windows).

    Streams windows through the model (one forward pass per batch for all sites) and
    returns a :class:`ProbeEvaluation` with top-1/top-5 accuracy per method, site, offset and
    training-frequency bucket, plus the baselines and the relation to ``W_E`` / ``W_U``.
    ``candidates='seen'`` decodes the ridge probe and the ``W_E^T`` baseline only over
    tokens seen in training (as the restricted softmax does). With ``store_metrics`` the
    summary is kept on the probe and saved with it.
    """
    adapter = adapt(model)
    probe._require_fitted()
    probe.check_model(adapter)
    windows = probe_windows(adapter, inputs, window=window, max_tokens=max_tokens)
    check_offsets_fit(probe.offsets, int(windows.shape[1]), probe.skip_first)
    ev = ProbeEvaluator(
        probe,
        adapter,
        sites=sites,
        candidates=candidates,
        chunk_rows=chunk_rows,
        bucket_edges=bucket_edges,
        rare_below=rare_below,
        frequent_from=frequent_from,
    )
    n = int(windows.shape[0])
    for i, chunk in enumerate(windows.split(max(1, int(batch_size)))):
        streams = adapter.run_and_capture(chunk, ev.sites)
        ev.update(streams, chunk)
        if progress:
            import sys

            print(f"[lensbox] probe evaluation: {min(n, (i + 1) * batch_size)}/{n} windows", file=sys.stderr, flush=True)
    result = ev.result(rank=rank)
    if store_metrics:
        probe.metrics = result.summary()
    return result


__all__ = [
    "METHODS",
    "ProbeEvaluation",
    "ProbeEvaluator",
    "embedding_relation",
    "evaluate_probe",
    "principal_angle_cosines",
    "top_singular_subspace",
]
