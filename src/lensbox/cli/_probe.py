"""``lensbox train-probe`` and ``lensbox eval-probe``: input-reconstruction probes from the command line.

Both read text from files (``FILES``) or a built-in corpus (``--corpus``, botchan when
neither is given), cut it into token windows and split the windows reproducibly into
training and held-out parts (``--val-fraction``, ``--seed``); ``train-probe`` uses the
training part and ``eval-probe`` the held-out part, by default of the text the probe was
trained on. Defaults shown by ``--help`` are read from `lensbox.probes.InputProbe`
and `lensbox.probes.SoftmaxSettings`.
"""

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from .._errors import InputError
from . import _common as common

#: Tokens ``train-probe`` / ``eval-probe`` read when ``--max-tokens`` is not given.
DEFAULT_TRAIN_TOKENS = 20_000
DEFAULT_EVAL_TOKENS = 5_000
DEFAULT_CORPUS = "botchan"
DEFAULT_VAL_FRACTION = 0.1
EVAL_SUFFIXES = (".csv", ".json", ".png", ".svg", ".pdf")


def _defaults() -> dict[str, Any]:
    from ..probes import InputProbe, SoftmaxSettings, evaluate_probe

    d = common.library_defaults(InputProbe)
    d.update({f"softmax_{k}": v for k, v in common.library_defaults(SoftmaxSettings).items()})
    d.update({f"fit_{k}": v for k, v in common.library_defaults(InputProbe.fit).items()})
    d.update({f"eval_{k}": v for k, v in common.library_defaults(evaluate_probe).items()})
    return d


