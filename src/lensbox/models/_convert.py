"""Turn a Hugging Face Llama-architecture model into a TransformerLens ``HookedTransformer``.

TransformerLens 2.x and 3.x ship ``HookedTransformer``; building one with
``HookedTransformer.from_pretrained`` needs the hub. `to_hooked_transformer`
works offline instead: it reads the sizes from ``hf_model.config``, builds the
``HookedTransformerConfig`` by hand (the RoPE base included, which the hub-free
path would otherwise leave at TransformerLens's default of 10000), converts the
weights with TransformerLens's own Llama converter and loads them.

TransformerLens 4.x has no ``HookedTransformer``; there, wrap the Hugging Face
model with ``TransformerBridge.boot_transformers`` instead.
"""

import importlib
import warnings
from typing import Any, Callable, Dict, Optional

import torch

from .._errors import ModelError

# A causal mask of n_ctx x n_ctx booleans is stored in every attention layer, so the
# default context is capped: 2048 costs 4 MiB a layer, 8192 would cost 64 MiB a layer.
DEFAULT_MAX_N_CTX = 2048

_NORM_KEYS = (".ln1.w", ".ln2.w", "ln_final.w")

_CONVERTER_PATHS = (
    # (module, function): TransformerLens 2.x and 3.x keep the converter here.
    ("transformer_lens.pretrained.weight_conversions.llama", "convert_llama_weights"),
    ("transformer_lens.pretrained.weight_conversions", "convert_llama_weights"),
)


def _tl_version() -> str:
    try:
        import importlib.metadata

        return importlib.metadata.version("transformer-lens")
    except Exception:  # noqa: BLE001 - a version string is only used in messages
        return "unknown"


def _hooked_transformer_classes() -> Any:
    """Import ``(HookedTransformer, HookedTransformerConfig)`` or explain why not."""
    try:
        import transformer_lens  # noqa: F401
    except ImportError as exc:  # pragma: no cover - lensbox depends on transformer_lens
        raise ModelError(
            "TransformerLens is not installed, so no HookedTransformer can be built.",
            expected="transformer-lens 2.x or 3.x",
            received=f"ImportError: {exc}",
            fix="pip install 'transformer-lens>=2.16,<4'",
        ) from exc
    version = _tl_version()
    try:
        from transformer_lens import HookedTransformer, HookedTransformerConfig
    except ImportError as exc:
        raise ModelError(
            "This TransformerLens has no HookedTransformer (it was removed in 4.x).",
            expected="transformer-lens 2.x or 3.x for to_hooked_transformer()",
            received=f"transformer-lens {version}: {exc}",
            fix=(
                "use TransformerBridge.boot_transformers(name, hf_model=model, tokenizer=tok) "
                "from transformer_lens.model_bridge and pass the bridge to lensbox"
            ),
        ) from exc
    return HookedTransformer, HookedTransformerConfig


def _llama_converter() -> Callable[[Any, Any], Dict[str, torch.Tensor]]:
    tried = []
    for module_name, attr in _CONVERTER_PATHS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            tried.append(module_name)
            continue
        fn = getattr(module, attr, None)
        if callable(fn):
            return fn
        tried.append(f"{module_name}.{attr}")
    raise ModelError(
        "This TransformerLens has no Llama weight converter where lensbox looks for one.",
        expected=" or ".join(f"{m}.{a}" for m, a in _CONVERTER_PATHS),
        received=f"none of {tried} is importable",
        fix="install transformer-lens 2.18 or 3.9 (the versions lensbox tests), or report the new location",
    )


