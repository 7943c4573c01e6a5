"""The tuned lens: a learned affine translator per site, then the model's own decoder.

For each residual-stream site ``s`` a translator maps the stream into the space the
final layer's stream lives in, in residual form::

    t = h + h @ W_s.T + b_s          (W_s: [d_model, d_model], b_s: [d_model])

and the model's frozen final norm and unembedding decode ``t``. With ``W = 0`` and
``b = 0`` (the initialisation) the tuned lens is exactly the logit lens. The final
site (``resid_post`` of the last block) is always decoded as it is: its translator
is the identity by construction and is not stored.

`TunedLens` is an `Analyzer` registered as ``tuned_lens``;
it returns the same `LensResult` as the logit lens, computed by the
same chunked statistics engine, so both lenses compare side by side in one
`lensbox.analyze` call. Training lives in ``lensbox.training``, evaluation in
``_evaluate.py``, the file formats in ``_tuned_io.py``.
"""

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

from .. import _html
from .._errors import ArtifactError, InputError, ModelError, SiteError
from ..core._adapter import Inputs, ModelAdapter, ModelLike, adapt
from ..core._fingerprint import check_fingerprint as check_model_fingerprint
from ..core import analyze
from ..core._hooks import FwdHooks
from ..core._sites import Site, SiteKind, SitesSpec, parse_sites
from ._decoders import ResidStream, SiteMapDecoder
from ._lens import LensAnalyzer, NonFinitePolicy
from ._result import LensResult
from ._tuned_io import (
    FORMAT_NAME,
    FORMAT_VERSION,
    jsonable,
    lens_config,
    lens_fingerprint,
    read_lens,
    read_tuned_lens_library,
    write_lens,
)

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
    """A `Decoder` whose ``prepare`` applies the site's translator.

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


class TunedLens(LensAnalyzer):
    """Analyzer ``tuned_lens``: the logit lens after a learned affine translator per site.

    Build one by training (`lensbox.train_tuned_lens`), loading
    (`TunedLens.load`, or ``path=`` here), importing a tuned-lens library
    lens (`TunedLens.from_tuned_lens`), or as the identity
    (`TunedLens.identity`, equal to the logit lens until trained).

    Args:
        translators: the per-site translators (or None with ``path``).
        path: a saved lens directory to load (``analyze(..., [('tuned_lens', {'path': d})])``).
        sites: which sites to decode (default: every site the lens has, plus the final site).
        include_mid: when ``sites`` is a spec such as 'all', also take resid_mid sites.
        k: as for `LogitLens`.
        chunk_rows: as for `LogitLens`.
        on_nonfinite: as for `LogitLens`.
        check_fingerprint: refuse to run on a model other than the one the lens was
            trained for (`ModelError`); False overrides.
        config: metadata (model, training settings, corpus, metrics) kept with the lens.
    """

    name = "tuned_lens"

    def __init__(
        self,
        translators: Optional[Translators] = None,
        *,
        path: Optional[PathLike] = None,
        sites: SitesSpec = None,
        include_mid: bool = False,
        k: int = 5,
        chunk_rows: int = 512,
        on_nonfinite: NonFinitePolicy = "raise",
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
        #: Where the lens was loaded from (None: built in memory). A loaded lens must record its model.
        self.source: Optional[Path] = None
        if path is not None:
            loaded = TunedLens.load(path, check_fingerprint=check_fingerprint)
            translators, self.config, self.source = loaded.translators, loaded.config, loaded.source
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
    def identity(
        cls, model: ModelLike, *, sites: SitesSpec = None, include_mid: bool = False, **kwargs: Any
    ) -> "TunedLens":
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
        return cls(Translators(chosen, adapter.d_model), config=lens_config(adapter), **kwargs)

    @property
    def lens_sites(self) -> List[Site]:
        """The sites this lens has translators for (the final site is always available too)."""
        return list(self.require_translators().sites)

    def require_translators(self) -> Translators:
        """The translators, or a clear error for a lens that has none."""
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
        """Raise `ModelError` when ``adapter``'s model is not the lens's model."""
        tr = self.require_translators()
        if self._checked.get(id(adapter.model)):
            return
        model_name = self.config.get("model_name", "unknown model")
        if tr.d_model != adapter.d_model:
            raise ModelError(
                "This tuned lens was trained on a model of another width.",
                expected=f"a model with d_model={tr.d_model} ({model_name})",
                received=f"{adapter.model_name} with d_model={adapter.d_model}",
                fix="load the model the lens was trained on, or train a lens for this model",
            )
        for s in tr.sites:
            if s.layer is not None and s.layer >= adapter.n_layers:
                raise ModelError(
                    "This tuned lens has translators for layers the model does not have.",
                    expected=f"sites within {adapter.n_layers} blocks",
                    received=f"{s.name} (lens for {model_name})",
                    fix="load the model the lens was trained on",
                )
        what = f"the tuned lens at {self.source}" if self.source else "this tuned lens"
        saved = lens_fingerprint(self.config, what=what)
        if saved is not None or self.source is not None:  # a lens built in memory may carry none
            check_model_fingerprint(saved, adapter.fingerprint, what=what, check=self.check_fingerprint)
        self._checked[id(adapter.model)] = True

    def selected_sites(self, adapter: ModelAdapter) -> List[Site]:
        tr = self.require_translators()
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
        tr = self.require_translators()
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
        *,
        logits: Optional[Float[Tensor, "batch pos d_vocab"]] = None,
    ) -> LensResult:
        self.check_model(adapter)
        return super().run(adapter, streams, tokens, logits=logits)

    # ------------------------------------------------------------------ persistence
    def save(self, path: PathLike, *, overwrite: bool = False, model: Optional[ModelLike] = None) -> Path:
        """Write ``config.json`` + ``translators.safetensors`` into folder ``path``, atomically.

        An existing lens folder is replaced only with ``overwrite=True`` (a folder holding
        anything else never is); the new folder is written beside it first, so an
        interrupted save leaves the old one intact. ``model`` is needed only for a lens
        built from bare translators, to record which model it belongs to.
        """
        tr = self.require_translators()
        config = dict(self.config)
        if model is not None:
            config.update({k: v for k, v in lens_config(adapt(model)).items() if k not in config})
        if "n_layers" not in config or "fingerprint" not in config:
            raise InputError(
                "This lens does not record its model, so a saved copy could not be checked when loaded.",
                expected="a lens from train_tuned_lens / TunedLens.identity / load, or save(path, model=model)",
                received="a TunedLens built from bare translators",
                fix="call lens.save(path, model=model)",
            )
        config.update(
            {
                "d_model": tr.d_model,
                "sites": [s.name for s in tr.sites],
                "translator": "t = h + h @ weight.T + bias per site; then the model's final norm and unembedding",
                "dtype": str(tr.weight.dtype).replace("torch.", ""),
            }
        )
        target = write_lens(Path(path).expanduser(), tensors=tr.state_tensors(), config=config, overwrite=overwrite)
        self.config = {**config, "format": FORMAT_NAME, "format_version": FORMAT_VERSION}
        return target

    @classmethod
    def load(
        cls,
        path: PathLike,
        model: Optional[ModelLike] = None,
        *,
        sites: SitesSpec = None,
        check_fingerprint: bool = True,
        **kwargs: Any,
    ) -> "TunedLens":
        """Load a lens saved with `save` (this version's folders and lensbox 0.1's).

        Args:
            path: the lens directory (``config.json`` + ``translators.safetensors``).
            model: when given, checked now against the lens's fingerprint (otherwise on first use).
            sites: load only these translator sites (each must be in the lens).
            check_fingerprint: False skips the model check (also for a lens that records no model).
        """
        directory = Path(path).expanduser()
        config, tensors, all_sites, d_model = read_lens(directory)
        tr = Translators(all_sites, d_model)
        tr.load_state_tensors(tensors, source=str(directory))
        if sites is not None:
            n_layers = int(config["n_layers"])
            tr = tr.subset([s for s in parse_sites(sites, n_layers) if s != Site.resid_post(n_layers - 1)])
        lens = cls(tr, config=config, check_fingerprint=check_fingerprint, **kwargs)
        lens.source = directory
        if model is not None:
            lens.check_model(adapt(model))
        return lens

    @classmethod
    def from_tuned_lens(
        cls, path: PathLike, model: ModelLike, *, check_fingerprint: bool = True, **kwargs: Any
    ) -> "TunedLens":
        """Import a lens saved by the ``tuned-lens`` library (``params.pt`` + ``config.json``).

        ``params.pt`` is read with ``torch.load(weights_only=True)``: tensors only, no
        code. tuned-lens's translator ``i`` reads the hidden state entering block ``i``
        (0 = the embeddings), i.e. lensbox's ``embed`` for ``i = 0`` and
        ``resid_post.(i-1)`` otherwise; its weights are ``nn.Linear`` weights applied
        residually, the same convention as here.
        """
        directory = Path(path).expanduser()
        adapter = adapt(model)
        cfg, tensors, sites, d_model = read_tuned_lens_library(directory, adapter, check_fingerprint=check_fingerprint)
        tr = Translators(sites, d_model)
        tr.load_state_tensors(tensors, source=str(directory / "params.pt"))
        config = lens_config(adapter)
        config["imported_from"] = {"library": "tuned-lens", "path": str(directory), "config": jsonable(cfg)}
        return cls(tr, config=config, check_fingerprint=check_fingerprint, **kwargs)

    def _repr_html_(self) -> str:
        """Jupyter's rich display: the model, the training digest, and per site how far the
        translator is from the identity (``‖W‖_F``, ``‖b‖``) with its validation KL when recorded."""
        if self.translators is None:
            return _html.block(_html.heading("TunedLens", "with no translators (train, load or use identity())"))
        tr, metrics = self.translators, self.config.get("metrics", {})
        val = metrics.get("val_kl_per_site", {})
        w, b = tr.weight.detach().float().flatten(1).norm(dim=1).tolist(), tr.bias.detach().float().norm(dim=1).tolist()
        rows = [[s.name, w[i], b[i], val.get(s.name)] for i, s in enumerate(tr.sites)]
        plan = self.config.get("training", {})
        facts = [(k, str(plan[k])) for k in ("init", "steps") if k in plan] + [
            (k, metrics[k]) for k in ("init_tokens", "train_tokens", "val_tokens", "val_kl_mean") if k in metrics
        ] + [("trained on", self.trained_on)] + ([("loaded from", str(self.source))] if self.source is not None else [])
        return _html.block(
            _html.heading("TunedLens", f"for {self.config.get('model_name', '?')}: d_model {tr.d_model}, "
                                       f"{len(tr.sites)} translators [{tr.sites[0].name} .. {tr.sites[-1].name}]"),
            _html.fields(facts) if facts else "",
            _html.table(["site", "‖W‖_F", "‖b‖", "val KL (nats)"], rows),
            note="translator(h) = h + W h + b; W = 0, b = 0 is the logit lens",
        )

    @property
    def trained_on(self) -> str:
        """What the lens was trained on, in words, from ``config["corpus"]`` ('unknown' when it records nothing)."""
        c = self.config.get("corpus")
        if not isinstance(c, Mapping):
            return "imported from tuned-lens" if "imported_from" in self.config else "unknown"
        if isinstance(c.get("corpora"), list):
            parts = [str(x.get("corpus")) for x in c["corpora"] if isinstance(x, Mapping)]
            return f"{c.get('name', 'a mix')} ({', '.join(parts)})"
        if c.get("name"):
            return f"corpus {c['name']}"
        if isinstance(c.get("files"), list) and c["files"]:
            names = [Path(str(f)).name for f in c["files"][:3]]
            return "files " + ", ".join(names) + (" ..." if len(c["files"]) > 3 else "")
        if isinstance(c.get("paths"), list) and c["paths"]:
            return "files " + ", ".join(Path(str(f)).name for f in c["paths"][:3])
        if c.get("kind") == "token tensor":
            return f"token windows {c.get('shape')}"
        if c.get("sha256"):
            return f"{c.get('kind', 'text')} ({c.get('chars', '?')} chars, sha256 {c['sha256']})"
        return str(c.get("kind", "unknown"))

    def __repr__(self) -> str:
        if self.translators is None:
            return "TunedLens(<no translators>)"
        s = self.translators.sites
        kind = (self.config.get("training") or {}).get("translator", "affine")
        return (
            f"TunedLens(model={self.config.get('model_name', '?')!r}, d_model={self.translators.d_model}, "
            f"sites={len(s)} [{s[0].name} .. {s[-1].name}], translator={kind!r}, trained_on={self.trained_on!r})"
        )


def tuned_lens(
    model: ModelLike,
    inputs: Inputs,
    lens: Union[TunedLens, PathLike],
    *,
    sites: SitesSpec = None,
    include_mid: bool = False,
    k: int = 5,
    chunk_rows: int = 512,
    on_nonfinite: NonFinitePolicy = "raise",
    check_fingerprint: Optional[bool] = None,
    cache: Any = None,
    prepend_bos: Optional[bool] = None,
    fwd_hooks: FwdHooks = None,
) -> LensResult:
    """Run a tuned lens (an object or a saved directory) on ``inputs`` and return a `LensResult`.

    The options are the logit lens's (`logit_lens`), ``fwd_hooks`` included
    (edit the forward pass; the translators then read the edited streams); ``sites`` must be
    among the lens's translator sites (and the final site). ``check_fingerprint``
    defaults to the lens's own setting (True for a loaded lens).
    """
    if not isinstance(lens, TunedLens):
        lens = TunedLens.load(lens, check_fingerprint=True if check_fingerprint is None else check_fingerprint)
    runner = TunedLens(
        lens.require_translators(),
        sites=sites,
        include_mid=include_mid,
        k=k,
        chunk_rows=chunk_rows,
        on_nonfinite=on_nonfinite,
        config=lens.config,
        check_fingerprint=lens.check_fingerprint if check_fingerprint is None else check_fingerprint,
    )
    runner.source = lens.source
    return analyze(model, inputs, [runner], cache=cache, prepend_bos=prepend_bos, fwd_hooks=fwd_hooks)["tuned_lens"]


__all__ = ["TunedLens", "TunedDecoder", "Translators", "translator_sites", "tuned_lens"]
