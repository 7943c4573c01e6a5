"""``python -m lensbox`` runs the command line (also under torchrun)."""

import sys

from ._cli import main

sys.exit(main())
