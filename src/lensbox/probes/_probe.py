"""InputProbe: the analyzer that trains and holds input-reconstruction probes.

For every chosen site and token offset ``k`` (0 = the token at this position, -1 = the
one before it, +1 = the next one) an `InputProbe` fits

* a **ridge** map from the activation to the input-embedding vector of the token at
  ``pos + k``, solved in closed form from streamed sufficient statistics
  (`lensbox.probes._ridge`), and decoded to a token by the best match against ``W_E``;
* optionally a **softmax** classifier over the vocabulary (or only the tokens seen in
  training), trained by `lensbox.probes.fit_softmax` and started from the ridge solution.

Activations come from one forward pass per batch of windows that captures every site at
once (`ModelAdapter.run_and_capture`). Training is `InputProbe.fit`, or
`begin` / `partial_fit` / `finalize`
for streams the caller captures. The file format lives in `lensbox.probes._probe_io`,
evaluation in `lensbox.probes._evaluate`.
"""

import dataclasses
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .. import _html
from .._errors import InputError, NonFiniteError
from ..core import Analyzer, Fingerprint, ModelAdapter, ModelLike, SitesSpec, adapt, check_fingerprint
from ..core._sites import Site, resolve_site
from ._maps import RidgeProbe, SoftmaxProbe, SoftmaxSettings
from ._options import Decode, ProbeKind, check_alpha, check_decode, check_kinds, check_skip_first
from ._offsets import DEFAULT_OFFSETS, check_offsets, check_offsets_fit, offset_label, valid_positions
from ._probe_io import fitted_state, read_probe, site_key, write_probe
from ._result import DEFAULT_BUCKET_EDGES, Candidates, ProbeEvaluation
from ._ridge import Products, RidgeStatistics
from ._softmax import fit_softmax
from ._windows import ProbeInputs, model_windows


def say(msg: str, progress: bool) -> None:
    """Print a progress line to stderr when ``progress`` is on."""
    if progress:
        print(f"[lensbox] {msg}", file=sys.stderr, flush=True)


