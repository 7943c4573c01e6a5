"""What a training run is asked to do (`TrainSettings`) and what it will do (`RunPlan`).

``TrainSettings`` holds every option of `lensbox.train_tuned_lens`, typed, with
the library defaults: the fast path ``bench/tuned_lens_bench.py`` measured (a
least-squares start on the training text, then one pass of KL refinement decoding 4
random sites per position, batch 1, Adam at 1e-4 with a cosine decay), with the ridge of the
start and the shrinkage of the refinement chosen per site on held-out text (issue 12).
``RunPlan`` is what the settings resolve to for one model and one data set: the sites,
the number of steps, the windows each phase reads and the notes on any rounding. The
plan (not the settings) is recorded in the lens and compared on resume.
"""

import dataclasses
import math
import os
from typing import Any, Callable, Dict, List, Literal, Optional, Tuple, Union

from .._errors import InputError, check_choice, check_int
from ..core._sites import SitesSpec
from ..lenses import TunedLens

Schedule = Literal["cosine", "linear", "constant"]
OptimizerName = Literal["adam", "sgd"]
InitName = Literal["lstsq", "identity"]
TranslatorKind = Literal["affine", "bias", "lowrank"]
Callback = Callable[[int, Dict[str, Any]], Any]

DEFAULT_STEPS = 100


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """Every option of a tuned-lens training run (see `lensbox.train_tuned_lens` for each one).

    ``init`` is ``"lstsq"``, ``"identity"`` or a `TunedLens` to continue.
    """

    sites: SitesSpec = None
    include_mid: bool = False
    steps: Optional[int] = None
    token_budget: Optional[int] = None
    batch_size: int = 1
    grad_accum: int = 1
    window: int = 256
    lr: Optional[float] = None
    schedule: Schedule = "cosine"
    warmup_steps: int = 0
    optimizer: OptimizerName = "adam"
    weight_decay: float = 0.0
    seed: int = 0
    val_fraction: float = 0.05
    max_val_tokens: int = 2048
    init: Union[InitName, TunedLens] = "lstsq"
    init_tokens: Optional[int] = None
    ridge: Union[float, Literal["auto"]] = "auto"
    shrink: Union[float, Literal["auto"]] = "auto"
    translator: TranslatorKind = "affine"
    rank: int = 16
    val_data: Any = None
    select_tokens: int = 512
    sites_per_token: Optional[int] = 4
    chunk_rows: int = 512
    shuffle_buffer: int = 64
    checkpoint_dir: Union[str, "os.PathLike[str]", None] = None
    checkpoint_every: int = 50
    resume: bool = False
    progress: bool = True
    callback: Optional[Callback] = None
    distributed: Optional[bool] = None
    corpus: Optional[Dict[str, Any]] = None

    def __post_init__(self) -> None:
        check_choice("schedule", self.schedule, ("cosine", "linear", "constant"))
        check_choice("optimizer", self.optimizer, ("adam", "sgd"))
        check_choice("translator", self.translator, ("affine", "bias", "lowrank"))
        check_int("rank", self.rank, 1)
        check_int("select_tokens", self.select_tokens, 1)
        for name in ("ridge", "shrink"):
            v = getattr(self, name)
            if v == "auto":
                continue
            top = 1.0 if name == "shrink" else math.inf
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= top:
                raise InputError(f"Invalid {name}.", expected=f"'auto' or a number in [0, {top}]", received=repr(v),
                                 fix=f"pass {name}='auto' to choose it on held-out text")
        if isinstance(self.init, str):
            check_choice("init", self.init, ("lstsq", "identity"), extra=" or a TunedLens")
        positive = ("batch_size", "grad_accum", "chunk_rows", "checkpoint_every", "shuffle_buffer")
        for name in positive:
            check_int(name, getattr(self, name), 1)
        check_int("window", self.window, 2)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_int("max_val_tokens", self.max_val_tokens, 0)
        for name in ("steps", "token_budget", "init_tokens"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 0 if name == "steps" else 1)
        if self.sites_per_token is not None:
            check_int("sites_per_token", self.sites_per_token, 1)
        for name in ("weight_decay",):
            if not getattr(self, name) >= 0:
                raise InputError(f"Invalid {name}.", expected="a non-negative number", received=repr(getattr(self, name)),
                                 fix=f"pass {name}=0 or a small positive number")
        if self.steps is not None and self.token_budget is not None:
            raise InputError("Give steps or token_budget, not both.", expected="one of them",
                             received=f"steps={self.steps}, token_budget={self.token_budget}", fix="drop one")


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """The resolved run: recorded in the lens's ``config["training"]`` and compared on resume."""

    sites: Tuple[str, ...]
    steps: int
    batch_size: int
    grad_accum: int
    window: int
    lr: float
    schedule: Schedule
    warmup_steps: int
    optimizer: OptimizerName
    weight_decay: float
    seed: int
    val_fraction: float
    max_val_tokens: int
    init: Literal["lstsq", "identity", "warm_start"]
    init_windows: int
    train_windows: int
    ridge: Union[float, str]
    sites_per_token: Optional[int]
    shuffle_buffer: int
    token_budget: Optional[int]
    shrink: Union[float, str] = "auto"
    translator: TranslatorKind = "affine"
    rank: int = 16
    select_tokens: int = 512

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.window

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sites"] = list(self.sites)
        d["tokens_per_step"] = self.tokens_per_step
        d["init_tokens"] = self.init_windows * self.window
        d["train_tokens"] = self.steps * self.tokens_per_step
        return d


