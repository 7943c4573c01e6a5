"""The abstract lens analyzer both the logit lens and the tuned lens derive from.

A lens analyzer picks sites, lets its decoder prepare each site's stream, runs the
chunked statistics engine (`lens_statistics`) and wraps the
numbers in a `LensResult`. Subclasses say which sites they decode
(`LensAnalyzer.selected_sites`) and may adjust the prepared streams.
"""

import abc
from typing import Any, Dict, List, Optional

from jaxtyping import Float, Int
from torch import Tensor

from ..core._adapter import Inputs, ModelAdapter, ModelLike
from ..core import Analyzer, analyze
from ..core._hooks import FwdHooks
from ..core._sites import Site, SitesSpec
from ._decoders import Decoder, DecoderLike, make_decoder
from ._result import LensResult, result_from_stats
from ._stats import NonFinitePolicy, lens_statistics


class LensAnalyzer(Analyzer, abc.ABC):
    """Shared machinery of lens analyzers (abstract: use `LogitLens` or `TunedLens`).

    Args:
        sites: which streams to decode. Accepts None/'all', '0-5,final', a list of Site/str/int.
        include_mid: also decode each block's resid_mid (after attention, before the MLP).
        k: how many top tokens to keep per cell.
        decoder: how a stream becomes logits (see `make_decoder`).
        chunk_rows: rows per ``[rows, vocab]`` work buffer; memory grows with it, not with the sequence.
        on_nonfinite: 'raise' (default) on NaN/inf activations, or 'mark' to return NaN statistics there
            (ranks, top ids and ``final_top1`` -1).
    """

    name = "lens"
    #: analyze() hands over the forward pass's logits: the final site is checked against them.
    needs_logits = True

    def __init__(
        self,
        sites: SitesSpec = None,
        *,
        include_mid: bool = False,
        k: int = 5,
        decoder: DecoderLike = None,
        chunk_rows: int = 512,
        on_nonfinite: NonFinitePolicy = "raise",
    ) -> None:
        self.site_spec = sites
        self.include_mid = include_mid
        self.k = k
        self.decoder: Decoder = make_decoder(decoder)
        self.chunk_rows = chunk_rows
        self.on_nonfinite = on_nonfinite

    @abc.abstractmethod
    def selected_sites(self, adapter: ModelAdapter) -> List[Site]:
        """The sites this lens decodes (rows of the result)."""

    def sites(self, adapter: ModelAdapter) -> List[Site]:
        chosen = self.selected_sites(adapter)
        return sorted(set(chosen) | {Site.embed(), Site.resid_post(adapter.n_layers - 1)})

    def prepare_streams(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
        sites: List[Site],
    ) -> Dict[Site, Tensor]:
        """Each needed site's stream as the decoder sees it (the embeddings always: the ``kl_input`` reference)."""
        wanted = sorted(set(sites) | {Site.embed()})
        return {s: self.decoder.prepare(adapter, s, streams[s], tokens) for s in wanted}

    def run(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
        *,
        logits: Optional[Float[Tensor, "batch pos d_vocab"]] = None,
    ) -> LensResult:
        sites = self.selected_sites(adapter)
        final = streams[Site.resid_post(adapter.n_layers - 1)]
        prepared = self.prepare_streams(adapter, streams, tokens, sites)
        stats = lens_statistics(
            adapter,
            prepared,
            sites,
            tokens,
            self.decoder,
            final=final,
            k=self.k,
            chunk_rows=self.chunk_rows,
            on_nonfinite=self.on_nonfinite,
            model_logits=logits,
        )
        return result_from_stats(
            lens=self.name, adapter=adapter, decoder_name=self.decoder.describe(), sites=sites, tokens=tokens, stats=stats
        )

    def __call__(
        self,
        model: ModelLike,
        inputs: Inputs,
        *,
        cache: Any = None,
        prepend_bos: Optional[bool] = None,
        fwd_hooks: FwdHooks = None,
    ) -> LensResult:
        """Run this lens alone on ``inputs``: ``lensbox.analyze(model, inputs, [lens], ...)[lens.name]``.

        ``fwd_hooks`` (TransformerLens ``(hook name, function)`` pairs) edit the forward pass the
        lens reads, e.g. ``lens(model, text, fwd_hooks=[("blocks.5.hook_attn_out", zero)])``;
        see `lensbox.analyze`.
        """
        return analyze(model, inputs, [self], cache=cache, prepend_bos=prepend_bos, fwd_hooks=fwd_hooks)[self.name]


__all__ = ["LensAnalyzer", "NonFinitePolicy"]
