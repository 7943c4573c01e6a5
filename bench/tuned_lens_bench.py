"""Benchmark: lensbox's tuned-lens trainer vs the tuned-lens library (0.2.0) on SmolLM2-135M-Instruct.

Same model, same training text, same held-out text as the peer run in ``bench/peer/``
(split defined in ``bench/peer/README.md``: Botchan body, 256-token windows, train =
windows 0..49 = 12,800 tokens, held-out = windows 240..255 = 4,096 tokens, nothing
prepended). The peer's numbers are read from ``bench/results/tuned_lens_peer.json``.

Phases (each child process is timed alone, wall clock and process CPU, with the same
torch thread count as the peer run):

* ``lstsq``: one pass over the 50 training windows accumulating the least-squares
  statistics; translators solved after 1, 2, 4, 8, 16, 32 and 50 windows (snapshots,
  each timed as "forward passes so far + its own solve").
* ``finetune``: from the 50-window least-squares lens, one epoch of KL training over the
  same 50 windows (equal token budget to the peer: 12,800 tokens).
* ``throughput``: a few steps of the full objective (every site at every position, one
  256-token window per step, as the peer) from the identity, for tokens/s.
* ``jlens-fit``: TransformerLens 4.3's Jacobian lens fitted on prompts cut from the same
  training windows (expensive: ~9 CPU-seconds per prompt token; cached).
* evaluation (parent): held-out KL per layer for the logit lens, our lenses, the
  Jacobian lens and the peer's lens imported from ``~/.cache/lensbox/peer_lens``.

Writes ``bench/results/tuned_lens.json`` and ``docs/results/tuned_lens.md``.

    .venv/bin/python bench/tuned_lens_bench.py                 # everything (~25 min on 2 busy cores)
    .venv/bin/python bench/tuned_lens_bench.py --phase jlens-fit --jlens-prompts 4 --jlens-tokens 40
"""

import argparse
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "results" / "tuned_lens.md"
PEER_JSON = RESULTS / "tuned_lens_peer.json"
PEER_LENS = Path.home() / ".cache" / "lensbox" / "peer_lens"
PEER_WINDOWS = Path.home() / ".cache" / "lensbox" / "peer" / "windows.json"
SNAPSHOTS = (1, 2, 4, 8, 16, 32, 50)
WINDOW = 256


def work_dir() -> Path:
    from lensbox import cache_dir

    d = cache_dir() / "bench" / "tuned_lens"
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------------------- the split
def load_split(model: Any = None) -> Dict[str, Any]:
    """Train / held-out token windows per bench/peer/README.md (checked against the peer's windows file)."""
    import torch

    from lensbox.data import fetch_corpus, read_texts, token_windows

    text = read_texts(fetch_corpus("botchan", progress=False))[0]
    lines = text.split("\n")
    a = next(i for i, l in enumerate(lines) if l.startswith("*** START OF"))
    b = next(i for i, l in enumerate(lines) if l.startswith("*** END OF"))
    body = "\n".join(lines[a + 1 : b])
    if model is None:
        from transformers import AutoTokenizer

        from lensbox.models._loading import default_model_dir

        tok = AutoTokenizer.from_pretrained(str(default_model_dir(progress=False)))
    else:
        tok = model.tokenizer
    windows = list(token_windows([body], lambda s: tok.encode(s, add_special_tokens=False), WINDOW, bos_id=None))
    train = torch.stack(windows[:50])
    held = torch.stack(windows[-16:])
    check = "peer windows file not found"
    if PEER_WINDOWS.is_file():
        peer = json.loads(PEER_WINDOWS.read_text())
        same = train.tolist() == peer["train"] and held.tolist() == peer["heldout"]
        check = "identical to the peer's windows.json" if same else "DIFFERENT from the peer's windows.json"
        if not same:
            raise SystemExit("the reconstructed split differs from the peer's windows.json; refusing to compare")
    train_bytes = len(tok.decode(train.reshape(-1).tolist()).encode("utf-8"))
    return {
        "train": train,
        "heldout": held,
        "body_sha256": hashlib.sha256(body.encode("utf-8")).hexdigest(),
        "n_windows": len(windows),
        "check": check,
        "train_bytes": train_bytes,
        "tokenizer": tok,
    }


