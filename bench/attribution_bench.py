"""Benchmark: lensbox's direct logit attribution against TransformerLens's own recipe.

Not a test: it prints a table and writes ``bench/results/attribution.json`` and
``docs/results/attribution.md``. The task: the contribution of every attention head of
SmolLM2-135M-Instruct (30 layers x 9 heads) at every position to the logit of the next
token, on ``--tokens`` tokens of Botchan. Each method runs in its own subprocess, on the
TransformerBridge in compatibility mode (TransformerLens's recipe assumes the final norm's
weight folded into ``W_U``; in raw mode it leaves it out), from token ids to the
``[heads, pos]`` table, forward pass included:

* ``lensbox``     -- ``lensbox.logit_attribution(model, tokens)`` (per-head and per-layer
                     contributions, its exactness check, token labels).
* ``tl``          -- ``model.run_with_cache(tokens)``, ``cache.stack_head_results(layer=-1)``,
                     ``cache.logit_attrs(stack, tokens=next_tokens)``: the recipe as
                     TransformerLens documents it (a full cache).
* ``tl_filtered`` -- the same with ``names_filter`` limited to the hooks the recipe reads
                     (every ``attn.hook_z`` and ``ln_final.hook_scale``).

Peak memory is sampled: a thread reads the process RSS every 2 ms while the method runs;
the table gives the peak *above* the RSS just before the method started (model, tokens and
libraries excluded). Children run with ``MALLOC_MMAP_THRESHOLD_=65536`` and trim the heap
before the method, so freed memory is not reused unseen. Time is wall and process CPU time, one torch thread by default.
Results are compared in the parent: the largest absolute difference between each method's
``[heads, pos]`` table and lensbox's must be within 1e-4.

Usage: ``python bench/attribution_bench.py [--tokens 512 256] [--methods ...] [--threads 1]``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
RESULTS_JSON = ROOT / "bench" / "results" / "attribution.json"
RESULTS_MD = ROOT / "docs" / "results" / "attribution.md"
METHODS = ("lensbox", "tl", "tl_filtered")
TOLERANCE = 1e-4


# ----------------------------------------------------------------------------- child side
def _rss_gb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e9


class _PeakRss:
    """Samples the RSS every ``interval`` seconds in a thread; ``peak`` is the largest sample."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak, self._stop = interval, _rss_gb(), threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_gb())
            time.sleep(self.interval)

    def __enter__(self) -> "_PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_gb())


