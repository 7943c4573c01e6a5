"""Which model an artifact belongs to: :class:`Fingerprint` and the one matching policy.

A fingerprint records

* the architecture numbers (``n_layers``, ``d_model``, ``d_vocab``), compared exactly;
* ``weights``: a SHA-256 over every parameter tensor (name, shape, dtype and its values;
  tensors above :data:`SAMPLE_LIMIT` elements contribute an evenly strided sample of at most
  that many values (first and last included), copied exactly, so the digest is the same on every device);
* ``decoder``: the top-3 token ids and log-probabilities of decoding eight fixed
  pseudo-random vectors through the final norm and unembedding. Folding the final norm
  and centring ``W_U`` (a compatibility-mode bridge, a converted HookedTransformer) or a
  change of dtype rewrite the weights but not these, so they say "the same model"
  across TransformerLens generations;
* ``vocab``: a digest of the tokenizer's vocabulary (token string -> id), when there is one.

The policy (:func:`fingerprint_mismatch`, raised by :func:`check_fingerprint`): sizes
must be equal and the vocabularies (when both are known) identical; then equal weight
digests match at once, and otherwise the decoder must agree (top-1 id on all but at most
one probe vector, median top-1 log-probability difference at most 0.1 nats).

Computing it walks the parameters once; the result is cached per model object and
recomputed only when a parameter is replaced or modified in place (tensor version counters).
"""

import dataclasses
import hashlib
import json
import weakref
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from .._errors import ArtifactError, ModelError
from ._adapter import ModelAdapter

SAMPLE_LIMIT = 1 << 20
"""Tensors with more elements than this contribute an evenly strided sample of this many values."""

N_PROBES = 8
TOP_K = 3
LOGPROB_TOLERANCE = 0.1
"""Largest median difference (nats) of the probe vectors' top-1 log-probabilities that still matches."""

