"""Data-parallel training: `torchrun --nproc_per_node 2 -m lensbox train-lens` (gloo, CPU) matches one process."""

import json
import os
import subprocess
import sys

import pytest
import torch

from test_tuned_lens_models import save_tiny_hf_dir


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    from lensbox.cli import main
    from lensbox.lenses._tuned import TunedLens

    model_dir = save_tiny_hf_dir(tmp_path / "tiny-model")
    text = tmp_path / "train.txt"
    text.write_text("\n".join(" ".join(f"w{i * 7 + j}" for j in range(12)) for i in range(60)), encoding="utf-8")
    common = [
        "train-lens", str(text), "--model", model_dir, "--window", "16", "--batch-size", "4", "--steps", "3",
        "--lr", "0.01", "--sites-per-token", "2", "--val-fraction", "0.2", "--max-val-tokens", "64",
        "--chunk-rows", "64", "--seed", "5",
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    ddp = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "lensbox", "-q", *common, "--out", str(tmp_path / "ddp")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # The one-process run is the same CLI call in this process (while the two ranks run): one import of
    # TransformerLens fewer.
    assert main(["-q", *common, "--out", str(tmp_path / "single")]) == 0
    out, err = ddp.communicate(timeout=900)
    assert ddp.returncode == 0, (out[-2000:], err[-4000:])
    a = TunedLens.load(tmp_path / "ddp")
    b = TunedLens.load(tmp_path / "single")
    assert a.config["training"]["processes"] == 2 and b.config["training"]["processes"] == 1
    diff = (a.translators.weight - b.translators.weight).detach().abs()
    # Same maths, different float summation order (least-squares sums per rank, gradient all-reduce);
    # the least-squares solve and Adam amplify rounding a little. Weights are O(0.1-1).
    assert float(diff.mean()) < 5e-5 and float(diff.max()) < 2e-2
    torch.testing.assert_close(a.translators.bias, b.translators.bias, atol=2e-2, rtol=0)
    ma, mb = a.config["metrics"], b.config["metrics"]
    assert ma["val_tokens"] == mb["val_tokens"] == 64
    assert abs(ma["val_kl_mean"] - mb["val_kl_mean"]) < 1e-3 * mb["val_kl_mean"]
    la = [c[1] for c in a.config["loss_curve"]]
    lb = [c[1] for c in b.config["loss_curve"]]
    assert all(abs(x - y) < 1e-4 * y for x, y in zip(la, lb)), (la, lb)
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["corpus"]["files"] == [str(text)]
