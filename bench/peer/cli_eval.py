"""Run tuned-lens 0.2.0's own ``eval`` command with both the logit and the tuned lens.

``python -m tuned_lens eval --lens_types logit tuned`` fails with the simple_parsing
release this venv resolves ("invalid Literal value: 'logit'"), so this wrapper parses all
other arguments with the library's own parser and sets ``lens_types`` afterwards.
Arguments are those of ``python -m tuned_lens eval ...`` without ``--lens_types``.
"""

import sys

from simple_parsing import ArgumentParser, ConflictResolution
from tuned_lens.__main__ import Main

parser = ArgumentParser(conflict_resolution=ConflictResolution.EXPLICIT)
parser.add_arguments(Main, dest="prog")
prog = parser.parse_args(["eval", *sys.argv[1:]]).prog
prog.command.lens_types = ["logit", "tuned"]
prog.execute()
