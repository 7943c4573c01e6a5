"""The ``lensbox`` command: a thin argparse layer over library functions.

Every subcommand parses arguments, calls one library function and prints or writes
its result. Test it through :func:`main` with an argv list.
"""

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from .._errors import LensboxError

# Modules that contribute subcommands through add_subcommands(subparsers); missing ones are skipped.
_SUBCOMMAND_MODULES = ("lensbox.cli._tuned", "lensbox.cli._probe")


def _load_model_for(args: argparse.Namespace) -> Any:
    from ..models._loading import load_model

    return load_model(args.model, compatibility_mode=getattr(args, "compat", False), progress=not args.quiet)


def _cmd_lens(args: argparse.Namespace) -> int:
    from ..lenses._logit import logit_lens

    model = _load_model_for(args)
    result = logit_lens(
        model,
        args.text,
        sites=args.layers,
        include_mid=args.include_mid,
        k=args.k,
        decoder=args.decoder,
    )
    print(result.table(metric=args.metric, width=args.width, max_positions=args.max_positions))
    if args.out:
        out = Path(args.out)
        write_result(result, out, metric=args.metric, max_positions=args.max_positions)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def write_result(result: Any, out: Path, *, metric: str = "top1", max_positions: int = 24) -> None:
    """Write a LensResult as .csv (all statistics), .png/.svg/.pdf (heatmap) or .html (table)."""
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        result.to_pandas().to_csv(out, index=False)
    elif suffix == ".html":
        out.write_text("<!doctype html><meta charset='utf-8'>" + result._repr_html_(), encoding="utf-8")
    elif suffix in {".png", ".svg", ".pdf"}:
        plot = importlib.import_module("lensbox.plot")
        fig = plot.plot_heatmap(result, metric=metric, max_positions=max_positions)
        plot.save_figure(fig, out)
    else:
        raise LensboxError(
            "Unknown output format.",
            expected="a path ending in .csv, .png, .svg, .pdf or .html",
            received=str(out),
            fix="e.g. --out lens.png",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lensbox",
        description="Hook-point analyzers for TransformerLens models: logit lens, tuned lens, input probes.",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    lens = sub.add_parser("lens", help="logit lens: a layer-by-position table of top-1 guesses")
    lens.add_argument("text", help="the prompt to analyse")
    lens.add_argument("--model", default=None, help="model: default SmolLM2-135M-Instruct; or a .gguf file, HF dir or hub name")
    lens.add_argument("--layers", default=None, help="sites: 'all' (default), e.g. 'embed,0-5,final' or 'resid_mid.3'")
    lens.add_argument("--include-mid", action="store_true", help="also decode each block's resid_mid")
    lens.add_argument(
        "--metric",
        default="top1",
        choices=["top1", "logit", "rank", "kl", "kl_input", "entropy", "logprob", "ce"],
        help="value shown beside each top-1 token (and heatmap colour)",
    )
    lens.add_argument("--decoder", default=None, help="'logit' (default), 'embed_t' or 'last_blocks:K'")
    lens.add_argument("--k", type=int, default=5, help="top-k tokens kept per cell")
    lens.add_argument("--compat", action="store_true", help="run the bridge in compatibility mode")
    lens.add_argument("--out", default=None, help="write FILE.csv, FILE.png/.svg/.pdf or FILE.html")
    lens.add_argument("--width", type=int, default=10, help="terminal column width")
    lens.add_argument("--max-positions", type=int, default=16, help="show at most the last N positions")
    lens.set_defaults(func=_cmd_lens)

    analyzers = sub.add_parser("analyzers", help="list registered analyzers (built-in and from entry points)")
    analyzers.set_defaults(func=_cmd_analyzers)

    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.add_subcommands(sub)
    return parser


def _cmd_analyzers(args: argparse.Namespace) -> int:
    from ..core._registry import available_analyzers

    for name in available_analyzers():
        print(name)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``lensbox`` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    try:
        return int(args.func(args) or 0)
    except LensboxError as exc:
        print(f"lensbox: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
