"""``lensbox train-probe`` and ``lensbox eval-probe``: input-reconstruction probes from the command line.

Both read text from a built-in corpus (``--corpus botchan``) or files (``--text FILE``),
cut it into token windows and split the windows reproducibly into training and
held-out parts (``--val-fraction``, ``--seed``); ``train-probe`` uses the training part
and ``eval-probe`` the held-out part, by default of the corpus the probe was trained on.
"""

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from .._errors import InputError

DEFAULT_TRAIN_TOKENS = 20_000
DEFAULT_EVAL_TOKENS = 5_000


def _say(args: argparse.Namespace, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(f"[lensbox] {msg}", file=sys.stderr, flush=True)


def _parse_offsets(text: str) -> List[int]:
    try:
        return [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError as exc:
        raise InputError(
            "Cannot read --offsets.",
            expected="comma-separated integers, e.g. 0,-1,-2,-3,1",
            received=repr(text),
            fix="write --offsets=0,-1,1 (use '=' so a leading minus is not read as an option)",
        ) from exc


def _data_spec(args: argparse.Namespace, saved: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    saved = saved or {}
    text = list(args.text) if args.text else None
    corpus = args.corpus if (args.corpus or text) else saved.get("corpus")
    if text is None and corpus is None:
        text = saved.get("text")
    if text is None and corpus is None:
        corpus = "botchan"
    return {
        "corpus": None if text else corpus,
        "text": text,
        "window": int(args.window if args.window is not None else saved.get("window", 128)),
        "val_fraction": float(args.val_fraction if args.val_fraction is not None else saved.get("val_fraction", 0.1)),
        "seed": int(args.seed if args.seed is not None else saved.get("seed", 0)),
    }


def load_windows(adapter: Any, spec: Dict[str, Any], part: str, max_tokens: int, *, progress: bool) -> Any:
    """Token windows ``[n, window]`` of one part ('train' or 'val') of the text described by ``spec``."""
    import torch

    from ..data import fetch_corpus, read_texts, split_windows, token_windows

    if spec["text"]:
        texts = read_texts([Path(p) for p in spec["text"]])
    else:
        texts = read_texts(fetch_corpus(spec["corpus"], progress=progress))
    tok = adapter.tokenizer
    if tok is None:
        raise InputError(
            "The model has no tokenizer to cut text into windows.",
            expected="a model with a tokenizer",
            received="model.tokenizer is None",
            fix="load the model with its tokenizer",
        )

    def encode(s: str) -> List[int]:
        return list(tok.encode(s, add_special_tokens=False))

    stream = token_windows(texts, encode, spec["window"], bos_id=None, sep_id=getattr(tok, "eos_token_id", None))
    if spec["val_fraction"] > 0:
        stream = split_windows(stream, part, val_fraction=spec["val_fraction"], seed=spec["seed"])  # type: ignore[arg-type]
    elif part == "val":
        raise InputError(
            "No held-out windows with --val-fraction 0.",
            expected="a validation fraction > 0, or --text with held-out files",
            received="val_fraction=0",
            fix="pass --val-fraction 0.1 (the default)",
        )
    n_max = max(1, int(max_tokens) // spec["window"])
    windows = list(itertools.islice(stream, n_max))
    if not windows:
        raise InputError(
            f"The text has no {part} windows.",
            expected=f"at least one window of {spec['window']} tokens in the {part} part",
            received="none",
            fix="use more text, a shorter --window or a larger --val-fraction",
        )
    return torch.stack(windows).to(adapter.device)


def _load_model(args: argparse.Namespace) -> Any:
    from ..models._loading import load_model

    return load_model(args.model, progress=not args.quiet)


def _cmd_train(args: argparse.Namespace) -> int:
    from ..core._adapter import adapt
    from ..probes import InputProbe, SoftmaxSettings

    model = _load_model(args)
    adapter = adapt(model)
    spec = _data_spec(args)
    softmax = SoftmaxSettings(
        epochs=args.epochs, lr=args.lr, l2=args.l2, max_samples=args.max_softmax_samples,
        restrict_vocab=not args.full_vocab,
    )
    probe = InputProbe(
        args.sites,
        offsets=_parse_offsets(args.offsets),
        kinds=[k.strip() for k in args.kinds.split(",") if k.strip()],
        alpha=args.alpha,
        decode=args.decode,
        include_mid=args.include_mid,
        skip_first=args.skip_first,
        softmax=softmax,
    )
    windows = load_windows(adapter, spec, "train", args.tokens, progress=not args.quiet)
    _say(args, f"training on {windows.numel()} tokens ({windows.shape[0]} windows of {windows.shape[1]})")
    probe.fit(adapter, windows, batch_size=args.batch_size, progress=not args.quiet)
    probe.training["data"] = {**spec, "part": "train", "max_tokens": args.tokens}
    if args.eval_tokens > 0:
        val = load_windows(adapter, spec, "val", args.eval_tokens, progress=not args.quiet)
        _say(args, f"evaluating on {val.numel()} held-out tokens")
        result = probe.evaluate(adapter, val, batch_size=args.batch_size, progress=not args.quiet, store_metrics=True)
        print(result.table())
    out = probe.save(args.out)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..core._adapter import adapt
    from ..probes import InputProbe

    probe = InputProbe.load(args.probe)
    model = _load_model(args)
    adapter = adapt(model)
    probe.check_model(adapter)
    spec = _data_spec(args, probe.training.get("data"))
    part = "val" if spec["val_fraction"] > 0 else "train"
    windows = load_windows(adapter, spec, part, args.tokens, progress=not args.quiet)
    _say(args, f"evaluating on {windows.numel()} held-out tokens ({windows.shape[0]} windows)")
    result = probe.evaluate(
        adapter, windows, batch_size=args.batch_size, candidates=args.candidates, sites=args.sites,
        store_metrics=args.update, progress=not args.quiet,
    )
    print(result.table(args.method, k=args.k, bucket=args.bucket))
    if args.csv:
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        result.to_pandas().to_csv(args.csv, index=False)
        print(f"wrote {args.csv}", file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {"summary": result.summary(), "relation": result.relation}
        Path(args.json).write_text(json.dumps(payload, indent=1), encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        from .. import plot

        fig = plot.plot_probe_accuracy(result.accuracy_table(args.method), metric="top1" if args.k == 1 else "top5")
        plot.save_figure(fig, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    if args.update:
        probe.save(args.probe, overwrite=True)
        print(f"updated metrics in {args.probe}", file=sys.stderr)
    return 0


def _add_data_args(p: argparse.ArgumentParser, *, train: bool) -> None:
    default_hint = "" if train else " (default: the probe's training text)"
    p.add_argument("--model", default=None, help="default SmolLM2-135M-Instruct; or a .gguf file, HF dir or hub name")
    p.add_argument("--corpus", default=None, help=f"built-in corpus: botchan (default), shakespeare, django-docs{default_hint}")
    p.add_argument("--text", action="append", default=None, metavar="FILE", help="text file or folder (repeatable)")
    p.add_argument("--window", type=int, default=128 if train else None, help="tokens per window (default 128)")
    p.add_argument("--val-fraction", type=float, default=0.1 if train else None, help="held-out share of windows (0.1)")
    p.add_argument("--seed", type=int, default=0 if train else None, help="seed of the train/held-out split (0)")
    p.add_argument("--batch-size", type=int, default=8, help="windows per forward pass (8)")


def add_subcommands(subparsers: Any) -> None:
    """Register ``train-probe`` and ``eval-probe`` on the ``lensbox`` command."""
    train = subparsers.add_parser(
        "train-probe",
        help="train linear probes that read input tokens back out of each layer",
        description="Fit ridge (and optionally softmax) probes per site and token offset, then save them.",
    )
    _add_data_args(train, train=True)
    train.add_argument("--out", required=True, help="directory for probe.safetensors + probe.json")
    train.add_argument("--tokens", type=int, default=DEFAULT_TRAIN_TOKENS, help=f"training tokens ({DEFAULT_TRAIN_TOKENS})")
    train.add_argument("--eval-tokens", type=int, default=0, help="also evaluate on this many held-out tokens (0 = skip)")
    train.add_argument("--sites", default=None, help="'all' (embed + every resid_post, default), e.g. 'embed,0-5,final'")
    train.add_argument("--include-mid", action="store_true", help="also probe each block's resid_mid")
    train.add_argument("--offsets", default="0,-1,-2,-3,1", help="token offsets (default 0,-1,-2,-3,1; write --offsets=-1,0)")
    train.add_argument("--kinds", default="ridge", help="'ridge', 'softmax' or 'ridge,softmax'")
    train.add_argument("--alpha", type=float, default=1e-3, help="ridge penalty relative to the activation variance")
    train.add_argument("--decode", default="cosine", choices=["cosine", "dot"], help="ridge decoding against W_E")
    train.add_argument("--skip-first", type=int, default=1, help="window positions left out (the attention sink)")
    train.add_argument("--epochs", type=int, default=8, help="softmax: epochs of minibatch Adam (8)")
    train.add_argument("--lr", type=float, default=1e-2, help="softmax: peak learning rate, cosine decay (1e-2)")
    train.add_argument("--l2", type=float, default=1e-4, help="softmax: L2 penalty on the whitened weights (1e-4)")
    train.add_argument("--max-softmax-samples", type=int, default=20000, help="softmax: training rows kept per site")
    train.add_argument("--full-vocab", action="store_true", help="softmax over the whole vocabulary, not only seen tokens")
    train.set_defaults(func=_cmd_train)

    ev = subparsers.add_parser(
        "eval-probe",
        help="evaluate saved probes on held-out text",
        description="Top-1/top-5 accuracy per site and offset, by token frequency, with baselines.",
    )
    ev.add_argument("probe", help="directory written by train-probe")
    _add_data_args(ev, train=False)
    ev.add_argument("--tokens", type=int, default=DEFAULT_EVAL_TOKENS, help=f"held-out tokens ({DEFAULT_EVAL_TOKENS})")
    ev.add_argument("--sites", default=None, help="evaluate a subset of the trained sites")
    ev.add_argument("--candidates", default="vocab", choices=["vocab", "seen"], help="tokens the ridge probe may decode to")
    ev.add_argument("--method", default=None, help="table method: ridge_cos, ridge_dot, softmax, majority, embed_t")
    ev.add_argument("--k", type=int, default=1, choices=[1, 5], help="top-k accuracy shown")
    ev.add_argument("--bucket", default="all", help="token bucket shown: all, rare, frequent, or a count range")
    ev.add_argument("--csv", default=None, help="write every (method, site, offset, bucket) row to FILE.csv")
    ev.add_argument("--json", default=None, help="write the summary and the relation to W_E/W_U to FILE.json")
    ev.add_argument("--plot", default=None, help="write accuracy per layer (one curve per offset) to FILE.png/.svg/.pdf")
    ev.add_argument("--update", action="store_true", help="store the metrics in the probe's probe.json")
    ev.set_defaults(func=_cmd_eval)
