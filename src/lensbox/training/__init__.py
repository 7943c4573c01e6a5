"""lensbox.training: train a tuned lens (per-site affine translators) on a frozen model.

Internals:

* ``_settings.py``: `TrainSettings` (every option, typed, with the measured fast
  path as defaults), ``RunPlan`` (what they resolve to: sites, steps, windows per phase,
  rounding notes), the learning-rate schedule;
* ``_stream.py``: the training text as windows (``lensbox.data.windows``): validation
  split, the capped training windows, per-epoch shuffles, resumable batches;
* ``_objective.py``: KL(final || lens), chunked, with its hand-written gradient (values
  from the ``lensbox.lenses`` KL kernel), and ``validation_kl``;
* ``_lstsq.py``: the least-squares start (normal equations, ridge towards the identity);
* ``_select.py``: regularisation chosen on held-out text (the ridge per site by held-out
  squared error, the shrinkage of the refinement per site by held-out KL);
* ``_regularise.py``: the start (least squares with a fixed or chosen ridge), the translator
  family (affine, bias-only, low-rank) and the shrinkage, as phases of a run;
* ``_run.py``: ``Run``, the state passed between the phases;
* ``_checkpoint.py``: checkpoints as ``lensbox._io`` artifacts, replaced atomically
  (`checkpoint_exists`: is there a run to resume?);
* ``_distributed.py``: data parallelism over ``torch.distributed``;
* ``_train.py``: `train_tuned_lens`: plan, start, refine, validate.

README.md beside this file describes the maths and the checkpoint format.
"""

from ._checkpoint import checkpoint_exists as checkpoint_exists
from ._settings import RunPlan as RunPlan
from ._settings import TrainSettings as TrainSettings
from ._train import train_tuned_lens as train_tuned_lens
from ._train import train_with_settings as train_with_settings

__all__ = ["RunPlan", "TrainSettings", "checkpoint_exists", "train_tuned_lens", "train_with_settings"]
