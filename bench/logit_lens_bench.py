"""Benchmark: lensbox's chunked logit lens against the naive recipe, TransformerLens's own
logit lens, and the bare unembedding matmuls.

Not a test: it prints a table and writes ``bench/results/logit_lens.json`` and
``docs/results/logit_lens.md``. Every method runs in its own subprocess so that its
peak RSS (``resource.getrusage`` in the child) is its own. Each child loads SmolLM2,
tokenizes real text (Botchan, from ``lensbox.data``), runs the model once with
``run_with_cache`` on the residual-stream hooks (untimed: every method starts from the
same cache), then times one method:

* ``lensbox``   -- ``lensbox.logit_lens(model, tokens, cache=cache)``: all 31 streams,
                   top-5, next-token log-prob and rank, final-top-1 log-prob and rank,
                   KL(final||layer), KL(layer||final), KL to the input layer both ways,
                   entropy, cross-entropy, plus the LensResult with token labels.
* ``naive``     -- ``accumulated_resid -> ln_final -> W_U -> log_softmax`` for the whole
                   ``[31, pos, vocab]`` stack, then KL to final, entropy, next-token rank
                   and top-5 on the materialised tensors.
* ``tl``        -- TransformerLens 4.3's ``transformer_lens.tools.analysis.logit_lens``
                   with per-row targets (the next tokens), i.e. next-token ranks (and its
                   always-on entropy), chunked as it ships (chunk_size=64).
* ``floor``     -- the unembedding matmuls alone: the 31 normalised streams (normalised
                   outside the timer) times ``W_U`` in blocks of 512 rows into one reused
                   output buffer.

Usage: ``python bench/logit_lens_bench.py [--tokens 512 2048] [--methods ...] [--repeat N]``.
The naive recipe is skipped above 1024 tokens: at 2048 tokens its float32
``[31, 2048, 49152]`` tensors alone are 12.5 GB each and several are alive at once, far
beyond a 24 GB machine.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "bench" / "results" / "logit_lens.json"
RESULTS_MD = ROOT / "docs" / "results" / "logit_lens.md"
METHODS = ("lensbox", "naive", "tl", "floor")
NAIVE_MAX_TOKENS = 1024


# ----------------------------------------------------------------------------- child side
def _rss_now_gb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


def _bench_text() -> str:
    """Botchan (Project Gutenberg #8868) from the sentencepiece sdist, without the Gutenberg header."""
    try:
        from lensbox.data import fetch_corpus

        paths = fetch_corpus("botchan", progress=False)
        text = "\n".join(Path(p).read_text(encoding="utf-8") for p in paths)
    except ImportError:  # older checkouts without the corpus module: fetch the sdist directly
        import tarfile
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                 "sentencepiece==0.2.0", "-d", tmp],
                check=True,
            )
            sdist = next(Path(tmp).glob("sentencepiece-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                member = next(m for m in tar.getmembers() if m.name.endswith("test/botchan.txt"))
                text = tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]
    start = text.find("*** START OF")
    if start >= 0:
        text = text[text.find("\n", start) + 1 :]
    return text.lstrip("\ufeff")


def _residual_hooks(n_layers: int) -> List[str]:
    names = [f"blocks.{i}.hook_resid_pre" for i in range(n_layers)]
    names += [f"blocks.{i}.hook_resid_post" for i in range(n_layers)]
    return names


def _summary(next_rank: Any, kl: Any, entropy: Any) -> Dict[str, List[float]]:
    """Per-layer means over positions 0..P-2 (the ones with a next token), for cross-method agreement."""
    return {
        "mean_next_rank": [float(v) for v in next_rank.double().mean(-1).tolist()],
        "mean_kl_final": [float(v) for v in kl.double().mean(-1).tolist()] if kl is not None else [],
        "mean_entropy": [float(v) for v in entropy.double().mean(-1).tolist()],
    }


def run_child(method: str, n_tokens: int, repeat: int, threads: int, chunk_rows: int = 0) -> Dict[str, Any]:
    import torch

    import lensbox

    if threads > 0:
        torch.set_num_threads(threads)

    t_load = time.perf_counter()
    model = lensbox.load_model(progress=False)
    load_s = time.perf_counter() - t_load
    tokens = model.to_tokens(_bench_text()[:40_000])[:, :n_tokens]
    if tokens.shape[1] != n_tokens:
        raise SystemExit(f"text too short: {tokens.shape[1]} tokens")
    n_layers = int(model.cfg.n_layers)
    t_fwd = time.perf_counter()
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=_residual_hooks(n_layers))
    forward_s = time.perf_counter() - t_fwd
    baseline_rss = _rss_now_gb()  # model + cache + libraries
    baseline_peak = _peak_rss_gb()
    next_tokens = tokens[0, 1:]
    summary: Dict[str, List[float]] = {}

    def lensbox_run() -> None:
        kwargs = {"chunk_rows": chunk_rows} if chunk_rows else {}
        res = lensbox.logit_lens(model, tokens, cache=cache, **kwargs)
        summary.update(
            _summary(res.next_rank[0, :, :-1], res.kl_final[0, :, :-1], res.entropy[0, :, :-1])
        )

    def naive_run() -> None:
        with torch.no_grad():
            stack = cache.accumulated_resid(apply_ln=False)  # [31, 1, pos, d_model]: embed, ..., final
            normed = model.ln_final(stack.reshape(1, -1, stack.shape[-1])).reshape(stack.shape)
            logits = normed @ model.W_U + model.b_U  # [31, 1, pos, vocab]
            logprobs = logits.log_softmax(dim=-1)
            probs = logprobs.exp()
            kl = (probs[-1:] * (logprobs[-1:] - logprobs)).sum(-1)  # KL(final || layer)
            entropy = -(probs * logprobs).sum(-1)
            body = logprobs[:, 0, :-1]
            target = body.gather(-1, next_tokens[None, :, None].expand(body.shape[0], -1, 1))
            rank = (body > target).sum(-1)
            top = logprobs.topk(5, dim=-1)
            summary.update(_summary(rank, kl[:, 0, :-1], entropy[:, 0, :-1]))
            del top

    def tl_run() -> None:
        from transformer_lens.tools.analysis import logit_lens as tl_logit_lens

        # Per-row targets aligned with [batch, pos]; the last position has no next token
        # (its target is a placeholder, dropped from the summary).
        targets = torch.cat([tokens[:, 1:], tokens[:, -1:]], dim=1)
        res = tl_logit_lens(model, cache=cache, positions=None, targets=targets)
        ranks = res.rank_trajectory()  # [31, batch, pos]
        summary.update(_summary(ranks[:, 0, :-1], None, res.readout.entropy[:, 0, :-1]))

    floor_rows: Dict[str, Any] = {}

    def floor_prepare() -> None:
        with torch.no_grad():
            stack = cache.accumulated_resid(apply_ln=False)
            normed = model.ln_final(stack.reshape(1, -1, stack.shape[-1]))[0]
        floor_rows["x"] = normed.contiguous()
        floor_rows["out"] = torch.empty(512, int(model.W_U.shape[1]))

    def floor_run() -> None:
        x, out, W_U = floor_rows["x"], floor_rows["out"], model.W_U
        with torch.no_grad():
            for i in range(0, x.shape[0], 512):
                rows = x[i : i + 512]
                torch.matmul(rows, W_U, out=out[: rows.shape[0]])

    runs = {"lensbox": lensbox_run, "naive": naive_run, "tl": tl_run, "floor": floor_run}
    if method == "floor":
        floor_prepare()
        baseline_rss = _rss_now_gb()
    load_before = os.getloadavg()
    walls, cpus = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        runs[method]()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    load_after = os.getloadavg()
    return {
        "method": method if not chunk_rows else f"{method} (chunk_rows={chunk_rows})",
        "chunk_rows": chunk_rows or None,
        "tokens": n_tokens,
        "streams": n_layers + 1,
        "wall_s": min(walls),
        "wall_s_all": walls,
        "cpu_s": min(cpus),
        "peak_rss_gb": _peak_rss_gb(),
        "baseline_rss_gb": baseline_rss,
        "baseline_peak_rss_gb": baseline_peak,
        "load_before": list(load_before),
        "load_after": list(load_after),
        "model_load_s": load_s,
        "forward_s": forward_s,
        "torch_threads": torch.get_num_threads(),
        "summary": summary,
    }


