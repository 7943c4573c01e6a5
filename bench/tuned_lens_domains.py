"""Benchmark: does a tuned lens tell the truth on domains and languages it was not trained on?

Three tuned lenses of SmolLM2-135M-Instruct, all on the same number of training tokens:

* ``before``: trained on the first windows of Botchan (an English novel; the split of
  ``bench/tuned_lens_bench.py``) with the defaults before issue 12 (fixed ridge 1e-3, the refined
  translators kept);
* ``after``: the same text with today's defaults: ridge of the least-squares start and shrinkage
  of the refinement towards it chosen per site on held-out text, the run's own validation windows
  and text of *another* language (the Debian handbook in German, never evaluated here);
* ``mix``: today's defaults on lensbox's default training text (`lensbox.data.default_training_texts`:
  English prose, drama and technical text, Python code, French, Chinese, German, Japanese,
  Russian, Spanish, interleaved).

Each is evaluated with :func:`lensbox.evaluate` (the library's one KL kernel) on held-out text:
the end of Botchan (in-domain for ``before`` and ``after``), five other domains (English drama,
technical English, Python code, French, Chinese; for ``mix`` these are held-out *text* of
domains it saw, checked to share no passage with its training text), and five languages no lens
saw (the handbook in Italian, Portuguese, Korean, Arabic, Greek). Reported per site and as means
over the non-final sites with and without the embeddings: KL(final || lens) for the logit lens,
the tuned lenses, the uniform distribution and the unigram distribution (token frequencies of the
Botchan training windows, mixed with 10 % uniform so that no token has probability 0), and top-1
agreement with the final layer.

Writes ``bench/results/tuned_lens_domains.{json,md}`` and ``docs/results/tuned_lens_domains.md``.

    .venv/bin/python bench/tuned_lens_domains.py            # the issue's scale: 12,800 training tokens
    .venv/bin/python bench/tuned_lens_domains.py --quick    # 4,096 training tokens, 512 per domain, every 3rd site

Lenses and evaluation parts are cached under ``~/.cache/lensbox/bench/tuned_lens_domains``
(``--retrain`` ignores the lenses).
"""

import argparse
import hashlib
import inspect
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Sequence

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOCS = REPO / "docs" / "results" / "tuned_lens_domains.md"
WINDOW = 256
UNIGRAM_UNIFORM_SHARE = 0.1
VALIDATION_DOMAIN = ("German (Debian handbook)", "debian-handbook:de")
#: The tuned lenses, and what each was trained on (the languages count for "never worse than uniform").
LENSES = {
    "before": {"trained_on": "Botchan", "languages": {"English"}},
    "after": {"trained_on": "Botchan", "languages": {"English"}},
    "mix": {"trained_on": "the default mix",
            "languages": {"English", "Python", "French", "Chinese", "German", "Japanese", "Russian", "Spanish"}},
}
IN_DOMAIN = "Botchan, held out (in-domain)"


def held_out_domains() -> List[Dict[str, Any]]:
    """The evaluation domains: name, language, where the text comes from (read from the end of a corpus)."""
    import argparse as stdlib_argparse

    return [
        {"name": "English drama (Shakespeare)", "language": "English", "corpus": "shakespeare", "pick": "hamlet"},
        {"name": "English technical (Django docs)", "language": "English", "corpus": "django-docs", "pick": "topics/db/models"},
        {"name": "Python code (stdlib argparse.py)", "language": "Python", "path": inspect.getsourcefile(stdlib_argparse)},
        {"name": "French (Debian handbook)", "language": "French", "corpus": "debian-handbook:fr"},
        {"name": "Chinese (Debian handbook)", "language": "Chinese", "corpus": "debian-handbook:zh-CN"},
        {"name": "Italian (Debian handbook)", "language": "Italian", "corpus": "debian-handbook:it"},
        {"name": "Portuguese (Debian handbook)", "language": "Portuguese", "corpus": "debian-handbook:pt-BR"},
        {"name": "Korean (Debian handbook)", "language": "Korean", "corpus": "debian-handbook:ko"},
        {"name": "Arabic (Debian handbook)", "language": "Arabic", "corpus": "debian-handbook:ar"},
        {"name": "Greek (Debian handbook)", "language": "Greek", "corpus": "debian-handbook:el"},
    ]


