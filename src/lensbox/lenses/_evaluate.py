"""Evaluating lenses side by side on held-out text.

`evaluate` runs the model once per batch of windows, captures the residual
streams every lens needs, and reports per lens and site, averaged over all positions
(the ``evaluation`` metrics of the metric table, `lensbox.lenses._metrics`):

* ``kl``: mean KL(final || lens) in nats;
* ``ce``: mean cross-entropy of the lens's distribution against the next token (nats),
  and ``bpb``: the same total in bits divided by the UTF-8 bytes of the predicted tokens;
* ``top1_agree``: how often the lens's top-1 token is the final layer's top-1.

Beside the lenses, every evaluation reports the **uniform baseline**: the same metrics for
the uniform distribution over the vocabulary (``KL(final || uniform) = log V - H(final)``,
``ce = log V``), a lens that knows nothing. A lens above it at a site is worse than knowing
nothing there. ``unigram=`` adds a fixed token-frequency distribution as a second baseline.
Means over sites are reported twice, with and without the embeddings (where the logit lens
is typically tens of nats off, which flatters any ratio to it). `evaluate` warns
(``UserWarning``) when a lens other than the logit lens is worse than the logit lens or than
the uniform baseline at a site of the text evaluated.

KL and log-probabilities come from the one kernel in `lensbox.lenses._stats`
(`log_softmax`, `kl_divergence`), so the
final site's KL is exactly 0.

Lenses are given by name: ``'logit'`` (the logit lens), a `TunedLens`
or a saved lens directory, any `Decoder`, or a TransformerLens
``JacobianLens`` (its transport matrices then the model's decoder).
"""

import dataclasses
import math
import os
import warnings
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from jaxtyping import Float
from torch import Tensor

from .. import _html
from .._errors import InputError
from ..core._adapter import ModelAdapter, ModelLike, adapt
from ..core._hooks import FwdHooks, check_fwd_hooks
from ..core._sites import Site, SiteKind, SitesSpec
from ._decoders import Decoder
from ._jacobian import JacobianDecoder, is_jacobian_lens
from ._logit import LogitLens
from ._metrics import get_metric, metric_names
from ._stats import kl_divergence, log_softmax
from ._tuned import TunedDecoder, TunedLens

#: The metrics a LensEvaluation reports (name -> description), from the metric table.
METRIC_NAMES = {m: get_metric(m).description for m in metric_names("evaluation")}


