"""Flags every verb shares, defined once, and the checks that run before a model loads.

Each ``add_*`` function adds one group of flags to a verb's parser; the flag names mirror
the Python keyword names (``--sites``, ``--include-mid``, ``--window``, ``--max-tokens``,
``--batch-size``). Old spellings stay as hidden aliases (`add_alias`) that still work
and print a one-line note. Numbers are checked by the ``type=`` functions below, so
``--lr nan`` or ``--max-tokens 0`` fail while the command line is read; files, folders
and output paths are checked by `data_items` / `check_output_file` /
`check_output_folder` before any model is loaded.
"""

import argparse
import dataclasses
import inspect
import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .._errors import InputError, LensboxError

#: A parser or an argument group of one (both take ``add_argument``).
Flags = argparse._ActionsContainer
DTYPES = ("float32", "bfloat16", "float16")
FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


class HelpFormatter(argparse.HelpFormatter):
    """Shows every option's default (``(default: X)`` unless the help text already states it);
    descriptions keep their paragraphs."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(super(HelpFormatter, self)._fill_text(par, width, indent) for par in text.split("\n\n"))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or action.default is None:
            return text
        if not action.option_strings:
            return text
        if action.nargs == 0:  # store_true / store_false
            return f"{text} (default: {'on' if action.default else 'off'})"
        return f"{text} (default: %(default)s)"


def library_defaults(obj: Any) -> dict[str, Any]:
    """The defaults a library function or settings dataclass declares, by keyword name.

    The CLI takes its defaults from here rather than repeating literals.
    """
    if dataclasses.is_dataclass(obj):
        out = {}
        for f in dataclasses.fields(obj):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out
    return {
        name: p.default for name, p in inspect.signature(obj).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


# ---------------------------------------------------------------- numbers checked while parsing


def _number(kind: Callable[[str], Any], text: str, what: str, ok: Callable[[Any], bool]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {what}, received {text!r}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return _number(int, text, "a whole number >= 1", lambda v: v >= 1)


def nonnegative_int(text: str) -> int:
    """A whole number >= 0."""
    return _number(int, text, "a whole number >= 0", lambda v: v >= 0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(float, text, "a finite number > 0", lambda v: v > 0)


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    return _number(float, text, "a finite number >= 0", lambda v: v >= 0)


def fraction(text: str) -> float:
    """A finite number in [0, 1)."""
    return _number(float, text, "a number from 0 up to (not including) 1", lambda v: 0 <= v < 1)


def unit_interval(text: str) -> float:
    """A finite number in [0, 1]."""
    return _number(float, text, "a number from 0 to 1", lambda v: 0 <= v <= 1)


def metric_choices(scope: str) -> tuple:
    """Canonical metric names of the lens metric table (``'result'`` or ``'evaluation'``)."""
    from ..lenses import metric_names

    return metric_names(scope)  # type: ignore[arg-type]


def metric_type(scope: str) -> Callable[[str], str]:
    """A ``type=`` function: a metric name or alias of the metric table -> its canonical name."""

    def parse(text: str) -> str:
        from ..lenses import get_metric

        names = metric_choices(scope)
        try:
            name = get_metric(text).name
        except LensboxError:  # an unknown name: the message below lists the choices
            name = None
        if name not in names:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(names)}, received {text!r}")
        return name

    parse.__name__ = "metric"
    return parse


# ---------------------------------------------------------------- hidden aliases


class _Alias(argparse.Action):
    """An old spelling of a flag: stores into the new flag's ``dest`` and prints a one-line note."""

    def __init__(self, option_strings: Sequence[str], dest: str, new: str = "", append: bool = False, **kw: Any):
        self.new, self.append = new, append
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: str | None = None) -> None:
        print(f"lensbox: note: {option_string} is now spelled {self.new}", file=sys.stderr)
        if self.append:
            current = list(getattr(namespace, self.dest, None) or [])
            setattr(namespace, self.dest, current + (values if isinstance(values, list) else [values]))
        else:
            setattr(namespace, self.dest, values)


def add_alias(p: Flags, old: str, new: str, *, dest: str, **kw: Any) -> None:
    """Accept ``old`` as a hidden spelling of ``new`` (not shown in ``--help``)."""
    p.add_argument(old, action=_Alias, dest=dest, new=new, default=argparse.SUPPRESS, help=argparse.SUPPRESS, **kw)


