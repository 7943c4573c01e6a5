"""Which model an artifact belongs to: `Fingerprint` and the one matching policy.

A fingerprint records

* the architecture numbers (``n_layers``, ``d_model``, ``d_vocab``), compared exactly;
* ``weights``: a SHA-256 over every parameter tensor (name, shape, dtype and its values;
  tensors above `SAMPLE_LIMIT` elements contribute exact integer checksums of every
  element's bits (`bit_checksums`, computed on the tensor's device) and an evenly strided
  sample of at most that many values, so the digest is the same on every device);
* ``behaviour``: what the model does with one fixed probe sequence (`N_TOKENS` token ids
  derived from the vocabulary size, no tokenizer needed), run once through the model with
  `ModelAdapter.capture`. For every residual-stream site (``embed``, each ``resid_post``)
  it keeps, at the last `N_POSITIONS` positions, the norm of the stream and its projection
  on `N_DIRECTIONS` fixed pseudo-random sign vectors (entries +1/-1); for ``final`` (the output
  log-probabilities) the largest log-probability, the log-probability of the next probe token and
  the mean log-probability. Rounded to 6 significant digits: about 0.25 KB per layer.
* ``decoder_ids`` / ``decoder_logprobs``: the top-3 tokens of decoding eight fixed vectors
  through the final norm and unembedding: what lensbox 0.1 stored, kept to check its artifacts;
* ``vocab``: a digest of the tokenizer's vocabulary (token string -> id), when there is one.

The policy (`fingerprint_mismatch`, raised by `check_fingerprint`): sizes must be
equal and the vocabularies (when both are known) identical; then equal weight digests match at
once. Otherwise every recorded site must agree: the largest difference of its numbers, divided
by the site's scale (the mean stream norm; the mean absolute log-probability for ``final``), at
most `BEHAVIOUR_RTOL`. Weight processing that keeps the residual stream (a compatibility-mode
bridge of an RMSNorm model, ``fold_ln``, centring the unembedding, a change of device) passes;
edited weights, or processing that changes the residual basis (``center_writing_weights``), fail.
A fingerprint written earlier in this version (``fingerprint_version`` 2, no ``behaviour``)
matches only on equal weights; one of lensbox 0.1 (decoder only) only through its decoder check.

Computing it walks the parameters once and runs one forward pass of `N_TOKENS` tokens; the
result is cached per model object and recomputed only when a parameter is replaced or modified in
place (tensor version counters).
"""
import dataclasses
import hashlib
import json
import random
import weakref
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._errors import ArtifactError, ModelError
from ._adapter import ModelAdapter
from ._sites import Site

SAMPLE_LIMIT = 1 << 20
"""Tensors with more elements than this contribute an evenly strided sample of this many values."""

N_PROBES = 8
TOP_K = 3
LOGPROB_TOLERANCE = 0.1
"""lensbox 0.1 fingerprints: largest median difference (nats) of the decoder's top-1 log-probabilities."""

N_TOKENS = 16
"""Length of the probe token sequence the behaviour is recorded on."""
N_POSITIONS = 8
"""The behaviour is recorded at the last this many positions of the probe sequence."""
N_DIRECTIONS = 2
"""Fixed pseudo-random sign vectors each residual stream is projected on."""
BEHAVIOUR_RTOL = 2e-4
"""Largest difference of a site's recorded numbers, relative to the site's scale, that still matches.

Measured on SmolLM2-135M (30 layers, float32, CPU): a compatibility-mode bridge (folded RMS norms)
differs from the raw one by at most 7e-6. Adding 5 to one ``down_proj`` weight of layer 10 moves
``resid_post.10`` by 2.5e-3 (later sites by up to 5e-3), to one ``gate_proj`` weight by 1.1e-2;
scaling layer 0's MLP by 3 moves ``resid_post.0`` by 91. The same model in bfloat16 differs by up
to 5e-2, so it is refused too (its weight digest differs as well)."""
_SEED = 20240229

_VERSION = 3  # the layout of to_json(); 2 had no behaviour, 1 was the decoder-only dict of lensbox 0.1
_READABLE = (2, 3)