def _config_value(config: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return value
    return default


def _rope_settings(config: Any) -> Dict[str, Any]:
    """RoPE base and scaling from a Llama config of transformers 4.x (rope_theta, rope_scaling)
    or 5.x (rope_parameters)."""
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict) and "full_attention" in params and isinstance(params["full_attention"], dict):
        params = params["full_attention"]  # per-layer-type layout
    if not isinstance(params, dict):
        params = {}
    scaling = getattr(config, "rope_scaling", None)
    if not isinstance(scaling, dict):
        scaling = {}
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise ModelError(
            "The model config names no RoPE base.",
            expected="config.rope_theta (transformers 4.x) or config.rope_parameters['rope_theta'] (5.x)",
            received=f"{type(config).__name__} without either",
            fix="set config.rope_theta to the base the model was trained with",
        )
    merged = {**scaling, **params}
    rope_type = merged.get("rope_type", merged.get("type", "default")) or "default"
    out: Dict[str, Any] = {"rotary_base": float(theta)}
    if rope_type == "default":
        return out
    if rope_type == "llama3":
        out.update(
            use_NTK_by_parts_rope=True,
            NTK_by_parts_factor=float(merged["factor"]),
            NTK_by_parts_low_freq_factor=float(merged["low_freq_factor"]),
            NTK_by_parts_high_freq_factor=float(merged["high_freq_factor"]),
            NTK_original_ctx_len=int(merged["original_max_position_embeddings"]),
        )
        return out
    raise ModelError(
        f"RoPE scaling of type {rope_type!r} has no HookedTransformer equivalent that lensbox maps.",
        expected="rope type 'default' or 'llama3'",
        received=repr(merged),
        fix="wrap the model with TransformerBridge (TransformerLens 4.x) instead",
    )


def _check_llama(hf_model: Any) -> Any:
    config = getattr(hf_model, "config", None)
    inner = getattr(hf_model, "model", None)
    model_type = getattr(config, "model_type", None)
    if (
        config is None
        or model_type != "llama"
        or getattr(inner, "layers", None) is None
        or getattr(hf_model, "lm_head", None) is None
    ):
        raise ModelError(
            "to_hooked_transformer converts Llama-architecture causal language models only.",
            expected="a transformers LlamaForCausalLM (config.model_type == 'llama')",
            received=f"{type(hf_model).__module__}.{type(hf_model).__qualname__} (model_type={model_type!r})",
            fix=(
                "load the model with transformers.AutoModelForCausalLM; for other architectures use "
                "HookedTransformer.from_pretrained(name, hf_model=...) or TransformerBridge"
            ),
        )
    if getattr(config, "mlp_bias", False):
        raise ModelError(
            "This Llama has MLP biases, which the TransformerLens Llama converter drops.",
            expected="config.mlp_bias False",
            received="config.mlp_bias True",
            fix="wrap the model with TransformerBridge (TransformerLens 4.x) instead",
        )
    return config


