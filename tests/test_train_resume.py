"""A training process killed with SIGKILL between checkpoints resumes to exactly the uninterrupted result."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parent

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from test_tuned_lens_models import random_windows, tiny_model
    from lensbox.training import train_tuned_lens

    ckpt, out = sys.argv[1], sys.argv[2]
    kill_at = int(os.environ.get("KILL_AT", "0"))

    def callback(step, info):
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    lens = train_tuned_lens(
        tiny_model(seed=0), random_windows(24, 16, seed=1), steps=7, batch_size=4, window=16, init="lstsq",
        lr=1e-2, sites_per_token=2, val_fraction=0.0, checkpoint_dir=ckpt, checkpoint_every=2,
        resume=os.environ.get("RESUME") == "1", callback=callback, progress=False, chunk_rows=64,
    )
    lens.save(out)
    """
)


def run(script: Path, ckpt: Path, out: Path, **env: str) -> subprocess.Popen:
    full = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **env)
    return subprocess.Popen([sys.executable, str(script), str(ckpt), str(out)], env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path):
    from lensbox.lenses._tuned import TunedLens

    script = tmp_path / "train.py"
    script.write_text(SCRIPT.format(tests=str(TESTS)))
    whole = run(script, tmp_path / "ckpt_a", tmp_path / "lens_a")
    killed = run(script, tmp_path / "ckpt_b", tmp_path / "lens_b", KILL_AT="5")
    out_b, err_b = killed.communicate(timeout=600)
    assert killed.returncode == -signal.SIGKILL, err_b[-2000:]
    assert not (tmp_path / "lens_b").exists()
    state = (tmp_path / "ckpt_b" / "checkpoint.json").read_text()
    assert '"step": 4' in state  # the checkpoint before the kill at step 5
    resumed = run(script, tmp_path / "ckpt_b", tmp_path / "lens_b", RESUME="1")
    for proc in (whole, resumed):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
    a = TunedLens.load(tmp_path / "lens_a")
    b = TunedLens.load(tmp_path / "lens_b")
    assert torch.equal(a.translators.weight, b.translators.weight)
    assert torch.equal(a.translators.bias, b.translators.bias)
    assert b.config["training"]["resumed"] is True and a.config["training"]["resumed"] is False
    assert a.config["loss_curve"] == b.config["loss_curve"]
