"""The state of one training run (`Run`), passed between the phases of `._train`."""

import dataclasses
import sys
from typing import Any, Dict, List, Optional, Tuple

import torch

from ..core._adapter import ModelAdapter
from ..core._sites import Site
from ..lenses import Translators
from ._checkpoint import Checkpointer
from ._distributed import Dist
from ._select import HeldOut
from ._settings import RunPlan, TrainSettings
from ._stream import Batches, DataLike, WindowStream


@dataclasses.dataclass
class Run:
    """The state of one run, passed between the phases."""

    adapter: ModelAdapter
    data: DataLike
    settings: TrainSettings
    plan: RunPlan
    dist: Dist
    stream: WindowStream
    tr: Translators
    opt: torch.optim.Optimizer
    ckpt: Optional[Checkpointer]
    notes: List[str]
    history: List[Dict[str, Any]] = dataclasses.field(default_factory=list)
    timing: Dict[str, float] = dataclasses.field(default_factory=lambda: {"init_s": 0.0, "train_s": 0.0, "train_tokens": 0, "init_tokens": 0})
    batches: Optional[Batches] = None
    start_step: int = 0
    resumed: bool = False
    start: Optional[Tuple[torch.Tensor, torch.Tensor]] = None  # the translators before the refinement
    held: Optional[List[HeldOut]] = None
    selection: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_main(self) -> bool:
        return self.dist.rank == 0

    @property
    def final(self) -> Site:
        return Site.resid_post(self.adapter.n_layers - 1)

    def say(self, msg: str) -> None:
        if self.settings.progress and self.is_main:
            print(f"[lensbox] {msg}", file=sys.stderr, flush=True)


__all__ = ["Run"]
