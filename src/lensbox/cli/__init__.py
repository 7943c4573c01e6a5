"""The ``lensbox`` command: a thin argparse layer over library functions.

Internals:

* ``_common``  the flags every verb shares (model, data, sites, windows, outputs, ``-q``),
  the number checks run while parsing and the file checks run before a model loads;
* ``_lens``    ``lens`` (logit lens on a prompt) and ``analyzers``;
* ``_tuned``   ``train-lens`` and ``eval-lens``;
* ``_probe``   ``train-probe`` and ``eval-probe``;
* ``_attribute`` ``attribute`` (direct logit attribution on one prompt).

Every verb parses its flags, checks its inputs and outputs, loads the model, calls one
library function and prints or writes its result. Output files appear whole or not at
all; Ctrl-C prints one line and exits with status 130. Test it through `main`
with an argv list.
"""

import argparse
import sys
from collections.abc import Sequence

from .._errors import LensboxError
from . import _attribute, _common, _lens, _probe, _tuned
from ._lens import write_result as write_result

#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130
#: Exit status for a bad command line or a LensboxError.
EXIT_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The ``lensbox`` argument parser with every verb."""
    parser = argparse.ArgumentParser(
        prog="lensbox",
        description="Hook-point analyzers for TransformerLens models: logit lens, tuned lens, input probes.",
        epilog="Run `lensbox VERB --help` for a verb's options.",
        formatter_class=_common.HelpFormatter,
    )
    _common.add_quiet(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="VERB", title="verbs")
    sub.required = True
    for module in (_lens, _tuned, _probe, _attribute):
        module.add_subcommands(sub)
    return parser


def verb_parsers() -> dict[str, argparse.ArgumentParser]:
    """Each verb's own parser, by name (what ``lensbox VERB --help`` prints)."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lensbox`` command; returns the exit code.

    0 on success, 2 for a bad command line or a `LensboxError`
    (printed as one ``lensbox: error:`` message), 130 after Ctrl-C (no partial output
    file is left behind).
    """
    try:
        parser = build_parser()
        args = _common.merge_aliases(parser.parse_args(list(argv) if argv is not None else None))
        return int(args.func(args) or 0)
    except LensboxError as exc:
        print(f"lensbox: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("lensbox: interrupted (no partial output was written)", file=sys.stderr)
        return EXIT_INTERRUPTED


__all__ = ["build_parser", "main", "verb_parsers", "write_result"]