_VERSION = 2  # the layout of to_json(); 1 was the decoder-only dict of lensbox 0.1


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What model an artifact (a tuned lens, a probe, a checkpoint) belongs to.

    Build one with ``Fingerprint.of(adapter)`` (or read ``adapter.fingerprint``), store
    ``to_json()`` beside the artifact, and compare with :func:`check_fingerprint`.
    """

    n_layers: int
    d_model: int
    d_vocab: int
    weights: Optional[str]
    decoder_ids: Tuple[Tuple[int, ...], ...]
    decoder_logprobs: Tuple[Tuple[float, ...], ...]
    vocab: Optional[str] = None
    model_name: str = ""

    @classmethod
    def of(cls, adapter: ModelAdapter) -> "Fingerprint":
        """The fingerprint of the model behind ``adapter`` (a :class:`ModelAdapter`), cached per model."""
        return _cached(adapter)

    @property
    def decoder_digest(self) -> str:
        """A short hash of the decoder's top token ids (for messages)."""
        return hashlib.sha256(json.dumps(self.decoder_ids).encode()).hexdigest()[:16]

    def to_json(self) -> Dict[str, Any]:
        """A JSON-ready dict; :meth:`from_json` reads it back."""
        return {
            "fingerprint_version": _VERSION,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "d_vocab": self.d_vocab,
            "weights": self.weights,
            "decoder_ids": [list(r) for r in self.decoder_ids],
            "decoder_logprobs": [list(r) for r in self.decoder_logprobs],
            "vocab": self.vocab,
            "model_name": self.model_name,
        }

    @classmethod
    def from_json(cls, d: Any, *, what: str = "the artifact") -> "Fingerprint":
        """Read :meth:`to_json` output; the decoder-only dict older lensbox versions wrote is read too."""
        if not isinstance(d, Mapping):
            raise _bad(what, "a JSON object", type(d).__name__)
        legacy = "fingerprint_version" not in d
        try:
            ids_key, lp_key = ("top_ids", "top_logprobs") if legacy else ("decoder_ids", "decoder_logprobs")
            ids = tuple(tuple(_int(v) for v in row) for row in d[ids_key])
            lps = tuple(tuple(float(v) for v in row) for row in d[lp_key])
            fp = cls(
                n_layers=_int(d["n_layers"]),
                d_model=_int(d["d_model"]),
                d_vocab=_int(d["d_vocab"]),
                weights=None if legacy else _opt_str(d.get("weights")),
                decoder_ids=ids,
                decoder_logprobs=lps,
                vocab=_opt_str(d.get("vocab")),
                model_name=str(d.get("model_name") or ""),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise _bad(what, "the fields of Fingerprint.to_json()", f"{type(e).__name__}: {e}") from None
        if not legacy and d["fingerprint_version"] != _VERSION:
            raise _bad(what, f"fingerprint_version {_VERSION}", repr(d["fingerprint_version"]))
        if len(ids) != len(lps) or not ids:
            raise _bad(what, "as many decoder log-probability rows as id rows (at least one)", f"{len(ids)} and {len(lps)}")
        return fp

    def __call__(self) -> Dict[str, Any]:
        """Transitional: the decoder-only dict that ``adapter.fingerprint()`` returned in lensbox 0.1.

        Kept only while callers move to the :class:`Fingerprint` object; do not use in new code.
        """
        return {
            "d_model": self.d_model,
            "d_vocab": self.d_vocab,
            "n_layers": self.n_layers,
            "top_ids": [list(r) for r in self.decoder_ids],
            "top_logprobs": [list(r) for r in self.decoder_logprobs],
            "digest": self.decoder_digest,
        }


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an integer, got {v!r}")
    return v


def _opt_str(v: Any) -> Optional[str]:
    if v is not None and not isinstance(v, str):
        raise TypeError(f"expected a string or null, got {v!r}")
    return v


def _bad(what: str, expected: str, received: str) -> ArtifactError:
    return ArtifactError(
        f"The model fingerprint stored in {what} cannot be read.",
        expected=expected,
        received=received,
        fix="re-create the artifact with this lensbox version, or load it with check_fingerprint=False",
    )


# ---------------------------------------------------------------------------------- the policy
def fingerprint_mismatch(saved: Fingerprint, current: Fingerprint) -> Optional[Tuple[str, str, str]]:
    """``(field, saved value, current value)`` for the first difference beyond tolerance, or None."""
    for name in ("n_layers", "d_model", "d_vocab"):
        a, b = getattr(saved, name), getattr(current, name)
        if a != b:
            return name, str(a), str(b)
    if saved.vocab is not None and current.vocab is not None and saved.vocab != current.vocab:
        return "vocab (tokenizer vocabulary digest)", saved.vocab, current.vocab
    if saved.weights is not None and saved.weights == current.weights:
        return None
    a_ids, b_ids = saved.decoder_ids, current.decoder_ids
    if len(a_ids) != len(b_ids):
        return "decoder (probe vector count)", str(len(a_ids)), str(len(b_ids))
    agree = [i for i, (x, y) in enumerate(zip(a_ids, b_ids)) if x and y and x[0] == y[0]]
    if len(agree) < len(a_ids) - 1:  # one probe vector may flip on a near-tie (e.g. bf16 weights)
        return (
            "decoder (top-1 token of the probe vectors)",
            f"{[r[0] for r in a_ids]}",
            f"{[r[0] for r in b_ids]} ({len(agree)}/{len(a_ids)} agree)",
        )
    diffs = sorted(abs(saved.decoder_logprobs[i][0] - current.decoder_logprobs[i][0]) for i in agree)
    if diffs and diffs[len(diffs) // 2] > LOGPROB_TOLERANCE:
        i = agree[0]
        return (
            f"decoder (top-1 log-probabilities; median difference {diffs[len(diffs) // 2]:.3f} > {LOGPROB_TOLERANCE})",
            f"{saved.decoder_logprobs[i][0]:.4f} ...",
            f"{current.decoder_logprobs[i][0]:.4f} ...",
        )
    return None


def check_fingerprint(saved: Optional[Fingerprint], current: Fingerprint, *, what: str, check: bool = True) -> None:
    """Raise :class:`ModelError` unless ``saved`` describes the same model as ``current``.

    ``what`` names the artifact in the message (e.g. ``"the tuned lens at ./lens"``). A
    missing ``saved`` fingerprint is refused too; ``check=False`` skips every check.
    """
    if not check:
        return
    if saved is None:
        raise ModelError(
            f"{what[:1].upper()}{what[1:]} records no model fingerprint, so lensbox cannot tell which model it belongs to.",
            expected="an artifact saved with its model fingerprint",
            received=f"no fingerprint; current model {current.model_name!r}",
            fix="re-save the artifact with this lensbox version, or pass check_fingerprint=False if you are sure it belongs to this model",
        )
    why = fingerprint_mismatch(saved, current)
    if why is None:
        return
    field, a, b = why
    raise ModelError(
        f"{what[:1].upper()}{what[1:]} was made for another model: its fingerprint differs in {field}.",
        expected=f"{a} (saved, model {saved.model_name!r})",
        received=f"{b} (this model, {current.model_name!r})",
        fix="use the model the artifact was made with, or pass check_fingerprint=False if you are sure it belongs to this model",
    )


# ---------------------------------------------------------------------------------- computing
def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter: name, shape, dtype and values (an evenly strided sample above SAMPLE_LIMIT)."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            t = p.detach().reshape(-1)
            h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
            if t.numel() > SAMPLE_LIMIT:
                step = -(-t.numel() // SAMPLE_LIMIT)
                t = torch.cat([t[::step], t[-1:]])  # evenly strided, first and last element included
            h.update(t.contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


def vocab_digest(tokenizer: Any) -> Optional[str]:
    """A short hash of a tokenizer's vocabulary (token string -> id), or None without ``get_vocab``."""
    if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
        return None
    h = hashlib.sha256()
    for text, idx in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]):
        h.update(f"{idx}\t{text}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:16]


def _decoder_probe(adapter: ModelAdapter) -> Tuple[List[List[int]], List[List[float]]]:
    gen = torch.Generator().manual_seed(20240229)
    probes = torch.randn(N_PROBES, adapter.d_model, generator=gen).to(adapter.device, adapter.dtype)
    with torch.no_grad():
        lp = adapter.decode(probes).float().log_softmax(-1)
    top = lp.topk(TOP_K, dim=-1)
    ids = top.indices.cpu().tolist()
    lps = [[round(v, 4) for v in row] for row in top.values.cpu().tolist()]
    return ids, lps


# model -> (state key, tokenizer, fingerprint); the state key changes when any parameter is
# replaced (id) or modified in place (version counter).
_CACHE: "weakref.WeakKeyDictionary[Any, Tuple[Tuple[Any, ...], Any, Fingerprint]]" = weakref.WeakKeyDictionary()


def _state_key(model: Any) -> Tuple[Any, ...]:
    params = model.parameters() if isinstance(model, torch.nn.Module) else ()
    return tuple((id(p), p._version, p.dtype, p.device) for p in params)


def _cached(adapter: ModelAdapter) -> Fingerprint:
    model, tok = adapter.model, adapter.tokenizer
    key = _state_key(model)
    try:
        hit = _CACHE.get(model)
    except TypeError:  # an object that cannot be weakly referenced: no cache
        hit = None
    if hit is not None and hit[0] == key and hit[1] is tok:
        return hit[2]
    ids, lps = _decoder_probe(adapter)
    fp = Fingerprint(
        n_layers=adapter.n_layers,
        d_model=adapter.d_model,
        d_vocab=adapter.d_vocab,
        weights=weights_digest(model) if isinstance(model, torch.nn.Module) else None,
        decoder_ids=tuple(tuple(r) for r in ids),
        decoder_logprobs=tuple(tuple(r) for r in lps),
        vocab=vocab_digest(tok),
        model_name=adapter.model_name,
    )
    try:
        _CACHE[model] = (key, tok, fp)
    except TypeError:
        pass
    return fp
