"""Evaluating lenses side by side on held-out text.

:func:`evaluate` runs the model once per batch of windows, captures the residual
streams every lens needs, and reports per lens and site, averaged over all positions:

* ``kl``: mean KL(final || lens) in nats;
* ``ce``: mean cross-entropy of the lens's distribution against the next token (nats),
  and ``bpb``: the same total in bits divided by the UTF-8 bytes of the predicted tokens;
* ``top1_agree``: how often the lens's top-1 token is the final layer's top-1.

Lenses are given by name: ``'logit'`` (the logit lens), a :class:`~lensbox.TunedLens`
or a saved lens directory, any :class:`~lensbox.Decoder`, or a TransformerLens
``JacobianLens`` (its transport matrices then the model's decoder).
"""

import dataclasses
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch

from ..core._adapter import ModelAdapter, adapt
from ._decoders import Decoder, ResidStream, SiteMapDecoder
from .._errors import InputError
from ._logit import LogitLens
from ._metrics import get_metric, metric_names
from ._stats import kl_divergence, log_softmax
from ..core._sites import Site, SiteKind
from ._tuned import TunedDecoder, TunedLens

#: The metrics a LensEvaluation reports (name -> description), from the metric table.
METRIC_NAMES = {m: get_metric(m).description for m in metric_names("evaluation")}


class JacobianDecoder(SiteMapDecoder):
    """Decode through a TransformerLens ``JacobianLens``: ``J[l] h`` for ``resid_post.l``, then final norm + W_U."""

    name = "jacobian"

    def __init__(self, jlens: Any) -> None:
        self.jlens = jlens

    def layers(self) -> List[int]:
        return sorted(int(k) for k in self.jlens.jacobians)

    def map_stream(self, adapter: ModelAdapter, site: Site, resid: ResidStream) -> ResidStream:
        if site.kind is not SiteKind.RESID_POST or site.layer not in self.jlens.jacobians:
            raise InputError(
                f"The Jacobian lens has no transport matrix for {site.name}.",
                expected="resid_post.l for l in " + ", ".join(str(x) for x in self.layers()),
                received=site.name,
                fix="evaluate the Jacobian lens only on its fitted layers",
            )
        return self.jlens.transport(resid, int(site.layer))

    def describe(self) -> str:
        return "Jacobian-lens transport (TransformerLens) + final norm + unembedding"


def _is_jacobian_lens(obj: Any) -> bool:
    return hasattr(obj, "jacobians") and hasattr(obj, "transport") and isinstance(getattr(obj, "jacobians"), Mapping)


def _resolve_lens(spec: Any, adapter: ModelAdapter) -> Tuple[Decoder, List[Site]]:
    """A decoder and the sites it can decode on this model."""
    final = Site.resid_post(adapter.n_layers - 1)
    every = adapter.sites(None)
    if spec is None or (isinstance(spec, str) and spec in {"logit", "logit_lens"}):
        return Decoder(), every
    if isinstance(spec, (str, os.PathLike)):
        path = Path(spec).expanduser()
        if (path / "params.pt").is_file() and not (path / "translators.safetensors").is_file():
            spec = TunedLens.from_tuned_lens(path, adapter.model)
        else:
            spec = TunedLens.load(path)
    if isinstance(spec, TunedLens):
        spec.check_model(adapter)
        tr = spec._require()
        return TunedDecoder(tr), sorted(set(tr.sites) | {final})
    if isinstance(spec, LogitLens):
        return spec.decoder, every
    if _is_jacobian_lens(spec) or isinstance(spec, JacobianDecoder):
        dec = spec if isinstance(spec, JacobianDecoder) else JacobianDecoder(spec)
        return dec, sorted({Site.resid_post(l) for l in dec.layers() if 0 <= l < adapter.n_layers} | {final})
    if isinstance(spec, Decoder):
        return spec, every
    raise InputError(
        "Cannot evaluate this lens.",
        expected="'logit', a TunedLens, a lens directory, a Decoder, or a TransformerLens JacobianLens",
        received=f"{type(spec).__name__}: {str(spec)[:60]!r}",
        fix="e.g. lenses={'logit': 'logit', 'tuned': lens}",
    )


