"""Benchmark: lensbox's input probes on SmolLM2-135M-Instruct.

1. **Softmax probe vs scikit-learn.** Identical features from one SmolLM2 layer
   (default ``resid_post.3``, offset -1: read the *previous* token out of the stream),
   standardised once and handed to both: scikit-learn's ``LogisticRegression()`` with its
   defaults (lbfgs, C=1, max_iter=100, float64) and lensbox's ``fit_softmax`` with its
   defaults (ridge-initialised, whitened, minibatch Adam, classes = tokens seen in
   training, float32; the ridge solve is included in its time). Held-out top-1 / top-5
   accuracy, wall and process-CPU fit time.
2. **Ridge probes over all 31 sites** (embeddings + every resid_post) and offsets
   (0, -1, -2, -3, +1), streamed from the same forward passes: time to accumulate the
   sufficient statistics and solve, as a ratio to the forward-pass time that produced the
   activations; extrapolated to 100k tokens (clearly labelled) when fewer were run.
3. **Held-out accuracy** of those ridge probes per site and offset (top-1, top-5,
   rare/frequent tokens, baselines, relation to W_E), decoded over the tokens seen in
   training (``candidates='seen'``) to keep the run short.

Text: Botchan (``fetch_corpus('botchan')``), 128-token windows with nothing prepended,
split by ``train_val_split(val_fraction=0.1, seed=0)``. Writes
``bench/results/probe_bench.json`` and ``docs/results/probes.md``.

    .venv/bin/python bench/probe_bench.py                       # ~25 min on 2 busy cores
    .venv/bin/python bench/probe_bench.py --train-windows 16 --val-windows 4 --skip-sklearn   # smoke run
"""

import argparse
import json
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List

import torch

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "probe_bench.json"
DOCS = REPO / "docs" / "results" / "probes.md"
OFFSETS = (0, -1, -2, -3, 1)


def say(msg: str) -> None:
    print(f"[probe_bench] {msg}", file=sys.stderr, flush=True)


def clocks() -> Dict[str, float]:
    return {"wall": time.perf_counter(), "cpu": time.process_time()}


def since(t0: Dict[str, float]) -> Dict[str, float]:
    t1 = clocks()
    return {"wall_s": round(t1["wall"] - t0["wall"], 3), "cpu_s": round(t1["cpu"] - t0["cpu"], 3)}


def load_windows(adapter: Any, window: int, corpus: str = "botchan") -> Any:
    from lensbox.data import fetch_corpus, read_texts, token_windows, train_val_split

    tok = adapter.tokenizer
    texts = read_texts(fetch_corpus(corpus, progress=False))
    stream = token_windows(texts, lambda s: tok.encode(s, add_special_tokens=False), window, bos_id=None)
    return train_val_split(stream, val_fraction=0.1, seed=0)