def merge_aliases(args: argparse.Namespace) -> argparse.Namespace:
    """Fold old flags that cannot share a ``dest`` with a positional (``--text FILE``) into it."""
    extra = getattr(args, "text_files", None)
    if extra:
        args.files = [*(args.files or []), *extra]
    if hasattr(args, "text_files"):
        del args.text_files
    return args


# ---------------------------------------------------------------- shared flag groups


def add_quiet(p: Flags, *, top: bool = False) -> None:
    """``-q/--quiet``: before the verb (top-level parser) and after it (each verb)."""
    p.add_argument(
        "-q", "--quiet", action="store_true",
        default=False if top else argparse.SUPPRESS,  # a verb's default must not undo `lensbox -q VERB`
        help="no progress messages (default: off; works before or after the verb)",
    )


def add_model(p: Flags) -> None:
    """``--model``, ``--dtype``, ``--device``, ``--device-map``, ``--compat``."""
    from ..models._loading import DEFAULT_MODEL

    g = p.add_argument_group("model")
    g.add_argument("--model", default=None,
                   help=f"a .gguf file, a Hugging Face folder or hub name (default: {DEFAULT_MODEL})")
    g.add_argument("--dtype", default="float32", choices=DTYPES, help="parameter dtype (statistics are float32)")
    g.add_argument("--device", default=None, help="e.g. cpu, cuda, cuda:1 (default: cpu)")
    g.add_argument("--device-map", default=None,
                   help="split a model too large for one device: a Hugging Face device_map such as 'auto' "
                        "(default: none; not with --device)")
    g.add_argument("--compat", action="store_true", help="run the bridge in compatibility mode (folded weights)")


def add_data(p: Flags, *, what: str) -> None:
    """Positional ``FILES`` and ``--corpus``."""
    p.add_argument("files", nargs="*", metavar="FILES", help=f"UTF-8 text files or folders ({what})")
    p.add_argument("--corpus", default=None,
                   help="a built-in corpus: botchan, shakespeare, django-docs, django-code, debian-handbook:<lang> (default: none)")


def add_sites(p: Flags, *, default_text: str) -> None:
    """``--sites`` (old spelling ``--layers``) and ``--include-mid``."""
    p.add_argument("--sites", default=None,
                   help=f"sites, e.g. 'embed,0-5,final' or 'resid_mid.3' (default: {default_text})")
    add_alias(p, "--layers", "--sites", dest="sites")
    p.add_argument("--include-mid", action="store_true", help="also use each block's resid_mid")


def add_window(p: Flags, default: int) -> None:
    p.add_argument("--window", type=positive_int, default=default, help="tokens per window")


def add_max_tokens(p: Flags, *, default: int | None, help: str,
                   aliases: Iterable[str] = ("--tokens",)) -> None:
    """``--max-tokens`` (old spellings ``--tokens`` / ``--token-budget`` stay as hidden aliases)."""
    p.add_argument("--max-tokens", type=positive_int, default=default, help=help)
    for old in aliases:
        add_alias(p, old, "--max-tokens", dest="max_tokens", type=positive_int)


def add_batch_size(p: Flags, default: int, *, help: str = "windows per forward pass") -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, help=help)


def add_chunk_rows(p: Flags, default: int) -> None:
    p.add_argument("--chunk-rows", type=positive_int, default=default, help="rows per [rows, vocab] work buffer")


# ---------------------------------------------------------------- checks before the model loads


def data_items(args: argparse.Namespace, *, what: str, example: str) -> list[Path]:
    """Check the ``FILES`` and ``--corpus`` of ``args`` (existence, corpus name) and return the files."""
    items = [Path(p).expanduser() for p in (args.files or [])]
    for path in items:
        if not path.exists():
            raise InputError(
                f"Input {str(path)!r} does not exist.",
                expected="UTF-8 text files or folders that exist",
                received=str(path),
                fix="check the spelling of the path",
            )
    if args.corpus:
        from ..data import CORPORA

        handbook = args.corpus == "debian-handbook" or args.corpus.startswith("debian-handbook:")
        if args.corpus not in CORPORA and not handbook:
            raise InputError(
                f"Unknown corpus {args.corpus!r}.",
                expected="one of " + ", ".join(sorted(CORPORA)) + " or debian-handbook:<lang>",
                received=repr(args.corpus),
                fix="pick a listed corpus, or pass your own text files",
            )
    if not items and not args.corpus:
        raise InputError(
            f"No {what} was given.",
            expected="text files or folders, and/or --corpus NAME",
            received="nothing",
            fix=f"e.g. `{example}`",
        )
    return items