def resolve_lens(spec: Any, adapter: ModelAdapter) -> Tuple[Decoder, List[Site]]:
    """A decoder for a lens spec (see `evaluate`) and the sites it can decode on this model."""
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
        tr = spec.require_translators()
        return TunedDecoder(tr), sorted(set(tr.sites) | {final})
    if isinstance(spec, LogitLens):
        return spec.decoder, every
    if is_jacobian_lens(spec) or isinstance(spec, JacobianDecoder):
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
    """Per-lens, per-site held-out statistics from `evaluate`.

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
    #: ``{baseline: {metric: value}}``: ``'uniform'`` always, ``'unigram'`` when one was given.
    #: A baseline does not depend on the site (it never reads the residual stream).
    baselines: Dict[str, Dict[str, float]] = dataclasses.field(default_factory=dict)

    def _metric(self, metric: str) -> str:
        return get_metric(metric, scope="evaluation").name

    def column(self, name: str, metric: str = "kl") -> List[float]:
        """Per-site values of a lens or a baseline (a baseline's value repeated at every site)."""
        m = self._metric(metric)
        if name in self.values:
            return list(self.values[name][m])
        if name in self.baselines:
            return [self.baselines[name].get(m, math.nan)] * len(self.sites)
        raise InputError(f"No lens or baseline named {name!r} in this evaluation.",
                         expected="one of " + ", ".join([*self.lenses, *self.baselines]), received=repr(name))

    def mean(self, lens: str, metric: str = "kl", *, include_final: bool = False, include_embed: bool = True) -> float:
        """Mean of ``metric`` over the lens's sites: the final site excluded unless asked, the
        embeddings included unless ``include_embed=False`` (``lens`` may name a baseline)."""
        last = max(s.depth for s in self.sites)
        vals = [
            v
            for s, v in zip(self.sites, self.column(lens, metric))
            if not math.isnan(v) and (include_final or s.depth != last) and (include_embed or s.kind is not SiteKind.EMBED)
        ]
        return sum(vals) / len(vals) if vals else math.nan

    def worse_sites(self, lens: str, than: str, metric: str = "kl") -> List[Site]:
        """The sites where ``lens`` has a higher ``metric`` (KL or cross-entropy) than ``than`` (a lens or baseline)."""
        mine, ref = self.column(lens, metric), self.column(than, metric)
        return [s for s, a, b in zip(self.sites, mine, ref) if not (math.isnan(a) or math.isnan(b)) and a > b]

    def to_pandas(self) -> Any:
        """Long table: one row per (lens, site) with kl, ce, bpb, top1_agree, then ``<baseline>_kl``
        (the baselines' KL, the same at every site)."""
        import pandas as pd

        rows = []
        for lens in self.lenses:
            for i, s in enumerate(self.sites):
                row: Dict[str, Any] = {"lens": lens, "site": s.name}
                for m in METRIC_NAMES:
                    row[m] = self.values[lens][m][i]
                for b, vals in self.baselines.items():
                    row[f"{b}_kl"] = vals.get("kl", math.nan)
                rows.append(row)
        return pd.DataFrame(rows)

    def table(self, metric: str = "kl", *, digits: int = 4) -> str:
        """A text table of one metric: sites as rows, lenses then baselines as columns, and two means
        over the non-final sites: with the embeddings (``mean``) and without them (``mean no embed``)."""
        name = self._metric(metric)
        cols = [*self.lenses, *self.baselines]
        width = max(12, digits + 6, *(len(l) + 2 for l in cols))
        cell = lambda v: ("—" if math.isnan(v) else f"{v:.{digits}f}").rjust(width)  # noqa: E731
        has_embed = any(s.kind is SiteKind.EMBED for s in self.sites)
        note = "; means over the non-final sites, 'mean' with the embeddings" if has_embed else ""
        lines = [f"{name}: {METRIC_NAMES[name]} ({self.tokens} tokens in {self.windows} windows{note})"]
        lines.append("site".ljust(16) + "".join(l[: width - 1].rjust(width) for l in cols))
        values = {c: self.column(c, name) for c in cols}
        for i, s in enumerate(self.sites):
            lines.append(s.name.ljust(16) + "".join(cell(values[c][i]) for c in cols))
        if has_embed:
            lines.append("mean no embed".ljust(16) + "".join(cell(self.mean(c, name, include_embed=False)) for c in cols))
        lines.append("mean".ljust(16) + "".join(cell(self.mean(c, name)) for c in cols))
        return "\n".join(lines)

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
            "mean_kl_no_embed": {lens: self.mean(lens, "kl", include_embed=False) for lens in self.lenses},
            "mean_note": "means over the non-final sites; mean_kl includes the embeddings, mean_kl_no_embed does not",
            "baselines": {b: {m: (None if math.isnan(v) else v) for m, v in vals.items()}
                          for b, vals in self.baselines.items()},
            "tokens": self.tokens,
            "windows": self.windows,
            "target_bytes": self.target_bytes,
        }

    def __repr__(self) -> str:
        return f"LensEvaluation({self.model_name!r}, {self.tokens} tokens in {self.windows} windows)\n" + self.table()

    def _repr_html_(self) -> str:
        """Jupyter's rich display: one row per site; for each lens its kl, ce, bpb and top1_agree; then the means."""
        metrics = list(METRIC_NAMES)
        header = ["site"] + [f"{lens}: {m}" for lens in self.lenses for m in metrics]
        rows: List[List[Any]] = [
            [s.name] + [self.values[lens][m][i] for lens in self.lenses for m in metrics]
            for i, s in enumerate(self.sites)
        ]
        rows.append(["mean (non-final sites)"] + [self.mean(lens, m) for lens in self.lenses for m in metrics])
        note = "; ".join(f"{m}: {d}" for m, d in METRIC_NAMES.items())
        return _html.block(
            _html.heading("LensEvaluation", f"of {', '.join(self.lenses)} on {self.model_name}: "
                                            f"{self.tokens} tokens in {self.windows} windows"),
            _html.table(header, rows),
            note=note,
        )

    def plot(self, metric: str = "kl", *, log: bool = False, title: Optional[str] = None, ax: Any = None) -> Any:
        """One line per lens: ``metric`` against layer (matplotlib figure; see ``lensbox.plot.plot_evaluation``)."""
        from ..plot import plot_evaluation

        return plot_evaluation(self, self._metric(metric), log=log, title=title, ax=ax)


