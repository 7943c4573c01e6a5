"""One interface over every TransformerLens generation.

`adapt` looks at a model object and returns a `ModelAdapter` that knows
its sizes, its residual-stream hook names, its final norm and unembedding, and its
tokenizer. The rest of lensbox talks only to the adapter. See ``README_adapters.md``
beside this file for the facts each branch relies on.
"""

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import InputError, ModelError, SiteError
from ._sites import Site, SiteKind, SiteLike, SitesSpec, parse_sites, resolve_site, valid_site_names

Inputs = Union[str, Sequence[str], Tensor, Sequence[int]]

_SUPPORTED = (
    "transformer_lens TransformerBridge (4.x, raw or after enable_compatibility_mode()), "
    "transformer_lens HookedTransformer (2.x/3.x) and its subclasses (e.g. sae_lens.HookedSAETransformer)"
)


def _class_names(obj: Any) -> List[str]:
    return [cls.__name__ for cls in type(obj).__mro__]


def _generation(model: Any) -> str:
    names = _class_names(model)
    if "TransformerBridge" in names:
        return "bridge-compat" if getattr(model, "compatibility_mode", False) else "bridge"
    if "HookedTransformer" in names:
        return "hooked-transformer"
    raise ModelError(
        "lensbox cannot analyse this object: it is not a hooked TransformerLens model.",
        expected=_SUPPORTED,
        received=f"{type(model).__module__}.{type(model).__qualname__}",
        fix=(
            "wrap a Hugging Face model with TransformerBridge.boot_transformers(name, hf_model=..., "
            "tokenizer=...), or load one with lensbox.load_model()"
        ),
    )