def progress_bar(total: int, desc: str, progress: bool) -> Any:
    """A ``tqdm.auto`` bar over ``total`` windows (a widget in Jupyter, text on a terminal); silent when off."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="win", disable=not progress, leave=False)


class InputProbe(Analyzer):
    """Analyzer ``input_probe``: linear probes that read the input tokens back out of the residual stream.

    Args:
        sites: which streams to probe (default: the embeddings and every resid_post; accepts
            'all', '0-5,final', 'resid_mid.3', a list of Site/str/int).
        offsets: token offsets to reconstruct: 0 = the token at this position, -1 = the one
            before, +1 = the next one. Default ``(0, -1, -2, -3, 1)``.
        kinds: ``'ridge'`` (closed-form map to the token's embedding vector, decoded against
            ``W_E``) and/or ``'softmax'`` (a classifier trained with minibatch Adam).
        alpha: ridge penalty relative to the mean activation variance (scale-free).
        decode: default rule that turns a ridge prediction into a token: 'cosine' or 'dot'.
        include_mid: also probe each block's resid_mid.
        skip_first: positions at the start of every window used neither as inputs nor as
            offset-0 targets (position 0 holds the attention-sink activation, whose norm is
            many times larger than the rest).
        softmax: a `SoftmaxSettings` (or dict of its fields) for the softmax probes.
        ridge_products: precision of each batch's ``X^T X`` / ``X^T Y`` products, 'float32'
            (default, about twice as fast) or 'float64'; the sums are float64 either way.
        path: load a saved probe from this directory instead (e.g. through
            ``lensbox.analyze(model, text, [('input_probe', {'path': 'probe_dir'})])``).
        check_fingerprint: refuse (``ModelError``) to run on a model other than the one the
            probe was trained on; ``False`` skips the check.

    Train with `fit` (streams windows through the model), evaluate with
    `evaluate`, keep with `save` / `load`.
    """

    name = "input_probe"

    def __init__(
        self,
        sites: SitesSpec = None,
        *,
        offsets: Sequence[int] = DEFAULT_OFFSETS,
        kinds: ProbeKind | Sequence[ProbeKind] = ("ridge",),
        alpha: float = 1e-3,
        decode: Decode = "cosine",
        include_mid: bool = False,
        skip_first: int = 1,
        softmax: SoftmaxSettings | Mapping[str, Any] | None = None,
        ridge_products: Products = "float32",
        path: str | Path | None = None,
        check_fingerprint: bool = True,
    ) -> None:
        self.site_spec = sites
        self.offsets = check_offsets(offsets)
        RidgeStatistics(1, 1, [0], products=ridge_products)  # validates the name
        self.ridge_products = ridge_products
        self.kinds = check_kinds(kinds)
        self.alpha = check_alpha(alpha)
        self.decode = check_decode(decode)
        self.include_mid = bool(include_mid)
        self.skip_first = check_skip_first(skip_first)
        if softmax is None:
            self.softmax_settings = SoftmaxSettings()
        elif isinstance(softmax, SoftmaxSettings):
            self.softmax_settings = softmax
        else:
            self.softmax_settings = SoftmaxSettings(**dict(softmax))
        self.softmax_settings.validate()
        self.check_fingerprint = bool(check_fingerprint)
        # fitted state
        self.fitted = False
        self.fitted_sites: list[Site] = []
        self.ridge: dict[tuple[Site, int], RidgeProbe] = {}
        self.softmax: dict[tuple[Site, int], SoftmaxProbe] = {}
        self.token_counts: Tensor | None = None
        self.majority: dict[int, list[int]] = {}
        self.model_name: str | None = None
        self.fingerprint: Fingerprint | None = None
        self.d_model: int | None = None
        self.d_vocab: int | None = None
        self.n_layers: int | None = None
        self.training: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.metrics: dict[str, Any] | None = None
        self._clear_buffers()
        if path is not None:
            loaded = InputProbe.load(path, check_fingerprint=check_fingerprint)
            self.__dict__.update(loaded.__dict__)

    def _clear_buffers(self) -> None:
        self._stats: dict[Site, RidgeStatistics] = {}
        self._rows: dict[Site, list[Tensor]] = {}
        self._targets: dict[int, list[Tensor]] = {}
        self._target_counts: dict[int, Tensor] = {}
        self._n_buffered = 0

    def __repr__(self) -> str:
        state = (
            f"fitted on {self.training.get('n_tokens', '?')} tokens of {self.model_name!r}"
            if self.fitted
            else "not fitted"
        )
        sites = self.fitted_sites
        where = f"{len(sites)} sites [{sites[0].name} .. {sites[-1].name}]" if sites else f"sites={self.site_spec!r}"
        return (
            f"InputProbe({where}, offsets={[offset_label(k) for k in self.offsets]}, kinds={self.kinds}, "
            f"alpha={self.alpha:g}, decode={self.decode!r}; {state})"
        )

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the settings and, once fitted, what it was fitted on."""
        sites = self.fitted_sites
        facts: list[tuple[str, Any]] = [
            ("sites", f"{len(sites)} [{sites[0].name} .. {sites[-1].name}]" if sites else repr(self.site_spec)),
            ("offsets", ", ".join(offset_label(k) for k in self.offsets)), ("kinds", ", ".join(self.kinds)),
            ("alpha", self.alpha), ("decode", self.decode),
        ]
        if self.fitted:
            facts += [("model", str(self.model_name)), ("training tokens", self.training.get("n_tokens", "?"))]
        state = "fitted" if self.fitted else "not fitted (call fit(model, data))"
        return _html.block(_html.heading("InputProbe", state), _html.fields(facts))

    # ------------------------------------------------------------------ sites
    def selected_sites(self, adapter: ModelAdapter) -> list[Site]:
        """The fitted sites, or (before training) the sites ``sites=`` selects on this model."""
        if self.fitted:
            return list(self.fitted_sites)
        return adapter.sites(self.site_spec, include_mid=self.include_mid)

    def sites(self, adapter: ModelAdapter) -> list[Site]:
        return self.selected_sites(adapter)

    # ------------------------------------------------------------------ model checks
    def check_model(self, adapter: ModelAdapter, *, check: bool | None = None) -> None:
        """Raise `ModelError` unless ``adapter`` is the model this probe was trained on.

        ``check`` overrides the probe's own ``check_fingerprint`` setting.
        """
        if not self.fitted:
            return
        check_fingerprint(
            self.fingerprint,
            adapter.fingerprint,
            what=f"this input probe (trained on {self.model_name!r})",
            check=self.check_fingerprint if check is None else check,
        )

    # ------------------------------------------------------------------ training
    def begin(self, adapter: ModelAdapter) -> None:
        """Start (or restart) streaming training on ``adapter``'s model."""
        self.fitted = False
        self.fitted_sites = self.selected_sites(adapter)
        self.ridge, self.softmax, self.majority = {}, {}, {}
        self.model_name = adapter.model_name
        self.fingerprint = adapter.fingerprint
        self.d_model, self.d_vocab, self.n_layers = adapter.d_model, adapter.d_vocab, adapter.n_layers
        need_ridge = "ridge" in self.kinds or ("softmax" in self.kinds and self.softmax_settings.init == "ridge")
        d_out = int(adapter.W_E.shape[-1])
        self._clear_buffers()
        if need_ridge:
            self._stats = {
                s: RidgeStatistics(adapter.d_model, d_out, self.offsets, products=self.ridge_products)
                for s in self.fitted_sites
            }
        self._rows = {s: [] for s in self.fitted_sites}
        self._targets = {k: [] for k in self.offsets}
        self._target_counts = {k: torch.zeros(adapter.d_vocab, dtype=torch.long) for k in self.offsets}
        self.token_counts = torch.zeros(adapter.d_vocab, dtype=torch.long)
        self.training = {"n_windows": 0, "n_tokens": 0, "window": None}
        self.timings = {"forward_s": 0.0, "ridge_accumulate_s": 0.0, "ridge_solve_s": 0.0, "softmax_s": 0.0}
        self.metrics = None

    def partial_fit(
        self,
        adapter: ModelAdapter,
        streams: Mapping[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> None:
        """Add one batch of captured streams to the training statistics."""
        if self.token_counts is None or not self.fitted_sites:
            self.begin(adapter)
        length = int(tokens.shape[1])
        check_offsets_fit(self.offsets, length, self.skip_first)
        missing = [s.name for s in self.fitted_sites if s not in streams]
        if missing:
            raise InputError(
                "The captured streams lack sites this probe needs.",
                expected=", ".join(s.name for s in self.fitted_sites),
                received=f"missing {missing}",
                fix="capture with adapter.run_and_capture(tokens, probe.sites(adapter))",
            )
        self._count_tokens(tokens.detach().cpu(), adapter.d_vocab)
        embed = adapter.W_E.detach()
        t0 = time.perf_counter()
        for s in self.fitted_sites:
            act = streams[s].detach()
            if not bool(torch.isfinite(act).all()):
                raise NonFiniteError(
                    f"Activations at {s.name} hold NaN or infinite values.",
                    expected="finite activations",
                    received=f"non-finite values in a batch of shape {tuple(act.shape)}",
                    fix="run the model in float32, or drop the site",
                )
            if s in self._stats:
                self._stats[s].update(act, tokens, embed, self.skip_first)
        self.timings["ridge_accumulate_s"] += time.perf_counter() - t0
        if "softmax" in self.kinds and self._n_buffered < self.softmax_settings.max_samples:
            self._buffer_softmax_rows(streams, tokens.detach().cpu(), adapter.d_model)

    def _count_tokens(self, tok_cpu: Int[Tensor, "batch pos"], d_vocab: int) -> None:
        """Training-token counts (frequency buckets), target counts per offset (majority) and sizes."""
        length = int(tok_cpu.shape[1])
        counts = torch.bincount(tok_cpu[:, self.skip_first :].reshape(-1), minlength=d_vocab)
        self.token_counts += counts  # type: ignore[operator]  (begin() set it)
        for k in self.offsets:
            lo, hi = valid_positions(length, k, self.skip_first)
            self._target_counts[k] += torch.bincount(tok_cpu[:, lo + k : hi + k].reshape(-1), minlength=d_vocab)
        self.training["n_windows"] += int(tok_cpu.shape[0])
        self.training["n_tokens"] += int(tok_cpu.numel())
        self.training["window"] = length if self.training["window"] in (None, length) else "mixed"

    def _buffer_softmax_rows(
        self, streams: Mapping[Site, Float[Tensor, "batch pos d_model"]], tok_cpu: Int[Tensor, "batch pos"], d_model: int
    ) -> None:
        """Keep the first ``softmax.max_samples`` rows per site (and their targets) for the softmax probes."""
        length = int(tok_cpu.shape[1])
        body = length - min(self.skip_first, length)
        room = self.softmax_settings.max_samples - self._n_buffered
        n_win = min(int(tok_cpu.shape[0]), math.ceil(room / max(body, 1)))
        for s in self.fitted_sites:
            rows = streams[s][:n_win, self.skip_first :].detach().float().reshape(-1, d_model)[:room]
            self._rows[s].append(rows.cpu())
        pos = torch.arange(self.skip_first, length)
        for k in self.offsets:
            src = pos + k
            ok = (src >= 0) & (src < length)
            tgt = torch.full((n_win, pos.shape[0]), -1, dtype=torch.long)
            tgt[:, ok] = tok_cpu[:n_win, src[ok]]
            self._targets[k].append(tgt.reshape(-1)[:room])
        self._n_buffered += min(room, n_win * body)

    def finalize(self, adapter: ModelAdapter, *, progress: bool = False) -> "InputProbe":
        """Solve the ridge probes and train the softmax probes from what `partial_fit` collected."""
        if self.token_counts is None or self.training.get("n_windows", 0) == 0:
            raise InputError(
                "The probe has seen no training data.",
                expected="at least one batch through partial_fit (or call fit)",
                received="nothing",
                fix="call probe.fit(model, text)",
            )
        t0 = time.perf_counter()
        ridge_all: dict[tuple[Site, int], RidgeProbe] = {}
        for s, st in self._stats.items():
            for k in self.offsets:
                ridge_all[(s, k)] = st.solve(k, self.alpha, where=f" at {s.name}, offset {offset_label(k)}")
        self.timings["ridge_solve_s"] += time.perf_counter() - t0
        if "ridge" in self.kinds:
            self.ridge = ridge_all
        for k in self.offsets:
            top = self._target_counts[k].topk(5)
            self.majority[k] = [int(i) for i in top.indices.tolist()]
        if "softmax" in self.kinds:
            t0 = time.perf_counter()
            self._train_softmax(adapter, ridge_all, progress)
            self.timings["softmax_s"] += time.perf_counter() - t0
        self.training["n_ridge_samples"] = {site_key(s, k): int(p.n_samples) for (s, k), p in ridge_all.items()}
        self.training["n_softmax_samples"] = {site_key(s, k): int(p.n_samples) for (s, k), p in self.softmax.items()}
        self.training["n_distinct_tokens"] = int((self.token_counts > 0).sum())
        self._clear_buffers()
        self.fitted = True
        return self

    def _train_softmax(self, adapter: ModelAdapter, ridge_all: Mapping[tuple[Site, int], RidgeProbe], progress: bool) -> None:
        embed = adapter.W_E.detach().float().cpu()
        targets = {k: torch.cat(v) for k, v in self._targets.items()}
        for s in self.fitted_sites:
            x = torch.cat(self._rows[s])
            for k in self.offsets:
                mask = targets[k] >= 0
                if not bool(mask.any()):
                    continue
                say(f"softmax probe {s.name} offset {offset_label(k)}: {int(mask.sum())} rows", progress)
                self.softmax[(s, k)] = fit_softmax(
                    x[mask],
                    targets[k][mask],
                    n_vocab=adapter.d_vocab,
                    settings=self.softmax_settings,
                    ridge=ridge_all.get((s, k)),
                    embed=embed,
                )

    def fit(
        self,
        model: ModelLike,
        data: ProbeInputs,
        *,
        window: int = 256,
        max_tokens: int | None = None,
        batch_size: int = 4,
        progress: bool = True,
    ) -> "InputProbe":
        """Train on ``data`` (texts or token windows), streaming batches of windows through the model.

        Every batch is one forward pass capturing all probed sites; only the sufficient
        statistics (and, for softmax probes, at most ``softmax.max_samples`` rows per site)
        are kept. A ``[n, pos]`` token tensor is used as its rows; text is cut into windows
        of ``window`` tokens (at most ``max_tokens`` in all).
        """
        adapter = adapt(model)
        windows = model_windows(adapter, data, window=window, max_tokens=max_tokens)
        check_offsets_fit(self.offsets, int(windows.shape[1]), self.skip_first)
        self.begin(adapter)
        bar = progress_bar(int(windows.shape[0]), "probe training", progress)
        for chunk in windows.split(max(1, int(batch_size))):
            t0 = time.perf_counter()
            streams = adapter.run_and_capture(chunk, self.fitted_sites)
            self.timings["forward_s"] += time.perf_counter() - t0
            self.partial_fit(adapter, streams, chunk)
            bar.update(int(chunk.shape[0]))
        bar.close()
        return self.finalize(adapter, progress=progress)

    # ------------------------------------------------------------------ using
    def require_fitted(self) -> None:
        """Raise `InputError` unless the probe has been trained (or loaded)."""
        if not self.fitted:
            raise InputError(
                "This probe has not been trained.",
                expected="a fitted InputProbe",
                received="an untrained InputProbe",
                fix="call probe.fit(model, text) first, or load one with InputProbe.load(path)",
            )

    def probe_for(self, site: Site | str | int, offset: int, kind: ProbeKind = "ridge") -> RidgeProbe | SoftmaxProbe:
        """The fitted probe at ``(site, offset)`` of ``kind`` ('ridge' or 'softmax')."""
        self.require_fitted()
        s = resolve_site(site, int(self.n_layers or 0))
        table: Mapping[tuple[Site, int], RidgeProbe | SoftmaxProbe] = self.ridge if kind == "ridge" else self.softmax
        if (s, offset) not in table:
            raise InputError(
                f"No {kind} probe at {s.name}, offset {offset_label(offset)}.",
                expected=f"sites {[x.name for x in self.fitted_sites]}, offsets {self.offsets}, kinds {self.kinds}",
                received=f"site={s.name}, offset={offset}, kind={kind!r}",
                fix="pick one of the expected sites, offsets and kinds",
            )
        return table[(s, offset)]

    def evaluate(
        self,
        model: ModelLike,
        data: ProbeInputs,
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
        """Evaluate on held-out ``data``: the same as ``lensbox.evaluate_probe(model, data, self, ...)``."""
        from ._evaluate import evaluate_probe

        return evaluate_probe(
            model, data, self, window=window, max_tokens=max_tokens, batch_size=batch_size, sites=sites,
            progress=progress, candidates=candidates, chunk_rows=chunk_rows, rank=rank, bucket_edges=bucket_edges,
            rare_below=rare_below, frequent_from=frequent_from, store_metrics=store_metrics,
        )

    def run(
        self,
        adapter: ModelAdapter,
        streams: dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> ProbeEvaluation:
        """Analyzer entry point: evaluate a fitted probe on one batch (a `ProbeEvaluation`)."""
        from ._evaluate import ProbeEvaluator

        self.require_fitted()
        self.check_model(adapter)
        ev = ProbeEvaluator(self, adapter)
        ev.update(streams, tokens)
        return ev.result()

    # ------------------------------------------------------------------ saving
    def config(self) -> dict[str, Any]:
        """The JSON side of a saved probe (without the artifact header, which the writer adds)."""
        self.require_fitted()
        return {
            "model_name": self.model_name,
            "fingerprint": None if self.fingerprint is None else self.fingerprint.to_json(),
            "d_model": self.d_model,
            "d_vocab": self.d_vocab,
            "n_layers": self.n_layers,
            "sites": [s.name for s in self.fitted_sites],
            "offsets": list(self.offsets),
            "kinds": list(self.kinds),
            "settings": {
                "alpha": self.alpha,
                "decode": self.decode,
                "include_mid": self.include_mid,
                "skip_first": self.skip_first,
                "ridge_products": self.ridge_products,
                "softmax": dataclasses.asdict(self.softmax_settings),
            },
            "training": self.training,
            "majority": {str(k): v for k, v in self.majority.items()},
            "metrics": self.metrics,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "ridge_penalty": {site_key(s, k): p.penalty for (s, k), p in self.ridge.items()},
        }

    def tensors(self) -> dict[str, Tensor]:
        """The weights side of a saved probe: token counts, ridge and softmax maps by ``kind/site/offset/name``."""
        self.require_fitted()
        out: dict[str, Tensor] = {"token_counts": self.token_counts.cpu().contiguous()}  # type: ignore[union-attr]
        for (s, k), p in self.ridge.items():
            out[f"ridge/{site_key(s, k)}/weight"] = p.weight.cpu().contiguous()
            out[f"ridge/{site_key(s, k)}/bias"] = p.bias.cpu().contiguous()
        for (s, k), sp in self.softmax.items():
            out[f"softmax/{site_key(s, k)}/weight"] = sp.weight.cpu().contiguous()
            out[f"softmax/{site_key(s, k)}/bias"] = sp.bias.cpu().contiguous()
            out[f"softmax/{site_key(s, k)}/classes"] = sp.classes.cpu().contiguous()
        return out

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the probe folder (``probe.json`` + ``probe.safetensors``) atomically.

        An existing folder is replaced only with ``overwrite=True`` and only when it holds
        a saved probe; any other folder is refused, never deleted.
        """
        return write_probe(path, meta=self.config(), tensors=self.tensors(), overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, model: ModelLike | None = None, *, check_fingerprint: bool = True) -> "InputProbe":
        """Read a probe saved by `save` (or by lensbox 0.1); with ``model``, check it is the probe's model.

        Every file is verified (SHA-256, shapes, dtypes, finite values, class ids) before
        use. ``check_fingerprint=False`` lets the probe run on a model whose fingerprint
        differs (or is missing from an old file).
        """
        meta, tensors = read_probe(path)
        settings = meta["settings"]
        probe = cls(
            None,
            offsets=meta["offsets"],
            kinds=meta["kinds"],
            alpha=settings["alpha"],
            decode=settings["decode"],
            include_mid=settings["include_mid"],
            skip_first=settings["skip_first"],
            softmax=settings["softmax"],
            ridge_products=settings["ridge_products"],
            check_fingerprint=check_fingerprint,
        )
        probe.__dict__.update(fitted_state(meta, tensors))
        if model is not None:
            probe.check_model(adapt(model))
        return probe