def _byte_len(adapter: ModelAdapter, cache: Dict[int, int], tid: int) -> int:
    if tid not in cache:
        from ..core._tokens import token_bytes

        try:
            cache[tid] = len(token_bytes(adapter.tokenizer, tid))
        except Exception:  # noqa: BLE001 - unknown ids count as zero bytes
            cache[tid] = 0
    return cache[tid]


def _windows(adapter: ModelAdapter, data: Any, window: int, max_tokens: Optional[int]) -> Tensor:
    """``[n, window]`` token windows of ``data`` (``lensbox.data.windows``; no BOS, texts joined by EOS)."""
    from ..data import windows

    rows = list(windows(adapter.tokenizer, data, window=window, max_tokens=max_tokens, d_vocab=adapter.d_vocab))
    if not rows:
        raise InputError(
            "The evaluation text is shorter than one window.",
            expected=f"at least {window} tokens",
            received="fewer",
            fix="pass more text or a smaller window=",
        )
    return torch.stack(rows).long()


def _accumulate(
    adapter: ModelAdapter,
    lens_rows: Dict[str, Tuple[Decoder, Dict[int, Tensor]]],
    base: Dict[str, Tensor],
    final: Tensor,
    targets: Tensor,
    sums: Dict[str, Tensor],
    base_sums: Tensor,
    chunk_rows: int,
) -> None:
    """Add every lens's and every baseline's KL, cross-entropy, top-1 agreement and row count.

    ``lens_rows[name] = (decoder, rows)`` where ``rows[i]`` is site ``i``'s prepared stream
    ``[n, d_model]``, summed into ``sums[name] [4, site]``; each baseline's log-probs (``base``)
    are summed into ``base_sums [4, baseline]``. ``final`` is the final stream ``[n, d_model]``,
    decoded once per chunk of rows for all of them; ``targets`` the next token per row (-1: none).
    """
    n = final.shape[0]
    for p0 in range(0, n, chunk_rows):
        p1 = min(n, p0 + chunk_rows)
        flp = log_softmax(Decoder().decode(adapter, final[p0:p1]))
        fp = flp.exp()
        ftop = flp.argmax(-1)
        tgt = targets[p0:p1]
        has = tgt >= 0
        for j, blp in enumerate(base.values()):
            blp = blp.to(flp.device, flp.dtype)
            kl = kl_divergence(flp, blp.expand_as(flp), ref_probs=fp)
            base_sums[0, j] += kl.double().clamp(min=0).sum()
            base_sums[1, j] += (-blp[tgt.clamp(min=0)])[has].double().sum()
            base_sums[2, j] += (ftop == int(blp.argmax())).double().sum()
            base_sums[3, j] += p1 - p0
        for name, (decoder, rows) in lens_rows.items():
            acc = sums[name]
            for i, stream in rows.items():
                lp = log_softmax(decoder.decode(adapter, stream[p0:p1]))
                kl = kl_divergence(flp, lp, ref_probs=fp)
                ce = -lp.gather(1, tgt.clamp(min=0)[:, None])[:, 0]
                acc[0, i] += kl.double().clamp(min=0).sum()
                acc[1, i] += ce[has].double().sum()
                acc[2, i] += (lp.argmax(-1) == ftop).double().sum()
                acc[3, i] += p1 - p0
                del lp
        del flp, fp


def _legacy_order(data: Any, lenses: Any) -> Tuple[Any, Any]:
    """Accept lensbox 0.1's ``evaluate(model, lenses, data)`` (a mapping second) for one release."""
    if isinstance(data, Mapping) and not isinstance(lenses, Mapping):
        warnings.warn(
            "evaluate(model, lenses, data) is deprecated: pass evaluate(model, data, lenses).",
            DeprecationWarning,
            stacklevel=3,
        )
        return lenses, data
    return data, lenses