def _parse_offsets(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise InputError(
            "Cannot read --offsets.",
            expected="comma-separated integers, e.g. 0,-1,-2,-3,1",
            received=repr(text),
            fix="write --offsets=0,-1,1 (use '=' so a leading minus is not read as an option)",
        ) from exc


def _data_spec(args: argparse.Namespace, saved: dict[str, Any] | None = None) -> dict[str, Any]:
    """Which text, window and split: the flags, else what the probe was trained on, else the defaults."""
    saved = saved or {}
    if args.files or args.corpus:
        common.data_items(args, what="text", example="")  # files exist, the corpus is known
    files = [str(Path(p).expanduser()) for p in args.files] if args.files else None
    corpus = args.corpus if (args.corpus or files) else saved.get("corpus")
    if files is None and corpus is None:
        files = saved.get("text")
    if files is None and corpus is None:
        corpus = DEFAULT_CORPUS
    return {
        "corpus": None if files else corpus,
        "text": files,
        "window": int(args.window if args.window is not None else saved.get("window", args.default_window)),
        "val_fraction": float(args.val_fraction if args.val_fraction is not None
                              else saved.get("val_fraction", DEFAULT_VAL_FRACTION)),
        "seed": int(args.seed if args.seed is not None else saved.get("seed", 0)),
    }


def _load_windows(adapter: Any, spec: dict[str, Any], part: str, max_tokens: int, *, progress: bool) -> Any:
    """Token windows ``[n, window]`` of one part ('train' or 'val') of the text described by ``spec``.

    The text is cut by `lensbox.data.windows` (as for training and evaluation) and split
    by `lensbox.data.split_windows`; at most ``max_tokens // window`` windows are kept.
    """
    import torch

    from ..data import fetch_corpus, split_windows, windows

    paths = [Path(p) for p in spec["text"]] if spec["text"] else fetch_corpus(spec["corpus"], progress=progress)
    if adapter.tokenizer is None:
        raise InputError(
            "The model has no tokenizer to cut text into windows.",
            expected="a model with a tokenizer",
            received="model.tokenizer is None",
            fix="load the model with its tokenizer",
        )
    stream = windows(adapter.tokenizer, paths, window=spec["window"], kind="paths")
    if spec["val_fraction"] > 0:
        stream = split_windows(stream, part, val_fraction=spec["val_fraction"], seed=spec["seed"])  # type: ignore[arg-type]
    elif part == "val":
        raise InputError(
            "No held-out windows with --val-fraction 0.",
            expected="a validation fraction > 0, or held-out files",
            received="val_fraction=0",
            fix=f"pass --val-fraction {DEFAULT_VAL_FRACTION}",
        )
    rows = list(itertools.islice(stream, max(1, int(max_tokens) // spec["window"])))
    if not rows:
        raise InputError(
            f"The text has no {part} windows.",
            expected=f"at least one window of {spec['window']} tokens in the {part} part",
            received="none",
            fix="use more text, a shorter --window or a larger --val-fraction",
        )
    return torch.stack(rows).to(adapter.device)


def _cmd_train(args: argparse.Namespace) -> int:
    from ..core import adapt
    from ..probes import InputProbe, SoftmaxSettings

    out = common.check_output_folder(args.out, overwrite=args.overwrite, what="probe")
    offsets = _parse_offsets(args.offsets)
    spec = _data_spec(args)
    common.check_device(args)
    softmax = SoftmaxSettings(
        epochs=args.epochs, lr=args.lr, l2=args.l2, max_samples=args.max_softmax_samples,
        restrict_vocab=not args.full_vocab,
    )
    probe = InputProbe(
        args.sites, offsets=offsets, kinds=[k.strip() for k in args.kinds.split(",") if k.strip()],
        alpha=args.alpha, decode=args.decode,
        include_mid=args.include_mid, skip_first=args.skip_first, softmax=softmax,
    )
    adapter = adapt(common.load_model(args))
    windows = _load_windows(adapter, spec, "train", args.max_tokens, progress=not args.quiet)
    common.say(args, f"training on {windows.numel()} tokens ({windows.shape[0]} windows of {windows.shape[1]})")
    probe.fit(adapter, windows, batch_size=args.batch_size, progress=not args.quiet)
    probe.training["data"] = {**spec, "part": "train", "max_tokens": args.max_tokens}
    if args.eval_tokens > 0:
        val = _load_windows(adapter, spec, "val", args.eval_tokens, progress=not args.quiet)
        common.say(args, f"evaluating on {val.numel()} held-out tokens")
        result = probe.evaluate(adapter, val, batch_size=args.batch_size, progress=not args.quiet,
                                store_metrics=True)
        print(result.table())
    common.wrote(args, probe.save(out, overwrite=args.overwrite))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..core import adapt
    from ..probes import InputProbe

    outs = [common.check_output_file(t, EVAL_SUFFIXES) for t in args.out or []]
    probe = InputProbe.load(args.probe)
    spec = _data_spec(args, probe.training.get("data"))
    common.check_device(args)
    adapter = adapt(common.load_model(args))
    probe.check_model(adapter)
    part = "val" if spec["val_fraction"] > 0 else "train"
    windows = _load_windows(adapter, spec, part, args.max_tokens, progress=not args.quiet)
    common.say(args, f"evaluating on {windows.numel()} held-out tokens ({windows.shape[0]} windows)")
    result = probe.evaluate(
        adapter, windows, batch_size=args.batch_size, candidates=args.candidates, sites=args.sites,
        store_metrics=args.update, progress=not args.quiet,
    )
    print(result.table(args.method, k=args.k, bucket=args.bucket))
    for path in outs:
        common.wrote(args, _write_probe_evaluation(result, path, method=args.method, k=args.k))
    if args.update:
        probe.save(args.probe, overwrite=True)
        common.say(args, f"updated metrics in {args.probe}")
    return 0


def _write_probe_evaluation(result: Any, path: Path, *, method: str | None, k: int) -> Path:
    from .._io import atomic_file

    suffix = path.suffix.lower()
    with atomic_file(path, suffix=suffix) as tmp:
        if suffix == ".csv":
            result.to_pandas().to_csv(tmp, index=False)
        elif suffix == ".json":
            payload = {"summary": result.summary(), "relation": result.relation}
            Path(tmp).write_text(json.dumps(payload, indent=1), encoding="utf-8")
        else:
            from ..plot import plot_probe_accuracy, save_figure

            fig = plot_probe_accuracy(result.accuracy_table(method), metric="top1" if k == 1 else "top5")
            save_figure(fig, tmp)
    return path


def _add_data_args(p: argparse.ArgumentParser, d: dict[str, Any], *, train: bool) -> None:
    common.add_data(p, what="default: " + (f"--corpus {DEFAULT_CORPUS}" if train else "the probe's training text"))
    common.add_alias(p, "--text", "FILES (positional)", dest="text_files", append=True)
    common.add_model(p)
    g = p.add_argument_group("windows and split")
    hint = "" if train else "the probe's, else "
    g.add_argument("--window", type=common.positive_int, default=None,
                   help=f"tokens per window (default: {hint}{d['fit_window']})")
    g.add_argument("--val-fraction", type=common.fraction, default=None,
                   help=f"held-out share of windows (default: {hint}{DEFAULT_VAL_FRACTION})")
    g.add_argument("--seed", type=int, default=None, help=f"seed of the train/held-out split (default: {hint}0)")
    common.add_batch_size(g, d["fit_batch_size"])
    p.set_defaults(default_window=d["fit_window"])


def _add_train(sub: Any, d: dict[str, Any]) -> None:
    train = sub.add_parser(
        "train-probe",
        help="train linear probes that read input tokens back out of each site",
        description="Fit ridge (and optionally softmax) probes per site and token offset, then save them.",
        formatter_class=common.HelpFormatter,
    )
    common.add_quiet(train)
    _add_data_args(train, d, train=True)
    common.add_max_tokens(train, default=DEFAULT_TRAIN_TOKENS, help="training tokens")
    train.add_argument("--eval-tokens", type=common.nonnegative_int, default=0,
                       help="also evaluate on this many held-out tokens (0 = skip)")
    common.add_sites(train, default_text="embed and every resid_post")
    g = train.add_argument_group("probes")
    g.add_argument("--offsets", default=",".join(str(o) for o in d["offsets"]),
                   help="token offsets to read back (write --offsets=-1,0 so a leading minus is not an option)")
    g.add_argument("--kinds", default=",".join(d["kinds"]) if not isinstance(d["kinds"], str) else d["kinds"],
                   help="'ridge', 'softmax' or 'ridge,softmax'")
    g.add_argument("--alpha", type=common.nonnegative_float, default=d["alpha"],
                   help="ridge penalty relative to the activation variance")
    g.add_argument("--decode", default=d["decode"], choices=["cosine", "dot"], help="ridge decoding against W_E")
    g.add_argument("--skip-first", type=common.nonnegative_int, default=d["skip_first"],
                   help="window positions left out (the attention sink)")
    s = train.add_argument_group("softmax probes")
    s.add_argument("--epochs", type=common.positive_int, default=d["softmax_epochs"], help="epochs of minibatch Adam")
    s.add_argument("--lr", type=common.positive_float, default=d["softmax_lr"], help="peak learning rate, cosine decay")
    s.add_argument("--l2", type=common.nonnegative_float, default=d["softmax_l2"],
                   help="L2 penalty on the whitened weights")
    s.add_argument("--max-softmax-samples", type=common.positive_int, default=d["softmax_max_samples"],
                   help="training rows kept per site")
    s.add_argument("--full-vocab", action="store_true", help="softmax over the whole vocabulary, not only seen tokens")
    o = train.add_argument_group("output")
    o.add_argument("--out", required=True, help="folder for probe.safetensors + probe.json (required)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing probe folder at --out")
    train.set_defaults(func=_cmd_train)


def _add_eval(sub: Any, d: dict[str, Any]) -> None:
    ev = sub.add_parser(
        "eval-probe",
        help="evaluate saved probes on held-out text",
        description="Top-1/top-5 accuracy per site and offset, by token frequency, with baselines.",
        formatter_class=common.HelpFormatter,
    )
    common.add_quiet(ev)
    ev.add_argument("probe", help="folder written by train-probe")
    _add_data_args(ev, d, train=False)
    common.add_max_tokens(ev, default=DEFAULT_EVAL_TOKENS, help="held-out tokens")
    ev.add_argument("--sites", default=None, help="evaluate a subset of the trained sites (default: all of them)")
    ev.add_argument("--candidates", default=d["eval_candidates"], choices=["vocab", "seen"],
                    help="tokens the ridge probe may decode to")
    ev.add_argument("--method", default=None,
                    help="table method: ridge_cos, ridge_dot, softmax, majority, embed_t (default: the probe's first)")
    ev.add_argument("--k", type=int, default=1, choices=[1, 5], help="top-k accuracy shown")
    ev.add_argument("--bucket", default="all", help="token bucket shown: all, rare, frequent, or a count range")
    ev.add_argument("--out", action="append", default=None,
                    help="write FILE.csv (every method/site/offset/bucket row), FILE.json (summary and relation to "
                         "W_E/W_U) or FILE.png/.svg/.pdf (accuracy per site); repeatable (default: none)")
    common.add_alias(ev, "--csv", "--out FILE.csv", dest="out", append=True)
    common.add_alias(ev, "--json", "--out FILE.json", dest="out", append=True)
    common.add_alias(ev, "--plot", "--out FILE.png", dest="out", append=True)
    ev.add_argument("--update", action="store_true", help="store the metrics in the probe's probe.json")
    ev.set_defaults(func=_cmd_eval)


def add_subcommands(sub: Any) -> None:
    """Register ``train-probe`` and ``eval-probe``."""
    d = _defaults()
    _add_train(sub, d)
    _add_eval(sub, d)


__all__ = ["add_subcommands"]
