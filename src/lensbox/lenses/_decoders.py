"""Decoders: how a residual-stream vector becomes a distribution over the vocabulary.

A decoder has two steps. `Decoder.prepare` sees one site's whole stream
``[batch, pos, d_model]`` once (it may mix positions, as running blocks does);
`Decoder.decode` maps rows ``[n, d_model]`` to logits ``[n, d_vocab]`` and is
called chunk by chunk, so the full ``[layer, pos, vocab]`` tensor never exists.
"""

from typing import Optional, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..core._adapter import ModelAdapter
from .._errors import InputError
from ..core._sites import Site

def logit_softcap(adapter: ModelAdapter) -> Optional[float]:
    """The model's final-logit soft-cap ``c`` (logits become ``c * tanh(z / c)``), or None when it has none.

    Read from ``cfg.output_logits_soft_cap`` (HookedTransformer configs and TransformerLens
    4.x bridges, which copy Gemma-2's ``final_logit_softcapping`` there); 0 or negative means off.
    """
    cap = getattr(getattr(adapter.model, "cfg", None), "output_logits_soft_cap", None)
    if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap > 0:
        return None
    return float(cap)


def apply_softcap(logits: Float[Tensor, "*rows d_vocab"], cap: Optional[float]) -> Float[Tensor, "*rows d_vocab"]:
    """``cap * tanh(logits / cap)``, or ``logits`` unchanged when ``cap`` is None."""
    return logits if cap is None else torch.tanh(logits / cap) * cap


ResidStream = Float[Tensor, "batch pos d_model"]  # one site's stream, as ``prepare`` sees it
TokenIds = Int[Tensor, "batch pos"]


class Decoder:
    """Final norm + unembedding (+ the model's logit soft-cap): the logit lens's decoder (the default)."""

    name = "logit"

    def prepare(  # spelled out (not ResidStream/TokenIds) for the API docs, which show this signature
        self,
        adapter: ModelAdapter,
        site: Site,
        resid: Float[Tensor, "batch pos d_model"],
        tokens: Int[Tensor, "batch pos"],
    ) -> Float[Tensor, "batch pos d_model"]:
        """Per-site transform over a whole stream before chunked decoding (identity here)."""
        return resid

    def decode(self, adapter: ModelAdapter, rows: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        """Final norm, unembedding, then the model's logit soft-cap if it has one."""
        return apply_softcap(adapter.decode(rows), logit_softcap(adapter))

    def describe(self) -> str:
        return "final norm + unembedding (W_U)"


class EmbedTransposeDecoder(Decoder):
    """Final norm, then the transpose of the input embedding ``W_E^T`` instead of ``W_U``."""

    name = "embed_t"

    def decode(self, adapter: ModelAdapter, rows: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
        normed = adapter.final_norm(rows)
        return apply_softcap(normed @ adapter.W_E.to(normed.dtype).T, logit_softcap(adapter))

    def describe(self) -> str:
        return "final norm + transposed input embedding (W_E^T)"


class LastBlocksDecoder(Decoder):
    """Run the model's last ``k`` blocks on a site's stream, then final norm + unembedding.

    Layer ``l``'s stream replaces the input of block ``n_layers - k``; the blocks see the
    real tokens' positions. Sites at or past block ``n_layers - k`` are decoded directly.
    """

    name = "last_blocks"

    def __init__(self, k: int) -> None:
        if not isinstance(k, int) or k < 1:
            raise InputError(
                "The last-blocks decoder needs a positive block count.",
                expected="k >= 1",
                received=repr(k),
                fix="use e.g. decoder='last_blocks:2'",
            )
        self.k = k

    def prepare(self, adapter: ModelAdapter, site: Site, resid: ResidStream, tokens: TokenIds) -> ResidStream:
        if self.k > adapter.n_layers:
            raise InputError(
                "The last-blocks decoder asks for more blocks than the model has.",
                expected=f"k <= {adapter.n_layers}",
                received=str(self.k),
                fix=f"use k in 1..{adapter.n_layers}",
            )
        start = adapter.n_layers - self.k
        if site.depth >= 2 * start + 1:  # the stream is already past block `start`'s input
            return resid
        return adapter.run_blocks_from(resid, start, tokens)

    def describe(self) -> str:
        return f"last {self.k} block(s) + final norm + unembedding"


class SiteMapDecoder(Decoder):
    """A decoder whose ``prepare`` maps each site's stream by a fitted per-site map, then final norm + W_U.

    Subclasses give the map (`map_stream`) and say whether it covers the final
    site (`maps_final`); when it does not, the final site passes through
    unchanged. The map runs without gradients and its output takes the stream's dtype.
    """

    def maps_final(self, site: Site) -> bool:
        """Whether the final site ``site`` is mapped too (else it passes through)."""
        return False

    def map_stream(self, adapter: ModelAdapter, site: Site, resid: ResidStream) -> ResidStream:
        raise NotImplementedError

    def prepare(self, adapter: ModelAdapter, site: Site, resid: ResidStream, tokens: TokenIds) -> ResidStream:
        if site == Site.resid_post(adapter.n_layers - 1) and not self.maps_final(site):
            return resid
        with torch.no_grad():
            return self.map_stream(adapter, site, resid).to(resid.dtype)


DecoderLike = Union[None, str, Decoder]


def make_decoder(spec: DecoderLike) -> Decoder:
    """``None``/'logit' -> `Decoder`; 'embed_t' -> W_E^T; 'last_blocks:K' -> last K blocks."""
    if isinstance(spec, Decoder):
        return spec
    if spec is None or spec in {"logit", "unembed", "W_U"}:
        return Decoder()
    if spec in {"embed_t", "W_E^T", "W_E.T", "embed"}:
        return EmbedTransposeDecoder()
    if isinstance(spec, str) and spec.startswith("last_blocks"):
        _, _, k = spec.partition(":")
        if k.strip().isdigit():
            return LastBlocksDecoder(int(k))
    raise InputError(
        "Unknown decoder.",
        expected="'logit' (final norm + W_U), 'embed_t' (final norm + W_E^T), 'last_blocks:K', or a Decoder instance",
        received=repr(spec),
        fix="pick one of the expected decoders",
    )


__all__ = ["Decoder", "EmbedTransposeDecoder", "LastBlocksDecoder", "apply_softcap", "logit_softcap", "make_decoder"]