def default_lr(optimizer: str, init: str) -> float:
    """Adam: 1e-3 from the identity, 1e-4 from a least-squares or warm start (1e-3 undoes much of it on
    SmolLM2); SGD (Nesterov, as tuned-lens): 1.0."""
    if optimizer == "sgd":
        return 1.0
    return 1e-3 if init == "identity" else 1e-4


def lr_at(step: int, s: RunPlan) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then constant/linear/cosine decay to 0."""
    if s.warmup_steps > 0 and step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    if s.schedule == "constant":
        return s.lr
    span = max(1, s.steps - s.warmup_steps)
    frac = min(1.0, (step - s.warmup_steps) / span)
    if s.schedule == "linear":
        return s.lr * (1.0 - frac)
    return s.lr * 0.5 * (1.0 + math.cos(math.pi * frac))


def budget(settings: TrainSettings, init_name: str) -> Tuple[int, int, int, List[str]]:
    """``(steps, train_windows, init_windows, notes)``: how much text each phase reads, and any rounding.

    With ``token_budget`` the run reads exactly ``token_budget // window`` training windows:
    the least-squares start reads them all (or the first ``init_tokens // window``) and the
    refinement takes ``train_windows // batch_size`` steps over the same windows. Anything
    that does not fit (a partial window, a partial batch) is named in ``notes``.
    """
    s, w = settings, settings.window
    notes: List[str] = []
    if s.token_budget is not None:
        n_train = s.token_budget // w
        if n_train < 1:
            raise InputError("The token budget is smaller than one window.", expected=f"token_budget >= window={w}",
                             received=f"token_budget={s.token_budget}", fix=f"pass token_budget={w} or more, or a smaller window")
        steps = n_train // s.batch_size
        if s.token_budget % w:
            notes.append(f"token_budget {s.token_budget} is {n_train} whole windows of {w} = {n_train * w} tokens; "
                         f"the last {s.token_budget % w} tokens (less than a window) are not used")
        if n_train % s.batch_size:
            notes.append(f"the refinement takes {steps} steps of {s.batch_size} windows = {steps * s.batch_size} of the "
                         f"{n_train} windows; the other {n_train % s.batch_size} are read by the least-squares start only"
                         if init_name == "lstsq" else f"{n_train % s.batch_size} windows do not fill a batch of "
                         f"{s.batch_size} and are not used")
    else:
        steps = DEFAULT_STEPS if s.steps is None else s.steps
        n_train = steps * s.batch_size
    n_init = 0
    if init_name == "lstsq":
        n_init = n_train if s.init_tokens is None else s.init_tokens // w
        if s.init_tokens is not None and s.init_tokens % w:
            notes.append(f"init_tokens {s.init_tokens} is {n_init} whole windows = {n_init * w} tokens")
        if n_init < 1:
            raise InputError("The least-squares start needs at least one window.", expected=f"init_tokens >= window={w}",
                             received=f"init_tokens={s.init_tokens}", fix=f"pass init_tokens={w} or more")
        if s.token_budget is not None and n_init > n_train:
            raise InputError("init_tokens exceeds the token budget (the least-squares start counts toward it).",
                             expected=f"init_tokens <= {n_train * w}", received=f"init_tokens={s.init_tokens}",
                             fix="raise token_budget or lower init_tokens")
        n_train = max(n_train, n_init)
    return steps, n_train, n_init, notes
