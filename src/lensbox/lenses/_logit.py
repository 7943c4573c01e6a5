"""The logit lens: decode every intermediate residual stream with the model's own decoder."""

from typing import Any, List, Optional

from ..core._adapter import Inputs, ModelAdapter, ModelLike
from ..core import analyze
from ..core._hooks import FwdHooks
from ..core._sites import Site, SitesSpec
from ._decoders import DecoderLike
from ._lens import LensAnalyzer, NonFinitePolicy
from ._result import LensResult


class LogitLens(LensAnalyzer):
    """Analyzer ``logit_lens``: per site and position, what the model would say if it stopped there.

    Args:
        sites: which streams to decode (default: the embeddings and every resid_post).
            Accepts 'all', '0-5,final', a list of Site/str/int.
        include_mid: also decode each block's resid_mid (after attention, before the MLP).
        k: how many top tokens to keep per cell.
        decoder: 'logit' (final norm + W_U, default), 'embed_t' (final norm + W_E^T),
            'last_blocks:K' (run the last K blocks first), or a Decoder instance.
        chunk_rows: rows per ``[rows, vocab]`` work buffer; memory grows with it, not with the sequence.
        on_nonfinite: 'raise' (default) on NaN/inf activations, or 'mark' to return NaN statistics there
            (ranks, top ids and ``final_top1`` -1).
    """

    name = "logit_lens"

    def selected_sites(self, adapter: ModelAdapter) -> List[Site]:
        return adapter.sites(self.site_spec, include_mid=self.include_mid)


def logit_lens(
    model: ModelLike,
    inputs: Inputs,
    *,
    sites: SitesSpec = None,
    include_mid: bool = False,
    k: int = 5,
    decoder: DecoderLike = None,
    chunk_rows: int = 512,
    on_nonfinite: NonFinitePolicy = "raise",
    cache: Any = None,
    prepend_bos: Optional[bool] = None,
    fwd_hooks: FwdHooks = None,
) -> LensResult:
    """Run the logit lens on ``inputs`` and return a `LensResult`.

    Args:
        model: a TransformerBridge or HookedTransformer.
        inputs: text, a list of equal-length texts, or token ids (``[pos]`` or ``[batch, pos]``).
        sites: which streams to decode (default: the embeddings and every resid_post), e.g.
            ``'all'``, ``'0-5,final'`` or a list of sites, names or layer numbers.
        include_mid: also decode each block's resid_mid (after attention, before the MLP).
        k: how many top tokens to keep per cell.
        decoder: ``'logit'`` (final norm + W_U, default), ``'embed_t'`` (final norm + W_E^T),
            ``'last_blocks:K'`` (run the last K blocks first), or a Decoder instance.
        chunk_rows: rows per ``[rows, vocab]`` work buffer; memory grows with it, not with the sequence.
        on_nonfinite: ``'raise'`` (default) on NaN/inf activations, or ``'mark'`` to return NaN
            statistics there.
        cache: an ``ActivationCache`` (or a dict from hook name to tensor) from a run of ``model``
            on exactly these inputs, analysed after one check pass of the model that refuses a cache of
            other inputs or stitched from several runs (see `lensbox.analyze`). The hooks it must hold are
            ``LogitLens(sites).hook_names(model)``, a ``names_filter`` for ``run_with_cache``.
        prepend_bos: whether text gets the model's BOS token first (default: the model's own setting).
        fwd_hooks: TransformerLens ``(hook name, function)`` pairs that edit the forward pass, e.g.
            zero-ablating block 5's attention with ``[("blocks.5.hook_attn_out", lambda act, hook: act * 0)]``:
            every site is then read from the edited run (sites before the edit are unchanged), and the
            final site is checked against the edited model's own logits. A function returns None or a
            tensor of the activation's shape; hooks together with ``cache`` are refused (see `lensbox.analyze`).

    Examples:
        ```python
        result = lensbox.logit_lens(model, "The capital of France is")
        result.top_tokens("resid_post.20", -1)   # the top tokens at layer 20, last position
        ```
    """
    lens = LogitLens(
        sites, include_mid=include_mid, k=k, decoder=decoder, chunk_rows=chunk_rows, on_nonfinite=on_nonfinite
    )
    return analyze(model, inputs, [lens], cache=cache, prepend_bos=prepend_bos, fwd_hooks=fwd_hooks)["logit_lens"]