@dataclasses.dataclass
class LensEvaluation:
    """Per-lens, per-site held-out statistics from :func:`evaluate`.

    ``values[lens][metric]`` is a list aligned with ``sites`` (NaN where the lens has
    no such site). ``tokens`` positions were evaluated (``ce`` over ``tokens - windows``
    next-token predictions covering ``target_bytes`` bytes).
    """

    model_name: str
    lenses: List[str]
    sites: List[Site]
    values: Dict[str, Dict[str, List[float]]]
    tokens: int
    windows: int
    target_bytes: int

    def mean(self, lens: str, metric: str = "kl", *, include_final: bool = False) -> float:
        """Mean of ``metric`` over the lens's sites (the final site excluded unless asked)."""
        last = max(s.depth for s in self.sites)
        vals = [
            v
            for s, v in zip(self.sites, self.values[lens][metric])
            if not math.isnan(v) and (include_final or s.depth != last)
        ]
        return sum(vals) / len(vals) if vals else math.nan

    def to_pandas(self) -> Any:
        """Long table: one row per (lens, site) with kl, ce, bpb, top1_agree."""
        import pandas as pd

        rows = []
        for lens in self.lenses:
            for i, s in enumerate(self.sites):
                row: Dict[str, Any] = {"lens": lens, "site": s.name}
                for m in METRIC_NAMES:
                    row[m] = self.values[lens][m][i]
                rows.append(row)
        return pd.DataFrame(rows)

    def table(self, metric: str = "kl") -> Any:
        """Wide table: sites as rows, lenses as columns, for one metric."""
        df = self.to_pandas()
        wide = df.pivot(index="site", columns="lens", values=metric)
        order = [s.name for s in self.sites]
        return wide.reindex(order)[self.lenses]

    def to_dict(self) -> Dict[str, Any]:
        return {
            "model_name": self.model_name,
            "lenses": self.lenses,
            "sites": [s.name for s in self.sites],
            "values": {
                lens: {m: [None if math.isnan(v) else v for v in vals] for m, vals in per.items()}
                for lens, per in self.values.items()
            },
            "mean_kl": {lens: self.mean(lens, "kl") for lens in self.lenses},
            "tokens": self.tokens,
            "windows": self.windows,
            "target_bytes": self.target_bytes,
        }

    def __repr__(self) -> str:
        lines = [f"LensEvaluation({self.model_name!r}, {self.tokens} tokens in {self.windows} windows)"]
        head = "site".ljust(14) + "".join(f"{lens[:14]:>16}" for lens in self.lenses)
        lines += [f"KL(final || lens), nats", head]
        for i, s in enumerate(self.sites):
            cells = "".join(
                f"{'—' if math.isnan(self.values[l]['kl'][i]) else format(self.values[l]['kl'][i], '.4f'):>16}"
                for l in self.lenses
            )
            lines.append(s.name.ljust(14) + cells)
        lines.append("mean".ljust(14) + "".join(f"{self.mean(l):>16.4f}" for l in self.lenses))
        return "\n".join(lines)

    def plot(self, metric: str = "kl", *, log: bool = False, title: Optional[str] = None, ax: Any = None) -> Any:
        """One line per lens: ``metric`` against layer (matplotlib figure)."""
        from ..plot import plot_evaluation

        return plot_evaluation(self, metric, log=log, title=title, ax=ax)


def _byte_len(adapter: ModelAdapter, cache: Dict[int, int], tid: int) -> int:
    if tid not in cache:
        from ..core._tokens import token_bytes

        try:
            cache[tid] = len(token_bytes(adapter.tokenizer, tid))
        except Exception:  # noqa: BLE001 - unknown ids count as zero bytes
            cache[tid] = 0
    return cache[tid]