# ----------------------------------------------------------------------------- parent side
def _mem_available_gb() -> float:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1e6
    return float("inf")


def naive_need_gb(n_tokens: int) -> float:
    """Measured ~15.7 GB at 512 tokens: about five float32 [31, pos, 49152] tensors plus the model."""
    return 1.5 + 5 * 31 * n_tokens * 49152 * 4 / 1e9


def spawn(method: str, n_tokens: int, repeat: int, threads: int, chunk_rows: int = 0) -> Dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", method, "--tokens", str(n_tokens),
           "--repeat", str(repeat), "--threads", str(threads), "--chunk-rows", str(chunk_rows)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        why = (proc.stderr or proc.stdout)[-2000:].strip()
        if proc.returncode == -9 and not why:
            why = "killed by SIGKILL (the kernel's out-of-memory killer on this 24 GB machine)"
        return {"method": method, "tokens": n_tokens, "error": why or f"exit code {proc.returncode}",
                "returncode": proc.returncode}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _agreement(rows: List[Dict[str, Any]]) -> Dict[str, float]:
    """Largest per-layer difference of mean statistics between lensbox and the other methods."""
    by = {r["method"]: r.get("summary") or {} for r in rows if "error" not in r}
    out: Dict[str, float] = {}
    ref = by.get("lensbox")
    if not ref:
        return out
    for other in ("naive", "tl"):
        if other not in by or not by[other]:
            continue
        for key in ("mean_next_rank", "mean_kl_final", "mean_entropy"):
            a, b = ref.get(key) or [], by[other].get(key) or []
            if a and b and len(a) == len(b):
                out[f"{other}:{key}"] = max(abs(x - y) for x, y in zip(a, b))
    return out