def _trim() -> None:
    """Hand freed heap pages back to the system (glibc), so the RSS before a method is its true baseline."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


def _bench_text() -> str:
    from lensbox.data import fetch_corpus

    return "\n".join(Path(p).read_text(encoding="utf-8") for p in fetch_corpus("botchan", progress=False))


def run_child(method: str, n_tokens: int, threads: int, out: str) -> Dict[str, Any]:
    import gc

    import torch
    from safetensors.torch import save_file

    import lensbox

    torch.set_num_threads(threads)
    model = lensbox.load_model(progress=False, compatibility_mode=True)
    tokens = model.to_tokens(_bench_text()[:40_000])[:, :n_tokens]
    if tokens.shape[1] != n_tokens:
        raise SystemExit(f"text too short: {tokens.shape[1]} tokens")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    next_tokens = torch.cat([tokens[:, 1:], tokens[:, -1:]], dim=1)  # the last column is dropped below
    keep: Dict[str, Any] = {}

    def lensbox_run() -> None:
        res = lensbox.logit_attribution(model, tokens)
        keep["heads"] = res.heads[0, :-1].reshape(n_tokens - 1, n_layers * n_heads).T.contiguous()

    def tl_run(filtered: bool) -> None:
        with torch.no_grad():
            names = None
            if filtered:
                wanted = {f"blocks.{i}.attn.hook_z" for i in range(n_layers)} | {"ln_final.hook_scale"}
                names = lambda name: name in wanted  # noqa: E731
            _, cache = model.run_with_cache(tokens, names_filter=names)
            stack = cache.stack_head_results(layer=-1)  # [layer*head, batch, pos, d_model]
            attrs = cache.logit_attrs(stack, tokens=next_tokens)  # [layer*head, batch, pos]
        keep["heads"] = attrs[:, 0, :-1].float().contiguous()

    run = {"lensbox": lensbox_run, "tl": lambda: tl_run(False), "tl_filtered": lambda: tl_run(True)}[method]
    gc.collect()
    _trim()
    before = _rss_gb()
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    with _PeakRss() as peak:
        run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    save_file({"heads": keep["heads"]}, out)
    return {
        "method": method, "tokens": n_tokens, "threads": threads, "wall_s": wall, "cpu_s": cpu,
        "rss_before_gb": before, "peak_rss_gb": peak.peak, "peak_above_gb": peak.peak - before,
        "load_before": load,
    }


# ----------------------------------------------------------------------------- parent side
def _child(method: str, n_tokens: int, threads: int, out: Path) -> Dict[str, Any]:
    # A fixed mmap threshold: every buffer above 64 KiB is its own mapping, returned on free, so RSS follows
    # the live tensors (glibc otherwise raises the threshold and reuses freed heap that RSS still counts).
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), HF_HUB_OFFLINE="1",
               MALLOC_MMAP_THRESHOLD_="65536")
    proc = subprocess.run(
        [sys.executable, __file__, "--child", method, "--tokens", str(n_tokens), "--threads", str(threads),
         "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=ROOT,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _compare(paths: Dict[str, Path]) -> Dict[str, float]:
    from safetensors.torch import load_file

    ref = load_file(str(paths["lensbox"]))["heads"].double()
    return {m: float((load_file(str(p))["heads"].double() - ref).abs().max()) for m, p in paths.items() if m != "lensbox"}


def run_size(n_tokens: int, methods: List[str], threads: int) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        paths = {m: Path(tmp) / f"{m}.safetensors" for m in methods}
        rows = []
        for m in methods:
            print(f"[bench] {n_tokens} tokens: {m} ...", file=sys.stderr, flush=True)
            rows.append(_child(m, n_tokens, threads, paths[m]))
        diffs = _compare(paths) if "lensbox" in methods else {}
    by = {r["method"]: r for r in rows}
    ratios: Dict[str, float] = {}
    if "lensbox" in by:
        for m in methods:
            if m != "lensbox":
                ratios[f"time_lensbox_over_{m}"] = by["lensbox"]["wall_s"] / by[m]["wall_s"]
                ratios[f"cpu_lensbox_over_{m}"] = by["lensbox"]["cpu_s"] / by[m]["cpu_s"]
                ratios[f"memory_lensbox_over_{m}"] = by["lensbox"]["peak_above_gb"] / max(by[m]["peak_above_gb"], 1e-9)
    return {"tokens": n_tokens, "rows": rows, "max_abs_diff_vs_lensbox": diffs, "ratios": ratios}


def _markdown(results: List[Dict[str, Any]], meta: Dict[str, Any]) -> str:
    lines = [
        "# Direct logit attribution benchmark",
        "",
        "Produced by `python bench/attribution_bench.py` (raw numbers: `bench/results/attribution.json`).",
        "",
        "Task: the contribution of each of SmolLM2-135M-Instruct's 270 attention heads (30 layers x 9 heads) at every "
        "position to the logit of the next token, from token ids (forward pass included) to the `[heads, pos]` table. "
        "Every method runs in its own subprocess on the TransformerBridge in compatibility mode (TransformerLens's "
        "recipe assumes the final norm's weight folded into `W_U`). Text: Botchan (Project Gutenberg #8868).",
        "",
        f"Machine: {meta['machine']}, torch {meta['torch']}, transformer-lens {meta['transformer_lens']}, "
        f"torch threads {meta['threads']}. The machine is shared; the 1-minute load average before each run is shown, "
        "and `cpu s` (process CPU time) is less sensitive to that load than wall time.",
        "",
        "Methods:",
        "",
        "- **lensbox**: `lensbox.logit_attribution(model, tokens)`: per-head and per-layer contributions, projected "
        "on the target direction inside the forward pass (heads from `hook_z`, 512 positions per chunk), its "
        "exactness check (the sum equals the model's own logit), token labels.",
        "- **tl**: `model.run_with_cache(tokens)`, `cache.stack_head_results(layer=-1)`, "
        "`cache.logit_attrs(stack, tokens=next_tokens)`: TransformerLens's documented recipe.",
        "- **tl_filtered**: the same with `names_filter` limited to what the recipe reads (every `attn.hook_z` and "
        "`ln_final.hook_scale`).",
        "",
        "Peak memory: the process RSS sampled every 2 ms during the method, minus the RSS just before it (the model "
        "and libraries are excluded; children run with `MALLOC_MMAP_THRESHOLD_=65536` and trim the heap first, so "
        "every tensor's pages show in the RSS).",
        "",
    ]
    for res in results:
        lines += [f"## {res['tokens']} tokens", "", "| method | wall s | cpu s | peak above start GB | load before | "
                  "max abs diff vs lensbox |", "|---|---:|---:|---:|---:|---:|"]
        for r in res["rows"]:
            diff = res["max_abs_diff_vs_lensbox"].get(r["method"])
            d = "—" if diff is None else f"{diff:.1e}"
            lines.append(f"| {r['method']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_above_gb']:.3f} | "
                         f"{r['load_before']:.2f} | {d} |")
        lines.append("")
        for k, v in res["ratios"].items():
            lines.append(f"- {k.replace('_', ' ')}: {v:.3f}")
        lines.append("")
    lines += [
        "Targets: lensbox's peak memory at most 1/4 of the TransformerLens recipe's, its time at most the recipe's, "
        f"and every head's contribution equal within {TOLERANCE:g}.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[512])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--child", choices=METHODS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.tokens[0], args.threads, args.out)))
        return 0
    import torch
    import transformer_lens

    meta = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__, "transformer_lens": getattr(transformer_lens, "__version__", "?"),
        "threads": args.threads,
    }
    results = [run_size(n, args.methods, args.threads) for n in args.tokens]
    failed = [(r["tokens"], m, d) for r in results for m, d in r["max_abs_diff_vs_lensbox"].items() if d > TOLERANCE]
    RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_JSON.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n", encoding="utf-8")
    RESULTS_MD.write_text(_markdown(results, meta), encoding="utf-8")
    print(_markdown(results, meta))
    if failed:
        print(f"results differ beyond {TOLERANCE}: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