def hooked_transformer_config_dict(
    hf_model: Any,
    *,
    n_ctx: Optional[int] = None,
    dtype: Optional[torch.dtype] = None,
    device: Optional[str] = None,
    fold_ln: bool = False,
    default_prepend_bos: Optional[bool] = None,
    model_name: Optional[str] = None,
) -> Dict[str, Any]:
    """The ``HookedTransformerConfig`` fields for a Hugging Face Llama model, as a dict."""
    config = _check_llama(hf_model)
    d_model = int(config.hidden_size)
    n_heads = int(config.num_attention_heads)
    d_head = int(_config_value(config, "head_dim", default=d_model // n_heads))
    n_kv = int(_config_value(config, "num_key_value_heads", default=n_heads))
    max_pos = int(_config_value(config, "max_position_embeddings", default=DEFAULT_MAX_N_CTX))
    if n_ctx is None:
        n_ctx = min(max_pos, DEFAULT_MAX_N_CTX)
    if n_ctx < 1:
        raise ModelError(
            "n_ctx must be positive.",
            expected=f"an int in 1..{max_pos}",
            received=str(n_ctx),
            fix=f"leave n_ctx=None for min(max_position_embeddings, {DEFAULT_MAX_N_CTX})",
        )
    first = next(hf_model.parameters())
    act_fn = str(_config_value(config, "hidden_act", default="silu"))
    name = model_name or _config_value(config, "_name_or_path", "name_or_path", default="") or "llama"
    cfg: Dict[str, Any] = {
        "model_name": str(name).rstrip("/").split("/")[-1] or "llama",
        "original_architecture": "LlamaForCausalLM",
        "n_layers": int(config.num_hidden_layers),
        "d_model": d_model,
        "d_head": d_head,
        "n_heads": n_heads,
        # TransformerLens uses grouped-query attention exactly when n_key_value_heads is set.
        "n_key_value_heads": n_kv if n_kv != n_heads else None,
        "d_mlp": int(config.intermediate_size),
        "d_vocab": int(config.vocab_size),
        "d_vocab_out": int(config.vocab_size),
        "n_ctx": int(n_ctx),
        "eps": float(config.rms_norm_eps),
        "act_fn": act_fn,
        "normalization_type": "RMSPre" if fold_ln else "RMS",
        "positional_embedding_type": "rotary",
        "rotary_dim": d_head,
        "rotary_adjacent_pairs": False,
        "final_rms": True,
        "gated_mlp": True,
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "dtype": dtype or first.dtype,
        "device": str(device) if device is not None else str(first.device),
        # Weights come from the Hugging Face model: skip TransformerLens's random init.
        "init_weights": False,
        **_rope_settings(config),
    }
    if default_prepend_bos is not None:
        cfg["default_prepend_bos"] = bool(default_prepend_bos)
    return cfg


def _attention_biases(hf_model: Any, cfg: Any, state_dict: Dict[str, torch.Tensor]) -> None:
    """Copy q/k/v/o biases (config.attention_bias) that TransformerLens's converter zero-fills."""
    gqa = "_" if cfg.n_key_value_heads is not None else ""
    n_kv = cfg.n_key_value_heads or cfg.n_heads
    for layer, block in enumerate(hf_model.model.layers):
        attn = block.self_attn
        for proj, key, heads in (("q_proj", "b_Q", cfg.n_heads), ("k_proj", f"{gqa}b_K", n_kv), ("v_proj", f"{gqa}b_V", n_kv)):
            bias = getattr(getattr(attn, proj), "bias", None)
            if bias is not None:
                state_dict[f"blocks.{layer}.attn.{key}"] = bias.detach().reshape(heads, cfg.d_head)
        bias = getattr(attn.o_proj, "bias", None)
        if bias is not None:
            state_dict[f"blocks.{layer}.attn.b_O"] = bias.detach()


def to_hooked_transformer(
    hf_model: Any,
    tokenizer: Any = None,
    *,
    fold_ln: bool = False,
    center_unembed: bool = False,
    fold_value_biases: bool = False,
    refactor_factored_attn_matrices: bool = False,
    n_ctx: Optional[int] = None,
    dtype: Optional[torch.dtype] = None,
    device: Optional[str] = None,
    default_prepend_bos: Optional[bool] = None,
    model_name: Optional[str] = None,
    hooked_class: Any = None,
) -> Any:
    """Convert a Hugging Face Llama model into a TransformerLens 2.x/3.x ``HookedTransformer``, offline.

    Args:
        hf_model: a ``transformers`` ``LlamaForCausalLM`` (SmolLM2, TinyLlama, Llama 2/3, ...).
        tokenizer: its tokenizer, attached to the result (``None`` leaves the model token-only).
        fold_ln: fold each RMSNorm weight into the next linear layer (the norms become
            ``RMSNormPre``). Logits are unchanged up to float rounding.
        center_unembed: subtract W_U's mean over the vocabulary: log-probs are unchanged,
            logits move by a per-position constant.
        fold_value_biases, refactor_factored_attn_matrices: passed on to TransformerLens.
            (Writing weights are never centred: that needs LayerNorm, and Llama uses RMSNorm.)
        n_ctx: context window of the result; default ``min(max_position_embeddings, 2048)``
            because every attention layer stores an ``n_ctx x n_ctx`` mask.
        dtype, device: of the result; default those of ``hf_model``. The Hugging Face model
            itself is never modified.
        default_prepend_bos: TransformerLens's ``cfg.default_prepend_bos`` (default: its own, True).
        model_name: ``cfg.model_name``; default the last part of the config's ``_name_or_path``.
        hooked_class: a ``HookedTransformer`` subclass to instantiate instead (for example
            ``sae_lens.HookedSAETransformer``).

    Raises:
        ModelError: TransformerLens 4.x (no HookedTransformer), a non-Llama model, or a RoPE
            scaling the conversion cannot express.
    """
    HookedTransformer, HookedTransformerConfig = _hooked_transformer_classes()
    cls = HookedTransformer if hooked_class is None else hooked_class
    if not (isinstance(cls, type) and issubclass(cls, HookedTransformer)):
        raise ModelError(
            "hooked_class must be HookedTransformer or a subclass of it.",
            expected="a subclass of transformer_lens.HookedTransformer",
            received=repr(hooked_class),
            fix="pass hooked_class=None for a plain HookedTransformer",
        )
    cfg_dict = hooked_transformer_config_dict(
        hf_model,
        n_ctx=n_ctx,
        dtype=dtype,
        device=device,
        fold_ln=fold_ln,
        default_prepend_bos=default_prepend_bos,
        model_name=model_name,
    )
    known = set(getattr(HookedTransformerConfig, "__dataclass_fields__", {}))
    if known:
        dropped = {k: v for k, v in cfg_dict.items() if k not in known}
        needed = {k: v for k, v in dropped.items() if k.startswith("NTK") or k == "use_NTK_by_parts_rope"}
        if needed:
            raise ModelError(
                "This TransformerLens cannot express the model's RoPE scaling.",
                expected="a HookedTransformerConfig with use_NTK_by_parts_rope (transformer-lens >= 2.8)",
                received=f"missing fields {sorted(needed)}",
                fix="upgrade transformer-lens to 2.18 or 3.9",
            )
        cfg_dict = {k: v for k, v in cfg_dict.items() if k in known}
    cfg = HookedTransformerConfig(**cfg_dict)

    convert = _llama_converter()
    with torch.no_grad():
        state_dict = convert(hf_model, cfg)
        _attention_biases(hf_model, cfg, state_dict)
        # TransformerLens processes some weights in place: never let that reach the HF model.
        state_dict = {
            k: v.detach().to(device=cfg.device, dtype=cfg.dtype).clone() for k, v in state_dict.items()
        }
        with warnings.catch_warnings():
            # transformer-lens 3.x deprecates HookedTransformer in favour of the bridge; the
            # caller asked for a HookedTransformer, so the warning says nothing new.
            warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")
            model = cls(cfg, tokenizer=tokenizer, move_to_device=True)
        _load_processed(
            model,
            state_dict,
            fold_ln=fold_ln,
            center_writing_weights=False,
            center_unembed=center_unembed,
            fold_value_biases=fold_value_biases,
            refactor_factored_attn_matrices=refactor_factored_attn_matrices,
        )
    model.eval()
    return model


def _load_processed(model: Any, state_dict: Dict[str, torch.Tensor], **flags: bool) -> None:
    """TransformerLens's ``load_and_process_state_dict``, with one load at the end.

    TransformerLens processes the weights (folding, centring) and then calls
    ``self.load_state_dict`` once per key, each call walking the whole module tree:
    25 s for a 30-layer model on two cores. Here those calls are collected while
    TransformerLens processes, and the result is adopted in one call (under a second).
    Every parameter must be loaded: the model was built without random init.
    """
    collected: Dict[str, torch.Tensor] = {}

    def collect(sd: Dict[str, torch.Tensor], strict: bool = True, assign: bool = False) -> Any:
        collected.update(sd)
        return torch.nn.modules.module._IncompatibleKeys([], [])

    model.load_state_dict = collect  # instance attribute shadows the method for this call only
    try:
        model.load_and_process_state_dict(state_dict, **flags)
    finally:
        del model.load_state_dict
    # assign=True adopts the (already cloned, cast and processed) tensors instead of copying them again.
    result = model.load_state_dict(collected, strict=False, assign=True)
    params = dict(model.named_parameters())
    missing = [k for k in result.missing_keys if k in params]
    # TransformerLens 3.x leaves the folded norm weights in the dict; the RMSNormPre
    # modules that replace the norms have no weight to take them.
    unexpected = [k for k in result.unexpected_keys if not (flags.get("fold_ln") and k.endswith(_NORM_KEYS))]
    if missing or unexpected:
        raise ModelError(
            "The converted weights do not fit the HookedTransformer that was built for them.",
            expected="one tensor for every parameter and no extra keys",
            received=f"missing {missing[:6]}, unexpected {unexpected[:6]}",
            fix="report this TransformerLens version to lensbox (its Llama converter changed)",
        )
