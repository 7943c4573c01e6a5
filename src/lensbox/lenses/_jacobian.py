"""Decoding through a TransformerLens ``JacobianLens``: its per-layer transport matrix, then the model's decoder."""

from typing import Any, List, Mapping

from .._errors import InputError, ModelError
from ..core._adapter import ModelAdapter
from ..core._sites import Site, SiteKind
from ._decoders import ResidStream, SiteMapDecoder


def is_jacobian_lens(obj: Any) -> bool:
    """Whether ``obj`` looks like a TransformerLens ``JacobianLens`` (``jacobians`` mapping + ``transport``)."""
    return hasattr(obj, "jacobians") and hasattr(obj, "transport") and isinstance(getattr(obj, "jacobians"), Mapping)


class JacobianDecoder(SiteMapDecoder):
    """Decode through a TransformerLens ``JacobianLens``: ``J[l] h`` for ``resid_post.l``, then final norm + W_U."""

    name = "jacobian"

    def __init__(self, jlens: Any) -> None:
        if not is_jacobian_lens(jlens):
            raise InputError(
                "This is not a Jacobian lens.",
                expected="an object with a 'jacobians' mapping (layer -> matrix) and a 'transport(resid, layer)' method",
                received=type(jlens).__name__,
                fix="pass a TransformerLens JacobianLens",
            )
        self.jlens = jlens

    def layers(self) -> List[int]:
        """The layers the Jacobian lens has a transport matrix for."""
        return sorted(int(k) for k in self.jlens.jacobians)

    def check_model(self, adapter: ModelAdapter) -> None:
        """Refuse a model whose residual basis is not the raw one the Jacobian lens was fitted in.

        TransformerLens fits Jacobian lenses on raw TransformerBridge models only. Centring the
        writing weights (``center_writing_weights`` of a processed HookedTransformer, or
        compatibility mode on a LayerNorm model) removes each stream's mean, a change of basis
        the transport matrices do not know about. Its mark: every row of ``W_E`` sums to zero.
        """
        if getattr(self, "_checked_model", None) is adapter.model:
            return
        w_e = adapter.W_E.detach().float()
        if w_e.numel() and float(w_e.mean(-1).abs().max()) <= 1e-6 * float(w_e.abs().max()):
            raise ModelError(
                "This Jacobian lens was fitted on a raw model's residual stream; this model's writing weights "
                "were centred (its residual basis changed), so the lens would be silently wrong.",
                expected="the raw TransformerBridge (TransformerBridge.boot_transformers(...), without "
                "enable_compatibility_mode() on a LayerNorm model) the lens was fitted on",
                received=f"{type(adapter.model).__name__} ({adapter.model_name}) with mean-zero embedding rows "
                "(center_writing_weights)",
                fix="decode with the raw bridge, or load the HookedTransformer with center_writing_weights=False",
            )
        self._checked_model = adapter.model

    def map_stream(self, adapter: ModelAdapter, site: Site, resid: ResidStream) -> ResidStream:
        self.check_model(adapter)
        if site.kind is not SiteKind.RESID_POST or site.layer not in self.jlens.jacobians:
            raise InputError(
                f"The Jacobian lens has no transport matrix for {site.name}.",
                expected="resid_post.l for l in " + ", ".join(str(x) for x in self.layers()),
                received=site.name,
                fix="evaluate the Jacobian lens only on its fitted layers",
            )
        return self.jlens.transport(resid, int(site.layer))

    def describe(self) -> str:
        return "Jacobian-lens transport (TransformerLens) + final norm + unembedding"


__all__ = ["JacobianDecoder", "is_jacobian_lens"]