def evaluate(
    model: Any,
    lenses: Mapping[str, Any],
    data: Any,
    *,
    window: int = 256,
    max_tokens: Optional[int] = None,
    sites: Any = None,
    batch_size: int = 2,
    chunk_rows: int = 512,
    progress: bool = True,
) -> LensEvaluation:
    """Evaluate several lenses on the same held-out text.

    Args:
        model: the hooked model.
        lenses: ``{name: lens}`` with lens ``'logit'``, a TunedLens, a lens directory,
            a Decoder, or a TransformerLens JacobianLens.
        data: text(s), files (``pathlib.Path``) or token windows ``[n, window]``, cut into
            ``window``-token windows as for training (no BOS added).
        max_tokens: stop after this many tokens (whole windows).
        sites: restrict to these sites (default: every site any lens has).
        batch_size: windows per forward pass.

    Returns a :class:`LensEvaluation` (``.table()``, ``.to_pandas()``, ``.plot()``, ``.mean(name)``).
    """
    from tqdm.auto import tqdm

    from ..training._train import raw_windows

    adapter = adapt(model)
    if not lenses:
        raise InputError("No lenses to evaluate.", expected="e.g. {'logit': 'logit', 'tuned': lens}", received="{}")
    resolved = {str(name): _resolve_lens(spec, adapter) for name, spec in lenses.items()}
    final = Site.resid_post(adapter.n_layers - 1)
    union = sorted({s for _, ss in resolved.values() for s in ss})
    if sites is not None:
        wanted = set(adapter.sites(sites)) | {final}
        union = [s for s in union if s in wanted]
    windows: List[List[int]] = []
    for w in raw_windows(adapter, data, window):
        windows.append(w)
        if max_tokens is not None and (len(windows) + 1) * window > max_tokens:
            break
    if not windows:
        raise InputError(
            "The evaluation text is shorter than one window.",
            expected=f"at least {window} tokens",
            received="fewer",
            fix="pass more text or a smaller window=",
        )
    toks_all = torch.tensor(windows, dtype=torch.long)
    n_sites = len(union)
    names = list(resolved)
    sums = {n: torch.zeros(4, n_sites, dtype=torch.float64) for n in names}  # kl, ce, top1, count
    byte_cache: Dict[int, int] = {}
    target_bytes = 0
    ce_count = 0
    bar = tqdm(total=toks_all.shape[0], desc="evaluate", unit="win", disable=not progress, leave=False)
    with torch.no_grad():
        for b0 in range(0, toks_all.shape[0], batch_size):
            toks = toks_all[b0 : b0 + batch_size].to(adapter.device)
            streams = adapter.run_and_capture(toks, union)
            B, T = toks.shape
            targets = toks[:, 1:].reshape(-1)
            if adapter.tokenizer is not None:
                target_bytes += sum(_byte_len(adapter, byte_cache, int(t)) for t in targets.tolist())
            ce_count += targets.numel()
            F = streams[final].reshape(B * T, -1)
            tgt_full = torch.full((B, T), -1, dtype=torch.long, device=toks.device)
            tgt_full[:, :-1] = toks[:, 1:]
            tgt_full = tgt_full.reshape(-1)
            for name in names:
                decoder, lens_sites = resolved[name]
                have = [i for i, s in enumerate(union) if s in lens_sites]
                prepared = {i: decoder.prepare(adapter, union[i], streams[union[i]], toks).reshape(B * T, -1) for i in have}
                for p0 in range(0, B * T, chunk_rows):
                    p1 = min(B * T, p0 + chunk_rows)
                    flp = log_softmax(adapter.decode(F[p0:p1]))
                    fp = flp.exp()
                    ftop = flp.argmax(-1)
                    tgt = tgt_full[p0:p1]
                    has = tgt >= 0
                    for i in have:
                        lp = log_softmax(decoder.decode(adapter, prepared[i][p0:p1]))
                        kl = kl_divergence(flp, lp, ref_probs=fp)
                        ce = -lp.gather(1, tgt.clamp(min=0)[:, None])[:, 0]
                        agree = (lp.argmax(-1) == ftop).double()
                        acc = sums[name][:, i]
                        acc[0] += kl.double().clamp(min=0).sum()
                        acc[1] += ce[has].double().sum()
                        acc[2] += agree.sum()
                        acc[3] += p1 - p0
                        del lp
                    del flp, fp
            bar.update(B)
    bar.close()
    values: Dict[str, Dict[str, List[float]]] = {}
    ln2 = math.log(2.0)
    for name in names:
        _, lens_sites = resolved[name]
        s = sums[name]
        per: Dict[str, List[float]] = {m: [] for m in METRIC_NAMES}
        for i, site in enumerate(union):
            if site not in lens_sites or s[3, i] == 0:
                for m in METRIC_NAMES:
                    per[m].append(math.nan)
                continue
            per["kl"].append(float(s[0, i] / s[3, i]))
            per["ce"].append(float(s[1, i] / ce_count))
            per["bpb"].append(float(s[1, i] / ln2 / target_bytes) if target_bytes else math.nan)
            per["top1_agree"].append(float(s[2, i] / s[3, i]))
        values[name] = per
    return LensEvaluation(
        model_name=adapter.model_name,
        lenses=names,
        sites=union,
        values=values,
        tokens=int(toks_all.numel()),
        windows=int(toks_all.shape[0]),
        target_bytes=int(target_bytes),
    )


__all__ = ["evaluate", "LensEvaluation", "JacobianDecoder"]
