"""Where lensbox keeps what it downloads or derives (models, corpora)."""

import os
from pathlib import Path


def cache_dir() -> Path:
    """The lensbox cache root: ``$LENSBOX_CACHE``, else ``$XDG_CACHE_HOME/lensbox``, else ``~/.cache/lensbox``."""
    env = os.environ.get("LENSBOX_CACHE")
    if env:
        root = Path(env).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "lensbox"
    root.mkdir(parents=True, exist_ok=True)
    return root