def layer_rows(acts: torch.Tensor, tokens: torch.Tensor, offset: int, skip: int) -> Any:
    from lensbox.probes._offsets import valid_positions

    lo, hi = valid_positions(tokens.shape[1], offset, skip)
    x = acts[:, lo:hi].reshape(-1, acts.shape[-1]).float()
    y = tokens[:, lo + offset : hi + offset].reshape(-1)
    return x, y


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import lensbox
    from lensbox.probes import InputProbe, SoftmaxSettings, fit_softmax
    from lensbox.probes._ridge import RidgeStatistics
    from lensbox.probes._evaluate import ProbeEvaluator

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = clocks()
    model = lensbox.load_model(progress=False)
    adapter = lensbox.adapt(model)
    say(f"model loaded in {since(t0)['wall_s']} s")
    train, val = load_windows(adapter, args.window, args.corpus)
    if train.shape[0] < args.train_windows:
        raise SystemExit(f"{args.corpus} has only {train.shape[0]} training windows of {args.window} tokens; "
                         f"asked for {args.train_windows} (use --corpus shakespeare for 100k tokens)")
    train, val = train[: args.train_windows], val[: args.val_windows]
    say(f"windows: {tuple(train.shape)} train, {tuple(val.shape)} held-out")
    layer = adapter.site(args.layer)

    # ------------------------------------------------------------------ streamed ridge training, all sites
    probe = InputProbe("all", offsets=OFFSETS, kinds=("ridge",), alpha=args.alpha)
    probe.begin(adapter)
    sites = probe.fitted_sites
    keep_layer: List[torch.Tensor] = []
    fwd = {"wall_s": 0.0, "cpu_s": 0.0}
    acc = {"wall_s": 0.0, "cpu_s": 0.0}
    for i, chunk in enumerate(train.split(args.batch_size)):
        t = clocks()
        streams = adapter.run_and_capture(chunk, sites)
        d = since(t)
        fwd = {k: fwd[k] + d[k] for k in fwd}
        keep_layer.append(streams[layer].detach().float().clone())
        t = clocks()
        probe.partial_fit(adapter, streams, chunk)
        d = since(t)
        acc = {k: acc[k] + d[k] for k in acc}
        say(f"train batch {i + 1}: forward {fwd['wall_s']:.0f} s, ridge accumulate {acc['wall_s']:.1f} s so far")
    t = clocks()
    probe.finalize(adapter)
    solve = since(t)
    n_tokens = int(train.numel())
    ridge_total = {k: acc[k] + solve[k] for k in acc}
    per_tok = {k: acc[k] / n_tokens for k in acc}
    fwd_tok = {k: fwd[k] / n_tokens for k in fwd}
    target = 100_000
    ridge_timing = {
        "sites": len(sites),
        "offsets": list(OFFSETS),
        "tokens": n_tokens,
        "corpus": args.corpus,
        "forward": fwd,
        "ridge_accumulate": acc,
        "ridge_solve": solve,
        "ratio_ridge_to_forward_wall": round(ridge_total["wall_s"] / fwd["wall_s"], 4),
        "ratio_ridge_to_forward_cpu": round(ridge_total["cpu_s"] / fwd["cpu_s"], 4),
        "threads": args.threads,
        "extrapolated_to_100k_tokens": {
            "note": f"linear extrapolation from {n_tokens} measured tokens: accumulate and forward scale with tokens, the solve does not",
            "forward_wall_s": round(fwd_tok["wall_s"] * target, 1),
            "ridge_wall_s": round(per_tok["wall_s"] * target + solve["wall_s"], 1),
            "ratio_wall": round((per_tok["wall_s"] * target + solve["wall_s"]) / (fwd_tok["wall_s"] * target), 4),
            "ratio_cpu": round((per_tok["cpu_s"] * target + solve["cpu_s"]) / (fwd_tok["cpu_s"] * target), 4),
        },
    }
    say(f"ridge timing: {json.dumps(ridge_timing)}")
    if args.only_ridge_timing:
        return {"ridge_all_sites": ridge_timing}

    # ------------------------------------------------------------------ held-out evaluation of the ridge probes
    ev = ProbeEvaluator(probe, adapter, candidates="seen")
    val_layer: List[torch.Tensor] = []
    for chunk in val.split(args.batch_size) if not args.reuse_eval else ():
        streams = adapter.run_and_capture(chunk, sites)
        val_layer.append(streams[layer].detach().float().clone())
        ev.update(streams, chunk)
        if ev.n_tokens >= args.eval_windows * args.window:
            break
    # held-out features of the benchmark layer come from every validation window
    done = sum(v.shape[0] for v in val_layer)
    for chunk in (val[done:].split(args.batch_size) if done < val.shape[0] else ()):
        val_layer.append(adapter.run_and_capture(chunk, [layer])[layer].detach().float().clone())
    result = ev.result(rank=64) if not args.reuse_eval else None
    if result is not None:
        say("ridge evaluation:\n" + result.table())

    # ------------------------------------------------------------------ softmax: lensbox vs scikit-learn
    x_tr, y_tr = layer_rows(torch.cat(keep_layer), train, args.offset, probe.skip_first)
    x_te, y_te = layer_rows(torch.cat(val_layer), val, args.offset, probe.skip_first)
    x_tr, y_tr = x_tr[: args.sk_rows], y_tr[: args.sk_rows]
    mu, sd = x_tr.mean(0), x_tr.std(0).clamp_min(1e-6)
    x_tr, x_te = (x_tr - mu) / sd, (x_te - mu) / sd
    seen = set(y_tr.tolist())
    n_classes = len(seen)
    test_seen = sum(int(t) in seen for t in y_te.tolist()) / len(y_te)
    W_E = adapter.W_E.detach().float()
    settings = SoftmaxSettings()

    def ours_fit() -> Any:
        stats = RidgeStatistics(x_tr.shape[1], W_E.shape[1], [0])
        stats.update(x_tr[None], y_tr[None], W_E, 0)
        ridge = stats.solve(0, args.alpha)
        return fit_softmax(x_tr, y_tr, n_vocab=adapter.d_vocab, settings=settings, ridge=ridge, embed=W_E)

    def score(top: torch.Tensor) -> Dict[str, float]:
        return {
            "top1": round(float((top[:, 0] == y_te).float().mean()), 5),
            "top5": round(float((top == y_te[:, None]).any(-1).float().mean()), 5),
        }

    ours_runs = []
    for rep in range(args.repeats):
        t = clocks()
        sp = ours_fit()
        timing = since(t)
        ours_runs.append({**timing, **score(sp.predict_topk(x_te, 5))})
        say(f"lensbox softmax run {rep + 1}: {ours_runs[-1]}")
    softmax_cmp: Dict[str, Any] = {
        "site": layer.name,
        "offset": args.offset,
        "train_rows": int(x_tr.shape[0]),
        "test_rows": int(x_te.shape[0]),
        "classes_seen_in_training": n_classes,
        "test_rows_whose_token_was_seen": round(test_seen, 4),
        "features": "the same standardised float32 rows for both (sklearn gets them as float64)",
        "lensbox": {
            "settings": {**settings.__dict__, "ridge_alpha": args.alpha},
            "runs": ours_runs,
            "median_wall_s": statistics.median(r["wall_s"] for r in ours_runs),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in ours_runs),
        },
    }
    if not args.skip_sklearn:
        import sklearn
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression()
        t = clocks()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            clf.fit(x_tr.double().numpy(), y_tr.numpy())
        timing = since(t)
        proba = torch.from_numpy(clf.predict_proba(x_te.double().numpy()))
        top = torch.from_numpy(clf.classes_)[proba.topk(5, dim=-1).indices]
        softmax_cmp["sklearn"] = {
            "version": sklearn.__version__,
            "estimator": "LogisticRegression() defaults: lbfgs, C=1.0, max_iter=100",
            "n_iter": [int(v) for v in clf.n_iter_],
            "warnings": sorted({type(w.message).__name__ for w in caught}),
            **timing,
            **score(top),
        }
        sk = softmax_cmp["sklearn"]
        ours = softmax_cmp["lensbox"]
        softmax_cmp["speedup_wall"] = round(sk["wall_s"] / ours["median_wall_s"], 2)
        softmax_cmp["speedup_cpu"] = round(sk["cpu_s"] / ours["median_cpu_s"], 2)
        softmax_cmp["top1_gap_points"] = round(100 * (sk["top1"] - statistics.median(r["top1"] for r in ours_runs)), 2)
        say(f"sklearn: {sk}")

    return {
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(),
            "note": "2 shared CPU cores with other jobs running: wall times are noisy; CPU times are steadier",
        },
        "model": adapter.model_name,
        "text": {"corpus": "botchan", "window": args.window, "train_windows": int(train.shape[0]),
                 "val_windows": int(val.shape[0]), "split": "train_val_split(val_fraction=0.1, seed=0)"},
        "softmax_vs_sklearn": softmax_cmp,
        "ridge_all_sites": ridge_timing,
        "ridge_eval": None
        if result is None
        else {
            "candidates": "seen (tokens of the training text)",
            "eval_tokens": result.n_eval_tokens,
            "summary": result.summary(),
            "relation": result.relation,
        },
    }


