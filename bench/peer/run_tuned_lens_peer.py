"""Train and evaluate the peer library tuned-lens 0.2.0 on SmolLM2-135M-Instruct.

Steps (see bench/peer/README.md):
  1. make sure .venvs/tuned-lens exists (bench/peer/setup_tuned_lens.sh),
  2. prepare the HF model directory and the token windows (project venv),
  3. run ``python -m tuned_lens train`` in float32 under /usr/bin/time -v with our shim,
  4. evaluate held-out KL per layer (our eval_peer_lens.py; optionally the CLI's eval),
  5. write bench/results/tuned_lens_peer.json.

Standard library only; run it with any Python 3::

    python3 bench/peer/run_tuned_lens_peer.py                 # 50 steps x 256 tokens
    python3 bench/peer/run_tuned_lens_peer.py --steps 2 --out /tmp/smoke.json
"""

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PEER = REPO / "bench" / "peer"
VENV_PY = REPO / ".venvs" / "tuned-lens" / "bin" / "python"
PROJECT_PY = REPO / ".venv" / "bin" / "python"
CACHE = Path(os.environ.get("LENSBOX_CACHE", Path.home() / ".cache" / "lensbox"))


class LoadSampler(threading.Thread):
    """Samples the 1-minute load average every `period` seconds (to judge interference)."""

    def __init__(self, period: float = 15.0) -> None:
        super().__init__(daemon=True)
        self.period, self.samples, self._halt = period, [], threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(round(os.getloadavg()[0], 2))
            self._halt.wait(self.period)

    def stop(self) -> list:
        self._halt.set()
        self.join()
        return self.samples


def run_logged(cmd: list, env: dict, log: Path) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    with log.open("w") as fh:
        proc = subprocess.run([str(c) for c in cmd], env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=REPO)
    if proc.returncode != 0:
        sys.stderr.write(log.read_text()[-4000:])
        raise SystemExit(f"command failed ({proc.returncode}); log: {log}")


