"""The tuned lens: a learned affine translator per site, then the model's own decoder.

For each residual-stream site ``s`` a translator maps the stream into the space the
final layer's stream lives in, in residual form::

    t = h + h @ W_s.T + b_s          (W_s: [d_model, d_model], b_s: [d_model])

and the model's frozen final norm and unembedding decode ``t``. With ``W = 0`` and
``b = 0`` (the initialisation) the tuned lens is exactly the logit lens. The final
site (``resid_post`` of the last block) is always decoded as it is: its translator
is the identity by construction and is not stored.

:class:`TunedLens` is an :class:`~lensbox.Analyzer` registered as ``tuned_lens``;
it returns the same :class:`~lensbox.LensResult` as the logit lens, computed by the
same chunked statistics engine, so both lenses compare side by side in one
:func:`lensbox.analyze` call. Training lives in ``_train.py``, evaluation in
``_evaluate.py``; the saved-directory format is described in ``README_training.md``.
"""

import datetime
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from ..core._adapter import Inputs, ModelAdapter, adapt
from ._decoders import Decoder, ResidStream, SiteMapDecoder
from .._errors import ArtifactError, InputError, ModelError, SiteError
from ._logit import LogitLens
from ..core._registry import analyze
from ._result import LensResult
from ..core._sites import Site, SiteKind, SiteLike, parse_sites, resolve_site

FORMAT_NAME = "lensbox.tuned_lens"
FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "translators.safetensors"
PathLike = Union[str, "os.PathLike[str]"]


def translator_sites(n_layers: int, *, include_mid: bool = False) -> List[Site]:
    """The sites a full tuned lens has translators for: embed, resid_post 0..n-2 (and resid_mid 0..n-1)."""
    sites = [Site.embed()] + [Site.resid_post(i) for i in range(n_layers - 1)]
    if include_mid:
        sites += [Site.resid_mid(i) for i in range(n_layers)]
    return sorted(sites)