def evaluate(rows: List[Dict[str, Any]], n_tokens: int) -> Dict[str, Any]:
    by = {r["method"]: r for r in rows if "error" not in r and not r.get("skipped")}
    lb = by.get("lensbox")
    checks: Dict[str, Any] = {}
    if not lb:
        return checks
    if "naive" in by:
        checks["speedup_vs_naive"] = by["naive"]["wall_s"] / lb["wall_s"]
        checks["memory_fraction_of_naive"] = lb["peak_rss_gb"] / by["naive"]["peak_rss_gb"]
    if "tl" in by:
        checks["speedup_vs_tl"] = by["tl"]["wall_s"] / lb["wall_s"]
    if "floor" in by:
        checks["time_over_floor"] = lb["wall_s"] / by["floor"]["wall_s"]
        checks["cpu_time_over_floor"] = lb["cpu_s"] / by["floor"]["cpu_s"]
    checks["extra_rss_over_model_and_cache_gb"] = lb["peak_rss_gb"] - lb["baseline_rss_gb"]
    targets: Dict[str, Optional[bool]] = {}
    if n_tokens == 512:
        targets["3x faster than naive"] = checks.get("speedup_vs_naive", 0) >= 3 if "naive" in by else None
        targets["3x faster than TL logit_lens"] = checks.get("speedup_vs_tl", 0) >= 3 if "tl" in by else None
        targets["peak memory <= 1/4 of naive"] = (
            checks.get("memory_fraction_of_naive", 1) <= 0.25 if "naive" in by else None
        )
        targets["time <= 1.5x matmul floor"] = checks.get("time_over_floor", 9) <= 1.5 if "floor" in by else None
    if n_tokens == 2048:
        targets["peak <= model + cache + 1 GB"] = checks["extra_rss_over_model_and_cache_gb"] <= 1.0
    checks["targets"] = targets
    if "tl" in by and "floor" in by:
        checks["tl_time_over_floor"] = by["tl"]["wall_s"] / by["floor"]["wall_s"]
    checks["agreement_max_abs_diff"] = _agreement(rows)
    variants = {}
    for name, r in by.items():
        if name.startswith("lensbox ("):
            v: Dict[str, float] = {}
            for other, key in (("naive", "speedup_vs_naive"), ("tl", "speedup_vs_tl")):
                if other in by:
                    v[key] = by[other]["wall_s"] / r["wall_s"]
            if "floor" in by:
                v["time_over_floor"] = r["wall_s"] / by["floor"]["wall_s"]
                v["cpu_time_over_floor"] = r["cpu_s"] / by["floor"]["cpu_s"]
            v["extra_rss_over_model_and_cache_gb"] = r["peak_rss_gb"] - r["baseline_rss_gb"]
            variants[name] = v
    if variants:
        checks["variants"] = variants
    return checks


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _title(block: Dict[str, Any]) -> str:
    threads = block.get("threads", 0)
    how = "torch's default threads" if not threads else f"{threads} torch thread{'s' if threads > 1 else ''}"
    return f"{block['tokens']} tokens, {how}"


