"""``lensbox lens`` (the logit lens on a prompt) and ``lensbox analyzers`` (the registered analyzers)."""

import argparse
import inspect
from pathlib import Path
from typing import Any

from . import _common as common

#: What ``lensbox lens --out`` can write, by extension.
LENS_SUFFIXES = (".csv", ".png", ".svg", ".pdf", ".html")


def _defaults() -> dict:
    from ..lenses import LensResult, logit_lens

    sig = inspect.signature(logit_lens).parameters
    table = inspect.signature(LensResult.table).parameters
    return {
        "k": sig["k"].default,
        "chunk_rows": sig["chunk_rows"].default,
        "metric": table["metric"].default,
        "width": table["width"].default,
        "max_positions": 16,  # a terminal is narrower than the table's own default
    }


def write_result(result: Any, out: str | Path, *, metric: str = "top1", max_positions: int = 24) -> Path:
    """Write a LensResult as .csv (all statistics), .png/.svg/.pdf (heatmap) or .html (table).

    The file appears complete or not at all (written to a temporary file, then renamed).
    """
    from .._io import atomic_file

    out = common.check_output_file(str(out), LENS_SUFFIXES)
    suffix = out.suffix.lower()
    with atomic_file(out, suffix=suffix) as tmp:
        if suffix == ".csv":
            result.to_pandas().to_csv(tmp, index=False)
        elif suffix == ".html":
            Path(tmp).write_text("<!doctype html><meta charset='utf-8'>" + result._repr_html_(), encoding="utf-8")
        else:
            from ..plot import plot_heatmap, save_figure

            fig = plot_heatmap(result, metric=metric, max_positions=max_positions)
            save_figure(fig, tmp)
    return out


def _cmd_lens(args: argparse.Namespace) -> int:
    from ..lenses import logit_lens

    if args.out:
        common.check_output_file(args.out, LENS_SUFFIXES)
    common.check_device(args)
    model = common.load_model(args)
    result = logit_lens(
        model, args.text, sites=args.sites, include_mid=args.include_mid, k=args.k, decoder=args.decoder,
        chunk_rows=args.chunk_rows,
    )
    print(result.table(metric=args.metric, width=args.width, max_positions=args.max_positions))
    if args.out:
        common.wrote(args, write_result(result, args.out, metric=args.metric, max_positions=args.max_positions))
    return 0


def _cmd_analyzers(args: argparse.Namespace) -> int:
    from ..core import available_analyzers

    for name in available_analyzers():
        print(name)
    return 0


def add_subcommands(sub: Any) -> None:
    """Register ``lens`` and ``analyzers``."""
    d = _defaults()
    lens = sub.add_parser(
        "lens", help="logit lens: a site-by-position table of top-1 guesses",
        description="Decode every site of the model on one prompt and print a site-by-position table "
                    "of top-1 tokens; --out also writes the full statistics or a heatmap.",
        formatter_class=common.HelpFormatter,
    )
    common.add_quiet(lens)
    lens.add_argument("text", help="the prompt to analyse")
    common.add_model(lens)
    common.add_sites(lens, default_text="embed and every resid_post")
    lens.add_argument("--metric", default=d["metric"], type=common.metric_type("result"),
                      help="value shown beside each top-1 token and heatmap colour: "
                           + ", ".join(common.metric_choices("result")))
    lens.add_argument("--decoder", default=None, help="'logit' (final norm + W_U), 'embed_t' or 'last_blocks:K' "
                                                       "(default: logit)")
    lens.add_argument("--k", type=common.positive_int, default=d["k"], help="top-k tokens kept per cell")
    common.add_chunk_rows(lens, d["chunk_rows"])
    lens.add_argument("--out", default=None,
                      help="also write FILE.csv (every statistic), FILE.png/.svg/.pdf (heatmap) or FILE.html "
                           "(default: none; an existing file is replaced)")
    lens.add_argument("--width", type=common.positive_int, default=d["width"], help="terminal column width")
    lens.add_argument("--max-positions", type=common.positive_int, default=d["max_positions"],
                      help="show at most the last N positions (table and heatmap)")
    lens.set_defaults(func=_cmd_lens)

    analyzers = sub.add_parser("analyzers", help="list registered analyzers (built-in and from entry points)",
                               formatter_class=common.HelpFormatter)
    common.add_quiet(analyzers)
    analyzers.set_defaults(func=_cmd_analyzers)


__all__ = ["LENS_SUFFIXES", "add_subcommands", "write_result"]