def check_output_file(path: str, suffixes: Sequence[str], *, flag: str = "--out") -> Path:
    """An output file: a known extension and a folder that exists (checked before any work)."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in suffixes:
        raise InputError(
            f"Unknown output format for {flag}.",
            expected="a path ending in " + ", ".join(suffixes),
            received=str(out),
            fix=f"e.g. {flag} result{suffixes[0]}",
        )
    _check_parent(out, flag)
    if out.is_dir():
        raise InputError(
            f"{flag} names a folder, not a file.",
            expected="a file path", received=str(out), fix=f"e.g. {flag} {out / ('result' + suffixes[0])}",
        )
    return out


#: Artifact folders the verbs write: what -> their ``"format"``.
ARTIFACTS = {"tuned lens": "lensbox.tuned_lens", "probe": "lensbox.input_probe"}


def _holds_artifact(folder: Path, what: str) -> bool:
    """The library's own test of "an artifact of this kind" (version-1 probe folders included)."""
    from .._io import is_artifact
    from ..probes._probe_io import is_v1_probe

    return is_artifact(folder, ARTIFACTS[what]) or (what == "probe" and is_v1_probe(folder))


def check_output_folder(path: str, *, overwrite: bool, what: str) -> Path:
    """An artifact folder (``what``: a key of `ARTIFACTS`), checked before any work.

    Its parent must exist; an existing non-empty folder must hold an artifact of the same
    kind and needs ``--overwrite``; a folder holding anything else is refused (the library
    never deletes files it did not write, so saving would fail after the work).
    """
    out = Path(path).expanduser()
    _check_parent(out, "--out")
    if out.exists() and not out.is_dir():
        raise InputError(
            f"--out names a file, not a folder for the {what}.",
            expected="a folder path (new, or an existing folder to replace with --overwrite)",
            received=str(out),
            fix="pick another --out",
        )
    if not out.is_dir() or not any(out.iterdir()):
        return out
    if not _holds_artifact(out, what):
        raise InputError(
            f"The folder {str(out)!r} already exists and holds files that are not a saved {what}.",
            expected=f"a new or empty folder, or an existing {what} folder (with --overwrite)",
            received=f"{out} containing {sorted(p.name for p in out.iterdir())[:5]}",
            fix="pick another --out; lensbox never deletes files it did not write",
        )
    if not overwrite:
        raise InputError(
            f"The {what} folder {str(out)!r} already exists.",
            expected="a new or empty folder",
            received=f"an existing {what} at {out}",
            fix="pass --overwrite to replace it, or pick another --out",
        )
    return out


def _check_parent(out: Path, flag: str) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(
            f"The folder of {flag} does not exist.",
            expected="an existing folder",
            received=str(parent),
            fix=f"create it first (mkdir -p {parent})",
        )


def check_device(args: argparse.Namespace) -> None:
    """``--device cuda`` without CUDA, or ``--device`` together with ``--device-map``."""
    device = getattr(args, "device", None)
    if device and getattr(args, "device_map", None):
        raise InputError(
            "--device and --device-map were both given.",
            expected="one of them", received=f"--device {device} --device-map {args.device_map}",
            fix="drop --device (a device map places the model itself)",
        )
    if device and str(device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise InputError(
                "CUDA is not available on this machine.",
                expected="--device cpu, or a machine with a CUDA GPU",
                received=f"--device {device}",
                fix="drop --device (the default is the CPU)",
            )


# ---------------------------------------------------------------- model loading and messages


def load_model(args: argparse.Namespace) -> Any:
    """Load the model named by the shared model flags."""
    import torch

    from ..models._loading import load_model as _load

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    return _load(
        args.model, dtype=dtype, device=args.device, device_map=args.device_map,
        compatibility_mode=args.compat, progress=not args.quiet,
    )


def say(args: argparse.Namespace, message: str) -> None:
    """A progress line on stderr unless ``-q``."""
    if not getattr(args, "quiet", False):
        print(f"[lensbox] {message}", file=sys.stderr, flush=True)


def wrote(args: argparse.Namespace, path: "os.PathLike[str] | str") -> None:
    if not getattr(args, "quiet", False):
        print(f"wrote {path}", file=sys.stderr)