def table(results: Dict[str, Any]) -> str:
    lines = []
    for block in results["runs"].values():
        lines.append(f"\n{_title(block)}, {results['streams']} residual streams, vocab {results['vocab']}")
        head = f"{'method':26s} {'wall s':>8s} {'cpu s':>8s} {'peak RSS GB':>12s} {'model+cache GB':>15s} {'load before':>12s}"
        lines += [head, "-" * len(head)]
        for r in block["methods"]:
            if "error" in r:
                lines.append(f"{r['method']:26s} ERROR {(r['error'].splitlines() or ['?'])[-1][:90]}")
                continue
            if r.get("skipped"):
                lines.append(f"{r['method']:26s} skipped: {r['skipped']}")
                continue
            lines.append(
                f"{r['method']:26s} {r['wall_s']:8.2f} {r['cpu_s']:8.2f} {r['peak_rss_gb']:12.2f} "
                f"{r['baseline_rss_gb']:15.2f} {r['load_before'][0]:12.2f}"
            )
        c = block["checks"]
        lines.append(
            "lensbox: "
            + ", ".join(
                f"{k} {_fmt(c.get(k), '.2f')}"
                for k in ("speedup_vs_naive", "speedup_vs_tl", "time_over_floor", "cpu_time_over_floor",
                          "memory_fraction_of_naive", "extra_rss_over_model_and_cache_gb")
                if k in c
            )
        )
        for name, ok in c.get("targets", {}).items():
            lines.append(f"  target {name}: {'n/a' if ok is None else ('met' if ok else 'MISSED')}")
        for name, v in c.get("variants", {}).items():
            lines.append(f"{name}: " + ", ".join(f"{k} {x:.2f}" for k, x in v.items()))
        if c.get("agreement_max_abs_diff"):
            lines.append("  agreement (max |diff| of per-layer means): " + ", ".join(
                f"{k} {v:.2g}" for k, v in c["agreement_max_abs_diff"].items()))
    return "\n".join(lines)


