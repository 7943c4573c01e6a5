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
    from ..lenses import component_lens

    return {
        "norm": inspect.signature(component_lens).parameters["norm"].default,
        "k": sig["k"].default,
        "chunk_rows": sig["chunk_rows"].default,
        "metric": table["metric"].default,
        "width": table["width"].default,
        "max_positions": 16,  # a terminal is narrower than the table's own default
    }


def write_result(result: Any, out: str | Path, *, metric: str = "top1", max_positions: int = 24) -> Path:
    """Write a LensResult (or a ComponentLensResult) as .csv (all statistics), .png/.svg/.pdf (heatmap) or .html (table).

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
        elif hasattr(result, "components"):  # a ComponentLensResult
            from ..plot import plot_components, save_figure

            save_figure(plot_components(result, max_positions=max_positions), tmp)
        else:
            from ..plot import plot_heatmap, save_figure

            fig = plot_heatmap(result, metric=metric, max_positions=max_positions)
            save_figure(fig, tmp)
    return out


def _wants_components(sites: str | None) -> bool:
    """True when ``--sites`` names component outputs (``attn_out.3``, ``head.3.7``, ``heads``, ...)."""
    if not sites:
        return False
    from ..core import Site
    from ..core._sites import resolve_site

    parts = [p.strip() for p in sites.split(",") if p.strip()]
    if any(p.lower() == "heads" for p in parts):
        return True
    try:  # a large layer count: only the kind matters here; the model checks the numbers later
        return any(resolve_site(p, 1 << 20).is_component for p in parts if not p[0].isdigit() and "-" not in p[1:])
    except Exception:
        return False


def _cmd_components(args: argparse.Namespace, model: Any) -> int:
    from ..lenses import component_lens

    spec = "heads" if args.sites.strip().lower() == "heads" else args.sites
    result = component_lens(model, args.text, sites=spec, k=args.k, norm=args.norm, chunk_rows=args.chunk_rows)
    print(result.table(pos=args.pos, width=args.width))
    if args.out:
        common.wrote(args, write_result(result, args.out, max_positions=args.max_positions))
    return 0


def _cmd_lens(args: argparse.Namespace) -> int:
    from ..lenses import logit_lens

    if args.out:
        common.check_output_file(args.out, LENS_SUFFIXES)
    common.check_device(args)
    model = common.load_model(args)
    if _wants_components(args.sites):
        return _cmd_components(args, model)
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
    common.add_sites(lens, default_text="embed and every resid_post; component outputs such as "
                                        "'attn_out.3,mlp_out.3', 'head.3.0' or 'heads' switch to the component lens")
    lens.add_argument("--metric", default=d["metric"], type=common.metric_type("result"),
                      help="value shown beside each top-1 token and heatmap colour: "
                           + ", ".join(common.metric_choices("result")))
    lens.add_argument("--decoder", default=None, help="'logit' (final norm + W_U), 'embed_t' or 'last_blocks:K' "
                                                       "(default: logit)")
    lens.add_argument("--norm", default=d["norm"], choices=("frozen", "own"),
                      help="component lens only: the final norm's scale frozen from the final stream (additive) "
                           "or each component normalised on its own")
    lens.add_argument("--pos", type=int, default=-1, help="component lens only: the position whose table is printed")
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

