"""The fitted maps: a ridge map onto the embedding vector, a softmax classifier, and the softmax settings.

These are plain containers of tensors (what a saved probe holds per site and offset);
`lensbox.probes._ridge` and `lensbox.probes._softmax` make them.
"""

import dataclasses
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import InputError

SoftmaxInit = Literal["ridge", "zeros"]
SoftmaxOptimizer = Literal["adam", "lbfgs"]


@dataclasses.dataclass
class RidgeProbe:
    """A linear map ``x -> x @ weight + bias`` from a site's activation to an input-embedding vector."""

    weight: Float[Tensor, "d_in d_out"]
    bias: Float[Tensor, "d_out"]
    n_samples: int
    penalty: float

    def predict(self, x: Float[Tensor, "n d_in"]) -> Float[Tensor, "n d_out"]:
        return x.to(self.weight.dtype) @ self.weight + self.bias


@dataclasses.dataclass
class SoftmaxProbe:
    """A linear classifier ``x -> softmax(x @ weight + bias)`` over ``classes`` (token ids)."""

    weight: Float[Tensor, "d_in n_classes"]
    bias: Float[Tensor, "n_classes"]
    classes: Int[Tensor, "n_classes"]
    n_samples: int

    def logits(self, x: Float[Tensor, "n d_in"]) -> Float[Tensor, "n n_classes"]:
        return x.to(self.weight.dtype) @ self.weight + self.bias

    def predict_topk(self, x: Float[Tensor, "n d_in"], k: int = 5) -> Int[Tensor, "n k"]:
        """Top-``k`` token ids (fewer classes than ``k`` repeat the last one)."""
        logits = self.logits(x)
        kk = min(k, logits.shape[-1])
        top = logits.topk(kk, dim=-1).indices
        if kk < k:
            top = torch.cat([top, top[:, -1:].expand(-1, k - kk)], dim=-1)
        return self.classes.to(top.device)[top]


@dataclasses.dataclass
class SoftmaxSettings:
    """How softmax probes are trained (minibatch Adam on standardised features)."""

    epochs: int = 8
    batch_size: int = 512
    lr: float = 1e-2
    l2: float = 1e-4
    restrict_vocab: bool = True
    init: SoftmaxInit = "ridge"
    optimizer: SoftmaxOptimizer = "adam"
    whiten: bool = True
    prior_bias: bool = True
    max_samples: int = 20000
    seed: int = 0

    def validate(self) -> "SoftmaxSettings":
        """Return ``self`` when every field is usable, else raise `InputError` naming the field."""
        if self.optimizer not in ("adam", "lbfgs"):
            raise InputError(
                "Unknown softmax optimizer.",
                expected="'adam' (minibatch) or 'lbfgs' (full batch; epochs = iterations)",
                received=repr(self.optimizer),
                fix="use optimizer='adam'",
            )
        if self.init not in ("ridge", "zeros"):
            raise InputError(
                "Unknown softmax initialisation.",
                expected="'ridge' (start from the ridge map through W_E) or 'zeros'",
                received=repr(self.init),
                fix="use init='ridge'",
            )
        for name in ("epochs", "batch_size", "max_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(
                    f"Softmax setting {name} must be a positive integer.",
                    expected=f"{name} >= 1",
                    received=repr(v),
                    fix=f"use the default {getattr(SoftmaxSettings, name)}",
                )
        if not (self.lr > 0 and self.l2 >= 0):
            raise InputError(
                "Softmax learning rate must be > 0 and l2 >= 0.",
                expected="lr > 0, l2 >= 0",
                received=f"lr={self.lr!r}, l2={self.l2!r}",
                fix="use lr=1e-2, l2=1e-4",
            )
        return self