def evaluate(
    model: ModelLike,
    data: Any,
    lenses: Any,  # Mapping[str, lens]; Any only while the old (model, lenses, data) order is accepted
    *,
    window: int = 256,
    max_tokens: Optional[int] = None,
    sites: SitesSpec = None,
    batch_size: int = 4,
    chunk_rows: int = 512,
    progress: bool = True,
    fwd_hooks: FwdHooks = None,
    unigram: Optional[Float[Tensor, "d_vocab"]] = None,
    warn: bool = True,
) -> LensEvaluation:
    """Evaluate several lenses on the same held-out text.

    Args:
        model: the hooked model.
        data: text(s), files (``pathlib.Path``) or token windows ``[n, window]``, cut into
            ``window``-token windows as for training (no BOS added).
        lenses: ``{name: lens}`` with lens ``'logit'``, a TunedLens, a lens directory,
            a Decoder, or a TransformerLens JacobianLens.
        max_tokens: stop after this many tokens (whole windows).
        sites: restrict to these sites (default: every site any lens has).
        batch_size: windows per forward pass.
        fwd_hooks: TransformerLens ``(hook name, function)`` pairs that edit every forward pass
            (e.g. an ablation): the lenses are evaluated on the edited model's streams, against
            its own final layer.
        unigram: token probabilities (or counts) ``[d_vocab]``, e.g. the token frequencies of the
            training text, reported as the ``'unigram'`` baseline beside ``'uniform'``.
        warn: warn (``UserWarning``) when a lens other than the logit lens has a higher KL than the
            logit lens (when evaluated too) or than the uniform baseline at some site.

    Returns a `LensEvaluation` (``.table()``, ``.to_pandas()``, ``.plot()``, ``.mean(name)``,
    ``.baselines``, ``.worse_sites(lens, than)``).
    """
    from tqdm.auto import tqdm

    data, lenses = _legacy_order(data, lenses)
    adapter = adapt(model)
    adapter.check_window(window, what="evaluation")
    hooks = check_fwd_hooks(adapter, fwd_hooks)
    if not lenses:
        raise InputError("No lenses to evaluate.", expected="e.g. {'logit': 'logit', 'tuned': lens}", received="{}")
    resolved = {str(name): resolve_lens(spec, adapter) for name, spec in lenses.items()}
    final = Site.resid_post(adapter.n_layers - 1)
    union = sorted({s for _, ss in resolved.values() for s in ss})
    if sites is not None:
        wanted = set(adapter.sites(sites)) | {final}
        union = [s for s in union if s in wanted]
    base_logprobs = _baseline_logprobs(adapter, unigram)
    toks_all = _windows(adapter, data, window, max_tokens)
    sums = {n: torch.zeros(4, len(union), dtype=torch.float64) for n in resolved}  # kl, ce, top1, count
    base_sums = torch.zeros(4, len(base_logprobs), dtype=torch.float64)
    byte_cache: Dict[int, int] = {}
    target_bytes = 0
    bar = tqdm(total=toks_all.shape[0], desc="evaluate", unit="win", disable=not progress, leave=False)
    with torch.no_grad():
        for b0 in range(0, toks_all.shape[0], batch_size):
            toks = toks_all[b0 : b0 + batch_size].to(adapter.device)
            streams, _ = adapter.capture(toks, union, fwd_hooks=hooks)
            B, T = toks.shape
            if adapter.tokenizer is not None:
                target_bytes += sum(_byte_len(adapter, byte_cache, int(t)) for t in toks[:, 1:].reshape(-1).tolist())
            targets = torch.full((B, T), -1, dtype=torch.long, device=toks.device)
            targets[:, :-1] = toks[:, 1:]
            F = streams[final].reshape(B * T, -1)
            lens_rows = {
                name: (
                    decoder,
                    {
                        i: decoder.prepare(adapter, s, streams[s], toks).reshape(B * T, -1)
                        for i, s in enumerate(union)
                        if s in lens_sites
                    },
                )
                for name, (decoder, lens_sites) in resolved.items()
            }
            _accumulate(adapter, lens_rows, base_logprobs, F, targets.reshape(-1), sums, base_sums, chunk_rows)
            bar.update(B)
    bar.close()
    ce_count = toks_all.shape[0] * (toks_all.shape[1] - 1)
    values = {name: _per_site(sums[name], union, lens_sites, ce_count, target_bytes)
              for name, (_, lens_sites) in resolved.items()}
    baselines = {}
    for j, b in enumerate(base_logprobs):
        per = _per_site(base_sums[:, j : j + 1], [final], [final], ce_count, target_bytes)
        baselines[b] = {m: v[0] for m, v in per.items()}
    baselines["uniform"]["top1_agree"] = math.nan  # the uniform distribution has no top-1 token
    ev = LensEvaluation(
        model_name=adapter.model_name,
        lenses=list(resolved),
        sites=union,
        values=values,
        tokens=int(toks_all.numel()),
        windows=int(toks_all.shape[0]),
        target_bytes=int(target_bytes),
        baselines=baselines,
    )
    if warn:
        logit = [n for n, (dec, _) in resolved.items() if type(dec) is Decoder]
        _warn_worse(ev, [n for n in resolved if n not in logit], logit[0] if logit else None)
    return ev