Behaviour = Tuple[Tuple[str, Tuple[float, ...]], ...]
"""``((site name, recorded numbers), ...)`` in site order, ``final`` last."""


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What model an artifact (a tuned lens, a probe, a checkpoint) belongs to.

    Build one with ``Fingerprint.of(adapter)`` (or read ``adapter.fingerprint``), store
    ``to_json()`` beside the artifact, and compare with `check_fingerprint`.
    """

    n_layers: int
    d_model: int
    d_vocab: int
    weights: Optional[str]
    decoder_ids: Tuple[Tuple[int, ...], ...]
    decoder_logprobs: Tuple[Tuple[float, ...], ...]
    vocab: Optional[str] = None
    model_name: str = ""
    behaviour: Optional[Behaviour] = None

    @classmethod
    def of(cls, adapter: ModelAdapter) -> "Fingerprint":
        """The fingerprint of the model behind ``adapter`` (a `ModelAdapter`), cached per model."""
        return _cached(adapter)

    @property
    def decoder_digest(self) -> str:
        """A short hash of the decoder's top token ids (for messages)."""
        return hashlib.sha256(json.dumps(self.decoder_ids).encode()).hexdigest()[:16]

    def to_json(self) -> Dict[str, Any]:
        """A JSON-ready dict; `from_json` reads it back."""
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
            "behaviour": None if self.behaviour is None else {name: list(v) for name, v in self.behaviour},
        }

    @classmethod
    def from_json(cls, d: Any, *, what: str = "the artifact") -> "Fingerprint":
        """Read `to_json` output; the decoder-only dict older lensbox versions wrote is read too."""
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
                behaviour=None if legacy else _behaviour(d.get("behaviour")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise _bad(what, "the fields of Fingerprint.to_json()", f"{type(e).__name__}: {e}") from None
        if not legacy and d["fingerprint_version"] not in _READABLE:
            raise _bad(what, f"fingerprint_version in {list(_READABLE)}", repr(d["fingerprint_version"]))
        if not legacy and d["fingerprint_version"] == _VERSION and fp.behaviour is None:
            raise _bad(what, f"a 'behaviour' record (fingerprint_version {_VERSION})", "none")
        if len(ids) != len(lps) or not ids:
            raise _bad(what, "as many decoder log-probability rows as id rows (at least one)", f"{len(ids)} and {len(lps)}")
        return fp


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"expected an integer, got {v!r}")
    return v


def _opt_str(v: Any) -> Optional[str]:
    if v is not None and not isinstance(v, str):
        raise TypeError(f"expected a string or null, got {v!r}")
    return v


def _behaviour(v: Any) -> Optional[Behaviour]:
    if v is None:
        return None
    if not isinstance(v, Mapping) or not v:
        raise TypeError(f"expected an object of site name -> numbers, got {str(v)[:60]!r}")
    out = []
    for name, nums in v.items():
        if not isinstance(nums, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in nums):
            raise TypeError(f"behaviour[{name!r}]: expected a list of numbers, got {str(nums)[:60]!r}")
        out.append((str(name), tuple(float(x) for x in nums)))
    return tuple(sorted(out, key=lambda kv: _site_order(kv[0])))


def _site_order(name: str) -> Tuple[int, int, str]:
    """embed, resid_post.0, resid_post.1, ..., final (JSON objects come back with sorted keys)."""
    if name == "embed":
        return (0, 0, name)
    if name == "final":
        return (2, 0, name)
    tail = name.rsplit(".", 1)[-1]
    return (1, int(tail) if tail.isdigit() else 0, name)


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
    if saved.behaviour is not None and current.behaviour is not None:
        return behaviour_mismatch(saved.behaviour, current.behaviour)
    if saved.weights is not None:  # fingerprint_version 2: no behaviour record, so only the weights can match
        return (
            "weights (parameter digest; this fingerprint predates lensbox's behaviour record, so only identical "
            "weights match)",
            saved.weights,
            str(current.weights),
        )
    return _decoder_mismatch(saved, current)  # lensbox 0.1: the decoder is all it recorded


def behaviour_mismatch(saved: Behaviour, current: Behaviour) -> Optional[Tuple[str, str, str]]:
    """The first site (in site order) whose recorded numbers differ beyond `BEHAVIOUR_RTOL`, or None."""
    theirs = dict(saved)
    if set(theirs) != {name for name, _ in current}:
        return "behaviour (recorded sites)", ", ".join(theirs), ", ".join(name for name, _ in current)
    for name, b in current:
        a = theirs[name]
        if len(a) != len(b):
            return f"behaviour at {name} (count of recorded numbers)", str(len(a)), str(len(b))
        rel = site_difference(name, a, b)
        if not rel <= BEHAVIOUR_RTOL:
            k = max(range(len(a)), key=lambda i: abs(a[i] - b[i]))
            return (
                f"behaviour at {name} (relative difference {rel:.3g} > {BEHAVIOUR_RTOL:g}, the first site that differs)",
                f"{a[k]:.6g} ({_quantity(name, k)})",
                f"{b[k]:.6g}",
            )
    return None


def _quantity(name: str, k: int) -> str:
    """What recorded number ``k`` of site ``name`` is (for messages)."""
    what = ("largest log-probability", "log-probability of the next probe token", "mean log-probability")
    row, pos = divmod(k, N_POSITIONS)
    pos += N_TOKENS - N_POSITIONS
    if name == "final":
        return f"{what[min(row, 2)]} at probe position {pos}"
    return f"stream norm at probe position {pos}" if row == 0 else f"projection on direction {row - 1} at probe position {pos}"