def parse_time_v(text: str) -> dict:
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", text)
    wall = int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", text).group(1))
    sys_ = float(re.search(r"System time \(seconds\): ([\d.]+)", text).group(1))
    return {"peak_rss_kb": rss_kb, "wall_s": wall, "cpu_s": user + sys_}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--tokens-per-step", type=int, default=256)
    ap.add_argument("--lens-dir", type=Path, default=CACHE / "peer_lens")
    ap.add_argument("--work", type=Path, default=CACHE / "peer")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "tuned_lens_peer.json")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch intra-op threads for training and evaluation (default: torch's own, = cores)")
    ap.add_argument("--cli-eval", action="store_true", help="also run the library's eval command (cross-check)")
    ap.add_argument("--skip-train", action="store_true",
                    help="reuse the lens and the training measurements of an earlier run in --work/--lens-dir")
    args = ap.parse_args()

    if not VENV_PY.exists():
        subprocess.run(["bash", str(PEER / "setup_tuned_lens.sh")], check=True)
    args.work.mkdir(parents=True, exist_ok=True)
    windows = args.work / "windows.json"

    # 2. model directory + token windows (project venv: lensbox's loader and corpus)
    prep = subprocess.run(
        [str(PROJECT_PY), str(PEER / "prepare_peer_data.py"), "--out", str(windows)],
        capture_output=True, text=True, cwd=REPO,
    )
    if prep.returncode != 0:
        raise SystemExit(f"prepare_peer_data.py failed:\n{prep.stderr[-4000:]}")
    meta = json.loads(prep.stdout.strip().splitlines()[-1])
    window = meta["window"]
    if args.tokens_per_step % window:
        raise SystemExit(f"--tokens-per-step must be a multiple of the window ({window})")
    n_train_windows = (meta["train_slice"][1] - meta["train_slice"][0]) // window
    if args.steps * args.tokens_per_step > n_train_windows * window:
        raise SystemExit("not enough training windows for that many steps (tuned-lens would stop silently)")

    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(PEER / "shim"),
        LENSBOX_PEER_SHIM="1",
        LENSBOX_PEER_FP32="1",
        LENSBOX_PEER_WINDOWS=str(windows),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        WANDB_MODE="disabled",
    )
    if args.threads is not None:  # torch reads OMP_NUM_THREADS for its intra-op pool
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))

    # 3. training
    timing = args.work / "train_timing.json"
    timev = args.work / "train_time_v.txt"
    train_record = args.work / "train_record.json"
    env_train = dict(env, LENSBOX_PEER_TIMING=str(timing), LENSBOX_PEER_SPLIT="train")
    train_cmd = [
        "/usr/bin/time", "-v", "-o", timev, VENV_PY, "-m", "tuned_lens", "train",
        "--model.name", meta["model_dir"], "--precision", "float32",
        "--data.name", "lensbox-peer-windows", "--max_length", window,
        "--tokens_per_step", args.tokens_per_step, "--num_steps", args.steps,
        "--per_gpu_batch_size", 1, "--seed", 42, "--output", args.lens_dir,
    ]
    if not args.skip_train:
        if args.lens_dir.exists():
            shutil.rmtree(args.lens_dir)
        load_before = os.getloadavg()
        sampler = LoadSampler()
        sampler.start()
        run_logged(train_cmd, env_train, args.work / "train.log")
        load_samples = sampler.stop()
        train_record.write_text(json.dumps({"steps": args.steps, "tokens_per_step": args.tokens_per_step,
                                            "load_before": load_before[0], "load_samples": load_samples}))
    rec = json.loads(train_record.read_text())
    if (rec["steps"], rec["tokens_per_step"]) != (args.steps, args.tokens_per_step):
        raise SystemExit(f"--skip-train: the earlier run used {rec['steps']} x {rec['tokens_per_step']}")
    load_before, load_samples = (rec["load_before"],), rec["load_samples"]
    tv = parse_time_v(timev.read_text())
    stamps = json.loads(timing.read_text())
    loop_s = stamps["execute_done"] - stamps["setup_done"]
    train_tokens = args.steps * args.tokens_per_step

    # 4a. our own held-out evaluation
    eval_out = args.work / "eval.json"
    params = args.lens_dir / "params.pt"
    fresh = eval_out.exists() and eval_out.stat().st_mtime > params.stat().st_mtime
    if not (args.skip_train and fresh):  # --skip-train reuses an evaluation of this very lens
        run_logged(
            [VENV_PY, PEER / "eval_peer_lens.py", "--model-dir", meta["model_dir"], "--lens-dir", args.lens_dir,
             "--windows", windows, "--out", eval_out],
            env, args.work / "eval.log",
        )
    ev = json.loads(eval_out.read_text())

    # 4b. cross-check with the library's own eval command (reports KL x nats_to_bpb)
    cli = None
    if args.cli_eval:
        cli_dir = args.work / "cli_eval"
        run_logged(
            [VENV_PY, PEER / "cli_eval.py", "--model.name", meta["model_dir"], "--precision", "float32",
             "--data.name", "lensbox-peer-windows", "--max_length", window, "--lens_name", args.lens_dir,
             "--output", cli_dir],
            dict(env, LENSBOX_PEER_SPLIT="heldout"), args.work / "cli_eval.log",
        )
        agg = json.loads((cli_dir / "aggregate_metrics.json").read_text())
        import math

        n_held = meta["heldout_slice"][1] - meta["heldout_slice"][0]
        to_nats = 1.0 / (n_held / meta["heldout_bytes"] / math.log(2))
        L = len(ev["kl_per_layer_tuned"])
        cli_tuned = [agg["tuned"]["kl"][f"layer_{i}"] * to_nats for i in range(L)]
        cli_logit = [agg["logit"]["kl"][f"layer_{i}"] * to_nats for i in range(L)]
        cli = {
            "max_abs_diff_tuned": max(abs(a - b) for a, b in zip(cli_tuned, ev["kl_per_layer_tuned"])),
            "max_abs_diff_logit": max(abs(a - b) for a, b in zip(cli_logit, ev["kl_per_layer_logit"])),
            "mean_kl_tuned": sum(cli_tuned) / L,
            "mean_kl_logit": sum(cli_logit) / L,
        }

    lens_bytes = sum(p.stat().st_size for p in args.lens_dir.iterdir() if p.is_file())
    result = {
        "library": "tuned-lens 0.2.0 (CLI `python -m tuned_lens train`, defaults: SGD nesterov, lr_scale 1, "
                   "momentum 0.9, weight_decay 1e-3, linear decay, KL loss, token_shift 0, seed 42)",
        "model": "SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32)",
        "steps": args.steps,
        "tokens_per_step": args.tokens_per_step,
        "train_tokens": train_tokens,
        "wall_s": round(loop_s, 2),
        "s_per_step": round(loop_s / args.steps, 3),
        "tokens_per_s": round(train_tokens / loop_s, 2),
        "cpu_s_train_loop": round(stamps["cpu_execute_done"] - stamps["cpu_setup_done"], 2),
        "wall_s_setup": round(stamps["setup_done"] - stamps["process_start"], 2),
        "wall_s_process": round(tv["wall_s"], 2),
        "cpu_s_process": round(tv["cpu_s"], 2),
        "peak_rss_gb": round(tv["peak_rss_kb"] * 1024 / 1e9, 3),
        "kl_per_layer_tuned": [round(x, 5) for x in ev["kl_per_layer_tuned"]],
        "kl_per_layer_logit": [round(x, 5) for x in ev["kl_per_layer_logit"]],
        "mean_kl_tuned": round(ev["mean_kl_tuned"], 5),
        "mean_kl_logit": round(ev["mean_kl_logit"], 5),
        "heldout_tokens": ev["heldout_tokens"],
        "dtype": "float32 (model and lens; the training loop's bf16 autocast disabled by the shim)",
        "kl_definition": "mean over held-out positions of sum_v p_final (log p_final - log p_lens), nats; "
                         "layer i = hidden_states[i] = residual entering block i (0 = embeddings)",
        "cli_eval_crosscheck": cli,
        "data": {k: meta[k] for k in ("corpus", "source", "text_sha256", "corpus_windows", "window",
                                       "train_windows", "heldout_windows", "train_slice", "heldout_slice")},
        "lens_dir": str(args.lens_dir).replace(str(Path.home()), "~"),
        "lens_bytes": lens_bytes,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": args.threads if args.threads is not None else f"default ({os.cpu_count()})",
            "platform": platform.platform(),
            "loadavg_1m_before": round(load_before[0], 2),
            "loadavg_1m_samples_during_training": load_samples,
        },
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.startswith("kl_per")}, indent=1))


if __name__ == "__main__":
    main()
