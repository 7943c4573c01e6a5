"""ProbeEvaluation: held-out accuracy of input probes, and the token-frequency buckets it is split by.

Counts are kept per method, site, offset and bucket (``n``, ``correct1``, ``correct5``);
everything else (accuracies, tables, the JSON summary) is computed from them. Buckets are
training-text counts of the target token, cut at ``bucket_edges``.
"""

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import _html
from .._errors import InputError
from ..core._sites import Site
from ._offsets import offset_label

Method = Literal["ridge_dot", "ridge_cos", "softmax", "majority", "embed_t"]
Candidates = Literal["vocab", "seen"]
METHODS: tuple[Method, ...] = ("ridge_dot", "ridge_cos", "softmax", "majority", "embed_t")
METHOD_DESCRIPTIONS: dict[str, str] = {
    "ridge_dot": "ridge map to the embedding vector, decoded by the largest dot product with W_E rows",
    "ridge_cos": "ridge map to the embedding vector, decoded by the largest cosine with W_E rows",
    "softmax": "softmax classifier",
    "majority": "baseline: the most frequent target tokens of the training text",
    "embed_t": "baseline: the untrained decoder resid @ W_E^T",
}
DEFAULT_BUCKET_EDGES: tuple[int, ...] = (1, 10, 100, 1000)
TOP_K = 5


def bucket_labels(edges: Sequence[int]) -> list[str]:
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


def make_edges(edges: Sequence[int], rare_below: int, frequent_from: int) -> list[int]:
    """The sorted bucket edges: ``edges`` plus 1 (unseen), ``rare_below`` and ``frequent_from``."""
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
    sites: list[Site]
    offsets: list[int]
    methods: list[Method]
    buckets: list[str]
    bucket_edges: list[int]
    rare_below: int
    frequent_from: int
    n: Int[Tensor, "site offset bucket"]
    correct1: Int[Tensor, "method site offset bucket"]
    correct5: Int[Tensor, "method site offset bucket"]
    cos_true: Float[Tensor, "site offset"]
    relation: list[dict[str, Any]]
    main_method: Method
    candidates: Candidates
    n_train_tokens: int
    n_eval_tokens: int
    n_model_layers: int
    seconds: float = 0.0

    # ------------------------------------------------------------------ lookup
    def _groups(self) -> dict[str, list[int]]:
        lows = [0] + list(self.bucket_edges)
        rare = [i for i, lo in enumerate(lows) if lo >= 1 and (i < len(self.bucket_edges) and self.bucket_edges[i] <= self.rare_below)]
        frequent = [i for i, lo in enumerate(lows) if lo >= self.frequent_from]
        groups = {"all": list(range(len(self.buckets)))}
        for i, label in enumerate(self.buckets):
            groups[label] = [i]
        groups["rare"] = rare
        groups["frequent"] = frequent
        return groups

    def _method_index(self, method: Method | None) -> int:
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
        self, method: Method | None = None, *, k: int = 1, bucket: str = "all"
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

        rows: list[dict[str, Any]] = []
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
        self, method: Method | None = None, *, buckets: str | Sequence[str] = ("all", "rare", "frequent")
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

    def rare_vs_frequent(self, method: Method | None = None) -> Any:
        """Plot data for rare against frequent target tokens (bucket 'rare' / 'frequent')."""
        return self.accuracy_table(method, buckets=["rare", "frequent"])

    def relation_table(self) -> Any:
        """How each probe's weights relate to W_E / W_U (one row per kind, site and offset)."""
        import pandas as pd

        return pd.DataFrame(self.relation)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest: top-1/top-5 per method, site and offset (all tokens, rare, frequent)."""
        out: dict[str, Any] = {
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
            per: dict[str, Any] = {}
            for bucket in ("all", "rare", "frequent"):
                t1 = self.accuracy(method, k=1, bucket=bucket)
                t5 = self.accuracy(method, k=5, bucket=bucket)
                per[bucket] = {
                    f"{s.name}/{off}": [rounded(t1[si, oi]), rounded(t5[si, oi])]
                    for si, s in enumerate(self.sites)
                    for oi, off in enumerate(self.offsets)
                }
            out["accuracy"][method] = per
        for si, s in enumerate(self.sites):
            for oi, off in enumerate(self.offsets):
                out["cos_true"][f"{s.name}/{off}"] = rounded(self.cos_true[si, oi])
        return out

    def table(self, method: Method | None = None, *, k: int = 1, bucket: str = "all") -> str:
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

    def _repr_html_(self) -> str:
        """Jupyter's rich display: top-1 accuracy (%) of the main method per site (rows) and offset
        (columns), the untrained ``W_E^T`` baseline at offset 0, and the majority baseline."""
        m = self.main_method
        acc = self.accuracy(m, k=1)
        zero = self.offsets.index(0) if 0 in self.offsets else None
        base = self.accuracy("embed_t", k=1) if "embed_t" in self.methods and zero is not None else None
        header = ["site", *(f"k={offset_label(o)}" for o in self.offsets)] + (["W_E^T k=0"] if base is not None else [])
        rows = [[s.name, *(_pct(acc[si, oi]) for oi in range(len(self.offsets)))]
                + ([_pct(base[si, zero])] if base is not None else []) for si, s in enumerate(self.sites)]
        note = f"top-1 accuracy (%) of {m}: {METHOD_DESCRIPTIONS.get(m, m)}"
        if "majority" in self.methods and zero is not None:
            note += f"; majority baseline at k=0: {_pct(self.accuracy('majority', k=1)[0, zero]).strip()}%"
        return _html.block(
            _html.heading("ProbeEvaluation", f"of {self.model_name}: {self.n_eval_tokens} held-out tokens, "
                                             f"probes fitted on {self.n_train_tokens} tokens, candidates {self.candidates}"),
            _html.table(header, rows),
            note=note,
        )

    def __repr__(self) -> str:
        return (
            f"ProbeEvaluation(model={self.model_name!r}, sites={len(self.sites)}, offsets={self.offsets}, "
            f"methods={self.methods}, eval_tokens={self.n_eval_tokens}, train_tokens={self.n_train_tokens}, "
            f"candidates={self.candidates!r})\n" + self.table()
        )


def rounded(v: Any) -> float | None:
    f = float(v)
    return None if math.isnan(f) else round(f, 5)


def _pct(v: Any) -> str:
    f = float(v)
    return "-" if math.isnan(f) else f"{100 * f:.1f}"