def _baseline_logprobs(adapter: ModelAdapter, unigram: Optional[Tensor]) -> Dict[str, Tensor]:
    """Log-probabilities ``[d_vocab]`` of the baselines: uniform, and the unigram distribution when given."""
    V = adapter.d_vocab
    out = {"uniform": torch.full((V,), -math.log(V), dtype=torch.float32)}
    if unigram is not None:
        u = torch.as_tensor(unigram).detach().double().cpu().reshape(-1)
        if u.shape[0] != V or not bool(torch.isfinite(u).all()) or bool((u <= 0).any()):
            raise InputError(
                "The unigram baseline must give every token a positive probability.",
                expected=f"a finite tensor of {V} positive probabilities or (smoothed) counts",
                received=f"shape {list(u.shape)}, min {float(u.min()) if u.numel() else 'n/a'}",
                fix="smooth the counts, e.g. counts + 1, or mix them with the uniform distribution",
            )
        out["unigram"] = (u / u.sum()).log().float()
    return out


def _warn_worse(ev: LensEvaluation, lenses: List[str], logit: Optional[str]) -> None:
    """One UserWarning per lens that is worse than the logit lens or than the uniform baseline at some site."""
    for name in lenses:
        parts = []
        for ref in ([logit] if logit else []) + ["uniform"]:
            bad = ev.worse_sites(name, ref)
            if bad:
                kind = "the logit lens" if ref == logit else "the uniform distribution"
                names = ", ".join(s.name for s in bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
                parts.append(f"worse than {kind} at {len(bad)} of {len(ev.sites)} sites ({names})")
        if parts:
            warnings.warn(
                f"Lens {name!r} is " + "; ".join(parts) + f" on this text (KL(final || lens), {ev.tokens} tokens): "
                "there it tells less about the final distribution than that reference. A tuned lens trained on "
                "other text (another language or domain) often does this; train it on text like this one.",
                UserWarning,
                stacklevel=3,
            )


def _per_site(
    s: Tensor, union: List[Site], lens_sites: List[Site], ce_count: int, target_bytes: int
) -> Dict[str, List[float]]:
    per: Dict[str, List[float]] = {m: [] for m in METRIC_NAMES}
    for i, site in enumerate(union):
        if site not in lens_sites or s[3, i] == 0:
            for m in METRIC_NAMES:
                per[m].append(math.nan)
            continue
        per["kl"].append(float(s[0, i] / s[3, i]))
        per["ce"].append(float(s[1, i] / ce_count))
        per["bpb"].append(float(s[1, i] / math.log(2.0) / target_bytes) if target_bytes else math.nan)
        per["top1_agree"].append(float(s[2, i] / s[3, i]))
    return per


__all__ = ["evaluate", "LensEvaluation", "resolve_lens"]
