"""``lensbox attribute``: direct logit attribution on one prompt (top components, a figure or a CSV)."""

import argparse
import inspect
from typing import Any

from . import _common as common

#: What ``lensbox attribute --out`` can write, by extension.
ATTRIBUTE_SUFFIXES = (".csv", ".png", ".svg", ".pdf")


def _token(text: str) -> Any:
    """A ``--target`` / ``--minus`` value: an integer is a token id, anything else the token's text."""
    stripped = text.strip()
    return int(stripped) if stripped.lstrip("-").isdigit() and stripped == text else text


def _cmd_attribute(args: argparse.Namespace) -> int:
    from .._io import atomic_file
    from ..lenses import logit_attribution

    out = common.check_output_file(args.out, ATTRIBUTE_SUFFIXES) if args.out else None
    common.check_device(args)
    model = common.load_model(args)
    target = args.target if args.target in ("next", "top1") else _token(args.target)
    minus = None if args.minus is None else _token(args.minus)
    result = logit_attribution(model, args.text, target=target, minus=minus, heads=False if args.no_heads else None,
                               chunk_rows=args.chunk_rows)
    heads = result.heads is not None
    print(result.table(args.position, n=args.top, heads=heads))
    if out is not None:
        suffix = out.suffix.lower()
        with atomic_file(out, suffix=suffix) as tmp:
            if suffix == ".csv":
                result.to_pandas(heads=heads).to_csv(tmp, index=False)
            else:
                from ..plot import plot_attribution, save_figure

                save_figure(plot_attribution(result, position=args.position, heads=heads, top=args.top), tmp)
        common.wrote(args, out)
    return 0


def add_subcommands(sub: Any) -> None:
    """Register ``attribute``."""
    from ..lenses import logit_attribution

    sig = inspect.signature(logit_attribution).parameters
    p = sub.add_parser(
        "attribute", help="direct logit attribution: which components (heads, MLPs) raise a token's logit",
        description="Split the logit of a token (or the difference of two) at one position into what the "
                    "embeddings, every attention head and every MLP wrote into the residual stream, with the final "
                    "norm's scale frozen; print the largest contributions and their sum (the model's own logit). "
                    "Example: lensbox attribute \"When Mary and John went to the store, John gave a drink to\" "
                    "--target \" Mary\" --minus \" John\"",
        formatter_class=common.HelpFormatter,
    )
    common.add_quiet(p)
    p.add_argument("text", help="the prompt to analyse")
    common.add_model(p)
    p.add_argument("--target", default=sig["target"].default,
                   help="'next' (the next input token), 'top1' (the model's top guess), a token id, or a string that "
                        "is exactly one token, e.g. ' Mary' (mind the leading space)")
    p.add_argument("--minus", default=None,
                   help="a second token (id or one-token string): attribute logit(target) - logit(minus) "
                        "(default: none)")
    p.add_argument("--position", type=int, default=-1,
                   help="the position to report (negative counts from the end; with --target next the last "
                        "position has no target, use -2)")
    p.add_argument("--top", type=common.positive_int, default=10, help="how many components to print and plot")
    p.add_argument("--no-heads", action="store_true",
                   help="report whole attention layers instead of heads (default: heads where they add up)")
    common.add_chunk_rows(p, sig["chunk_rows"].default)
    p.add_argument("--out", default=None,
                   help="also write FILE.csv (every position and component) or FILE.png/.svg/.pdf (a bar chart at "
                        "--position) (default: none; an existing file is replaced)")
    p.set_defaults(func=_cmd_attribute)


__all__ = ["ATTRIBUTE_SUFFIXES", "add_subcommands"]