def _check_unicode(text: str) -> None:
    """Refuse text that cannot be encoded as UTF-8 (lone surrogates such as ``"\\ud800"``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(
            "The text is not valid Unicode: it holds a lone surrogate code point, which no tokenizer can encode.",
            expected="text that encodes as UTF-8",
            received=f"{text[max(0, err.start - 10): err.end + 10]!r} (code point U+{ord(text[err.start]):04X} at index {err.start})",
            fix="remove the surrogate, or decode the source bytes with errors='replace' before passing the text",
        ) from None


class ModelAdapter:
    """The model-facing interface every lensbox analyzer uses.

    Build one with `adapt`; you rarely need it directly. It exposes sizes,
    residual-stream sites and their hook names, the model's final norm and
    unembedding, tokenization and readable token labels.
    """

    def __init__(self, model: Any) -> None:
        self.generation = _generation(model)
        self.model = model
        cfg = model.cfg
        self.n_layers: int = int(cfg.n_layers)
        self.d_model: int = int(cfg.d_model)
        self.n_heads: int = int(getattr(cfg, "n_heads", 0) or 0)
        self.d_head: int = int(getattr(cfg, "d_head", 0) or 0)
        self.d_vocab: int = int(self.W_U.shape[-1])
        self.n_ctx: int = int(getattr(cfg, "n_ctx", 0) or 0)
        self.model_name: str = str(getattr(cfg, "model_name", None) or type(model).__name__)

    def __repr__(self) -> str:
        return (
            f"ModelAdapter({self.model_name!r}, generation={self.generation!r}, n_layers={self.n_layers}, "
            f"d_model={self.d_model}, d_vocab={self.d_vocab})"
        )

    # ------------------------------------------------------------------ sizes and weights
    @property
    def tokenizer(self) -> Any:
        return getattr(self.model, "tokenizer", None)

    def _require_tokenizer(self, fix: str) -> Any:
        """The tokenizer, or a `ModelError` (with ``fix``) when the model has none."""
        tok = self.tokenizer
        if tok is None:
            raise ModelError(
                "This model has no tokenizer, so text cannot be tokenized.",
                expected="a model with model.tokenizer set",
                received="model.tokenizer is None",
                fix=fix,
            )
        return tok

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.model.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.model.W_U

    @property
    def b_U(self) -> Float[Tensor, "d_vocab"]:
        b = getattr(self.model, "b_U", None)
        if b is None:
            return torch.zeros(self.W_U.shape[-1], dtype=self.W_U.dtype, device=self.W_U.device)
        return b

    @property
    def device(self) -> torch.device:
        return self.W_U.device

    @property
    def is_dispatched(self) -> bool:
        """True when the model is split over several devices (loaded with a Hugging Face ``device_map``)."""
        hf = getattr(self.model, "original_model", None)
        device_map = getattr(hf, "hf_device_map", None)
        return bool(device_map) and len({str(v) for v in device_map.values()}) > 1

    @property
    def dtype(self) -> torch.dtype:
        return self.W_U.dtype

    # ------------------------------------------------------------------ sites
    @property
    def has_pos_embed(self) -> bool:
        """True when the model adds learned absolute positional embeddings to the stream (GPT-2, OPT)."""
        return str(getattr(self.model.cfg, "positional_embedding_type", "standard")) == "standard"

    @property
    def has_attn_post_norm(self) -> bool:
        """True when each attention output passes through its own norm before the stream (Gemma-2's ``ln1_post``).

        There ``attn_out.i`` is that norm's output, so the heads' ``z @ W_O`` (+ ``b_O``) add up
        to the norm's *input*, not to ``attn_out.i``.
        """
        try:
            return any(getattr(block, "ln1_post", None) is not None for block in self.model.blocks)
        except (AttributeError, TypeError):
            return False

    def site(self, site: SiteLike) -> Site:
        """Validate one site for this model (an unknown one lists the valid choices).

        Component sites are accepted here (``attn_out.3``, ``head.3.7``, ...); ``pos_embed``
        only on models that add learned positions to the stream.
        """
        s = resolve_site(site, self.n_layers, n_heads=self.n_heads or None)
        if s.kind is SiteKind.POS_EMBED and not self.has_pos_embed:
            kind = getattr(self.model.cfg, "positional_embedding_type", "?")
            raise SiteError(
                "This model adds no positional embedding to the residual stream.",
                expected="pos_embed only on models with learned absolute positions (positional_embedding_type 'standard')",
                received=f"pos_embed on {self.model_name} (positional_embedding_type {kind!r})",
                fix="use 'embed' (= 'tok_embed' on this model): positions enter inside attention here",
            )
        return s

    def sites(
        self, spec: SitesSpec = None, *, include_mid: bool = False, components: bool = False
    ) -> List[Site]:
        """Resolve a selection (None/'all', '0-5,final', a list, ...) into sorted sites.

        Component sites (``attn_out.i``, ``mlp_out.i``, ``head.i.h``, ``tok_embed``, ``pos_embed``)
        raise a `lensbox.SiteError` unless ``components`` is true: the residual-stream
        analyzers (logit lens, tuned lens, probes) cannot decode them as streams.
        """
        chosen = parse_sites(
            spec, self.n_layers, include_mid=include_mid, n_heads=self.n_heads or None, components=components
        )
        return [self.site(s) for s in chosen]

    def valid_sites(self) -> str:
        return valid_site_names(self.n_layers, self.n_heads or None)

    def hook_name(self, site: SiteLike) -> str:
        """The TransformerLens hook name that carries ``site`` on this model.

        A head site's hook is its block's ``attn.hook_z`` (``[batch, pos, n_heads, d_head]``, one
        slot per query head, also under grouped-query attention); its output is
        `head_outputs` of that activation.
        """
        s = self.site(site)
        if s.kind is SiteKind.EMBED:
            return "blocks.0.hook_resid_pre"
        if s.kind is SiteKind.TOK_EMBED:
            return "hook_embed"
        if s.kind is SiteKind.POS_EMBED:
            return "hook_pos_embed"
        if s.kind is SiteKind.HEAD:
            return f"blocks.{s.layer}.attn.hook_z"
        return f"blocks.{s.layer}.hook_{s.kind.value}"

    def hook_names(self, sites: SitesSpec = None, *, include_mid: bool = False) -> List[str]:
        """The hook names a cache must hold for an analysis of ``sites``, in site order, without repeats.

        Pass them as ``names_filter`` to ``model.run_with_cache`` to cache only what lensbox
        reads: ``cache = model.run_with_cache(tokens, names_filter=adapt(model).hook_names())[1]``.
        ``sites`` and ``include_mid`` mean what they mean for ``logit_lens``; component sites
        are accepted too (``hook_names("head.3.7")`` is ``['blocks.3.attn.hook_z']``).
        """
        chosen = self.sites(sites, include_mid=include_mid, components=True)
        return list(dict.fromkeys(self.hook_name(s) for s in chosen))

    # ------------------------------------------------------------------ attention heads
    def W_O(self, layer: int) -> Float[Tensor, "n_heads d_head d_model"]:
        """Block ``layer``'s attention output weights, one ``[d_head, d_model]`` slice per query head."""
        w = self.model.blocks[layer].attn.W_O
        if w.ndim != 3 or tuple(w.shape) != (self.n_heads, self.d_head, self.d_model):
            raise ModelError(
                f"Block {layer}'s W_O has an unexpected shape.",
                expected=f"[n_heads, d_head, d_model] = [{self.n_heads}, {self.d_head}, {self.d_model}]",
                received=f"shape {tuple(w.shape)}",
                fix="report this model type to lensbox",
            )
        return w

    def b_O(self, layer: int) -> Float[Tensor, "d_model"]:
        """Block ``layer``'s attention output bias (zeros on bias-free models).

        ``b_O`` belongs to the layer, not to a head: ``attn_out.i = sum_h head.i.h + b_O[i]``
        (on models without a post-attention norm). Attributions report it as its own term.
        """
        try:
            b = self.model.blocks[layer].attn.b_O
        except AttributeError:
            b = None
        if b is None:
            return torch.zeros(self.d_model, dtype=self.dtype, device=self.device)
        return b

    def head_outputs(
        self,
        layer: int,
        z: Float[Tensor, "*batch pos n_heads d_head"],
        heads: Optional[Sequence[int]] = None,
    ) -> Float[Tensor, "*batch pos n_sel d_model"]:
        """Per-head outputs ``z[..., h, :] @ W_O[h]`` of block ``layer`` from its captured ``hook_z``.

        ``z`` is ``hook_z`` for some positions (pass a chunk of positions to bound memory: the
        result holds ``n_sel x d_model`` values per position); ``heads`` selects query heads
        (default: all). The bias ``b_O`` is not included (see `b_O`). Computed in the
        dtype of ``z``, on its device.
        """
        if z.ndim < 3 or tuple(z.shape[-2:]) != (self.n_heads, self.d_head):
            raise ModelError(
                f"Block {layer}'s hook_z has the wrong shape.",
                expected=f"[..., pos, n_heads, d_head] = [..., pos, {self.n_heads}, {self.d_head}]",
                received=f"shape {tuple(z.shape)}",
                fix=f"check that no hook replaces blocks.{layer}.attn.hook_z with a tensor of another shape",
            )
        w = self.W_O(layer).to(device=z.device, dtype=z.dtype)
        if heads is not None:
            idx = [self.site(f"head.{layer}.{int(h)}").head for h in heads]
            z = z[..., idx, :]
            w = w[idx]
        return torch.einsum("...hd,hdm->...hm", z, w)

    # ------------------------------------------------------------------ decoding
    def final_norm(self, resid: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_model"]:
        """Apply the model's own final normalisation (identity when the model has none)."""
        ln = getattr(self.model, "ln_final", None)
        if ln is None:
            return resid
        return ln(resid)

    @property
    def final_norm_centers(self) -> bool:
        """True when the final norm subtracts the mean (LayerNorm), False for RMSNorm or no norm."""
        return str(getattr(self.model.cfg, "normalization_type", None) or "").upper() in ("LN", "LNPRE")

    def final_norm_affine(self) -> Tuple[Float[Tensor, "d_model"], Float[Tensor, "d_model"]]:
        """The final norm's elementwise weight ``w`` and bias ``b`` (float32), read through the norm itself.

        Every supported final norm is ``N(x) = c(x) / s(x) * w + b`` with ``c`` the centring
        (LayerNorm) or the identity (RMSNorm), ``s`` a per-position scalar. ``b = N(0)``; ``w``
        comes from probes where ``s`` is known: ``K * 1`` for RMSNorm (``s = K``), and the centred
        unit vectors ``K * (e_j - 1/d)`` for LayerNorm (``s = K * sqrt(d-1) / d``, so
        ``N_j = sqrt(d-1) * w_j + b_j``); the epsilon is negligible at ``K = 1000``. A Gemma-style
        ``(1 + w)`` weight is thus read as the model applies it.
        With no final norm: ``w = 1``, ``b = 0``.
        """
        d = self.d_model
        if getattr(self.model, "ln_final", None) is None:
            return torch.ones(d, device=self.device), torch.zeros(d, device=self.device)
        dt = self.dtype
        big = 1e3
        with torch.no_grad():
            b = self.final_norm(torch.zeros(1, d, dtype=dt, device=self.device))[0].float()
            if self.final_norm_centers:
                probes = big * (torch.eye(d, device=self.device) - 1.0 / d)
                out = self.final_norm(probes.to(dt)).float()
                # probe j has mean 0 and std big*sqrt(d-1)/d, entry j = big*(d-1)/d: N(probe)_j = sqrt(d-1)*w_j + b_j
                w = (out.diagonal() - b) / (d - 1) ** 0.5
            else:
                w = self.final_norm(torch.full((1, d), big, dtype=dt, device=self.device))[0].float() - b
        return w, b

    def final_norm_scale(
        self,
        resid: Float[Tensor, "*batch d_model"],
        affine: Optional[Tuple[Tensor, Tensor]] = None,
    ) -> Float[Tensor, "*batch"]:
        """The final norm's scale ``1 / s(x)`` at each row of ``resid``, as the model's own norm applies it.

        Freezing it makes the norm linear, so the contributions of the stream's parts add up:
        ``N(x) = (1/s) * c(x) * w + b``; fitted per row from ``N(resid)`` by least squares (exact for
        these norms, and independent of how the norm stores its epsilon). ``affine`` is
        `final_norm_affine`'s result, when the caller has it.
        """
        w, b = affine if affine is not None else self.final_norm_affine()
        if getattr(self.model, "ln_final", None) is None:
            return torch.ones(resid.shape[:-1], device=resid.device)
        with torch.no_grad():
            out = self.final_norm(resid).float() - b.to(resid.device)
        x = resid.float()
        if self.final_norm_centers:
            x = x - x.mean(-1, keepdim=True)
        xw = x * w.to(resid.device)
        return (out * xw).sum(-1) / (xw * xw).sum(-1).clamp_min(1e-30)

    def unembed(self, normed: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_vocab"]:
        """``normed @ W_U + b_U``, in the dtype of ``normed``."""
        W_U = self.W_U
        return normed @ W_U.to(normed.dtype) + self.b_U.to(normed.dtype)

    def decode(self, resid: Float[Tensor, "*batch d_model"]) -> Float[Tensor, "*batch d_vocab"]:
        """Final norm then unembedding: the logit lens decoder."""
        return self.unembed(self.final_norm(resid))

    @property
    def fingerprint(self) -> "Fingerprint":
        """The model's `Fingerprint` (computed once per model object, then cached).

        The cache is keyed on the model and refreshed when a parameter is replaced or
        modified in place, so reading it again is cheap.
        """
        return Fingerprint.of(self)

    # ------------------------------------------------------------------ tokens
    def check_window(self, window: int, *, what: str) -> None:
        """Refuse a ``window`` (tokens per sequence) longer than the model's context, before any work starts."""
        if self.n_ctx and window > self.n_ctx:
            raise InputError(
                f"The {what} window is longer than the model's context.",
                expected=f"window <= n_ctx = {self.n_ctx} tokens",
                received=f"window={window}",
                fix=f"use window={self.n_ctx} or less",
            )

    def to_tokens(self, inputs: Inputs, *, prepend_bos: Optional[bool] = None) -> Int[Tensor, "batch pos"]:
        """Tokenize text (or validate token ids) into a ``[batch, pos]`` tensor on the model's device."""
        if isinstance(inputs, (bytes, bytearray, memoryview)):
            raise InputError(
                "Raw bytes are not token ids.",
                expected="a string, a list of strings, a list of token ids, or an integer tensor [batch, pos]",
                received=f"{type(inputs).__name__} of length {len(inputs)}: {bytes(inputs)[:40]!r}",
                fix="decode the bytes to text first, e.g. data.decode('utf-8'), or pass model.to_tokens(text)",
            )
        if isinstance(inputs, Tensor):
            tokens = inputs
            if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
                raise InputError(
                    "Token ids must be integers.",
                    expected="an integer tensor of token ids, shape [pos] or [batch, pos]",
                    received=f"dtype {tokens.dtype}, shape {tuple(tokens.shape)}",
                    fix="pass model.to_tokens(text) or the text itself",
                )
            if tokens.ndim == 1:
                tokens = tokens[None]
            if tokens.ndim != 2:
                raise InputError(
                    "Token ids have the wrong number of dimensions.",
                    expected="[pos] or [batch, pos]",
                    received=f"shape {tuple(tokens.shape)}",
                    fix="reshape to [batch, pos]",
                )
            if tokens.device != self.device:
                raise InputError(
                    "The token ids and the model are on different devices.",
                    expected=f"tokens on {self.device} (where the model is)",
                    received=f"tokens on {tokens.device}",
                    fix=f"call tokens.to({str(self.device)!r}) or move the model",
                )
        elif isinstance(inputs, str) or (
            isinstance(inputs, Sequence) and len(inputs) > 0 and all(isinstance(t, str) for t in inputs)
        ):
            texts = [inputs] if isinstance(inputs, str) else list(inputs)
            for t in texts:
                _check_unicode(t)
                if not t.strip():
                    raise InputError(
                        "Cannot analyse empty text.",
                        expected="a non-empty string",
                        received=repr(t),
                        fix="pass the prompt you want to analyse, e.g. 'The capital of France is'",
                    )
            rows = [self._tokenize_one(t, prepend_bos) for t in texts]
            lengths = {len(r) for r in rows}
            if len(lengths) > 1:
                raise InputError(
                    "Texts in one batch tokenize to different lengths.",
                    expected="texts of the same token length (no padding is applied)",
                    received=f"token lengths {[len(r) for r in rows]}",
                    fix="analyse the texts one at a time, or pass an equal-length token tensor",
                )
            tokens = torch.tensor(rows, dtype=torch.long, device=self.device)
        elif isinstance(inputs, Sequence) and len(inputs) > 0 and all(isinstance(t, int) for t in inputs):
            tokens = torch.tensor([list(inputs)], dtype=torch.long, device=self.device)
        else:
            raise InputError(
                "Cannot read these inputs.",
                expected="a string, a list of strings, a list of token ids, or an integer tensor [batch, pos]",
                received=f"{type(inputs).__name__}: {str(inputs)[:80]!r}",
                fix="pass the prompt text",
            )
        if tokens.shape[-1] == 0 or tokens.shape[0] == 0:
            raise InputError(
                "Cannot analyse an empty sequence.",
                expected="at least one token",
                received=f"shape {tuple(tokens.shape)}",
                fix="pass non-empty text",
            )
        if self.n_ctx and tokens.shape[-1] > self.n_ctx:
            raise InputError(
                "The input is longer than the model's context window.",
                expected=f"at most {self.n_ctx} tokens",
                received=f"{tokens.shape[-1]} tokens",
                fix=f"truncate the text, e.g. tokens[:, :{self.n_ctx}], or split it into windows",
            )
        lo, hi = int(tokens.min()), int(tokens.max())
        if lo < 0 or hi >= self.d_vocab:
            raise InputError(
                "Token ids fall outside the model's vocabulary.",
                expected=f"ids in 0..{self.d_vocab - 1}",
                received=f"ids in {lo}..{hi}",
                fix="tokenize with this model's own tokenizer",
            )
        return tokens.long()

    def _tokenize_one(self, text: str, prepend_bos: Optional[bool]) -> List[int]:
        self._require_tokenizer(fix="pass token ids instead of text, or attach a tokenizer")
        kwargs = {} if prepend_bos is None else {"prepend_bos": prepend_bos}
        toks = self.model.to_tokens(text, **kwargs, truncate=False)
        return [int(t) for t in toks[0].tolist()]

    def token_label(self, token_id: int) -> str:
        """A readable label for one token id (visible spaces, bytes shown as hex)."""
        from ._tokens import token_label

        return token_label(self.tokenizer, int(token_id))

    def token_id(self, token: Union[int, str], *, what: str = "token") -> int:
        """The id of one token given as an id or as text that is exactly one token (else `InputError`)."""
        from ._tokens import token_id

        return token_id(self.tokenizer, self.d_vocab, token, what=what)

    def token_labels(self, ids: Union[Sequence[int], Tensor]) -> List[str]:
        """Readable labels for a sequence; byte tokens of one character are joined into UTF-8."""
        from ._tokens import sequence_labels

        if isinstance(ids, Tensor):
            ids = [int(i) for i in ids.reshape(-1).tolist()]
        return sequence_labels(self.tokenizer, [int(i) for i in ids])

    # ------------------------------------------------------------------ running
    def run_and_capture(
        self,
        tokens: Int[Tensor, "batch pos"],
        sites: Sequence[Site],
    ) -> Dict[Site, Float[Tensor, "batch pos d_model"]]:
        """One forward pass that stores only the residual streams at ``sites``.

        Streams are moved to the unembedding's device (a no-op unless the model is split
        over several devices with ``device_map``), where the statistics are computed.
        """
        return self.capture(tokens, sites)[0]

    def capture(
        self,
        tokens: Int[Tensor, "batch pos"],
        sites: Sequence[Site],
        *,
        keep_logits: bool = False,
        fwd_hooks: Sequence[Tuple[str, Callable[..., Any]]] = (),
    ) -> Tuple[Dict[Site, Float[Tensor, "batch pos d_model"]], Optional[Float[Tensor, "batch pos d_vocab"]]]:
        """One forward pass: the streams at ``sites`` and (with ``keep_logits``) the output logits.

        Component sites are captured too: ``attn_out.i``, ``mlp_out.i``, the embeddings as their
        hooks hold them, and a head site ``head.i.h`` as ``[batch, pos, d_model]`` computed from
        ``hook_z`` (`head_outputs`).

        ``fwd_hooks`` (TransformerLens ``(hook name, function)`` pairs, e.g. an ablation)
        run before the capture hooks, so the captured streams include their edits. The
        logits are ``None`` unless ``keep_logits``.
        """
        wanted: Dict[str, List[Site]] = {}
        for s in sites:
            wanted.setdefault(self.hook_name(s), []).append(s)
        store: Dict[Site, Tensor] = {}
        device = self.device

        def make_hook(group: List[Site]) -> Callable[..., None]:
            def hook(act: Tensor, hook: Any = None) -> None:
                for s in group:
                    if s.kind is SiteKind.HEAD:  # hook_z -> this head's z @ W_O[h]
                        store[s] = self.head_outputs(s.layer, act.detach(), [s.head])[..., 0, :].to(device)
                    else:
                        store[s] = act.detach().to(device)

            return hook

        hooks = list(fwd_hooks) + [(name, make_hook(group)) for name, group in wanted.items()]
        with torch.no_grad():
            out = self.model.run_with_hooks(tokens, fwd_hooks=hooks, return_type="logits" if keep_logits else None)
        missing = [s for s in sites if s not in store]
        if missing:
            raise ModelError(
                "The forward pass did not reach some hook points.",
                expected=", ".join(self.hook_name(s) for s in missing),
                received=f"hooks fired: {sorted({self.hook_name(s) for s in store})}",
                fix="report this model type to lensbox; its hook names differ from TransformerLens's",
            )
        logits = out.detach().to(device) if keep_logits else None
        return store, logits

    def run_blocks_from(
        self,
        resid: Float[Tensor, "batch pos d_model"],
        start_layer: int,
        tokens: Int[Tensor, "batch pos"],
    ) -> Float[Tensor, "batch pos d_model"]:
        """Run blocks ``start_layer .. n_layers-1`` on ``resid`` (in place of resid_pre.start_layer)."""
        start = self.site(Site.resid_pre(start_layer) if start_layer > 0 else Site.embed())
        last = Site.resid_post(self.n_layers - 1)
        out: Dict[str, Tensor] = {}

        def replace(act: Tensor, hook: Any = None) -> Tensor:
            return resid.to(act.dtype)

        def capture(act: Tensor, hook: Any = None) -> None:
            out["final"] = act.detach()

        with torch.no_grad():
            self.model.run_with_hooks(
                tokens,
                fwd_hooks=[(self.hook_name(start), replace), (self.hook_name(last), capture)],
                return_type=None,
            )
        return out["final"]


ModelLike = Union[torch.nn.Module, ModelAdapter]
"""What every ``model`` argument accepts: a TransformerLens ``TransformerBridge`` (4.x) or
``HookedTransformer`` (2.x/3.x, and subclasses), both ``torch.nn.Module`` objects, or a
`ModelAdapter` already built from one. `adapt` refuses other modules with a
`ModelError`. (The alias names ``torch.nn.Module`` because neither
TransformerLens class exists in every supported version.)"""


def adapt(model: ModelLike) -> ModelAdapter:
    """Return the `ModelAdapter` for a hooked model (or pass an adapter through)."""
    if isinstance(model, ModelAdapter):
        return model
    return ModelAdapter(model)


# Imported last: _fingerprint builds on ModelAdapter (core/__init__ imports this module first).
from ._fingerprint import Fingerprint  # noqa: E402