class Clock:
    """Wall and process-CPU seconds since start."""

    def __init__(self) -> None:
        self.w0, self.c0 = time.perf_counter(), time.process_time()

    def read(self) -> Dict[str, float]:
        return {"wall_s": round(time.perf_counter() - self.w0, 3), "cpu_s": round(time.process_time() - self.c0, 3)}


def peak_rss_gb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 3)


# ---------------------------------------------------------------------------- child phases
def phase_lstsq(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    import lensbox
    from lensbox import Site
    from lensbox.training._lstsq import LstsqStats, scale_invariant_norm as _scale_invariant_norm
    from lensbox.training._objective import capture as _capture
    from lensbox.lenses._tuned import Translators, TunedLens, translator_sites
    from lensbox.lenses._tuned_io import lens_config as _base_config

    model = lensbox.load_model(progress=False)
    split = load_split(model)
    adapter = lensbox.adapt(model)
    sites = translator_sites(adapter.n_layers)
    final = Site.resid_post(adapter.n_layers - 1)
    clock = Clock()
    stats = LstsqStats(len(sites), adapter.d_model, _scale_invariant_norm(adapter))
    snaps = []
    spent = {"wall_s": 0.0, "cpu_s": 0.0}
    for i in range(50):
        t = Clock()
        streams = _capture(adapter, split["train"][i : i + 1], sites)
        F = streams[final].reshape(-1, adapter.d_model)
        stats.add(torch.stack([streams[s].reshape(F.shape[0], -1) for s in sites]), F)
        r = t.read()
        spent = {k: spent[k] + r[k] for k in spent}
        if i + 1 in SNAPSHOTS:
            t = Clock()
            W, b = stats.solve(args.ridge)
            tr = Translators(sites, adapter.d_model)
            with torch.no_grad():
                tr.weight.copy_(W)
                tr.bias.copy_(b)
            solve = t.read()
            config = _base_config(adapter)
            config["training"] = {"init": "lstsq", "ridge": args.ridge, "init_tokens": (i + 1) * WINDOW, "steps": 0}
            out = work_dir() / f"lstsq-{i + 1:02d}"
            TunedLens(tr, config=config).save(out, overwrite=True)
            snaps.append({
                "windows": i + 1, "tokens": (i + 1) * WINDOW, "dir": str(out),
                "wall_s": round(spent["wall_s"] + solve["wall_s"], 2), "cpu_s": round(spent["cpu_s"] + solve["cpu_s"], 2),
                "solve_wall_s": solve["wall_s"],
            })
            print(json.dumps(snaps[-1]), file=sys.stderr, flush=True)
    return {"snapshots": snaps, "total": clock.read(), "peak_rss_gb": peak_rss_gb(), "split_check": split["check"],
            "threads": torch.get_num_threads()}


def phase_finetune(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    import lensbox
    from lensbox.training._train import train_tuned_lens
    from lensbox.lenses._tuned import TunedLens

    model = lensbox.load_model(progress=False)
    split = load_split(model)
    start = TunedLens.load(work_dir() / "lstsq-50", model)
    clock = Clock()
    curve = []

    def cb(step: int, info: Dict[str, Any]) -> None:
        curve.append({"step": step, **clock.read()})

    lens = train_tuned_lens(
        model, split["train"], init=start, steps=50 // args.ft_batch, batch_size=args.ft_batch, window=WINDOW,
        lr=args.ft_lr, schedule="cosine", sites_per_token=args.ft_sites_per_token, val_fraction=0.0,
        shuffle_buffer=64, seed=0, progress=False, callback=cb, chunk_rows=512,
        corpus={"name": "botchan", "split": "train windows 0..49 (bench/peer/README.md)"},
    )
    total = clock.read()
    out = work_dir() / "finetune"
    lens.save(out, overwrite=True)
    m = lens.config["metrics"]
    return {"dir": str(out), "total": total, "curve": curve, "train_tokens": m["train_tokens"],
            "tokens_per_s_wall": round(m["train_tokens"] / total["wall_s"], 2),
            "tokens_per_cpu_s": round(m["train_tokens"] / total["cpu_s"], 2),
            "lr": args.ft_lr, "sites_per_token": args.ft_sites_per_token, "batch": args.ft_batch,
            "peak_rss_gb": peak_rss_gb(), "threads": torch.get_num_threads()}


def phase_throughput(args: argparse.Namespace) -> Dict[str, Any]:
    import torch

    import lensbox
    from lensbox.training._train import train_tuned_lens

    model = lensbox.load_model(progress=False)
    split = load_split(model)
    res: Dict[str, Any] = {"threads": torch.get_num_threads()}
    for label, spt in (("full", None), (f"sites_per_token={args.ft_sites_per_token}", args.ft_sites_per_token)):
        times = []

        def cb(step: int, info: Dict[str, Any]) -> None:
            times.append({"wall": time.perf_counter(), "cpu": time.process_time()})

        t0 = {"wall": time.perf_counter(), "cpu": time.process_time()}
        train_tuned_lens(model, split["train"][: args.tp_steps + 1], init="identity", steps=args.tp_steps + 1,
                         batch_size=1, window=WINDOW, lr=1e-3, sites_per_token=spt, val_fraction=0.0,
                         progress=False, callback=cb)
        # the first step includes warm-up (allocations): time steps 2..n
        wall = times[-1]["wall"] - times[0]["wall"]
        cpu = times[-1]["cpu"] - times[0]["cpu"]
        n = len(times) - 1
        res[label] = {"steps_timed": n, "s_per_step": round(wall / n, 3), "tokens_per_s_wall": round(n * WINDOW / wall, 2),
                      "tokens_per_cpu_s": round(n * WINDOW / cpu, 2), "first_step_s": round(times[0]["wall"] - t0["wall"], 2)}
        print(label, json.dumps(res[label]), file=sys.stderr, flush=True)
    res["peak_rss_gb"] = peak_rss_gb()
    return res


def phase_jlens_fit(args: argparse.Namespace) -> Dict[str, Any]:
    import torch
    from safetensors.torch import save_file
    from transformer_lens.tools.analysis.jacobian_lens import JacobianLens

    import lensbox

    model = lensbox.load_model(progress=False)
    split = load_split(model)
    tok = split["tokenizer"]
    n, length = args.jlens_prompts, args.jlens_tokens
    picks = [round(i * 49 / max(1, n - 1)) for i in range(n)]
    prompts = [tok.decode(split["train"][i, :length].tolist()) for i in picks]
    clock = Clock()
    jl = JacobianLens.fit(model, prompts, corpus="botchan train windows (lensbox bench)", dim_batch=args.jlens_dim_batch,
                          max_seq_len=length + 1, skip_first_positions=args.jlens_skip, show_progress=False)
    took = clock.read()
    path = work_dir() / f"jlens-{n}x{length}.safetensors"
    meta = {"prompts": str(n), "tokens_per_prompt": str(length), "windows": json.dumps(picks),
            "skip_first_positions": str(args.jlens_skip), "fit": json.dumps(took), "n_prompts": str(jl.n_prompts)}
    save_file({f"J.{l}": m.contiguous() for l, m in jl.jacobians.items()}, str(path), metadata=meta)
    return {"path": str(path), "fit": took, "prompts": n, "tokens_per_prompt": length, "windows": picks,
            "skip_first_positions": args.jlens_skip, "peak_rss_gb": peak_rss_gb()}


class CachedJacobianLens:
    """The two attributes lensbox's evaluate() uses from TransformerLens's JacobianLens, from our cache file."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            self.jacobians = {int(k.split(".")[1]): f.get_tensor(k) for k in f.keys()}
            self.metadata = f.metadata()

    def transport(self, residual: Any, layer: int) -> Any:
        return residual.float() @ self.jacobians[layer].T


# ---------------------------------------------------------------------------- parent
def run_child(phase: str, args: argparse.Namespace, threads: int) -> Dict[str, Any]:
    out = work_dir() / f"{phase}.json"
    cmd = [sys.executable, __file__, "--phase", phase, "--child-out", str(out), "--ridge", str(args.ridge),
           "--ft-lr", str(args.ft_lr), "--ft-sites-per-token", str(args.ft_sites_per_token), "--ft-batch", str(args.ft_batch),
           "--tp-steps", str(args.tp_steps), "--jlens-prompts", str(args.jlens_prompts),
           "--jlens-tokens", str(args.jlens_tokens), "--jlens-skip", str(args.jlens_skip),
           "--jlens-dim-batch", str(args.jlens_dim_batch)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO)
    if proc.returncode != 0:
        raise SystemExit(f"phase {phase} failed ({proc.returncode})")
    res = json.loads(out.read_text())
    res["process_wall_s"] = round(time.perf_counter() - t0, 1)
    res["load_avg_before"] = round(load, 2)
    res["load_avg_after"] = round(os.getloadavg()[0], 2)
    return res


def evaluate_all(args: argparse.Namespace, lenses: Dict[str, Any], windows: Any, label: str) -> Dict[str, Any]:
    import torch

    import lensbox
    from lensbox.lenses._evaluate import evaluate

    torch.set_num_threads(args.eval_threads)
    model = lensbox.load_model(progress=False)
    clock = Clock()
    ev = evaluate(model, windows, lenses, window=WINDOW, batch_size=2, progress=True)
    out = ev.to_dict()
    out["eval_wall_s"] = clock.read()["wall_s"]
    print(f"[bench] evaluated {label}: " + ", ".join(f"{k}={v:.3f}" for k, v in out["mean_kl"].items()), file=sys.stderr)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", default="all", choices=["all", "lstsq", "finetune", "throughput", "jlens-fit", "report"])
    ap.add_argument("--docs-only", action="store_true", help="rewrite docs/results/tuned_lens.md from the results JSON")
    ap.add_argument("--child-out", default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the timed phases (the peer ran with 1)")
    ap.add_argument("--eval-threads", type=int, default=2)
    ap.add_argument("--ridge", type=float, default=1e-3)
    ap.add_argument("--ft-lr", type=float, default=1e-4)
    ap.add_argument("--ft-sites-per-token", type=int, default=4)
    ap.add_argument("--ft-batch", type=int, default=1)
    ap.add_argument("--tp-steps", type=int, default=3)
    ap.add_argument("--jlens-prompts", type=int, default=4)
    ap.add_argument("--jlens-tokens", type=int, default=40)
    ap.add_argument("--jlens-skip", type=int, default=4)
    ap.add_argument("--jlens-dim-batch", type=int, default=32)
    ap.add_argument("--skip", action="append", default=[], help="phases to reuse from the last run's cache")
    ap.add_argument("--heldout-windows", type=int, default=16,
                    help="evaluate on the first N of the 16 held-out windows (16 = the peer's whole held-out set)")
    args = ap.parse_args()

    if args.docs_only:
        write_markdown(json.loads((RESULTS / "tuned_lens.json").read_text()))
        print(f"wrote {DOCS}")
        return
    phases = {"lstsq": phase_lstsq, "finetune": phase_finetune, "throughput": phase_throughput,
              "jlens-fit": phase_jlens_fit}
    if args.child_out:
        res = phases[args.phase](args)
        Path(args.child_out).write_text(json.dumps(res, indent=1))
        return
    if args.phase in phases:
        res = run_child(args.phase, args, args.threads)
        print(json.dumps(res, indent=1))
        return
    full_report(args)


def full_report(args: argparse.Namespace) -> None:
    import lensbox

    t_all = time.perf_counter()
    records: Dict[str, Any] = {}
    for phase in ("lstsq", "finetune", "throughput"):
        cached = work_dir() / f"{phase}.json"
        if phase in args.skip and cached.is_file():
            records[phase] = json.loads(cached.read_text())
        else:
            records[phase] = run_child(phase, args, args.threads)
    jpath = work_dir() / f"jlens-{args.jlens_prompts}x{args.jlens_tokens}.safetensors"
    if not jpath.is_file() and "jlens-fit" not in args.skip:
        records["jlens"] = run_child("jlens-fit", args, args.threads)
    elif (work_dir() / "jlens-fit.json").is_file():
        records["jlens"] = json.loads((work_dir() / "jlens-fit.json").read_text())

    split = load_split()
    held = split["heldout"][: args.heldout_windows]
    peer = json.loads(PEER_JSON.read_text()) if PEER_JSON.is_file() else None
    model = lensbox.load_model(progress=False)
    from lensbox.lenses._tuned import TunedLens

    lenses: Dict[str, Any] = {"logit": "logit", "ours_lstsq": work_dir() / "lstsq-50", "ours_lstsq_kl": work_dir() / "finetune"}
    if (PEER_LENS / "params.pt").is_file():
        lenses["peer_tuned_lens"] = TunedLens.from_tuned_lens(PEER_LENS, model)
    if jpath.is_file():
        lenses["jacobian_lens"] = CachedJacobianLens(jpath)
    main_eval = evaluate_all(args, lenses, held, "held-out, all lenses")
    # time to the peer's final KL: evaluate the least-squares snapshots in order until one reaches it
    # the target: the peer lens's mean held-out KL as measured here (on the same windows as ours)
    target = main_eval["mean_kl"].get("peer_tuned_lens", peer.get("mean_kl_tuned") if peer else None)
    snap_eval: Dict[str, Any] = {"mean_kl": {}, "values": {}, "target": target}
    for s in records["lstsq"]["snapshots"]:
        name = f"lstsq-{s['windows']:02d}"
        if s["windows"] == 50:
            snap_eval["mean_kl"][name] = main_eval["mean_kl"]["ours_lstsq"]
            break
        one = evaluate_all(args, {name: Path(s["dir"])}, held, name)
        snap_eval["mean_kl"][name] = one["mean_kl"][name]
        snap_eval["values"][name] = one["values"][name]
        if target is not None and one["mean_kl"][name] <= target:
            break
    records["split"] = {"body_sha256": split["body_sha256"], "windows_in_corpus": split["n_windows"],
                        "check": split["check"], "train_tokens": 50 * WINDOW, "heldout_tokens": int(held.numel()),
                        "heldout_windows": f"{240}..{240 + held.shape[0] - 1}"}
    records["evaluation"] = main_eval
    records["snapshot_evaluation"] = snap_eval
    records["peer"] = peer
    if peer:
        ours_logit = main_eval["values"]["logit"]["kl"][:-1]
        check = {"note": "the peer's per-layer values are over all 16 held-out windows; ours over " + records["split"]["heldout_windows"],"logit_max_abs_diff_vs_peer_eval": max(abs(a - b) for a, b in zip(ours_logit, peer["kl_per_layer_logit"]))}
        if "peer_tuned_lens" in main_eval["values"]:
            ours_peer = main_eval["values"]["peer_tuned_lens"]["kl"][:-1]
            check["peer_lens_max_abs_diff_vs_peer_eval"] = max(abs(a - b) for a, b in zip(ours_peer, peer["kl_per_layer_tuned"]))
        records["metric_crosscheck"] = check
    records["bench_wall_s"] = round(time.perf_counter() - t_all, 1)
    records["settings"] = vars(args)
    out = RESULTS / "tuned_lens.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(records, indent=1, default=str))
    write_markdown(records)
    print(f"wrote {out} and {DOCS}")


def _fmt(v: Optional[float], digits: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def write_markdown(r: Dict[str, Any]) -> None:
    ev = r["evaluation"]
    sites = ev["sites"]
    vals = ev["values"]
    means = ev["mean_kl"]
    peer = r.get("peer")
    lst, ft, tp = r["lstsq"], r["finetune"], r["throughput"]
    names = [n for n in ("logit", "jacobian_lens", "peer_tuned_lens", "ours_lstsq", "ours_lstsq_kl") if n in vals]
    titles = {"logit": "logit lens", "jacobian_lens": "Jacobian lens (TL 4.3)", "peer_tuned_lens": "tuned-lens 0.2.0",
              "ours_lstsq": "lensbox, lstsq only", "ours_lstsq_kl": "lensbox, lstsq + KL"}
    from lensbox.models import DEFAULT_MODEL_LABEL

    L = [f"# Tuned lens: lensbox vs tuned-lens 0.2.0 on {DEFAULT_MODEL_LABEL}", ""]
    L.append(
        "Same model, same training text (Botchan, windows 0..49 of 256 tokens: 12,800 tokens), same "
        f"held-out text (windows {r['split']['heldout_windows']}: {r['split']['heldout_tokens']:,} tokens, every position "
        "counted), split as in `bench/peer/README.md`. "
        "Values are held-out KL(final ‖ lens) in nats, averaged over positions, per site: `embed` is the input "
        "embeddings, `resid_post.i` the stream after block i (tuned-lens's layer i+1). Every column was computed "
        "by `lensbox.evaluate` on the same windows; tuned-lens's lens is its own trained `params.pt`, imported with "
        "`TunedLens.from_tuned_lens`. Produced by `bench/tuned_lens_bench.py`; raw numbers in "
        "`bench/results/tuned_lens.json`."
    )
    L += ["", "| site | " + " | ".join(titles[n] for n in names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, site in enumerate(sites[:-1]):
        L.append(f"| {site} | " + " | ".join(_fmt(vals[n]["kl"][i]) for n in names) + " |")
    L.append("| **mean** | " + " | ".join(f"**{_fmt(means[n])}**" for n in names) + " |")
    if "peer_tuned_lens" in vals:
        peer_kl = vals["peer_tuned_lens"]["kl"][:-1]
        for n in ("ours_lstsq", "ours_lstsq_kl"):
            if n in vals:
                wins = sum(1 for a, b in zip(vals[n]["kl"][:-1], peer_kl) if a <= b)
                L.append(f"\n{titles[n]}: lower than tuned-lens at {wins} of {len(peer_kl)} sites "
                         f"(same 12,800 training tokens).")
    cc = r.get("metric_crosscheck")
    if cc and peer:
        L += ["", f"Cross-check with the peer's own evaluation script (HF hidden states, run in its venv): largest "
                  f"per-layer difference {cc.get('logit_max_abs_diff_vs_peer_eval', float('nan')):.4f} nats for the logit lens"
              + (f", {cc['peer_lens_max_abs_diff_vs_peer_eval']:.4f} nats for tuned-lens's lens"
                 if "peer_lens_max_abs_diff_vs_peer_eval" in cc else "")
              + f" (its reported means: tuned {_fmt(peer.get('mean_kl_tuned'), 3)}, logit {_fmt(peer.get('mean_kl_logit'), 3)})."]

    snaps = {s["windows"]: s for s in lst["snapshots"]}
    full = tp.get("full", {})
    sampled = next((v for k, v in tp.items() if k.startswith("sites_per_token")), {})
    sampled_label = next((k for k in tp if k.startswith("sites_per_token")), "")
    L += ["", "## Training cost", "", "| | tuned-lens 0.2.0 | lensbox |", "|---|---|---|"]
    if peer:
        pcpu = peer.get("cpu_s_train_loop")
        ptok = peer.get("train_tokens")
        L.append(f"| tokens/s, full objective (wall) | {_fmt(peer.get('tokens_per_s'))} | {_fmt(full.get('tokens_per_s_wall'))} |")
        L.append(f"| tokens per CPU-second, full objective | {_fmt(ptok / pcpu if pcpu else None)} | "
                 f"{_fmt(full.get('tokens_per_cpu_s'))} |")
        L.append(f"| tokens per CPU-second, {sampled_label} | — | {_fmt(sampled.get('tokens_per_cpu_s'))} |")
        L.append(f"| tokens per CPU-second, least-squares pass | — | {_fmt(50 * WINDOW / snaps[50]['cpu_s'])} |")
        L.append(f"| training on 12,800 tokens, wall / CPU s | {_fmt(peer.get('wall_s'), 0)} / {_fmt(pcpu, 0)} | "
                 f"lstsq {_fmt(snaps[50]['wall_s'], 0)} / {_fmt(snaps[50]['cpu_s'], 0)}; "
                 f"+ KL {_fmt(ft['total']['wall_s'], 0)} / {_fmt(ft['total']['cpu_s'], 0)} |")
        L.append(f"| peak memory (RSS, whole process) | {_fmt(peer.get('peak_rss_gb'))} GB | "
                 f"lstsq {_fmt(lst['peak_rss_gb'])} GB; KL {_fmt(ft['peak_rss_gb'])} GB; full objective {_fmt(tp['peak_rss_gb'])} GB |")

    target = r["snapshot_evaluation"].get("target")
    snap_means = dict(r["snapshot_evaluation"]["mean_kl"])
    snap_means.setdefault("lstsq-50", means.get("ours_lstsq"))
    rows, reach = [], None
    for w in sorted(snaps):
        m = snap_means.get(f"lstsq-{w:02d}")
        rows.append(f"| {w} | {w * WINDOW} | {_fmt(snaps[w]['wall_s'], 1)} | {_fmt(snaps[w]['cpu_s'], 1)} | {_fmt(m)} |")
        if reach is None and target is not None and m is not None and m <= target:
            reach = snaps[w]
    L += ["", "## Time to tuned-lens's final held-out KL", ""]
    if target is not None and reach is not None:
        L.append(
            f"tuned-lens's 50 training steps reach a mean held-out KL of {_fmt(target)} nats in {_fmt(peer['wall_s'], 0)} s "
            f"({_fmt(peer.get('cpu_s_train_loop'), 0)} CPU-s). lensbox's least-squares initialisation gets there after "
            f"{reach['windows']} window(s) ({reach['tokens']} tokens): {_fmt(reach['wall_s'], 1)} s "
            f"({_fmt(reach['cpu_s'], 1)} CPU-s), i.e. {reach['wall_s'] / peer['wall_s']:.3f} of the peer's wall time and "
            f"{reach['cpu_s'] / peer['cpu_s_train_loop']:.3f} of its CPU time. Snapshots are evaluated in order until one "
            "reaches the target (— = not evaluated); times are cumulative forward passes plus that snapshot's solve."
        )
        L.append("")
        L.append("This is why `train_tuned_lens` and `lensbox train-lens` start from the least-squares solution "
                 "(`init='lstsq'`, the default) and treat KL training as a refinement.")
    L += ["", "| lstsq windows | tokens | wall s | CPU s | mean held-out KL |", "|---|---|---|---|---|"] + rows
    samples = ((peer or {}).get("machine") or {}).get("loadavg_1m_samples_during_training") or []
    peer_load = f"{min(samples):.1f} to {max(samples):.1f}" if samples else "an unrecorded load"
    L += ["", "## How it was run", ""]
    L.append(f"- Timed phases ran in their own processes with {lst.get('threads')} torch thread, as the peer run. The "
             f"machine (2 cores) was shared with other jobs (1-minute load average {lst.get('load_avg_before')} to "
             f"{tp.get('load_avg_after')} during our phases; the peer's run saw {peer_load}), so wall times are "
             "somewhat inflated; CPU-seconds are steadier.")
    L.append(f"- lensbox lstsq: closed-form least squares (scale-normalised final stream regressed on each site's stream, "
             f"ridge {r['settings']['ridge']} towards the identity) from one forward pass per window. lstsq + KL: then "
             f"{ft['train_tokens']} tokens (the same 50 windows) of KL training: Adam, lr {ft['lr']}, cosine decay, "
             f"{ft['sites_per_token']} random sites per position per step, one window per step.")
    L.append(f"- tuned-lens: its CLI defaults (SGD with Nesterov momentum, lr 1, weight decay 1e-3, linear decay), one "
             "256-token window per step for 50 steps, float32 (its bf16 autocast disabled: 2x slower on this CPU).")
    L.append(f"- Full-objective throughput: {full.get('steps_timed')} timed steps of one 256-token window, every site "
             "at every position, after one warm-up step.")
    if "jlens" in r:
        j = r["jlens"]
        L.append(f"- Jacobian lens: `JacobianLens.fit` on {j['prompts']} prompt(s) of {j['tokens_per_prompt']} tokens cut "
                 f"from training windows {j['windows']} (skip_first_positions={j['skip_first_positions']}); the fit took "
                 f"{_fmt(j['fit']['wall_s'], 0)} s wall / {_fmt(j['fit']['cpu_s'], 0)} CPU-s. That is far below the ~100 "
                 "prompts of 128 tokens its authors call usable, because each fit costs a backward pass per model "
                 "dimension (576) per prompt: about "
                 f"{j['fit']['cpu_s'] / (j['prompts'] * j['tokens_per_prompt']):.1f} CPU-seconds per prompt token here. It has no matrix for the "
                 "embeddings (—). It is not trained to minimise KL, so the comparison is about what each method gives "
                 "for its cost, not a ranking of the ideas.")
    L.append(f"- Bench wall time: {_fmt(r.get('bench_wall_s'), 0)} s.")
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
