"""A training process killed with SIGKILL between checkpoints resumes to exactly the uninterrupted result.

Only the run that is killed needs a process of its own; the uninterrupted run and the resumed one run
here, on one torch thread like the killed process, so all three do the same arithmetic (one model build
and one import of TransformerLens instead of three).
"""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import torch

TESTS = Path(__file__).resolve().parent

SETTINGS = dict(
    steps=7, batch_size=4, window=16, init="lstsq", lr=1e-2, sites_per_token=2, val_fraction=0.0,
    checkpoint_every=2, progress=False, chunk_rows=64,
)

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from test_tuned_lens_models import random_windows, tiny_model
    from lensbox.training import train_tuned_lens

    def callback(step, info):
        if step == {kill_at}:
            os.kill(os.getpid(), signal.SIGKILL)

    train_tuned_lens(tiny_model(seed=0), random_windows(24, 16, seed=1), checkpoint_dir=sys.argv[1],
                     callback=callback, **{settings!r})
    sys.exit(3)  # not reached: the callback kills the process
    """
)


def train(ckpt: Path, *, resume: bool = False, callback: Optional[Callable[..., Any]] = None) -> Any:
    """The run of SCRIPT, in this process, on one torch thread."""
    from lensbox.training import train_tuned_lens
    from test_tuned_lens_models import random_windows, tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_tuned_lens(tiny_model(seed=0), random_windows(24, 16, seed=1), checkpoint_dir=str(ckpt),
                                resume=resume, callback=callback, **SETTINGS)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    from lensbox.lenses._tuned import TunedLens

    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), kill_at=5, settings=SETTINGS))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    killed = subprocess.Popen([sys.executable, str(script), str(tmp_path / "ckpt_b")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    whole = train(tmp_path / "ckpt_a")  # while the other process runs
    _, err_b = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, err_b[-2000:]
    state = (tmp_path / "ckpt_b" / "checkpoint.json").read_text()
    assert '"step": 4' in state  # the checkpoint before the kill at step 5
    steps = []
    resumed = train(tmp_path / "ckpt_b", resume=True, callback=lambda step, info: steps.append(step))
    assert steps and min(steps) > 4  # it went on from the checkpoint, not from the start
    whole.save(tmp_path / "lens_a")
    resumed.save(tmp_path / "lens_b")
    whole, resumed = (TunedLens.load(tmp_path / name) for name in ("lens_a", "lens_b"))
    assert torch.equal(whole.translators.weight, resumed.translators.weight)
    assert torch.equal(whole.translators.bias, resumed.translators.bias)
    assert resumed.config["training"]["resumed"] is True and whole.config["training"]["resumed"] is False
    assert whole.config["loss_curve"] == resumed.config["loss_curve"]