# ---------------------------------------------------------------------------- report
def pct(v: Any) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * float(v):.1f}"


def write_docs(res: Dict[str, Any]) -> None:
    sm, rt, re_ = res["softmax_vs_sklearn"], res["ridge_all_sites"], res["ridge_eval"]
    lines = [
        "# Input probes: benchmark",
        "",
        "Generated by `bench/probe_bench.py` (numbers in `bench/results/probe_bench.json`).",
        f"Model {res['model']}; text: Botchan, {res['text']['window']}-token windows, "
        f"{res['text']['train_windows']} training and {res['text']['val_windows']} held-out windows "
        f"({res['text']['split']}). Machine: {res['machine']['note']}; torch threads {res['machine']['torch_threads']}.",
        "",
        "## Softmax probe against scikit-learn",
        "",
        f"Identical standardised features from `{sm['site']}`, target = the token at offset {sm['offset']:+d} "
        f"(the previous token). {sm['train_rows']} training rows, {sm['classes_seen_in_training']} classes "
        f"(tokens seen in training), {sm['test_rows']} held-out rows of which "
        f"{pct(sm['test_rows_whose_token_was_seen'])}% have a token seen in training (the ceiling for both).",
        "",
        "| fitter | top-1 | top-5 | fit wall s | fit CPU s |",
        "|---|---|---|---|---|",
    ]
    for r in sm["lensbox"]["runs"]:
        lines.append(f"| lensbox `fit_softmax` (defaults) | {pct(r['top1'])} | {pct(r['top5'])} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |")
    if "sklearn" in sm:
        sk = sm["sklearn"]
        lines.append(
            f"| scikit-learn {sk['version']} `LogisticRegression()` | {pct(sk['top1'])} | {pct(sk['top5'])} | "
            f"{sk['wall_s']:.1f} | {sk['cpu_s']:.1f} |"
        )
        lines += [
            "",
            f"Speed-up (median of lensbox runs): **{sm['speedup_wall']}x** wall clock, **{sm['speedup_cpu']}x** CPU time; "
            f"scikit-learn's top-1 minus lensbox's: **{sm['top1_gap_points']} points** "
            f"(target: within 1 point at >= 10x less time). scikit-learn ran {max(sk['n_iter'])} lbfgs iterations"
            + (f" and warned {', '.join(sk['warnings'])}." if sk["warnings"] else "."),
        ]
    s = sm["lensbox"]["settings"]
    lines += [
        "",
        f"lensbox's fit: ridge map to the embedding (alpha {s['ridge_alpha']}) turned into a cosine classifier over "
        f"the seen tokens, then {s['epochs']} epochs of Adam (batch {s['batch_size']}, peak lr {s['lr']}, cosine decay, "
        f"l2 {s['l2']}) on ZCA-whitened features, the bias started at the log class frequencies; its time includes "
        "the ridge statistics and solve, the whitening and the initialisation.",
        "",
        "## Ridge probes over every site",
        "",
        f"{rt['sites']} sites x {len(rt['offsets'])} offsets, statistics streamed from the forward passes over "
        f"{rt['tokens']:,} training tokens of {rt.get('corpus', 'botchan')} ({rt.get('threads', 2)} torch threads).",
        "",
        "| | wall s | CPU s |",
        "|---|---|---|",
        f"| forward passes (all sites captured) | {rt['forward']['wall_s']:.1f} | {rt['forward']['cpu_s']:.1f} |",
        f"| ridge: accumulate X^T X, X^T Y (float32 products, float64 sums) | {rt['ridge_accumulate']['wall_s']:.1f} | {rt['ridge_accumulate']['cpu_s']:.1f} |",
        f"| ridge: solve {rt['sites'] * len(rt['offsets'])} probes | {rt['ridge_solve']['wall_s']:.1f} | {rt['ridge_solve']['cpu_s']:.1f} |",
        "",
        f"Ratio ridge / forward at {rt['tokens']} tokens: {rt['ratio_ridge_to_forward_wall']} (wall), "
        f"{rt['ratio_ridge_to_forward_cpu']} (CPU).",
        "",
        (
            f"Measured at {rt['tokens']:,} tokens (target size: 100k): the ridge probes for all "
            f"{rt['sites']} sites x {len(rt['offsets'])} offsets cost {rt['ratio_ridge_to_forward_wall']} of the "
            "forward-pass time that produced the activations."
            if rt["tokens"] >= 100_000
            else f"**Extrapolated, not measured:** at 100k tokens "
            f"({rt['extrapolated_to_100k_tokens']['note']}) the ridge probes would cost "
            f"{rt['extrapolated_to_100k_tokens']['ratio_wall']} (wall) / {rt['extrapolated_to_100k_tokens']['ratio_cpu']} (CPU) "
            f"of the forward time (~{rt['extrapolated_to_100k_tokens']['forward_wall_s']:.0f} s of forward passes on this machine)."
        ),
        "",
        "## Held-out accuracy of the ridge probes",
        "",
        f"{re_['eval_tokens']} held-out tokens; decoded by cosine against the W_E rows of tokens seen in training "
        "(so unseen tokens count as misses for every method). `W_E^T` is the untrained decoder resid @ W_E^T; "
        "'majority' guesses the most frequent training token.",
        "",
    ]
    summ = re_["summary"]
    offs = summ["offsets"]
    acc = summ["accuracy"]
    head = "| site | " + " | ".join(f"k={o:+d}" if o else "k=0" for o in offs) + " | W_E^T k=0 | rare k=0 | frequent k=0 |"
    lines += [head, "|" + "---|" * (len(offs) + 4)]
    for s in summ["sites"]:
        cells = [pct(acc["ridge_cos"]["all"][f"{s}/{o}"][0]) for o in offs]
        lines.append(
            f"| `{s}` | " + " | ".join(cells) + f" | {pct(acc['embed_t']['all'][f'{s}/0'][0])} | "
            f"{pct(acc['ridge_cos']['rare'][f'{s}/0'][0])} | {pct(acc['ridge_cos']['frequent'][f'{s}/0'][0])} |"
        )
    maj = acc["majority"]["all"][f"{summ['sites'][0]}/0"][0]
    lines += [
        "",
        f"Top-1 accuracy in percent (ridge, cosine decoding). Majority baseline at k=0: {pct(maj)}%. "
        f"Rare = seen fewer than {summ['rare_below']} times in the training text, frequent = at least {summ['frequent_from']} times.",
        "",
        "Relation to the embedding (offset 0; rank-64 subspaces, chance = 64/576 = 0.111):",
        "",
        "| site | mean cos² to W_E top subspace | weight energy in W_E top subspace | cos(pred, true embedding) |",
        "|---|---|---|---|",
    ]
    for row in re_["relation"]:
        if row["offset"] == 0 and row["kind"] == "ridge":
            lines.append(
                f"| `{row['site']}` | {row['mean_cos2_W_E']:.3f} | {row['energy_in_W_E_top']:.3f} | {row.get('cos_true')} |"
            )
    lines += ["", "## What this run shows", ""] + findings(res)
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text("\n".join(lines) + "\n", encoding="utf-8")


