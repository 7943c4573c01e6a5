"""The logit lens: decode every intermediate residual stream with the model's own decoder."""

from typing import Any, Dict, List, Optional

from jaxtyping import Float, Int
from torch import Tensor

from ..core._adapter import Inputs, ModelAdapter
from ._decoders import Decoder, DecoderLike, make_decoder
from ..core._registry import Analyzer, analyze
from ._result import LensResult, result_from_stats
from ..core._sites import Site
from ._stats import lens_statistics


class LogitLens(Analyzer):
    """Analyzer ``logit_lens``: per site and position, what the model would say if it stopped there.

    Args:
        sites: which streams to decode (default: the embeddings and every resid_post).
            Accepts 'all', '0-5,final', a list of Site/str/int.
        include_mid: also decode each block's resid_mid (after attention, before the MLP).
        k: how many top tokens to keep per cell.
        decoder: 'logit' (final norm + W_U, default), 'embed_t' (final norm + W_E^T),
            'last_blocks:K' (run the last K blocks first), or a Decoder instance.
        chunk_rows: rows per ``[rows, vocab]`` work buffer; memory grows with it, not with the sequence.
        on_nonfinite: 'raise' (default) on NaN/inf activations, or 'mark' to return NaN statistics there.
    """

    name = "logit_lens"

    def __init__(
        self,
        sites: Any = None,
        *,
        include_mid: bool = False,
        k: int = 5,
        decoder: DecoderLike = None,
        chunk_rows: int = 512,
        on_nonfinite: str = "raise",
    ) -> None:
        self.site_spec = sites
        self.include_mid = include_mid
        self.k = k
        self.decoder: Decoder = make_decoder(decoder)
        self.chunk_rows = chunk_rows
        self.on_nonfinite = on_nonfinite

    def selected_sites(self, adapter: ModelAdapter) -> List[Site]:
        return adapter.sites(self.site_spec, include_mid=self.include_mid)

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
        wanted = sorted(set(sites) | {Site.embed()})
        return {s: self.decoder.prepare(adapter, s, streams[s], tokens) for s in wanted}

    def run(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> LensResult:
        sites = self.selected_sites(adapter)
        prepared = self.prepare_streams(adapter, streams, tokens, sites)
        stats = lens_statistics(
            adapter,
            prepared,
            sites,
            tokens,
            self.decoder,
            final=streams[Site.resid_post(adapter.n_layers - 1)],
            k=self.k,
            chunk_rows=self.chunk_rows,
            on_nonfinite=self.on_nonfinite,
        )
        return result_from_stats(
            lens=self.name, adapter=adapter, decoder_name=self.decoder.describe(), sites=sites, tokens=tokens, stats=stats
        )


def logit_lens(
    model: Any,
    inputs: Inputs,
    *,
    sites: Any = None,
    include_mid: bool = False,
    k: int = 5,
    decoder: DecoderLike = None,
    chunk_rows: int = 512,
    on_nonfinite: str = "raise",
    cache: Any = None,
    prepend_bos: Optional[bool] = None,
) -> LensResult:
    """Run the logit lens on ``inputs`` and return a :class:`LensResult`.

    >>> result = lensbox.logit_lens(model, "The capital of France is")   # doctest: +SKIP
    >>> result.top_tokens("resid_post.20", -1)                            # doctest: +SKIP
    """
    lens = LogitLens(
        sites, include_mid=include_mid, k=k, decoder=decoder, chunk_rows=chunk_rows, on_nonfinite=on_nonfinite
    )
    return analyze(model, inputs, [lens], cache=cache, prepend_bos=prepend_bos)["logit_lens"]