def domain_text(spec: Dict[str, Any], chars: int) -> str:
    """At least ``chars`` characters of a domain's text: the picked file first, then the corpus's
    files from the *end* of their sorted order (the default mix reads each corpus from its start)."""
    from lensbox.data import fetch_corpus, iter_texts

    if "path" in spec:
        return Path(spec["path"]).read_text(encoding="utf-8")
    paths = sorted((p for p in fetch_corpus(spec["corpus"], progress=False) if p.stat().st_size > 0), key=str, reverse=True)
    pick = spec.get("pick")
    if pick:
        paths = sorted(paths, key=lambda p: pick not in str(p).lower())
    out, n = [], 0
    for text in iter_texts(paths):
        out.append(text)
        n += len(text)
        if n >= chars:
            break
    return "\n\n".join(out)


def without_training_paragraphs(text: str, training: Sequence[str]) -> str:
    """``text`` without the paragraphs that occur verbatim in the training texts (the handbook repeats
    its table of contents on every page: those headings are in the default mix too)."""
    seen = {p.strip() for t in training for p in t.split("\n\n") if p.strip()}
    return "\n\n".join(p for p in text.split("\n\n") if p.strip() not in seen)


def shares_passage(text: str, training: Sequence[str], probe_chars: int = 200, probes: int = 20) -> bool:
    """Whether any of ``probes`` evenly spaced passages of ``text`` occurs in the training texts."""
    joined = "\n".join(training)
    step = max(1, (len(text) - probe_chars) // probes)
    return any(text[i : i + probe_chars] in joined for i in range(0, max(1, len(text) - probe_chars), step)
               if text[i : i + probe_chars].strip())


def novel_windows(model: Any) -> Any:
    """Botchan's body (between the Gutenberg markers) as 256-token windows, as in bench/tuned_lens_bench.py."""
    import torch

    from lensbox.data import fetch_corpus, read_texts, token_windows

    lines = read_texts(fetch_corpus("botchan", progress=False))[0].split("\n")
    a = next(i for i, l in enumerate(lines) if l.startswith("*** START OF"))
    b = next(i for i, l in enumerate(lines) if l.startswith("*** END OF"))
    body = "\n".join(lines[a + 1 : b])
    enc = lambda s: model.tokenizer.encode(s, add_special_tokens=False)  # noqa: E731
    return torch.stack(list(token_windows([body], enc, WINDOW, bos_id=None))).long()


def domain_windows(model: Any, text: str, n: int) -> Any:
    import itertools

    import torch

    from lensbox.data import windows

    rows = list(itertools.islice(windows(model.tokenizer, text, window=WINDOW), n))
    if len(rows) < n:
        raise SystemExit(f"a domain text holds only {len(rows)} windows, {n} needed")
    return torch.stack(rows).long()


def train(model: Any, data: Any, name: str, budget: int, args: argparse.Namespace, **kw: Any) -> Any:
    """Train (or reuse from the cache) one lens on ``budget`` tokens of ``data``; ``kw`` go to train_tuned_lens."""
    from lensbox import cache_dir, train_tuned_lens
    from lensbox.lenses import TunedLens

    path = cache_dir() / "bench" / "tuned_lens_domains" / f"{name}-{budget}"
    if path.is_dir() and not args.retrain:
        print(f"[bench] reusing {path}", flush=True)
        return TunedLens.load(path, model)
    t0 = time.perf_counter()
    lens = train_tuned_lens(model, data, token_budget=budget, select_tokens=args.select_tokens, **kw)
    lens.config.setdefault("metrics", {})["wall_s"] = round(time.perf_counter() - t0, 1)
    lens.save(path, overwrite=True)
    print(f"[bench] trained {name} in {time.perf_counter() - t0:.0f} s -> {path}", flush=True)
    return lens


def unigram(train_windows: Any, d_vocab: int) -> Any:
    import torch

    counts = torch.bincount(train_windows.reshape(-1), minlength=d_vocab).double()
    return (1 - UNIGRAM_UNIFORM_SHARE) * counts / counts.sum() + UNIGRAM_UNIFORM_SHARE / d_vocab


def evaluate_part(model: Any, windows: Any, lenses: Dict[str, Any], sites: List[str], probs: Any) -> Dict[str, Any]:
    """Per-site KL and top-1 agreement of some lenses on one domain, the baselines, and the warnings seen."""
    from lensbox import evaluate

    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        ev = evaluate(model, windows, lenses, window=int(windows.shape[1]), sites=sites, unigram=probs, progress=False)
    cols = [*ev.lenses, *ev.baselines]
    worse = lambda lens, than: [x.name for x in ev.worse_sites(lens, than)]  # noqa: E731
    return {
        "tokens": ev.tokens, "sites": [s.name for s in ev.sites],
        "kl": {c: ev.column(c, "kl") for c in cols},
        "top1_agree": {c: ev.column(c, "top1_agree") for c in ev.lenses},
        "mean_kl": {c: ev.mean(c, "kl") for c in cols},
        "mean_kl_no_embed": {c: ev.mean(c, "kl", include_embed=False) for c in cols},
        "mean_top1": {c: ev.mean(c, "top1_agree") for c in ev.lenses},
        "worse_than_uniform": {c: worse(c, "uniform") for c in ev.lenses},
        "warnings": [str(w.message) for w in seen if "Lens '" in str(w.message)],
        "eval_s": round(time.perf_counter() - t0, 1),
    }


def cached_part(key: str, run: Any) -> Any:
    """An evaluation part from the cache (JSON), or computed now by ``run()`` and cached."""
    from lensbox import cache_dir

    path = cache_dir() / "bench" / "tuned_lens_domains" / "eval" / (hashlib.sha256(key.encode()).hexdigest()[:24] + ".json")
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    part = run()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(part, default=str), encoding="utf-8")
    return part