class Translators(nn.Module):
    """One affine translator per site, stored stacked: ``weight[i]`` and ``bias[i]`` belong to ``sites[i]``.

    ``forward(h, site)`` returns ``h + h @ weight[i].T + bias[i]`` (``nn.Linear``
    convention for ``weight``). Parameters are float32 and start at zero, so a fresh
    ``Translators`` is the identity at every site.
    """

    def __init__(self, sites: Sequence[Site], d_model: int, *, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        sites = sorted(set(sites))
        if not sites:
            raise InputError(
                "A tuned lens needs at least one site.",
                expected="a non-empty list of sites",
                received="[]",
                fix="omit sites to get the embeddings and every resid_post",
            )
        if any(s.kind is SiteKind.RESID_PRE for s in sites):
            raise SiteError(
                "Translators are defined on embed, resid_mid and resid_post sites.",
                expected="embed, resid_mid.i or resid_post.i (resid_pre.i is resid_post.(i-1))",
                received=", ".join(s.name for s in sites if s.kind is SiteKind.RESID_PRE),
                fix="use resid_post.(i-1) for the stream entering block i",
            )
        self.sites: List[Site] = list(sites)
        self.d_model = int(d_model)
        self._index = {s: i for i, s in enumerate(self.sites)}
        self.weight = nn.Parameter(torch.zeros(len(sites), d_model, d_model, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(len(sites), d_model, dtype=dtype))

    def __contains__(self, site: object) -> bool:
        return site in self._index

    def index(self, site: Site) -> int:
        if site not in self._index:
            raise SiteError(
                f"This tuned lens has no translator for {site.name}.",
                expected="one of " + ", ".join(s.name for s in self.sites),
                received=site.name,
                fix="choose sites the lens was trained on, or train a lens that includes this site",
            )
        return self._index[site]

    def forward(self, h: Float[Tensor, "*batch d_model"], site: Site) -> Float[Tensor, "*batch d_model"]:
        i = self.index(site)
        x = h.to(self.weight.dtype)
        return x + torch.nn.functional.linear(x, self.weight[i], self.bias[i])

    def forward_stacked(self, h: Float[Tensor, "site n d_model"]) -> Float[Tensor, "site n d_model"]:
        """Translate ``h[i]`` with translator ``i`` for every site at once (one batched matmul)."""
        x = h.to(self.weight.dtype)
        return x + torch.baddbmm(self.bias[:, None, :], x, self.weight.transpose(1, 2))

    def state_tensors(self) -> Dict[str, Tensor]:
        """Per-site tensors named ``<site>.weight`` / ``<site>.bias`` (the saved layout)."""
        out: Dict[str, Tensor] = {}
        for i, s in enumerate(self.sites):
            out[f"{s.name}.weight"] = self.weight[i].detach().cpu().contiguous()
            out[f"{s.name}.bias"] = self.bias[i].detach().cpu().contiguous()
        return out

    def load_state_tensors(self, tensors: Mapping[str, Tensor], *, source: str = "tensors") -> None:
        """Fill the parameters from per-site tensors, checking names, shapes and finiteness."""
        expected = set(self.state_tensors())
        missing = sorted(expected - set(tensors))
        if missing:
            raise ArtifactError(
                "The lens weights lack some translators.",
                expected=f"tensors {sorted(expected)[:4]} ... ({len(expected)} in all)",
                received=f"{source} is missing {missing[:4]}{' ...' if len(missing) > 4 else ''}",
                fix="re-save the lens, or load it with sites= limited to the translators it has",
            )
        d = self.d_model
        with torch.no_grad():
            for i, s in enumerate(self.sites):
                w, b = tensors[f"{s.name}.weight"], tensors[f"{s.name}.bias"]
                if tuple(w.shape) != (d, d) or tuple(b.shape) != (d,):
                    raise ArtifactError(
                        f"The translator for {s.name} has the wrong shape.",
                        expected=f"weight [{d}, {d}] and bias [{d}]",
                        received=f"weight {list(w.shape)}, bias {list(b.shape)} in {source}",
                        fix="this lens was made for a model of another width: load it on that model",
                    )
                if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
                    raise ArtifactError(
                        f"The translator for {s.name} contains NaN or inf.",
                        expected="finite weights",
                        received=f"non-finite values in {source}",
                        fix="use an earlier checkpoint of this lens, or retrain it",
                    )
                self.weight[i].copy_(w.to(self.weight.dtype))
                self.bias[i].copy_(b.to(self.bias.dtype))

    def subset(self, sites: Sequence[Site]) -> "Translators":
        """A copy holding only ``sites`` (each must be present)."""
        idx = [self.index(s) for s in sorted(set(sites))]
        out = Translators([self.sites[i] for i in idx], self.d_model, dtype=self.weight.dtype)
        with torch.no_grad():
            out.weight.copy_(self.weight.detach()[idx])
            out.bias.copy_(self.bias.detach()[idx])
        return out


class TunedDecoder(SiteMapDecoder):
    """A :class:`~lensbox.Decoder` whose ``prepare`` applies the site's translator.

    Decoding afterwards is the model's final norm + unembedding, chunk by chunk, as
    for the logit lens. The final site is passed through unchanged.
    """

    name = "tuned"

    def __init__(self, translators: Translators) -> None:
        self.translators = translators

    def maps_final(self, site: Site) -> bool:
        return site in self.translators

    def map_stream(self, adapter: ModelAdapter, site: Site, resid: ResidStream) -> ResidStream:
        tr = self.translators
        if tr.weight.device != resid.device:
            tr.to(resid.device)
        return tr(resid, site)

    def describe(self) -> str:
        return "tuned-lens translator + final norm + unembedding (W_U)"


def _fingerprint_mismatch(saved: Mapping[str, Any], current: Mapping[str, Any]) -> Optional[str]:
    """Why two adapter fingerprints differ beyond tolerance, or None when they match."""
    for key in ("d_model", "d_vocab", "n_layers"):
        if saved.get(key) != current.get(key):
            return f"{key} {saved.get(key)} (lens) vs {current.get(key)} (model)"
    a_ids, b_ids = saved.get("top_ids") or [], current.get("top_ids") or []
    if len(a_ids) != len(b_ids) or not a_ids:
        return "the fingerprint has an unexpected layout"
    agree = sum(1 for x, y in zip(a_ids, b_ids) if x and y and x[0] == y[0])
    if agree < len(a_ids) - 1:  # one probe may flip on a near-tie (e.g. a bf16 model)
        return f"the decoder's top-1 token agrees on {agree}/{len(a_ids)} probe vectors"
    diffs = [
        abs(x[0] - y[0])
        for xi, yi, x, y in zip(a_ids, b_ids, saved.get("top_logprobs") or [], current.get("top_logprobs") or [])
        if xi and yi and xi[0] == yi[0]
    ]
    if diffs and sorted(diffs)[len(diffs) // 2] > 0.1:
        return f"the decoder's top-1 log-probabilities differ by {sorted(diffs)[len(diffs) // 2]:.3f} (median)"
    return None


class TunedLens(LogitLens):
    """Analyzer ``tuned_lens``: the logit lens after a learned affine translator per site.

    Build one by training (:func:`lensbox.train_tuned_lens`), loading
    (:meth:`TunedLens.load`, or ``path=`` here), importing a tuned-lens library
    lens (:meth:`TunedLens.from_tuned_lens`), or as the identity
    (:meth:`TunedLens.identity`, equal to the logit lens until trained).

    Args:
        translators: the per-site translators (or None with ``path``).
        path: a saved lens directory to load (``analyze(..., [('tuned_lens', {'path': d})])``).
        sites: which sites to decode (default: every site the lens has, plus the final site).
        include_mid: when ``sites`` is a spec such as 'all', also take resid_mid sites.
        k, chunk_rows, on_nonfinite: as for :class:`~lensbox.LogitLens`.
        check_fingerprint: refuse to run on a model whose decoder differs from the one
            the lens was trained with (:class:`~lensbox.ModelError`); False overrides.
        config: metadata (model, training settings, corpus, metrics) kept with the lens.
    """

    name = "tuned_lens"

    def __init__(
        self,
        translators: Optional[Translators] = None,
        *,
        path: Optional[PathLike] = None,
        sites: Any = None,
        include_mid: bool = False,
        k: int = 5,
        chunk_rows: int = 512,
        on_nonfinite: str = "raise",
        check_fingerprint: bool = True,
        config: Optional[Dict[str, Any]] = None,
    ) -> None:
        if translators is not None and path is not None:
            raise InputError(
                "Give the tuned lens either translators or a path, not both.",
                expected="TunedLens(translators) or TunedLens(path=DIR)",
                received="both",
                fix="drop one of the two arguments",
            )
        self.config: Dict[str, Any] = dict(config or {})
        if path is not None:
            loaded = TunedLens.load(path, check_fingerprint=check_fingerprint)
            translators, self.config = loaded.translators, loaded.config
        self.translators: Optional[Translators] = translators
        super().__init__(
            sites,
            include_mid=include_mid,
            k=k,
            decoder=TunedDecoder(translators) if translators is not None else None,
            chunk_rows=chunk_rows,
            on_nonfinite=on_nonfinite,
        )
        self.check_fingerprint = check_fingerprint
        self._checked: Dict[int, bool] = {}

    # ------------------------------------------------------------------ construction
    @classmethod
    def identity(cls, model: Any, *, sites: Any = None, include_mid: bool = False, **kwargs: Any) -> "TunedLens":
        """An untrained lens (every translator the identity) for ``model``.

        ``sites`` are the translator sites (default: embed and resid_post 0..n-2;
        the final site never needs one).
        """
        adapter = adapt(model)
        final = Site.resid_post(adapter.n_layers - 1)
        if sites is None:
            chosen = translator_sites(adapter.n_layers, include_mid=include_mid)
        else:
            chosen = [s for s in parse_sites(sites, adapter.n_layers, include_mid=include_mid) if s != final]
        tr = Translators(chosen, adapter.d_model)
        config = _base_config(adapter)
        return cls(tr, config=config, **kwargs)

    @property
    def lens_sites(self) -> List[Site]:
        """The sites this lens has translators for (the final site is always available too)."""
        return list(self._require().sites)

    def _require(self) -> Translators:
        if self.translators is None:
            raise InputError(
                "This tuned lens has no translators.",
                expected="a trained or loaded lens",
                received="TunedLens() with neither translators nor path",
                fix=(
                    "train one with lensbox.train_tuned_lens(model, texts), load one with "
                    "TunedLens.load(dir) or ('tuned_lens', {'path': dir}), or start from TunedLens.identity(model)"
                ),
            )
        return self.translators

    # ------------------------------------------------------------------ analyzer protocol
    def check_model(self, adapter: ModelAdapter) -> None:
        """Raise :class:`~lensbox.ModelError` when ``adapter``'s model is not the lens's model."""
        tr = self._require()
        if self._checked.get(id(adapter.model)):
            return
        if tr.d_model != adapter.d_model:
            raise ModelError(
                "This tuned lens was trained on a model of another width.",
                expected=f"a model with d_model={tr.d_model} ({self.config.get('model_name', 'unknown model')})",
                received=f"{adapter.model_name} with d_model={adapter.d_model}",
                fix="load the model the lens was trained on, or train a lens for this model",
            )
        for s in tr.sites:
            if s.layer is not None and s.layer >= adapter.n_layers:
                raise ModelError(
                    "This tuned lens has translators for layers the model does not have.",
                    expected=f"sites within {adapter.n_layers} blocks",
                    received=f"{s.name} (lens for {self.config.get('model_name', 'another model')})",
                    fix="load the model the lens was trained on",
                )
        saved = self.config.get("fingerprint")
        if self.check_fingerprint and saved:
            why = _fingerprint_mismatch(saved, adapter.fingerprint())
            if why is not None:
                raise ModelError(
                    "This tuned lens was trained for another model (its decoder fingerprint differs).",
                    expected=f"the model the lens was trained on: {self.config.get('model_name', 'unknown')}",
                    received=f"{adapter.model_name}: {why}",
                    fix="load the lens onto its own model, or pass check_fingerprint=False if you are sure",
                )
        self._checked[id(adapter.model)] = True

    def selected_sites(self, adapter: ModelAdapter) -> List[Site]:
        tr = self._require()
        final = Site.resid_post(adapter.n_layers - 1)
        available = sorted(set(tr.sites) | {final})
        if self.site_spec is None and not self.include_mid:
            return available
        chosen = adapter.sites(self.site_spec, include_mid=self.include_mid)
        lacking = [s for s in chosen if s not in available]
        if lacking:
            raise SiteError(
                "The tuned lens has no translator for some requested sites.",
                expected="sites among " + ", ".join(s.name for s in available),
                received=", ".join(s.name for s in lacking),
                fix="request only sites the lens was trained on (omit sites= for all of them)",
            )
        return chosen

    def sites(self, adapter: ModelAdapter) -> List[Site]:
        self.check_model(adapter)
        return super().sites(adapter)

    def prepare_streams(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
        sites: List[Site],
    ) -> Dict[Site, Tensor]:
        tr = self._require()
        out = {s: self.decoder.prepare(adapter, s, streams[s], tokens) for s in sites}
        embed = Site.embed()
        if embed not in out:  # the input-layer reference for kl_input
            out[embed] = self.decoder.prepare(adapter, embed, streams[embed], tokens) if embed in tr else streams[embed]
        return out

    def run(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> LensResult:
        self.check_model(adapter)
        return super().run(adapter, streams, tokens)

    def __call__(self, model: Any, inputs: Inputs, **kwargs: Any) -> LensResult:
        """Run this lens alone on ``inputs`` (same as ``lensbox.analyze(model, inputs, [lens])``)."""
        return analyze(model, inputs, [self], **kwargs)[self.name]

    # ------------------------------------------------------------------ persistence
    def save(self, path: PathLike, *, overwrite: bool = False, model: Any = None) -> Path:
        """Write ``config.json`` + ``translators.safetensors`` into directory ``path``, atomically.

        An existing non-empty directory is only replaced with ``overwrite=True``; the
        new directory is written beside it first, so an interrupted save leaves the old
        one intact. ``model`` is needed only for a lens built from bare translators,
        to record which model it belongs to.
        """
        from safetensors.torch import save_file

        tr = self._require()
        config = dict(self.config)
        if model is not None:
            config.update({k: v for k, v in _base_config(adapt(model)).items() if k not in config})
        if "n_layers" not in config or "fingerprint" not in config:
            raise InputError(
                "This lens does not record its model, so a saved copy could not be checked when loaded.",
                expected="a lens from train_tuned_lens / TunedLens.identity / load, or save(path, model=model)",
                received="a TunedLens built from bare translators",
                fix="call lens.save(path, model=model)",
            )
        config.update(
            {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "d_model": tr.d_model,
                "sites": [s.name for s in tr.sites],
                "translator": "t = h + h @ weight.T + bias per site; then the model's final norm and unembedding",
                "dtype": str(tr.weight.dtype).replace("torch.", ""),
                "weights_file": WEIGHTS_FILE,
            }
        )
        config.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        target = Path(path).expanduser()

        def write(tmp: Path) -> None:
            save_file(tr.state_tensors(), str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
            (tmp / CONFIG_FILE).write_text(json.dumps(_jsonable(config), indent=1, allow_nan=False) + "\n")

        atomic_write_dir(target, write, overwrite=overwrite, what="tuned lens")
        self.config = config
        return target

    @classmethod
    def load(
        cls,
        path: PathLike,
        model: Any = None,
        *,
        sites: Any = None,
        check_fingerprint: bool = True,
        **kwargs: Any,
    ) -> "TunedLens":
        """Load a lens saved with :meth:`save`.

        Args:
            path: the lens directory (``config.json`` + ``translators.safetensors``).
            model: when given, checked now against the lens's fingerprint (otherwise
                on first use).
            sites: load only these translator sites (each must be in the lens).
            check_fingerprint: False skips the model check.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(path).expanduser()
        config = read_lens_config(directory)
        weights = directory / str(config.get("weights_file", WEIGHTS_FILE))
        if not weights.is_file():
            raise ArtifactError(
                "The lens directory has no weights file.",
                expected=f"{weights.name} beside config.json",
                received=f"{directory} containing {sorted(p.name for p in directory.iterdir())}",
                fix="copy the whole lens directory, or re-save the lens",
            )
        try:
            tensors = load_file(str(weights))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise ArtifactError(
                "The lens weights file is corrupted or not a safetensors file.",
                expected="a safetensors file written by TunedLens.save",
                received=f"{weights}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}",
                fix="restore the file from a backup or a checkpoint, or retrain the lens",
            ) from exc
        try:
            n_layers = int(config["n_layers"])
            all_sites = [resolve_site(s, n_layers) for s in config["sites"]]
            d_model = int(config["d_model"])
        except (KeyError, TypeError, ValueError, SiteError) as exc:
            raise ArtifactError(
                "The lens config.json is incomplete.",
                expected="n_layers, d_model and sites entries",
                received=f"{directory / CONFIG_FILE}: {exc}",
                fix="re-save the lens with TunedLens.save",
            ) from exc
        tr = Translators(all_sites, d_model)
        tr.load_state_tensors(tensors, source=str(weights))
        if sites is not None:
            wanted = [s for s in parse_sites(sites, n_layers) if s != Site.resid_post(n_layers - 1)]
            tr = tr.subset(wanted)
        lens = cls(tr, config=config, check_fingerprint=check_fingerprint, **kwargs)
        if model is not None:
            lens.check_model(adapt(model))
        return lens

    @classmethod
    def from_tuned_lens(
        cls,
        path: PathLike,
        model: Any,
        *,
        check_fingerprint: bool = True,
        **kwargs: Any,
    ) -> "TunedLens":
        """Import a lens saved by the ``tuned-lens`` library (``params.pt`` + ``config.json``).

        ``params.pt`` is read with ``torch.load(weights_only=True)``: tensors only, no
        code. tuned-lens's translator ``i`` reads the hidden state entering block ``i``
        (0 = the embeddings), i.e. lensbox's ``embed`` for ``i = 0`` and
        ``resid_post.(i-1)`` otherwise; its weights are ``nn.Linear`` weights applied
        residually, the same convention as here.
        """
        directory = Path(path).expanduser()
        cfg_path, params_path = directory / "config.json", directory / "params.pt"
        for p in (cfg_path, params_path):
            if not p.is_file():
                raise ArtifactError(
                    "This is not a tuned-lens lens directory.",
                    expected="config.json and params.pt (what tuned_lens's TunedLens.save writes)",
                    received=f"{directory}: no {p.name}" + (
                        f" (contents: {sorted(x.name for x in directory.iterdir())[:10]})" if directory.is_dir() else ""
                    ),
                    fix="point at the directory holding params.pt; for a lensbox lens use TunedLens.load",
                )
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            d_model, n_hidden = int(cfg["d_model"]), int(cfg["num_hidden_layers"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ArtifactError(
                "The tuned-lens config.json is unreadable.",
                expected="JSON with d_model and num_hidden_layers",
                received=f"{cfg_path}: {exc}",
                fix="re-export the lens with tuned-lens",
            ) from exc
        adapter = adapt(model)
        if d_model != adapter.d_model or n_hidden != adapter.n_layers:
            raise ModelError(
                "This tuned-lens lens was trained for another model.",
                expected=f"a lens for d_model={adapter.d_model}, {adapter.n_layers} layers ({adapter.model_name})",
                received=f"d_model={d_model}, num_hidden_layers={n_hidden} ({cfg.get('base_model_name_or_path')})",
                fix="load the model the lens was trained on",
            )
        lens_hash = cfg.get("unembed_hash")
        if check_fingerprint and lens_hash and adapter.generation == "bridge":
            mine = tuned_lens_unembed_hash(adapter)
            if mine is not None and mine != lens_hash:
                raise ModelError(
                    "This tuned-lens lens was trained with another unembedding matrix.",
                    expected=f"unembed_hash {lens_hash[:16]}... ({cfg.get('base_model_name_or_path')})",
                    received=f"{mine[:16]}... for {adapter.model_name}",
                    fix="load the lens's own model, or pass check_fingerprint=False if you are sure",
                )
        try:
            state = torch.load(str(params_path), map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad or unsafe file
            raise ArtifactError(
                "Could not read params.pt as plain tensors.",
                expected="a state dict of tensors saved by tuned-lens (loaded with weights_only=True)",
                received=f"{params_path}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
                fix="re-export the lens with tuned-lens; lensbox never unpickles arbitrary objects",
            ) from exc
        if not isinstance(state, Mapping):
            raise ArtifactError(
                "params.pt does not hold a state dict.",
                expected="a dict '<i>.weight' / '<i>.bias' -> tensor",
                received=type(state).__name__,
                fix="re-export the lens with tuned-lens",
            )
        sites = [Site.embed()] + [Site.resid_post(i) for i in range(n_hidden - 1)]
        tensors: Dict[str, Tensor] = {}
        for i, s in enumerate(sites):
            w = state.get(f"{i}.weight")
            b = state.get(f"{i}.bias")
            if w is None:
                raise ArtifactError(
                    "params.pt lacks a translator.",
                    expected=f"'{i}.weight' for each of {n_hidden} layers",
                    received=f"keys {sorted(state)[:6]} ...",
                    fix="re-export the lens with tuned-lens",
                )
            tensors[f"{s.name}.weight"] = w.float()
            tensors[f"{s.name}.bias"] = torch.zeros(d_model) if b is None else b.float()
        tr = Translators(sites, d_model)
        tr.load_state_tensors(tensors, source=str(params_path))
        config = _base_config(adapter)
        config["imported_from"] = {
            "library": "tuned-lens",
            "path": str(directory),
            "config": cfg,
        }
        return cls(tr, config=config, check_fingerprint=check_fingerprint, **kwargs)

    def __repr__(self) -> str:
        if self.translators is None:
            return "TunedLens(<no translators>)"
        s = self.translators.sites
        return (
            f"TunedLens(model={self.config.get('model_name', '?')!r}, d_model={self.translators.d_model}, "
            f"sites={len(s)} [{s[0].name} .. {s[-1].name}])"
        )


def tuned_lens_unembed_hash(adapter: ModelAdapter) -> Optional[str]:
    """The ``unembed_hash`` tuned-lens records: SHA-256 of numpy's 1-decimal summary of the [vocab, d_model] matrix."""
    try:
        import hashlib

        import numpy as np

        w = adapter.W_U.detach().float().cpu().T.contiguous().numpy()
        return hashlib.sha256(str.encode(np.array_str(w, precision=1))).hexdigest()
    except Exception:  # noqa: BLE001 - a best-effort check only
        return None


def _base_config(adapter: ModelAdapter) -> Dict[str, Any]:
    from .. import __version__

    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "model_name": adapter.model_name,
        "d_model": adapter.d_model,
        "n_layers": adapter.n_layers,
        "d_vocab": adapter.d_vocab,
        "fingerprint": adapter.fingerprint(),
        "lensbox_version": __version__,
    }


def _jsonable(obj: Any) -> Any:
    """Replace non-finite floats with None so the config stays strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def read_lens_config(directory: Path) -> Dict[str, Any]:
    """Read and validate a lens directory's ``config.json`` (format name and version)."""
    if not directory.exists():
        raise ArtifactError(
            "The lens directory does not exist.",
            expected="a directory written by TunedLens.save",
            received=str(directory),
            fix="check the path",
        )
    if not directory.is_dir():
        raise ArtifactError(
            "A tuned lens is a directory, not a file.",
            expected="a directory with config.json and translators.safetensors",
            received=f"the file {directory}",
            fix="pass the directory that holds config.json",
        )
    cfg_path = directory / CONFIG_FILE
    if not cfg_path.is_file():
        hint = " (it looks like a tuned-lens library lens: use TunedLens.from_tuned_lens)" if (
            directory / "params.pt"
        ).is_file() else ""
        raise ArtifactError(
            "The lens directory has no config.json.",
            expected="config.json and translators.safetensors",
            received=f"{directory} containing {sorted(p.name for p in directory.iterdir())[:10]}{hint}",
            fix="pass a directory written by TunedLens.save",
        )
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(
            "The lens config.json is not valid JSON.",
            expected="the JSON written by TunedLens.save",
            received=f"{cfg_path}: {exc}",
            fix="restore the file, or re-save the lens",
        ) from exc
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise ArtifactError(
            "This config.json does not describe a lensbox tuned lens.",
            expected=f"format {FORMAT_NAME!r}",
            received=f"format {config.get('format') if isinstance(config, dict) else type(config).__name__!r}",
            fix="for a tuned-lens library lens use TunedLens.from_tuned_lens(dir, model)",
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ArtifactError(
            "The lens config.json has no valid format_version.",
            expected="a positive integer",
            received=repr(version),
            fix="re-save the lens with TunedLens.save",
        )
    if version > FORMAT_VERSION:
        raise ArtifactError(
            "This lens was saved by a newer lensbox.",
            expected=f"format_version <= {FORMAT_VERSION}",
            received=f"format_version {version}",
            fix="upgrade lensbox (pip install -U lensbox) to read it",
        )
    return config


def atomic_write_dir(target: Path, write: Any, *, overwrite: bool, what: str) -> None:
    """Write a directory through ``write(tmp_dir)`` and move it into place atomically.

    A non-empty ``target`` is replaced only with ``overwrite``; the old one is moved
    aside first and deleted only after the new one is in place.
    """
    if target.exists() and not target.is_dir():
        raise ArtifactError(
            f"Cannot save the {what}: the path is a file.",
            expected="a new or empty directory path",
            received=f"the existing file {target}",
            fix="choose another path",
        )
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ArtifactError(
            f"Refusing to overwrite a non-empty directory with the {what}.",
            expected="a new or empty directory",
            received=f"{target} containing {sorted(p.name for p in target.iterdir())[:6]}",
            fix="choose another path, or pass overwrite=True (--overwrite) to replace it",
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        write(tmp)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        old: Optional[Path] = None
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}"
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def tuned_lens(
    model: Any,
    inputs: Inputs,
    lens: Union["TunedLens", PathLike],
    *,
    sites: Any = None,
    k: int = 5,
    chunk_rows: int = 512,
    cache: Optional[Mapping[str, Tensor]] = None,
    prepend_bos: Optional[bool] = None,
) -> LensResult:
    """Run a tuned lens (an object or a saved directory) on ``inputs`` and return a :class:`~lensbox.LensResult`."""
    if not isinstance(lens, TunedLens):
        lens = TunedLens.load(lens)
    runner = TunedLens(
        lens._require(),
        sites=sites,
        k=k,
        chunk_rows=chunk_rows,
        config=lens.config,
        check_fingerprint=lens.check_fingerprint,
    )
    return analyze(model, inputs, [runner], cache=cache, prepend_bos=prepend_bos)["tuned_lens"]


__all__ = ["TunedLens", "TunedDecoder", "Translators", "translator_sites", "tuned_lens"]