def site_difference(name: str, saved: Sequence[float], current: Sequence[float]) -> float:
    """Largest absolute difference divided by the site's scale (mean norm; mean |log-prob| for ``final``)."""
    if name == "final":
        scale = sum(abs(v) for v in saved) / max(len(saved), 1)
    else:
        n = max(len(saved) // (1 + N_DIRECTIONS), 1)  # the norms of the n positions come first
        scale = sum(saved[:n]) / n
    worst = max((abs(x - y) for x, y in zip(saved, current)), default=0.0)
    return worst / max(scale, 1e-12)


def _decoder_mismatch(saved: Fingerprint, current: Fingerprint) -> Optional[Tuple[str, str, str]]:
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
    """Raise `ModelError` unless ``saved`` describes the same model as ``current``.

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
        fix=(
            "use the model the artifact was made with, in the same dtype (bfloat16/float16 rounding alone moves the "
            "behaviour by about 1e-2), or pass check_fingerprint=False if you are sure it belongs to this model"
        ),
    )


# ---------------------------------------------------------------------------------- computing
def weights_digest(model: torch.nn.Module) -> str:
    """SHA-256 over every parameter: name, shape, dtype and values (checksums + a strided sample above SAMPLE_LIMIT)."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            t = p.detach().reshape(-1)
            h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|".encode())
            if t.numel() > SAMPLE_LIMIT:
                h.update(bit_checksums(t).numpy().tobytes())  # every element, computed where it lives
                step = -(-t.numel() // SAMPLE_LIMIT)
                t = torch.cat([t[::step], t[-1:]])  # evenly strided, first and last element included
            h.update(t.contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:32]


_CHUNK = 1 << 16
_SLICE = 1 << 22


def bit_checksums(flat: Tensor) -> Tensor:
    """Exact integer sums of a tensor's bit patterns, per chunk of ``2**16`` words, position-weighted.

    The words are the tensor's bytes read as int32 (uint8 when the size is not a multiple of
    4 bytes), each times ``1 + index % 251``, summed in int64 (no overflow, no rounding): the
    same on every device, and changing any single element changes a sum. Worked in slices, so
    the extra memory stays small.
    """
    raw = flat.contiguous()
    words = raw.view(torch.int32) if (raw.numel() * raw.element_size()) % 4 == 0 else raw.view(torch.uint8)
    out = []
    for start in range(0, words.numel(), _SLICE):
        w = words[start : start + _SLICE].to(torch.int64)
        pad = (-w.numel()) % _CHUNK
        if pad:
            w = torch.cat([w, w.new_zeros(pad)])
        weight = torch.arange(_CHUNK, device=w.device, dtype=torch.int64) % 251 + 1
        out.append((w.view(-1, _CHUNK) * weight).sum(-1).cpu())
    return torch.cat(out)


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


def probe_tokens(d_vocab: int, n_ctx: int = 0) -> List[int]:
    """The fixed probe sequence: `N_TOKENS` ids drawn from ``range(d_vocab)`` by a seeded generator.

    Python's ``random.Random(seed).random()`` sequence is guaranteed stable across Python versions.
    """
    rng = random.Random(_SEED)
    n = min(N_TOKENS, n_ctx) if n_ctx else N_TOKENS
    return [int(rng.random() * d_vocab) for _ in range(n)]


def probe_directions(d_model: int) -> List[List[float]]:
    """`N_DIRECTIONS` fixed pseudo-random sign vectors (entries +1 or -1) of length ``d_model``.

    Entries of size one (not a unit vector) make a change of ``delta`` in any one coordinate move
    the projection by ``delta`` itself, so an edit that touches a few coordinates shows at full size.
    """
    rng = random.Random(_SEED + d_model)
    return [[1.0 if rng.random() < 0.5 else -1.0 for _ in range(d_model)] for _ in range(N_DIRECTIONS)]


def _round(values: Tensor) -> Tuple[float, ...]:
    return tuple(float(f"{v:.6g}") for v in values.reshape(-1).tolist())


def behaviour(adapter: ModelAdapter) -> Behaviour:
    """Run the probe sequence once and summarise every residual-stream site and the output (see the module doc)."""
    ids = probe_tokens(adapter.d_vocab, adapter.n_ctx)
    tokens = torch.tensor([ids], dtype=torch.long, device=adapter.device)
    sites = [Site.embed()] + [Site.resid_post(i) for i in range(adapter.n_layers)]
    model = adapter.model
    training = isinstance(model, torch.nn.Module) and model.training
    if training:  # dropout would make the record random
        model.eval()
    try:
        streams, logits = adapter.capture(tokens, sites, keep_logits=True)
    finally:
        if training:
            model.train()
    keep = slice(max(len(ids) - N_POSITIONS, 0), len(ids))
    dirs = torch.tensor(probe_directions(adapter.d_model), dtype=torch.float32, device=adapter.device)
    out = []
    for s in sites:
        x = streams[s][0, keep].float()
        out.append((s.name, _round(x.norm(dim=-1)) + _round((x @ dirs.T).T)))
    if logits is None:  # capture(keep_logits=True) always returns them
        raise ModelError("The forward pass returned no logits.", expected="logits", received="None", fix="report this model type to lensbox")
    lp = logits[0, keep].float().log_softmax(-1)
    nxt = torch.tensor(ids[1:] + ids[:1], device=lp.device)[keep]
    final = torch.stack([lp.max(-1).values, lp.gather(-1, nxt[:, None])[:, 0], lp.mean(-1)])
    out.append(("final", _round(final)))
    return tuple(out)


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
        behaviour=behaviour(adapter),
    )
    try:
        _CACHE[model] = (key, tok, fp)
    except TypeError:
        pass
    return fp