def combine(parts: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One domain's row from its parts (one per lens, each with the baselines): every lens side by side."""
    row: Dict[str, Any] = {"tokens": parts[0]["tokens"], "sites": parts[0]["sites"], "warnings": [], "eval_s": 0.0}
    for key in ("kl", "top1_agree", "mean_kl", "mean_kl_no_embed", "mean_top1", "worse_than_uniform"):
        row[key] = {}
        for p in parts:
            row[key].update(p[key])
    for p in parts:
        row["warnings"] += p["warnings"]
        row["eval_s"] += p["eval_s"]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="4,096 training tokens, 512 tokens per domain, every 3rd site")
    p.add_argument("--train-windows", type=int, default=None, help="training windows of 256 tokens (default 50; quick 16)")
    p.add_argument("--eval-tokens", type=int, default=None, help="held-out tokens per domain (default 2048; quick 512)")
    p.add_argument("--site-stride", type=int, default=None, help="evaluate resid_post every N blocks (default 1; quick 3)")
    p.add_argument("--select-tokens", type=int, default=None, help="tokens per held-out set for the choices (default 512; quick 256)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--only", default=None,
                   help="evaluate only the held-out domains whose name contains one of these comma-separated words "
                        "(the in-domain text always), in that order")
    p.add_argument("--lenses", default="logit,before,after,mix",
                   help="evaluate only these (cached per domain; a later full run reuses the parts)")
    args = p.parse_args()
    q = args.quick
    args.train_windows = args.train_windows or (16 if q else 50)
    args.eval_tokens = args.eval_tokens or (512 if q else 2048)
    args.site_stride = args.site_stride or (3 if q else 1)
    args.select_tokens = args.select_tokens or (256 if q else 512)

    import torch

    torch.set_num_threads(args.threads)
    import lensbox
    from lensbox.data import default_training_texts

    t_all = time.perf_counter()
    model = lensbox.load_model()
    novel = novel_windows(model)
    n = args.train_windows
    budget = n * WINDOW
    # the training text: the novel's first windows, with room for the default 5 % validation split
    data = novel[: n + max(2, n // 5)]
    heldout = novel[-16:]  # the held-out windows of bench/tuned_lens_bench.py
    val_text = domain_text({"corpus": VALIDATION_DOMAIN[1]}, 20_000)
    mix_texts, mix_desc = default_training_texts(progress=False)

    wanted = args.lenses.split(",")
    trained: Dict[str, Any] = {}
    if "before" in wanted:
        trained["before"] = train(model, data, "before", budget, args, ridge=1e-3, shrink=1.0)
    if "after" in wanted:
        trained["after"] = train(model, data, "after", budget, args, val_data=val_text)
    if "mix" in wanted:
        trained["mix"] = train(model, None, f"mix-{mix_desc['sha256']}", budget, args)
    probs = unigram(data[:n], model.cfg.d_vocab)

    L = model.cfg.n_layers
    sites = ["embed"] + [f"resid_post.{i}" for i in range(0, L - 1, args.site_stride)]
    n_eval = max(1, args.eval_tokens // WINDOW)
    domains = [{"name": IN_DOMAIN, "language": "English", "windows": heldout[:n_eval],
                "sha256": hashlib.sha256(heldout[:n_eval].numpy().tobytes()).hexdigest()[:16]}]
    specs = held_out_domains()
    if args.only:
        words = args.only.split(",")
        specs = [d for w in words for d in specs if w in d["name"]]
    for spec in specs:
        text = domain_text(spec, 40 * args.eval_tokens)
        if spec.get("corpus", "").startswith("debian-handbook"):
            text = without_training_paragraphs(text, mix_texts)
        if shares_passage(text[: 8 * args.eval_tokens], mix_texts):
            raise SystemExit(f"{spec['name']}: the evaluation text shares a passage with the default mix")
        domains.append({**spec, "windows": domain_windows(model, text, n_eval),
                        "sha256": hashlib.sha256(text.encode()).hexdigest()[:16]})
    results = []
    cfg_key = f"{n}:{n_eval}:{','.join(sites)}:{UNIGRAM_UNIFORM_SHARE}:parts-v2"
    for dom in domains:
        parts = []
        for name in wanted:
            lens = "logit" if name == "logit" else trained[name]
            ident = "logit" if name == "logit" else hashlib.sha256(
                lens.translators.weight.detach().numpy().tobytes()).hexdigest()[:16]
            key = f"{dom['name']}:{dom['sha256']}:{name}:{ident}:{cfg_key}"
            parts.append(cached_part(key, lambda: evaluate_part(model, dom["windows"], {name: lens}, sites, probs)))
        row = {"domain": dom["name"], "language": dom["language"],
               **{k: dom[k] for k in ("corpus", "path", "sha256") if k in dom}, **combine(parts)}
        results.append(row)
        m = row["mean_kl_no_embed"]
        print(f"[bench] {dom['name']}: " + " ".join(f"{k} {v:.2f}" for k, v in m.items()) + f" ({row['eval_s']} s)",
              flush=True)
    if set(wanted) != {"logit", *LENSES}:
        print("[bench] partial run (--lenses): nothing written", flush=True)
        return
    write(args, n, budget, n_eval, sites, results, trained, mix_desc, model.cfg.model_name, time.perf_counter() - t_all)


def write(args: argparse.Namespace, n: int, budget: int, n_eval: int, sites: List[str], results: List[Dict[str, Any]],
          trained: Dict[str, Any], mix_desc: Dict[str, Any], model_name: str, total_s: float) -> None:
    out = {
        "model": model_name,
        "config": {"train_windows": n, "train_tokens": budget, "eval_tokens_per_domain": n_eval * WINDOW,
                   "sites": sites, "site_stride": args.site_stride, "select_tokens": args.select_tokens,
                   "threads": args.threads, "quick": args.quick, "validation_domain": VALIDATION_DOMAIN[0],
                   "command": " ".join(["bench/tuned_lens_domains.py", *sys.argv[1:]]),
                   "mix": mix_desc,
                   "unigram": f"token frequencies of the Botchan training windows mixed with {UNIGRAM_UNIFORM_SHARE:.0%} uniform"},
        "lenses": {name: {"trained_on": LENSES[name]["trained_on"], "training": lens.config.get("training", {}),
                          "selection": lens.config.get("selection", {}), "metrics": lens.config.get("metrics", {})}
                   for name, lens in trained.items()},
        "domains": results,
        "total_s": round(total_s, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    from lensbox.lenses._tuned_io import jsonable

    (RESULTS / "tuned_lens_domains.json").write_text(json.dumps(jsonable(out), indent=1, default=str, allow_nan=False), encoding="utf-8")
    md = render(out)
    (RESULTS / "tuned_lens_domains.md").write_text(md, encoding="utf-8")
    DOCS.write_text(md, encoding="utf-8")
    print(md)


def fmt(v: Any, d: int = 2) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"


def mean_table(out: Dict[str, Any], key: str) -> List[str]:
    tuned = list(LENSES)
    head = ["held-out text", "logit", *tuned, "uniform", "unigram", *(f"{t} / logit" for t in tuned)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in out["domains"]:
        m = r[key]
        cells = [r["domain"], *(fmt(m[c]) for c in ("logit", *tuned, "uniform", "unigram")),
                 *(fmt(m[t] / m["logit"]) for t in tuned)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def unseen(row: Dict[str, Any], lens: str) -> bool:
    """Whether the domain's language is one the lens was not trained on."""
    return row["language"] not in LENSES[lens]["languages"]


def render(out: Dict[str, Any]) -> str:
    c = out["config"]
    mix = c["mix"]
    langs = ", ".join(f"{p['domain']}" for p in mix["corpora"])
    lines = [
        "# Tuned lens out of domain",
        "",
        f"{out['model']}. Three tuned lenses, each trained on {c['train_tokens']:,} tokens, evaluated on "
        f"{c['eval_tokens_per_domain']:,} held-out tokens per text at {len(c['sites'])} sites "
        f"({', '.join(c['sites'][:3])}, ... every {c['site_stride']} block(s)) plus the final one. "
        "KL(final || lens) in nats, from `lensbox.evaluate`.",
        "",
        "* **before**: trained on Botchan (an English novel) with the defaults before issue 12 (ridge 1e-3, the refined translators kept);",
        f"* **after**: the same text with today's defaults: the ridge of the least-squares start and the shrinkage of the "
        f"refinement towards it chosen per site on held-out text (the run's own validation windows and "
        f"{c['validation_domain']}, {c['select_tokens']} tokens each, never evaluated here);",
        f"* **mix**: today's defaults on lensbox's default training text ({langs}; {mix['chars']:,} characters, "
        "read in interleaved blocks of 1,000 characters); the paragraphs of the evaluated handbook pages that occur in it verbatim (the handbook repeats its table of contents on every page) are removed, and every evaluated text is checked to share no 200-character passage with it;",
        "* **uniform**: KL(final || uniform) = log V − H(final); **unigram**: " + c["unigram"] + ".",
        "",
        "Italian, Portuguese, Korean, Arabic and Greek are languages none of the lenses was trained on; French "
        "and Chinese are unseen by *before* and *after*, held-out text of seen languages for *mix*.",
        "",
        f"Produced by `{c['command']}`"
        + f" on a 2-core machine; training wall time (shared with test runs, so an upper bound): "
        + ", ".join(f"{k} {v['metrics'].get('wall_s', '?')} s" for k, v in out["lenses"].items())
        + f"; this run {out['total_s'] / 60:.0f} min (trained lenses and evaluated parts are reused from the cache).",
        "",
        *target_lines(out),
        "## Mean KL over the non-final sites, without the embeddings",
        "",
        *mean_table(out, "mean_kl_no_embed"),
        "",
        "## Mean KL over the non-final sites, with the embeddings",
        "",
        *mean_table(out, "mean_kl"),
        "",
        "## Sites worse than uniform, top-1 agreement",
        "",
    ]
    tuned = list(LENSES)
    head = ["held-out text", "sites", *(f"{t}: worse than uniform" for t in tuned), "top-1 logit", *(f"top-1 {t}" for t in tuned)]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in out["domains"]:
        w, t, k = r["worse_than_uniform"], r["mean_top1"], len(r["sites"]) - 1
        cells = [r["domain"], str(k), *(str(len(w[x])) for x in tuned), fmt(t["logit"]), *(fmt(t[x]) for x in tuned)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Per site (KL, nats)", ""]
    cols = ["logit", *tuned, "uniform", "unigram"]
    for r in out["domains"]:
        lines += [f"### {r['domain']}", "", "| site | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
        for i, s in enumerate(r["sites"]):
            lines.append(f"| {s} | " + " | ".join(fmt(r["kl"][x][i]) for x in cols) + " |")
        lines.append("")
    return "\n".join(lines) + "\n"


def target_lines(out: Dict[str, Any]) -> List[str]:
    """The issue's targets, checked for each of today's lenses."""
    dom = out["domains"]
    ind = dom[0]["mean_kl_no_embed"]
    lines = ["## The targets of issue 12", ""]
    for lens in ("after", "mix"):
        worse = [(r["domain"], r["worse_than_uniform"][lens]) for r in dom if unseen(r, lens)]
        bad = [(d, w) for d, w in worse if w]
        lines.append(f"* **{lens}**, never worse than uniform at any site in a language it was not trained on "
                     f"({len(worse)} texts): " + ("met" if not bad else "not met: " + "; ".join(
                         f"{d}: {len(w)} site(s) ({', '.join(w)})" for d, w in bad)))
        ratios = [(r["domain"], r["mean_kl_no_embed"][lens] / r["mean_kl_no_embed"]["logit"]) for r in dom]
        over = [(d, x) for d, x in ratios if x > 0.35]
        lines.append(f"* **{lens}**, tuned / logit <= 0.35 on every text (mean without the embeddings; highest "
                     f"{max(x for _, x in ratios):.2f}): " + ("met" if not over else "not met: " + ", ".join(f"{d}: {x:.2f}" for d, x in over)))
    rel = ind["after"] / ind["before"] - 1
    lines.append(f"* **after**, in-domain KL (held-out Botchan, without the embeddings) within 10 % of before (the same "
                 f"training text): {ind['after']:.3f} vs {ind['before']:.3f} ({rel:+.1%}): " + ("met" if rel <= 0.10 else "not met"))
    lines.append(f"* **mix** on held-out Botchan: {ind['mix']:.3f} ({ind['mix'] / ind['before']:.2f}x the lens trained on the "
                 "novel itself): the price of a lens that stays truthful in other domains and languages "
                 "(not a target: its training text is a different one)")
    return lines + [""]


if __name__ == "__main__":
    main()
