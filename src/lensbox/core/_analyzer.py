"""The abstract `Analyzer`: what every analysis run by `lensbox.analyze` implements."""

import abc
from typing import Any, Dict, List, Optional

from jaxtyping import Float, Int
from torch import Tensor

from ._adapter import ModelAdapter, ModelLike, adapt
from ._sites import Site


class Analyzer(abc.ABC):
    """Base class of analyzers: set ``name``, implement `sites` and `run`.

    An analyzer declares the residual-stream sites it needs; `lensbox.analyze`
    captures the union of every analyzer's sites in one forward pass and calls each
    analyzer's `run` with its own streams. An analyzer that sets
    ``needs_logits = True`` also receives the model's output logits from that pass as
    ``logits=`` (with an activation cache, those of the check pass that follow from the
    cached final stream).
    """

    name: str = "analyzer"
    needs_logits: bool = False

    @abc.abstractmethod
    def sites(self, adapter: ModelAdapter) -> List[Site]:
        """The residual-stream sites this analyzer needs on ``adapter``'s model."""

    def hook_names(self, model: ModelLike) -> List[str]:
        """The hook names this analyzer reads on ``model``: a ``names_filter`` for your own cache.

        ``model.run_with_cache(tokens, names_filter=lensbox.LogitLens().hook_names(model))``
        caches exactly the streams that ``logit_lens(model, tokens, cache=cache)`` needs,
        including the sites a lens always reads (the embeddings and the last layer).
        """
        adapter = adapt(model)
        return list(dict.fromkeys(adapter.hook_name(s) for s in sorted(self.sites(adapter))))  # site order

    @abc.abstractmethod
    def run(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
        *,
        logits: Optional[Float[Tensor, "batch pos d_vocab"]] = None,
    ) -> Any:
        """Compute the result from the captured ``streams`` (one entry per site of `sites`).

        ``logits`` is passed only to analyzers with ``needs_logits = True``.
        """