def markdown(results: Dict[str, Any]) -> str:
    from lensbox.models import DEFAULT_MODEL_LABEL

    env = results["environment"]
    out = [
        "# Logit lens benchmark",
        "",
        "Produced by `python bench/logit_lens_bench.py` (raw numbers: `bench/results/logit_lens.json`).",
        "",
        f"Model: {DEFAULT_MODEL_LABEL}, {results['streams']} residual streams (embeddings + 30 resid_post), "
        f"vocabulary {results['vocab']}. Text: Botchan (Project Gutenberg #8868). Every method starts from the same "
        "`run_with_cache` residual-stream cache and runs in its own subprocess; peak RSS is that process's "
        "`ru_maxrss` (model, cache and libraries included; the `model+cache` column is the RSS just before the timed run).",
        "",
        f"Machine: {env['cpu']}, {env['cpus']} CPUs, torch {env['torch']}, transformer-lens {env['transformer_lens']}, "
        f"torch threads {env['threads']}. The machine is shared; the 1-minute load average before each run is shown, "
        "and `cpu s` (process CPU time) is less sensitive to that load than wall time.",
        "",
        "Methods:",
        "",
        "- **lensbox**: `lensbox.logit_lens(model, tokens, cache=cache)`: top-5, next-token log-prob and rank, "
        "final-top-1 log-prob and rank, KL(final||layer) and KL(layer||final), KL to the input layer both ways, "
        "entropy, cross-entropy, and the `LensResult` with token labels.",
        "- **naive**: `accumulated_resid -> ln_final -> W_U -> log_softmax`, everything materialised as "
        "`[31, pos, vocab]`, then KL to final, entropy, next-token rank, top-5.",
        "- **tl**: TransformerLens 4.3 `transformer_lens.tools.analysis.logit_lens(model, cache=cache, positions=None, "
        "targets=next_tokens)` (next-token ranks, plus the entropy it always computes), default `chunk_size=64`.",
        "- **floor**: the unembedding matmuls alone (normalised rows @ `W_U`, 512 rows per call, reused output buffer).",
        "",
    ]
    for block in results["runs"].values():
        out += [f"## {_title(block)}", "", "| method | wall s | cpu s | peak RSS GB | model+cache GB | load before |",
                "|---|---:|---:|---:|---:|---:|"]
        for r in block["methods"]:
            if "error" in r:
                out.append(f"| {r['method']} | error: {(r['error'].splitlines() or ['?'])[-1][:120]} | | | | |")
            elif r.get("skipped"):
                out.append(f"| {r['method']} | skipped: {r['skipped']} | | | | |")
            else:
                out.append(
                    f"| {r['method']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_rss_gb']:.2f} | "
                    f"{r['baseline_rss_gb']:.2f} | {r['load_before'][0]:.2f} |"
                )
        c = block["checks"]
        out.append("")
        for key, label in (
            ("speedup_vs_naive", "lensbox speed-up over naive (wall)"),
            ("speedup_vs_tl", "lensbox speed-up over TL logit_lens (wall)"),
            ("time_over_floor", "lensbox time / matmul floor (wall)"),
            ("cpu_time_over_floor", "lensbox time / matmul floor (cpu)"),
            ("memory_fraction_of_naive", "lensbox peak RSS / naive peak RSS"),
            ("extra_rss_over_model_and_cache_gb", "lensbox peak RSS above model + cache (GB)"),
        ):
            if key in c:
                out.append(f"- {label}: {c[key]:.2f}")
        for name, ok in c.get("targets", {}).items():
            out.append(f"- target *{name}*: {'n/a' if ok is None else ('met' if ok else '**missed**')}")
        for name, v in c.get("variants", {}).items():
            out.append(f"- {name}: " + ", ".join(f"{k.replace('_', ' ')} {x:.2f}" for k, x in v.items()))
        if c.get("agreement_max_abs_diff"):
            out.append("- agreement with lensbox, max |difference| of per-layer means: " + ", ".join(
                f"{k} {v:.2g}" for k, v in c["agreement_max_abs_diff"].items()))
        tl_floor = c.get("tl_time_over_floor")
        if tl_floor is not None and tl_floor < 3:
            out.append(
                f"- TransformerLens's `logit_lens` took {tl_floor:.2f}x the bare matmul time here, so 3x faster than "
                f"it means {tl_floor / 3:.2f}x the matmul time: less than the unembedding matmuls alone, out of reach "
                "for any method that decodes every row. lensbox's margin over it is what is left after computing ten "
                "statistics where it computes two (next-token rank and entropy)."
            )
        out.append("")
    notes = results.get("notes") or []
    if notes:
        out += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(out)


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--repeat", type=int, default=1, help="timed repetitions per method (the minimum is reported)")
    ap.add_argument("--threads", type=int, nargs="+", default=[0],
                    help="torch intra-op threads in the children; 0 = torch's default (one per core)")
    ap.add_argument("--lensbox-chunk-rows", type=int, nargs="*", default=[],
                    help="also time lensbox with these chunk_rows values (the plain 'lensbox' row uses the default)")
    ap.add_argument("--append", action="store_true",
                    help="merge these runs into the existing results file instead of replacing it")
    ap.add_argument("--chunk-rows", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    ap.add_argument("--no-write", action="store_true", help="print only; do not write the result files")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.tokens[0], args.repeat, args.threads[0], args.chunk_rows)))
        return 0

    import torch
    import transformer_lens

    results: Dict[str, Any] = {
        "environment": {
            "cpu": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "transformer_lens": getattr(transformer_lens, "__version__", "?"),
            "threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        },
        "streams": None,
        "vocab": 49152,
        "runs": {},
        "notes": [
            f"naive is skipped above {NAIVE_MAX_TOKENS} tokens: its float32 [31, pos, 49152] logits, log-probs and "
            "probs are 12.5 GB each at 2048 tokens and do not fit in 24 GB.",
        ],
    }
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        if names:
            results["environment"]["cpu"] = names[0]
    except OSError:
        pass
    if args.append and RESULTS_JSON.is_file():
        previous = json.loads(RESULTS_JSON.read_text())
        previous["runs"].update(results["runs"])
        results["runs"] = previous["runs"]
        results["environment"]["earlier_runs_started"] = previous["environment"].get("started")
    for threads in args.threads:
        for n_tokens in args.tokens:
            rows = []
            plan = [(m, 0) for m in args.methods]
            if "lensbox" in args.methods:
                at = plan.index(("lensbox", 0)) + 1
                plan[at:at] = [("lensbox", c) for c in args.lensbox_chunk_rows]
            for method, chunk_rows in plan:
                if method == "naive" and n_tokens > NAIVE_MAX_TOKENS:
                    rows.append({"method": method, "tokens": n_tokens, "skipped": "does not fit in 24 GB"})
                    continue
                if method == "naive" and _mem_available_gb() < naive_need_gb(n_tokens) + 1.0:
                    reason = (f"only {_mem_available_gb():.1f} GB available now, ~{naive_need_gb(n_tokens):.0f} GB needed "
                              "(the machine is shared)")
                    rows.append({"method": method, "tokens": n_tokens, "skipped": reason})
                    continue
                label = method if not chunk_rows else f"{method} (chunk_rows={chunk_rows})"
                print(f"[bench] {n_tokens} tokens, threads {threads or 'default'}: {label} "
                      f"(load {os.getloadavg()[0]:.2f}) ...", file=sys.stderr, flush=True)
                row = spawn(method, n_tokens, args.repeat, threads, chunk_rows)
                if "error" in row:
                    print(f"[bench]   error: {row['error'][-500:]}", file=sys.stderr)
                else:
                    results["streams"] = row["streams"]
                    print(f"[bench]   {row['wall_s']:.2f} s wall, {row['cpu_s']:.2f} s cpu, "
                          f"peak {row['peak_rss_gb']:.2f} GB", file=sys.stderr, flush=True)
                rows.append(row)
                # keep what has been measured even if a later step fails
                partial = RESULTS_JSON.with_name("logit_lens.partial.json")
                partial.write_text(json.dumps({"tokens": n_tokens, "threads": threads, "rows": rows}, indent=1))
            key = f"{n_tokens}" if threads == 0 else f"{n_tokens}, {threads} thread{'s' if threads > 1 else ''}"
            results["runs"][key] = {"tokens": n_tokens, "threads": threads, "methods": rows,
                                    "checks": evaluate(rows, n_tokens)}
    results["environment"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    print(table(results))
    if not args.no_write:
        RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_JSON.write_text(json.dumps(results, indent=2) + "\n")
        RESULTS_MD.parent.mkdir(parents=True, exist_ok=True)
        RESULTS_MD.write_text(markdown(results))
        print(f"wrote {RESULTS_JSON.relative_to(ROOT)} and {RESULTS_MD.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
