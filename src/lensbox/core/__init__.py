"""lensbox.core: the hook-point machinery every analyzer uses.

Internals, one concept per module (``README.md`` beside this file has the facts each
TransformerLens generation differs in):

* ``_sites.py``: `Site` / `SiteKind` (a place in the residual stream, never a
  bare hook string), the ``SitesSpec`` alias every ``sites=`` argument accepts, and parsing.
* ``_adapter.py``: `ModelAdapter`, one interface over TransformerBridge (4.x) and
  HookedTransformer (2.x/3.x): sizes, hook names, final norm and unembedding, tokenization,
  one forward pass that captures chosen streams (`ModelAdapter.capture`); ``adapt()``
  and the ``ModelLike`` alias for ``model=`` arguments.
* ``_fingerprint.py``: `Fingerprint` (which model an artifact belongs to) and the one
  matching policy, `check_fingerprint`.
* ``_tokens.py``: readable token labels (visible spaces, byte tokens joined into UTF-8), and
  `token_id`, the one reading of a token given by the user (an id or one token's text).
* ``_analyzer.py``: the abstract `Analyzer` (``sites()``, ``run()``, ``needs_logits``).
* ``_hooks.py``: edited activations: the ``fwd_hooks=`` pairs every entry point accepts
  (`FwdHooks`), validated and shape-checked by `check_fwd_hooks`.
* ``_analyze.py``: `analyze`, one forward pass for many analyzers, and
  `streams_from_cache` for an ``ActivationCache`` the user already has.
* ``_registry.py``: name -> analyzer factory; lensbox's built-ins are a static table of
  ``"module:attribute"`` strings resolved on lookup (core imports no analyzer module), then the
  ``lensbox.analyzers`` entry points of installed packages.

``core`` imports only ``lensbox._errors`` (and ``_io``/``_cache``) from the rest of lensbox.
"""

from ._sites import Site as Site
from ._sites import SiteKind as SiteKind
from ._sites import SitesSpec as SitesSpec
from ._adapter import ModelAdapter as ModelAdapter
from ._adapter import ModelLike as ModelLike
from ._adapter import adapt as adapt
from ._fingerprint import Fingerprint as Fingerprint
from ._fingerprint import check_fingerprint as check_fingerprint
from ._tokens import sequence_labels as sequence_labels
from ._tokens import token_label as token_label
from ._tokens import tokenizer_kind as tokenizer_kind
from ._tokens import visible_text as visible_text
from ._analyzer import Analyzer as Analyzer
from ._registry import available_analyzers as available_analyzers
from ._registry import get_analyzer as get_analyzer
from ._registry import register_analyzer as register_analyzer
from ._hooks import FwdHooks as FwdHooks
from ._hooks import check_fwd_hooks as check_fwd_hooks
from ._analyze import analyze as analyze
from ._analyze import streams_from_cache as streams_from_cache

__all__ = [
    "Site",
    "SiteKind",
    "SitesSpec",
    "ModelLike",
    "ModelAdapter",
    "adapt",
    "Fingerprint",
    "check_fingerprint",
    "Analyzer",
    "analyze",
    "register_analyzer",
    "get_analyzer",
    "available_analyzers",
    "streams_from_cache",
    "FwdHooks",
    "check_fwd_hooks",
    "token_label",
    "sequence_labels",
    "tokenizer_kind",
    "visible_text",
]