def findings(res: Dict[str, Any]) -> List[str]:
    """A few sentences computed from the numbers (no hand-written claims)."""
    summ = res["ridge_eval"]["summary"]
    acc = summ["accuracy"]
    sites = summ["sites"]
    mid = sites[len(sites) // 2]

    def a(method: str, bucket: str, site: str, off: int) -> float:
        v = acc[method][bucket][f"{site}/{off}"][0]
        return math.nan if v is None else float(v)

    out = []
    k0 = [a("ridge_cos", "all", s, 0) for s in sites]
    base = [a("embed_t", "all", s, 0) for s in sites]
    out.append(
        f"- Offset 0 (the current token): {pct(k0[0])}% at `{sites[0]}`, {pct(k0[len(sites) // 2])}% at `{mid}`, "
        f"{pct(k0[-1])}% at `{sites[-1]}`; the untrained decoder resid @ W_E^T gets {pct(base[0])}% at `{sites[0]}` "
        f"but {pct(max(base[1:]))}% at best after it. A linear probe reads the input token at every depth; "
        "the raw stream stops pointing at its embedding after the first block."
    )
    if -1 in summ["offsets"]:
        km1 = [a("ridge_cos", "all", s, -1) for s in sites]
        best = max(range(len(sites)), key=lambda i: km1[i])
        out.append(
            f"- Offset -1 (the previous token) peaks at `{sites[best]}` ({pct(km1[best])}%) against {pct(km1[0])}% "
            f"at `{sites[0]}`: attention moves it into the stream within the first blocks."
        )
    if 1 in summ["offsets"]:
        kp1 = [a("ridge_cos", "all", s, 1) for s in sites]
        out.append(
            f"- Offset +1 (the next token, which the model has not read) rises from {pct(kp1[0])}% to {pct(kp1[-1])}%: "
            "next-token prediction read out linearly."
        )
    rare = [a("ridge_cos", "rare", s, 0) for s in sites]
    freq = [a("ridge_cos", "frequent", s, 0) for s in sites]
    out.append(
        f"- Rare against frequent target tokens at offset 0: {pct(rare[0])}% vs {pct(freq[0])}% at `{sites[0]}`, "
        f"{pct(rare[len(sites) // 2])}% vs {pct(freq[len(sites) // 2])}% at `{mid}`, {pct(rare[-1])}% vs "
        f"{pct(freq[-1])}% at `{sites[-1]}` (rare = seen 1-{summ['rare_below'] - 1} times in training)."
    )
    rel = [r for r in res["ridge_eval"]["relation"] if r["kind"] == "ridge" and r["offset"] == 0]
    if rel:
        lo = min(rel, key=lambda r: r["mean_cos2_W_E"])
        hi = max(rel, key=lambda r: r["mean_cos2_W_E"])
        out.append(
            f"- Subspace overlap of the offset-0 probes with W_E's top-{rel[0]['rank']} singular subspace ranges from "
            f"{lo['mean_cos2_W_E']:.3f} (`{lo['site']}`) to {hi['mean_cos2_W_E']:.3f} (`{hi['site']}`), chance "
            f"{rel[0]['chance']:.3f}."
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer", default="resid_post.3")
    p.add_argument("--offset", type=int, default=-1)
    p.add_argument("--window", type=int, default=128)
    p.add_argument("--train-windows", type=int, default=64)
    p.add_argument("--val-windows", type=int, default=37)
    p.add_argument("--eval-windows", type=int, default=8, help="held-out windows for the all-site ridge evaluation")
    p.add_argument("--sk-rows", type=int, default=8000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--alpha", type=float, default=1e-3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-sklearn", action="store_true")
    p.add_argument("--docs-only", action="store_true", help="only rewrite docs/results/probes.md from the results")
    p.add_argument("--reuse-eval", action="store_true", help="keep part 3 (held-out ridge accuracy) from the existing results")
    p.add_argument(
        "--only-ridge-timing",
        action="store_true",
        help="rerun only part 2 (ridge over all sites vs forward) and update it in the existing results",
    )
    p.add_argument("--corpus", default="botchan", help="built-in corpus (shakespeare has enough text for 100k tokens)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    if args.docs_only:
        write_docs(json.loads(RESULTS.read_text(encoding="utf-8")))
        say(f"wrote {DOCS}")
        return
    res = run(args)
    out = Path(args.out)
    if args.only_ridge_timing:
        old = json.loads(out.read_text(encoding="utf-8"))
        old["ridge_all_sites"] = res["ridge_all_sites"]
        old["args"]["ridge_timing_rerun"] = vars(args)
        res = old
    else:
        if args.reuse_eval:
            old = json.loads(out.read_text(encoding="utf-8"))
            res["ridge_eval"] = old["ridge_eval"]
            res["ridge_eval_args"] = old.get("ridge_eval_args", old.get("args"))
        res["args"] = vars(args)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1), encoding="utf-8")
    say(f"wrote {out}")
    if out.resolve() == RESULTS.resolve():
        write_docs(res)
        say(f"wrote {DOCS}")


if __name__ == "__main__":
    main()
