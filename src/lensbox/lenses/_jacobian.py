"""Decoding through a TransformerLens ``JacobianLens``: its per-layer transport matrix, then the model's decoder."""

from typing import Any, List, Mapping

from .._errors import InputError
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

    def map_stream(self, adapter: ModelAdapter, site: Site, resid: ResidStream) -> ResidStream:
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
