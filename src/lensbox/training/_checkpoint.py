"""Training checkpoints: one lensbox artifact folder, replaced atomically at every save.

A checkpoint is written with `lensbox._io.write_artifact` (format
``lensbox.training_checkpoint``): ``checkpoint.json`` (the common header, the step,
the window position, the run plan, the optimizer's plain state, the loss history,
the model fingerprint, the SHA-256 of the data's token windows) and ``state.safetensors``
(translators ``lens.*`` and optimizer tensors ``optim.<param>.<name>``). The folder is built beside the target and swapped
in, so a crash leaves the previous checkpoint or the new one. A folder that holds
anything else is refused, never deleted.
"""

import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Tuple, Union

import torch
from torch import Tensor

from .._errors import ArtifactError
from .._io import read_artifact, write_artifact

FORMAT = "lensbox.training_checkpoint"
FORMAT_VERSION = 2
META_FILE = "checkpoint.json"
TENSORS_FILE = "state.safetensors"


class Checkpointer:
    """Saves and loads the checkpoint folder of one run."""

    def __init__(self, directory: Union[str, "os.PathLike[str]"]) -> None:
        self.dir = Path(directory).expanduser()

    def exists(self) -> bool:
        """True when the folder holds a checkpoint (of any version)."""
        return (self.dir / META_FILE).is_file() or (self.dir / "latest.json").is_file()

    def check_target(self, *, resume: bool) -> None:
        """Refuse a folder that holds other files, or a checkpoint when not resuming (before any work)."""
        if self.dir.exists() and not self.dir.is_dir():
            raise ArtifactError("The checkpoint path is a file.", expected="a folder (new or empty)",
                                received=str(self.dir), fix="choose another checkpoint_dir")
        if resume and not self.exists():
            raise ArtifactError(
                "Nothing to resume: the checkpoint folder holds no checkpoint.",
                expected=f"the checkpoint_dir of an earlier run (with {META_FILE})",
                received=f"{self.dir} ({'missing' if not self.dir.exists() else 'no ' + META_FILE})",
                fix="check the folder's spelling, or drop resume=True (--resume) to start a new run",
            )
        if self.exists():
            if not resume:
                raise ArtifactError(
                    "The checkpoint directory already holds a training run.",
                    expected="an empty checkpoint directory, or resume=True to continue that run",
                    received=str(self.dir),
                    fix="pass resume=True (--resume) to continue it, or choose another checkpoint_dir",
                )
            return
        if self.dir.is_dir() and any(self.dir.iterdir()):
            raise ArtifactError(
                "The checkpoint directory holds files that are not a lensbox checkpoint.",
                expected="a new or empty folder (lensbox replaces the checkpoint folder at every save)",
                received=f"{self.dir} containing {sorted(p.name for p in self.dir.iterdir())[:5]}",
                fix="choose another checkpoint_dir; lensbox never deletes files it did not write",
            )

    def save(self, tensors: Mapping[str, Tensor], state: Mapping[str, Any]) -> Path:
        return write_artifact(
            self.dir, format=FORMAT, format_version=FORMAT_VERSION, meta_file=META_FILE, meta=state,
            weights={TENSORS_FILE: dict(tensors)}, overwrite=True, what="the training checkpoint",
        )

    def load(self) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
        if not (self.dir / META_FILE).is_file():
            raise ArtifactError(
                "The checkpoint was written by an older lensbox and cannot be resumed.",
                expected=f"{META_FILE} (checkpoint format version {FORMAT_VERSION})",
                received=f"{self.dir} with latest.json (version 1)",
                fix="start the run again in a new checkpoint_dir",
            )
        meta, weights = read_artifact(self.dir, format=FORMAT, meta_file=META_FILE, versions=(FORMAT_VERSION,),
                                      what=f"the training checkpoint at {self.dir}")
        return weights.get(TENSORS_FILE, {}), meta


def checkpoint_exists(directory: Union[str, "os.PathLike[str]"]) -> bool:
    """Whether ``directory`` holds a training checkpoint (something ``resume=True`` can continue)."""
    return Checkpointer(directory).exists()


def optimizer_tensors(opt: torch.optim.Optimizer) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    """The optimizer's state as tensors (``optim.<param>.<name>``) and a JSON part."""
    sd = opt.state_dict()
    tensors: Dict[str, Tensor] = {}
    plain: Dict[str, Dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                plain.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    """Load what `optimizer_tensors` saved back into ``opt``."""
    state: Dict[int, Dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for pid, st in meta.get("plain_state", {}).items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def make_optimizer(name: str, params: List[Tensor], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """Adam, or SGD with Nesterov momentum 0.9 (as tuned-lens)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
