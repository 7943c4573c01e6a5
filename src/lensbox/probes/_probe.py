"""Linear input-reconstruction probes: what each residual-stream site still knows about the tokens it has read.

For every chosen site and token offset ``k`` (0 = the token at this position, -1 = the
one before it, +1 = the next one) an :class:`InputProbe` fits

* a **ridge** map from the activation to the input-embedding vector of the token at
  ``pos + k``, solved in closed form from streamed sufficient statistics
  (``X^T X`` and ``X^T Y`` in float64, so memory is ``O(d_model^2)`` whatever the corpus
  size), and decoded to a token by the best match against ``W_E`` (dot product or cosine);
* optionally a **softmax** classifier over the vocabulary (or only the tokens seen in
  training), trained with minibatch Adam on standardised features and started from the
  ridge solution.

Activations come from one forward pass per batch of windows that captures every site at
once (:meth:`ModelAdapter.run_and_capture`). Probes save as safetensors + JSON and refuse to
load onto another model. Evaluation lives in :mod:`lensbox.probes._evaluate`.
"""

import dataclasses
import hashlib
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..core._adapter import ModelAdapter, adapt
from .._errors import ArtifactError, InputError, ModelError, NonFiniteError
from ..core._registry import Analyzer
from ..core._sites import Site, resolve_site

DEFAULT_OFFSETS: Tuple[int, ...] = (0, -1, -2, -3, 1)
PROBE_KINDS: Tuple[str, ...] = ("ridge", "softmax")
DECODE_METRICS: Tuple[str, ...] = ("dot", "cosine")
FORMAT_VERSION = 1
CONFIG_FILE = "probe.json"
WEIGHTS_FILE = "probe.safetensors"
ARTIFACT_KIND = "lensbox.input_probe"

ProbeInputs = Union[str, Sequence[str], Tensor, Iterable[Tensor]]


# ====================================================================== small helpers
def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[lensbox] {msg}", file=sys.stderr, flush=True)


def _check_offsets(offsets: Any) -> List[int]:
    if isinstance(offsets, (int, str)) or not isinstance(offsets, Sequence) or len(offsets) == 0:
        raise InputError(
            "Probe offsets must be a non-empty list of integers.",
            expected="e.g. offsets=(0, -1, -2, -3, 1): 0 = this token, -1 = the previous one, +1 = the next one",
            received=repr(offsets),
            fix="pass a list or tuple of ints",
        )
    out: List[int] = []
    for k in offsets:
        if isinstance(k, bool) or not isinstance(k, int):
            raise InputError(
                "Probe offsets must be integers.",
                expected="ints such as 0, -1, +1",
                received=f"{k!r} ({type(k).__name__})",
                fix="pass offsets=(0, -1, -2, -3, 1)",
            )
        if k in out:
            raise InputError(
                "Probe offsets repeat.",
                expected="each offset once",
                received=repr(list(offsets)),
                fix="remove the duplicate",
            )
        out.append(int(k))
    return out


def _check_kinds(kinds: Union[str, Sequence[str]]) -> List[str]:
    items = [kinds] if isinstance(kinds, str) else list(kinds)
    items = [s.strip() for item in items for s in item.split(",") if s.strip()]
    bad = [k for k in items if k not in PROBE_KINDS]
    if bad or not items:
        raise InputError(
            "Unknown probe kind.",
            expected="'ridge' (closed-form map to the embedding vector) and/or 'softmax' (classifier)",
            received=repr(kinds),
            fix="e.g. kinds=('ridge', 'softmax')",
        )
    return sorted(set(items), key=PROBE_KINDS.index)


def _check_decode(decode: str) -> str:
    names = {"dot": "dot", "cosine": "cosine", "cos": "cosine"}
    if decode not in names:
        raise InputError(
            "Unknown decoding rule for the ridge probe.",
            expected="'dot' (largest dot product with a W_E row) or 'cosine' (largest cosine)",
            received=repr(decode),
            fix="use decode='cosine'",
        )
    return names[decode]


def valid_positions(length: int, offset: int, skip_first: int) -> Tuple[int, int]:
    """The half-open range of positions ``p`` of a window of ``length`` tokens that have a target at ``p + offset``."""
    lo = max(skip_first, -offset, 0)
    hi = min(length, length - offset)
    return lo, max(lo, hi)


def offset_label(offset: int) -> str:
    return f"{offset:+d}" if offset else "0"


def vocab_digest(adapter: ModelAdapter) -> Optional[str]:
    """A short hash of the tokenizer's vocabulary (token string -> id), or None without a tokenizer."""
    tok = adapter.tokenizer
    if tok is None or not hasattr(tok, "get_vocab"):
        return None
    cache = getattr(adapter, "_lensbox_vocab_digest", None)
    if cache is not None and cache[0] is tok:
        return cache[1]
    items = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    h = hashlib.sha256()
    for text, idx in items:
        h.update(f"{idx}\t{text}\n".encode("utf-8", "surrogatepass"))
    digest = h.hexdigest()[:16]
    try:
        adapter._lensbox_vocab_digest = (tok, digest)  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover
        pass
    return digest


def fingerprints_match(saved: Mapping[str, Any], current: Mapping[str, Any], *, atol: float = 2e-2) -> bool:
    """Compare two :meth:`ModelAdapter.fingerprint` dicts: sizes and top ids exactly, log-probabilities with tolerance."""
    for key in ("d_model", "d_vocab", "n_layers", "top_ids"):
        if saved.get(key) != current.get(key):
            return False
    a, b = saved.get("top_logprobs"), current.get("top_logprobs")
    if not isinstance(a, list) or not isinstance(b, list) or len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if len(ra) != len(rb) or any(abs(float(x) - float(y)) > atol for x, y in zip(ra, rb)):
            return False
    return True


# ====================================================================== windows of tokens
def probe_windows(
    adapter: ModelAdapter,
    inputs: ProbeInputs,
    *,
    window: int = 128,
    max_tokens: Optional[int] = None,
) -> Int[Tensor, "n pos"]:
    """Turn texts or token ids into a ``[n_windows, window]`` tensor of token ids.

    Texts are tokenized without special tokens, joined (with the end-of-text token between
    texts when the tokenizer has one) and cut into full windows of ``window`` tokens. If the
    text is shorter than one window, it becomes a single shorter window. ``max_tokens`` caps
    the total. A token tensor ``[n, pos]`` (or ``[pos]``) is used as it is, and so is an
    iterable of equal-length window tensors (e.g. from ``lensbox.data.split_windows``).
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise InputError(
            "The probe window length must be an integer of at least 2.",
            expected="window >= 2 tokens (128 is a good default)",
            received=repr(window),
            fix="pass window=128",
        )
    if isinstance(inputs, Tensor):
        tokens = adapter.to_tokens(inputs)
        if max_tokens is not None:
            keep = max(1, int(max_tokens) // tokens.shape[1])
            tokens = tokens[:keep]
        return tokens
    if not isinstance(inputs, (str, Sequence)) and isinstance(inputs, Iterable):
        items = list(inputs)
        if items and all(isinstance(t, Tensor) for t in items):
            if len({tuple(t.shape) for t in items}) > 1:
                raise InputError(
                    "Token windows differ in length.",
                    expected="windows of one length",
                    received=f"lengths {sorted({t.shape[-1] for t in items})}",
                    fix="make all windows with the same window size",
                )
            stacked = torch.stack([t.reshape(-1) for t in items]).to(adapter.device)
            return probe_windows(adapter, stacked, window=window, max_tokens=max_tokens)
        inputs = items
    texts = [inputs] if isinstance(inputs, str) else list(inputs) if isinstance(inputs, Sequence) else None
    if not texts or not all(isinstance(t, str) for t in texts):
        raise InputError(
            "Cannot read the probe's text.",
            expected="a string, a list of strings, or a token tensor [n_windows, pos]",
            received=f"{type(inputs).__name__}: {str(inputs)[:80]!r}",
            fix="pass text, e.g. lensbox.read_texts(lensbox.fetch_corpus('botchan'))",
        )
    tok = adapter._require_tokenizer(fix="pass token windows [n, pos] instead of text")
    sep = getattr(tok, "eos_token_id", None)
    ids: List[int] = []
    for i, text in enumerate(texts):
        if not text.strip():
            continue
        if ids and sep is not None:
            ids.append(int(sep))
        ids.extend(int(t) for t in tok(text, add_special_tokens=False)["input_ids"])
        if max_tokens is not None and len(ids) >= max_tokens:
            break
    if max_tokens is not None:
        ids = ids[: int(max_tokens)]
    if len(ids) < 2:
        raise InputError(
            "The probe's text is too short.",
            expected="at least 2 tokens of text",
            received=f"{len(ids)} tokens",
            fix="pass more text",
        )
    if adapter.n_ctx and window > adapter.n_ctx:
        window = adapter.n_ctx
    if len(ids) < window:
        return torch.tensor([ids], dtype=torch.long, device=adapter.device)
    n = len(ids) // window
    return torch.tensor(ids[: n * window], dtype=torch.long, device=adapter.device).view(n, window)


def check_offsets_fit(offsets: Sequence[int], length: int, skip_first: int) -> None:
    """Raise when an offset has no (position, target) pair in windows of ``length`` tokens."""
    for k in offsets:
        lo, hi = valid_positions(length, k, skip_first)
        if hi <= lo:
            need = max(skip_first, -k, 0) + max(k, 0) + 1
            raise InputError(
                f"Offset {offset_label(k)} falls outside every sequence.",
                expected=(
                    f"windows long enough to hold a position (after the first {skip_first} skipped) and the token "
                    f"{abs(k)} step(s) {'before' if k < 0 else 'after'} it: at least {need} tokens"
                ),
                received=f"windows of {length} tokens",
                fix=f"use longer windows (window={max(need, 2 * need)}) or drop offset {offset_label(k)}",
            )


# ====================================================================== ridge
@dataclasses.dataclass
class RidgeProbe:
    """A linear map ``x -> x @ weight + bias`` from a site's activation to an input-embedding vector."""

    weight: Float[Tensor, "d_in d_out"]
    bias: Float[Tensor, "d_out"]
    n_samples: int
    penalty: float

    def predict(self, x: Float[Tensor, "n d_in"]) -> Float[Tensor, "n d_out"]:
        return x.to(self.weight.dtype) @ self.weight + self.bias


class RidgeStatistics:
    """Streamed sufficient statistics of one site for several offsets.

    Rows are shifted by a fixed reference (the first batch's mean) before they are
    accumulated, so the centred Gram matrix suffers no cancellation when activations sit
    far from the origin. ``X^T X`` is accumulated once over all rows, plus small Gram
    matrices of the few rows at each window's edges that serve only some offsets (subtracted
    for the offsets they do not serve); ``X^T Y`` for all offsets is one product against the
    concatenated targets.

    Each batch's products are computed in ``products`` ('float32', the default, about twice
    as fast; or 'float64') on the shifted rows and added into float64 accumulators.
    """

    def __init__(self, d_in: int, d_out: int, offsets: Sequence[int], *, products: str = "float32") -> None:
        if products not in ("float32", "float64"):
            raise InputError(
                "Unknown precision for the ridge statistics.",
                expected="'float32' (per-batch products, float64 sums) or 'float64'",
                received=repr(products),
                fix="use products='float32'",
            )
        self.dtype = torch.float32 if products == "float32" else torch.float64
        self.d_in, self.d_out = int(d_in), int(d_out)
        self.offsets = list(offsets)
        self.shift: Optional[Tensor] = None
        self.grams: Dict[Tuple[Any, ...], Tensor] = {}
        self.xty: Dict[int, Tensor] = {}

    def update(
        self,
        x: Float[Tensor, "batch pos d_in"],
        tokens: Int[Tensor, "batch pos"],
        embed: Float[Tensor, "vocab d_out"],
        skip_first: int,
    ) -> None:
        b, length, d = x.shape
        rows_lo = min(skip_first, length)
        body = x[:, rows_lo:]
        if body.numel() == 0:
            return
        if self.shift is None:
            self.shift = body.reshape(-1, d).double().mean(0)
        n_pos = length - rows_lo
        xa = torch.empty(b, n_pos, d + 1, dtype=self.dtype, device=x.device)
        xa[..., :d] = body.to(self.dtype) - self.shift.to(device=x.device, dtype=self.dtype)
        xa[..., d] = 1.0
        flat = xa.reshape(-1, d + 1)
        # X^T X over every row once; rows that serve only some offsets are also kept by signature
        self._add_gram(None, flat.T @ flat)
        ranges = {k: valid_positions(length, k, skip_first) for k in self.offsets}
        sigs: Dict[Tuple[bool, ...], List[int]] = {}
        for p in range(rows_lo, length):
            sig = tuple(ranges[k][0] <= p < ranges[k][1] for k in self.offsets)
            if not all(sig):
                sigs.setdefault(sig, []).append(p - rows_lo)
        for sig, pos in sigs.items():
            rows = xa[:, pos].reshape(-1, d + 1)
            self._add_gram(sig, rows.T @ rows)
        # X^T Y for every offset in one product: targets outside the window contribute zero rows
        e = self.d_out
        y = torch.zeros(b, n_pos, len(self.offsets) * e, dtype=self.dtype, device=x.device)
        for j, k in enumerate(self.offsets):
            lo, hi = ranges[k]
            if hi > lo:
                y[:, lo - rows_lo : hi - rows_lo, j * e : (j + 1) * e] = embed[tokens[:, lo + k : hi + k]].to(self.dtype)
        xty = (flat.T @ y.reshape(-1, len(self.offsets) * e)).double()
        for j, k in enumerate(self.offsets):
            part = xty[:, j * e : (j + 1) * e]
            if k in self.xty:
                self.xty[k] += part
            else:
                self.xty[k] = part.clone()

    def _add_gram(self, sig: Optional[Tuple[bool, ...]], g: Tensor) -> None:
        key = ("all",) if sig is None else sig
        g = g.double()
        if key in self.grams:
            self.grams[key] += g
        else:
            self.grams[key] = g.clone()

    def gram(self, offset: int) -> Float[Tensor, "D D"]:
        """``[X - shift, 1]^T [X - shift, 1]`` over the rows that serve ``offset``."""
        i = self.offsets.index(offset)
        total = self.grams[("all",)].clone()
        for sig, g in self.grams.items():
            if sig != ("all",) and not sig[i]:
                total -= g
        return total

    def n_samples(self, offset: int) -> int:
        return int(round(float(self.gram(offset)[-1, -1])))

    def solve(self, offset: int, alpha: float, *, where: str = "") -> RidgeProbe:
        if offset not in self.xty or self.shift is None:
            raise InputError(
                f"No training rows reached offset {offset_label(offset)}{where}.",
                expected="at least one position whose target token lies inside its window",
                received="none",
                fix="use longer windows or drop this offset",
            )
        return solve_ridge(self.gram(offset), self.xty[offset], self.shift, alpha, where=where)


def solve_ridge(
    gram: Float[Tensor, "D D"],
    xty: Float[Tensor, "D e"],
    shift: Float[Tensor, "d"],
    alpha: float,
    *,
    where: str = "",
) -> RidgeProbe:
    """Solve ridge regression from augmented sufficient statistics.

    ``gram`` and ``xty`` are ``[X - shift, 1]^T [X - shift, 1]`` and ``[X - shift, 1]^T Y``.
    The bias is not penalised; the penalty on the weights is
    ``alpha * trace(centred Gram) / d`` (scale-free: the same ``alpha`` suits every layer).
    """
    d = gram.shape[0] - 1
    n = float(gram[-1, -1])
    if n <= 0:
        raise InputError(
            f"No training rows{where}.",
            expected="at least one training position",
            received="0",
            fix="pass more text",
        )
    if alpha < 0 or not math.isfinite(alpha):
        raise InputError(
            "The ridge penalty must be a finite number >= 0.",
            expected="alpha >= 0 (e.g. 1e-3)",
            received=repr(alpha),
            fix="pass alpha=1e-3",
        )
    mean_x = gram[:d, -1] / n
    mean_y = xty[-1] / n
    g = gram[:d, :d] - n * torch.outer(mean_x, mean_x)
    g = 0.5 * (g + g.T)
    c = xty[:d] - n * torch.outer(mean_x, mean_y)
    if not bool(torch.isfinite(g).all()) or not bool(torch.isfinite(c).all()):
        raise NonFiniteError(
            f"The probe's training statistics hold NaN or infinite values{where}.",
            expected="finite activations",
            received="non-finite X^T X or X^T Y",
            fix="check the model for overflow (run it in float32)",
        )
    lam = float(alpha) * float(torch.trace(g)) / max(d, 1)
    if n < d + 1:
        if lam > 0:
            detail = f"the fit is determined mostly by the penalty (alpha={alpha:g})"
        else:
            detail = "with alpha=0 the system is singular; lensbox returns the minimum-norm solution"
        warnings.warn(
            f"Ridge probe{where}: only {int(n)} training rows for {d} activation dimensions; {detail}. "
            f"Fix: train on more text (at least {d + 1} rows, ideally 10x that) or raise alpha.",
            UserWarning,
            stacklevel=3,
        )
    if lam > 0:
        eye = torch.eye(d, dtype=g.dtype, device=g.device)
        chol, info = torch.linalg.cholesky_ex(g + lam * eye)
        if int(info) == 0:
            w = torch.cholesky_solve(c, chol)
        else:  # pragma: no cover - numerically indefinite; fall back to the eigen-solution
            evals, evecs = torch.linalg.eigh(g)
            w = evecs @ ((evecs.T @ c) / (evals.clamp_min(0) + lam)[:, None])
    else:
        w = torch.linalg.pinv(g, hermitian=True) @ c
    b = mean_y - (shift.to(w.dtype) + mean_x) @ w
    return RidgeProbe(weight=w.float(), bias=b.float(), n_samples=int(round(n)), penalty=lam)


# ====================================================================== softmax
@dataclasses.dataclass
class SoftmaxProbe:
    """A linear classifier ``x -> softmax(x @ weight + bias)`` over ``classes`` (token ids)."""

    weight: Float[Tensor, "d_in n_classes"]
    bias: Float[Tensor, "n_classes"]
    classes: Int[Tensor, "n_classes"]
    n_samples: int

    def logits(self, x: Float[Tensor, "n d_in"]) -> Float[Tensor, "n n_classes"]:
        return x.to(self.weight.dtype) @ self.weight + self.bias

    def predict_topk(self, x: Float[Tensor, "n d_in"], k: int = 5) -> Int[Tensor, "n k"]:
        """Top-``k`` token ids (fewer classes than ``k`` repeat the last one)."""
        logits = self.logits(x)
        kk = min(k, logits.shape[-1])
        top = logits.topk(kk, dim=-1).indices
        if kk < k:
            top = torch.cat([top, top[:, -1:].expand(-1, k - kk)], dim=-1)
        return self.classes.to(top.device)[top]


@dataclasses.dataclass
class SoftmaxSettings:
    """How softmax probes are trained (minibatch Adam on standardised features)."""

    epochs: int = 8
    batch_size: int = 512
    lr: float = 1e-2
    l2: float = 1e-4
    restrict_vocab: bool = True
    init: str = "ridge"
    optimizer: str = "adam"
    whiten: bool = True
    prior_bias: bool = True
    max_samples: int = 20000
    seed: int = 0

    def validate(self) -> "SoftmaxSettings":
        if self.optimizer not in ("adam", "lbfgs"):
            raise InputError(
                "Unknown softmax optimizer.",
                expected="'adam' (minibatch) or 'lbfgs' (full batch; epochs = iterations)",
                received=repr(self.optimizer),
                fix="use optimizer='adam'",
            )
        if self.init not in ("ridge", "zeros"):
            raise InputError(
                "Unknown softmax initialisation.",
                expected="'ridge' (start from the ridge map through W_E) or 'zeros'",
                received=repr(self.init),
                fix="use init='ridge'",
            )
        for name in ("epochs", "batch_size", "max_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(
                    f"Softmax setting {name} must be a positive integer.",
                    expected=f"{name} >= 1",
                    received=repr(v),
                    fix=f"use the default {getattr(SoftmaxSettings, name)}",
                )
        if not (self.lr > 0 and self.l2 >= 0):
            raise InputError(
                "Softmax learning rate must be > 0 and l2 >= 0.",
                expected="lr > 0, l2 >= 0",
                received=f"lr={self.lr!r}, l2={self.l2!r}",
                fix="use lr=1e-2, l2=1e-4",
            )
        return self


def _adam_softmax(
    xs: Float[Tensor, "n d"],
    y: Int[Tensor, "n"],
    w: Float[Tensor, "d c"],
    b: Float[Tensor, "c"],
    s: SoftmaxSettings,
    gen: torch.Generator,
) -> None:
    """Minibatch Adam on mean cross-entropy + ``l2/2 ||w||^2``, updating ``w`` and ``b`` in place.

    The gradient of softmax cross-entropy is written out (``softmax - onehot``), and the
    Adam moments are updated in place, so a step is two matrix products and a few
    element-wise passes with no autograd graph. The learning rate follows a cosine decay.
    """
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    n = xs.shape[0]
    steps_per_epoch = max(1, math.ceil(n / s.batch_size))
    total = s.epochs * steps_per_epoch
    with torch.no_grad():
        w.requires_grad_(False)
        b.requires_grad_(False)
        m_w, v_w = torch.zeros_like(w), torch.zeros_like(w)
        m_b, v_b = torch.zeros_like(b), torch.zeros_like(b)
        step = 0
        for _ in range(s.epochs):
            perm = torch.randperm(n, generator=gen).to(xs.device)
            for i in range(steps_per_epoch):
                idx = perm[i * s.batch_size : (i + 1) * s.batch_size]
                xb, yb = xs[idx], y[idx]
                grad = torch.addmm(b, xb, w).softmax(dim=-1)  # [B, C]
                grad[torch.arange(yb.shape[0], device=yb.device), yb] -= 1.0
                grad /= yb.shape[0]
                g_w = torch.addmm(w, xb.T, grad, beta=s.l2, alpha=1.0) if s.l2 > 0 else xb.T @ grad
                g_b = grad.sum(0)
                step += 1
                lr = s.lr * 0.5 * (1 + math.cos(math.pi * (step - 1) / total))
                c1, c2 = 1 - beta1**step, 1 - beta2**step
                for p, g, m, v in ((w, g_w, m_w, v_w), (b, g_b, m_b, v_b)):
                    m.mul_(beta1).add_(g, alpha=1 - beta1)
                    v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                    p.addcdiv_(m, v.sqrt().div_(math.sqrt(c2)).add_(eps), value=-lr / c1)


def fit_softmax(
    x: Float[Tensor, "n d"],
    y: Int[Tensor, "n"],
    *,
    n_vocab: int,
    settings: Optional[SoftmaxSettings] = None,
    ridge: Optional[RidgeProbe] = None,
    embed: Optional[Float[Tensor, "vocab e"]] = None,
) -> SoftmaxProbe:
    """Train a softmax classifier from activations ``x`` to token ids ``y``.

    Features are centred and whitened (ZCA, ``whiten=True``; per-dimension standardisation
    otherwise), which makes Adam converge in a few epochs; the returned weights act on raw
    activations. With ``restrict_vocab`` the classes are the tokens
    seen in ``y``. With ``init='ridge'`` and a ridge probe plus ``W_E`` given, the
    weights start as ``scale * ridge.weight @ normalised(W_E[classes]).T``, the scale
    chosen on a subsample, so Adam starts from a cosine decoder of the ridge map. The
    objective is mean cross-entropy plus ``l2 / 2 * ||W||^2`` on the whitened weights.
    """
    s = (settings or SoftmaxSettings()).validate()
    if x.shape[0] == 0:
        raise InputError("No training rows for the softmax probe.", expected=">= 1 row", received="0", fix="pass more text")
    gen = torch.Generator(device="cpu").manual_seed(int(s.seed))
    x = x.float()
    dev = x.device
    if s.restrict_vocab:
        classes, y_idx = torch.unique(y, return_inverse=True)
    else:
        classes = torch.arange(n_vocab, device=y.device)
        y_idx = y
    n_cls = int(classes.shape[0])
    mu = x.mean(0)
    xc = x - mu
    if s.whiten:
        # ZCA whitening: a well-conditioned problem lets Adam converge in a few epochs
        cov = (xc.T.double() @ xc.double()) / max(1, x.shape[0])
        evals, evecs = torch.linalg.eigh(cov)
        floor = 1e-4 * float(evals.clamp_min(0).mean())
        P = (evecs * (evals.clamp_min(0) + floor).rsqrt()) @ evecs.T
        P = P.float()
    else:
        sd = x.std(0, unbiased=False)
        P = torch.diag(1.0 / sd.clamp_min(1e-6 * float(sd.max().clamp_min(1e-30))))
    xs = xc @ P
    w = torch.zeros(x.shape[1], n_cls, device=dev)
    b = torch.zeros(n_cls, device=dev)
    if s.init == "ridge" and ridge is not None and embed is not None:
        e = embed[classes.to(embed.device)].float().to(dev)
        e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        # x @ Wr + br = xs @ (P^-1 Wr) + (mu @ Wr + br); P^-1 Wr solved rather than inverted
        wr = torch.linalg.solve(P.double(), ridge.weight.to(dev).double()).float()
        br = mu @ ridge.weight.to(dev) + ridge.bias.to(dev)
        w0 = wr @ e.T
        b0 = br @ e.T
        # scale: pick the best of a small grid on a subsample (cross-entropy of cosine logits)
        m = min(x.shape[0], 4096)
        sub = torch.randperm(x.shape[0], generator=gen)[:m].to(dev)
        pred = xs[sub] @ wr + br
        norms = pred.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        cos = (pred @ e.T) / norms
        prior = torch.zeros(n_cls, device=dev)
        if s.prior_bias:
            # the ridge scores ignore how common each token is: add the log class frequencies
            freq = torch.bincount(y_idx.to(dev), minlength=n_cls).float()
            prior = torch.log(freq / freq.sum())
        best, best_loss = 1.0, float("inf")
        for scale in (1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0):
            loss = float(torch.nn.functional.cross_entropy(scale * cos + prior, y_idx[sub].to(dev)))
            if loss < best_loss:
                best, best_loss = scale, loss
        # each row's prediction norm varies; its mean turns the cosine scale into a linear one
        scale_lin = best / float(norms.mean())
        w = scale_lin * w0
        b = scale_lin * b0 + prior
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    n = x.shape[0]
    y_dev = y_idx.to(dev)
    if s.optimizer == "lbfgs":
        opt_l = torch.optim.LBFGS([w, b], lr=1.0, max_iter=s.epochs, history_size=10, line_search_fn="strong_wolfe")

        def closure() -> Tensor:
            opt_l.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(xs @ w + b, y_dev)
            if s.l2 > 0:
                loss = loss + 0.5 * s.l2 * (w * w).sum()
            loss.backward()
            return loss

        opt_l.step(closure)
    else:
        _adam_softmax(xs, y_dev, w, b, s, gen)
    if not bool(torch.isfinite(w).all()):
        raise NonFiniteError(
            "Softmax probe training diverged.",
            expected="finite weights",
            received="NaN or infinite weights",
            fix="lower lr (e.g. lr=1e-3)",
        )
    with torch.no_grad():
        w_raw = P @ w.detach()
        b_raw = b.detach() - mu @ w_raw
    return SoftmaxProbe(weight=w_raw.contiguous(), bias=b_raw.contiguous(), classes=classes.long(), n_samples=int(n))


# ====================================================================== the analyzer
def _site_key(site: Site, offset: int) -> str:
    return f"{site.name}/{offset}"


class InputProbe(Analyzer):
    """Analyzer ``input_probe``: linear probes that read the input tokens back out of the residual stream.

    Args:
        sites: which streams to probe (default: the embeddings and every resid_post; accepts
            'all', '0-5,final', 'resid_mid.3', a list of Site/str/int).
        offsets: token offsets to reconstruct: 0 = the token at this position, -1 = the one
            before, +1 = the next one. Default ``(0, -1, -2, -3, 1)``.
        kinds: ``'ridge'`` (closed-form map to the token's embedding vector, decoded against
            ``W_E``) and/or ``'softmax'`` (a classifier trained with minibatch Adam).
        alpha: ridge penalty relative to the mean activation variance (scale-free).
        decode: default rule that turns a ridge prediction into a token: 'cosine' or 'dot'.
        include_mid: also probe each block's resid_mid.
        skip_first: positions at the start of every window used neither as inputs nor as
            offset-0 targets (position 0 holds the attention-sink activation, whose norm is
            many times larger than the rest).
        softmax: a :class:`SoftmaxSettings` (or dict of its fields) for the softmax probes.
        ridge_products: precision of each batch's ``X^T X`` / ``X^T Y`` products, 'float32'
            (default, about twice as fast) or 'float64'; the sums are float64 either way.
        path: load a saved probe from this directory instead (e.g. through
            ``lensbox.analyze(model, text, [('input_probe', {'path': 'probe_dir'})])``).

    Train with :meth:`fit` (streams windows through the model), evaluate with
    :meth:`evaluate`, keep with :meth:`save` / :meth:`load`.
    """

    name = "input_probe"

    def __init__(
        self,
        sites: Any = None,
        *,
        offsets: Sequence[Any] = DEFAULT_OFFSETS,
        kinds: Union[str, Sequence[str]] = ("ridge",),
        alpha: float = 1e-3,
        decode: str = "cosine",
        include_mid: bool = False,
        skip_first: int = 1,
        softmax: Union[None, SoftmaxSettings, Mapping[str, Any]] = None,
        ridge_products: str = "float32",
        path: Union[None, str, Path] = None,
    ) -> None:
        self.site_spec = sites
        self.offsets = _check_offsets(offsets)
        RidgeStatistics(1, 1, [0], products=ridge_products)  # validates the name
        self.ridge_products = ridge_products
        self.kinds = _check_kinds(kinds)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha >= 0:
            raise InputError(
                "The ridge penalty must be a number >= 0.",
                expected="alpha >= 0 (e.g. 1e-3)",
                received=repr(alpha),
                fix="pass alpha=1e-3",
            )
        self.alpha = float(alpha)
        self.decode = _check_decode(decode)
        self.include_mid = bool(include_mid)
        if isinstance(skip_first, bool) or not isinstance(skip_first, int) or skip_first < 0:
            raise InputError(
                "skip_first must be an integer >= 0.",
                expected="0 or more positions",
                received=repr(skip_first),
                fix="use skip_first=1 (drop the attention-sink position)",
            )
        self.skip_first = int(skip_first)
        if softmax is None:
            self.softmax_settings = SoftmaxSettings()
        elif isinstance(softmax, SoftmaxSettings):
            self.softmax_settings = softmax
        else:
            self.softmax_settings = SoftmaxSettings(**dict(softmax))
        self.softmax_settings.validate()
        # fitted state
        self.fitted = False
        self.fitted_sites: List[Site] = []
        self.ridge: Dict[Tuple[Site, int], RidgeProbe] = {}
        self.softmax: Dict[Tuple[Site, int], SoftmaxProbe] = {}
        self.token_counts: Optional[Tensor] = None
        self.majority: Dict[int, List[int]] = {}
        self.model_name: Optional[str] = None
        self.fingerprint: Optional[Dict[str, Any]] = None
        self.vocab_digest: Optional[str] = None
        self.d_model: Optional[int] = None
        self.d_vocab: Optional[int] = None
        self.n_layers: Optional[int] = None
        self.training: Dict[str, Any] = {}
        self.timings: Dict[str, float] = {}
        self.metrics: Optional[Dict[str, Any]] = None
        self._stats: Dict[Site, RidgeStatistics] = {}
        self._rows: Dict[Site, List[Tensor]] = {}
        self._targets: Dict[int, List[Tensor]] = {}
        self._target_counts: Dict[int, Tensor] = {}
        self._n_buffered = 0
        if path is not None:
            loaded = InputProbe.load(path)
            self.__dict__.update(loaded.__dict__)

    def __repr__(self) -> str:
        state = (
            f"fitted on {self.training.get('n_tokens', '?')} tokens of {self.model_name!r}"
            if self.fitted
            else "not fitted"
        )
        sites = self.fitted_sites
        where = f"{len(sites)} sites [{sites[0].name} .. {sites[-1].name}]" if sites else f"sites={self.site_spec!r}"
        return (
            f"InputProbe({where}, offsets={[offset_label(k) for k in self.offsets]}, kinds={self.kinds}, "
            f"alpha={self.alpha:g}, decode={self.decode!r}; {state})"
        )

    # ------------------------------------------------------------------ sites
    def selected_sites(self, adapter: ModelAdapter) -> List[Site]:
        if self.fitted:
            return list(self.fitted_sites)
        return adapter.sites(self.site_spec, include_mid=self.include_mid)

    def sites(self, adapter: ModelAdapter) -> List[Site]:
        return self.selected_sites(adapter)

    # ------------------------------------------------------------------ model checks
    def check_model(self, adapter: ModelAdapter) -> None:
        """Raise :class:`ModelError` unless ``adapter`` is the model this probe was trained on."""
        if not self.fitted:
            return
        if self.d_vocab != adapter.d_vocab or (
            self.vocab_digest is not None
            and vocab_digest(adapter) is not None
            and self.vocab_digest != vocab_digest(adapter)
        ):
            raise ModelError(
                "This probe was trained with another vocabulary.",
                expected=f"a model whose tokenizer has {self.d_vocab} tokens (vocabulary digest {self.vocab_digest})",
                received=f"{adapter.d_vocab} tokens (vocabulary digest {vocab_digest(adapter)}) on {adapter.model_name!r}",
                fix=f"load the model the probe was trained on ({self.model_name!r}), or train a new probe for this one",
            )
        if self.d_model != adapter.d_model or not fingerprints_match(self.fingerprint or {}, adapter.fingerprint()):
            raise ModelError(
                "This probe was trained on another model.",
                expected=f"{self.model_name!r} (fingerprint {(self.fingerprint or {}).get('digest')}, d_model {self.d_model})",
                received=f"{adapter.model_name!r} (fingerprint {adapter.fingerprint()['digest']}, d_model {adapter.d_model})",
                fix=f"load {self.model_name!r} for this probe, or train a new probe with InputProbe().fit(model, text)",
            )

    # ------------------------------------------------------------------ training
    def begin(self, adapter: ModelAdapter) -> None:
        """Start (or restart) streaming training on ``adapter``'s model."""
        self.fitted = False
        self.fitted_sites = self.selected_sites(adapter)
        self.ridge, self.softmax, self.majority = {}, {}, {}
        self.model_name = adapter.model_name
        self.fingerprint = adapter.fingerprint()
        self.vocab_digest = vocab_digest(adapter)
        self.d_model, self.d_vocab, self.n_layers = adapter.d_model, adapter.d_vocab, adapter.n_layers
        need_ridge = "ridge" in self.kinds or ("softmax" in self.kinds and self.softmax_settings.init == "ridge")
        d_out = int(adapter.W_E.shape[-1])
        self._stats = (
            {s: RidgeStatistics(adapter.d_model, d_out, self.offsets, products=self.ridge_products) for s in self.fitted_sites}
            if need_ridge
            else {}
        )
        self._rows = {s: [] for s in self.fitted_sites}
        self._targets = {k: [] for k in self.offsets}
        self._target_counts = {k: torch.zeros(adapter.d_vocab, dtype=torch.long) for k in self.offsets}
        self.token_counts = torch.zeros(adapter.d_vocab, dtype=torch.long)
        self._n_buffered = 0
        self.training = {"n_windows": 0, "n_tokens": 0, "window": None}
        self.timings = {"forward_s": 0.0, "ridge_accumulate_s": 0.0, "ridge_solve_s": 0.0, "softmax_s": 0.0}
        self.metrics = None

    def partial_fit(
        self,
        adapter: ModelAdapter,
        streams: Mapping[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> None:
        """Add one batch of captured streams to the training statistics."""
        if self.token_counts is None or not self.fitted_sites:
            self.begin(adapter)
        length = int(tokens.shape[1])
        check_offsets_fit(self.offsets, length, self.skip_first)
        missing = [s.name for s in self.fitted_sites if s not in streams]
        if missing:
            raise InputError(
                "The captured streams lack sites this probe needs.",
                expected=", ".join(s.name for s in self.fitted_sites),
                received=f"missing {missing}",
                fix="capture with adapter.run_and_capture(tokens, probe.sites(adapter))",
            )
        tok_cpu = tokens.detach().cpu()
        self.token_counts += torch.bincount(tok_cpu[:, self.skip_first :].reshape(-1), minlength=adapter.d_vocab)
        for k in self.offsets:
            lo, hi = valid_positions(length, k, self.skip_first)
            self._target_counts[k] += torch.bincount(tok_cpu[:, lo + k : hi + k].reshape(-1), minlength=adapter.d_vocab)
        self.training["n_windows"] += int(tokens.shape[0])
        self.training["n_tokens"] += int(tokens.numel())
        self.training["window"] = length if self.training["window"] in (None, length) else "mixed"
        embed = adapter.W_E.detach()
        t0 = time.perf_counter()
        for s in self.fitted_sites:
            act = streams[s].detach()
            if not bool(torch.isfinite(act).all()):
                raise NonFiniteError(
                    f"Activations at {s.name} hold NaN or infinite values.",
                    expected="finite activations",
                    received=f"non-finite values in a batch of shape {tuple(act.shape)}",
                    fix="run the model in float32, or drop the site",
                )
            if s in self._stats:
                self._stats[s].update(act, tokens, embed, self.skip_first)
        self.timings["ridge_accumulate_s"] += time.perf_counter() - t0
        if "softmax" in self.kinds and self._n_buffered < self.softmax_settings.max_samples:
            body = length - min(self.skip_first, length)
            room = self.softmax_settings.max_samples - self._n_buffered
            n_win = min(int(tokens.shape[0]), math.ceil(room / max(body, 1)))
            for s in self.fitted_sites:
                rows = streams[s][:n_win, self.skip_first :].detach().float().reshape(-1, adapter.d_model)[:room]
                self._rows[s].append(rows.cpu())
            pos = torch.arange(self.skip_first, length)
            for k in self.offsets:
                src = pos + k
                ok = (src >= 0) & (src < length)
                tgt = torch.full((n_win, pos.shape[0]), -1, dtype=torch.long)
                tgt[:, ok] = tok_cpu[:n_win, src[ok]]
                self._targets[k].append(tgt.reshape(-1)[:room])
            self._n_buffered += min(room, n_win * body)

    def finalize(self, adapter: ModelAdapter, *, progress: bool = False) -> "InputProbe":
        """Solve the ridge probes and train the softmax probes from what :meth:`partial_fit` collected."""
        if self.token_counts is None or self.training.get("n_windows", 0) == 0:
            raise InputError(
                "The probe has seen no training data.",
                expected="at least one batch through partial_fit (or call fit)",
                received="nothing",
                fix="call probe.fit(model, text)",
            )
        t0 = time.perf_counter()
        ridge_all: Dict[Tuple[Site, int], RidgeProbe] = {}
        for s, st in self._stats.items():
            for k in self.offsets:
                ridge_all[(s, k)] = st.solve(k, self.alpha, where=f" at {s.name}, offset {offset_label(k)}")
        self.timings["ridge_solve_s"] += time.perf_counter() - t0
        if "ridge" in self.kinds:
            self.ridge = ridge_all
        for k in self.offsets:
            top = self._target_counts[k].topk(5)
            self.majority[k] = [int(i) for i in top.indices.tolist()]
        if "softmax" in self.kinds:
            t0 = time.perf_counter()
            embed = adapter.W_E.detach().float().cpu()
            targets = {k: torch.cat(v) for k, v in self._targets.items()}
            for s in self.fitted_sites:
                x = torch.cat(self._rows[s])
                for k in self.offsets:
                    mask = targets[k] >= 0
                    if not bool(mask.any()):
                        continue
                    _say(f"softmax probe {s.name} offset {offset_label(k)}: {int(mask.sum())} rows", progress)
                    self.softmax[(s, k)] = fit_softmax(
                        x[mask],
                        targets[k][mask],
                        n_vocab=adapter.d_vocab,
                        settings=self.softmax_settings,
                        ridge=ridge_all.get((s, k)),
                        embed=embed,
                    )
            self.timings["softmax_s"] += time.perf_counter() - t0
        self.training["n_ridge_samples"] = {
            _site_key(s, k): int(p.n_samples) for (s, k), p in ridge_all.items()
        }
        self.training["n_softmax_samples"] = {_site_key(s, k): int(p.n_samples) for (s, k), p in self.softmax.items()}
        self.training["n_distinct_tokens"] = int((self.token_counts > 0).sum())
        self._stats, self._rows, self._targets, self._target_counts = {}, {}, {}, {}
        self._n_buffered = 0
        self.fitted = True
        return self

    def fit(
        self,
        model: Any,
        inputs: ProbeInputs,
        *,
        window: int = 128,
        max_tokens: Optional[int] = None,
        batch_size: int = 8,
        progress: bool = False,
    ) -> "InputProbe":
        """Train on ``inputs`` (texts or token windows), streaming batches of windows through the model.

        Every batch is one forward pass capturing all probed sites; only the sufficient
        statistics (and, for softmax probes, at most ``softmax.max_samples`` rows per site)
        are kept.
        """
        adapter = adapt(model)
        windows = probe_windows(adapter, inputs, window=window, max_tokens=max_tokens)
        check_offsets_fit(self.offsets, int(windows.shape[1]), self.skip_first)
        self.begin(adapter)
        n = int(windows.shape[0])
        for i, chunk in enumerate(windows.split(max(1, int(batch_size)))):
            t0 = time.perf_counter()
            streams = adapter.run_and_capture(chunk, self.fitted_sites)
            self.timings["forward_s"] += time.perf_counter() - t0
            self.partial_fit(adapter, streams, chunk)
            _say(f"probe training: {min(n, (i + 1) * batch_size)}/{n} windows", progress)
        return self.finalize(adapter, progress=progress)

    # ------------------------------------------------------------------ using
    def _require_fitted(self) -> None:
        if not self.fitted:
            raise InputError(
                "This probe has not been trained.",
                expected="a fitted InputProbe",
                received="an untrained InputProbe",
                fix="call probe.fit(model, text) first, or load one with InputProbe.load(path)",
            )

    def probe_for(self, site: Any, offset: int, kind: str = "ridge") -> Union[RidgeProbe, SoftmaxProbe]:
        """The fitted probe at ``(site, offset)`` of ``kind`` ('ridge' or 'softmax')."""
        self._require_fitted()
        s = resolve_site(site, int(self.n_layers or 0))
        table: Mapping[Tuple[Site, int], Any] = self.ridge if kind == "ridge" else self.softmax
        if (s, offset) not in table:
            raise InputError(
                f"No {kind} probe at {s.name}, offset {offset_label(offset)}.",
                expected=f"sites {[x.name for x in self.fitted_sites]}, offsets {self.offsets}, kinds {self.kinds}",
                received=f"site={s.name}, offset={offset}, kind={kind!r}",
                fix="pick one of the expected sites, offsets and kinds",
            )
        return table[(s, offset)]

    def evaluate(self, model: Any, inputs: ProbeInputs, **kwargs: Any) -> Any:
        """Evaluate on held-out ``inputs``; see :func:`lensbox.evaluate_probe`."""
        from ._evaluate import evaluate_probe

        return evaluate_probe(self, model, inputs, **kwargs)

    def run(
        self,
        adapter: ModelAdapter,
        streams: Dict[Site, Float[Tensor, "batch pos d_model"]],
        tokens: Int[Tensor, "batch pos"],
    ) -> Any:
        """Analyzer entry point: evaluate a fitted probe on one batch (a :class:`ProbeEvaluation`)."""
        from ._evaluate import ProbeEvaluator

        self._require_fitted()
        self.check_model(adapter)
        ev = ProbeEvaluator(self, adapter)
        ev.update(streams, tokens)
        return ev.result()

    # ------------------------------------------------------------------ saving
    def config(self) -> Dict[str, Any]:
        """The JSON side of a saved probe."""
        from .. import __version__

        return {
            "format_version": FORMAT_VERSION,
            "kind": ARTIFACT_KIND,
            "lensbox_version": __version__,
            "model_name": self.model_name,
            "fingerprint": self.fingerprint,
            "vocab_digest": self.vocab_digest,
            "d_model": self.d_model,
            "d_vocab": self.d_vocab,
            "n_layers": self.n_layers,
            "sites": [s.name for s in self.fitted_sites],
            "offsets": list(self.offsets),
            "kinds": list(self.kinds),
            "settings": {
                "alpha": self.alpha,
                "decode": self.decode,
                "include_mid": self.include_mid,
                "skip_first": self.skip_first,
                "ridge_products": self.ridge_products,
                "softmax": dataclasses.asdict(self.softmax_settings),
            },
            "training": self.training,
            "majority": {str(k): v for k, v in self.majority.items()},
            "metrics": self.metrics,
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
        }

    def save(self, path: Union[str, Path]) -> Path:
        """Write ``probe.safetensors`` (weights) and ``probe.json`` (config, fingerprint, metrics) into ``path``."""
        from safetensors.torch import save_file

        self._require_fitted()
        out = Path(path)
        if out.exists() and not out.is_dir():
            raise ArtifactError(
                "Cannot save a probe over a file.",
                expected="a directory path (created if missing)",
                received=f"{out} is a file",
                fix="pass a directory name, e.g. 'probe_smollm2/'",
            )
        out.mkdir(parents=True, exist_ok=True)
        tensors: Dict[str, Tensor] = {"token_counts": self.token_counts.cpu().contiguous()}  # type: ignore[union-attr]
        for (s, k), p in self.ridge.items():
            tensors[f"ridge/{_site_key(s, k)}/weight"] = p.weight.cpu().contiguous()
            tensors[f"ridge/{_site_key(s, k)}/bias"] = p.bias.cpu().contiguous()
        for (s, k), p in self.softmax.items():
            tensors[f"softmax/{_site_key(s, k)}/weight"] = p.weight.cpu().contiguous()
            tensors[f"softmax/{_site_key(s, k)}/bias"] = p.bias.cpu().contiguous()
            tensors[f"softmax/{_site_key(s, k)}/classes"] = p.classes.cpu().contiguous()
        cfg = self.config()
        cfg["ridge_penalty"] = {_site_key(s, k): p.penalty for (s, k), p in self.ridge.items()}
        tmp_w = out / (WEIGHTS_FILE + ".part")
        tmp_c = out / (CONFIG_FILE + ".part")
        save_file(tensors, str(tmp_w), metadata={"format": ARTIFACT_KIND, "format_version": str(FORMAT_VERSION)})
        tmp_c.write_text(json.dumps(cfg, indent=2, sort_keys=False), encoding="utf-8")
        tmp_w.replace(out / WEIGHTS_FILE)
        tmp_c.replace(out / CONFIG_FILE)
        return out

    @classmethod
    def load(cls, path: Union[str, Path], model: Any = None) -> "InputProbe":
        """Read a probe saved by :meth:`save`; with ``model``, also check it is the model the probe was trained on."""
        from safetensors import safe_open

        root = Path(path)
        cfg_path, w_path = root / CONFIG_FILE, root / WEIGHTS_FILE
        if not cfg_path.is_file() or not w_path.is_file():
            raise ArtifactError(
                "This is not a saved input probe.",
                expected=f"a directory holding {CONFIG_FILE} and {WEIGHTS_FILE}",
                received=f"{root}: {sorted(p.name for p in root.iterdir())[:8] if root.is_dir() else 'no such directory'}",
                fix="pass the directory written by InputProbe.save() or `lensbox train-probe --out DIR`",
            )
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(
                "The probe's config file is corrupted.",
                expected=f"valid JSON in {cfg_path}",
                received=str(exc),
                fix="save the probe again",
            ) from exc
        if cfg.get("kind") != ARTIFACT_KIND:
            raise ArtifactError(
                "This directory holds another kind of artifact.",
                expected=f"kind {ARTIFACT_KIND!r}",
                received=repr(cfg.get("kind")),
                fix="pass a directory written by InputProbe.save()",
            )
        version = cfg.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ArtifactError(
                "This probe was saved by a newer lensbox.",
                expected=f"format_version <= {FORMAT_VERSION}",
                received=repr(version),
                fix="upgrade lensbox",
            )
        settings = cfg.get("settings", {})
        probe = cls(
            None,
            offsets=[int(k) for k in cfg["offsets"]],
            kinds=cfg["kinds"],
            alpha=float(settings.get("alpha", 1e-3)),
            decode=settings.get("decode", "cosine"),
            include_mid=bool(settings.get("include_mid", False)),
            skip_first=int(settings.get("skip_first", 1)),
            softmax=settings.get("softmax"),
            ridge_products=settings.get("ridge_products", "float32"),
        )
        n_layers = int(cfg["n_layers"])
        probe.fitted_sites = [resolve_site(name, n_layers) for name in cfg["sites"]]
        probe.model_name = cfg.get("model_name")
        probe.fingerprint = cfg.get("fingerprint")
        probe.vocab_digest = cfg.get("vocab_digest")
        probe.d_model, probe.d_vocab, probe.n_layers = int(cfg["d_model"]), int(cfg["d_vocab"]), n_layers
        probe.training = cfg.get("training", {})
        probe.metrics = cfg.get("metrics")
        probe.timings = {k: float(v) for k, v in (cfg.get("timings") or {}).items()}
        probe.majority = {int(k): [int(i) for i in v] for k, v in (cfg.get("majority") or {}).items()}
        penalties = cfg.get("ridge_penalty", {})
        try:
            with safe_open(str(w_path), framework="pt") as f:
                keys = set(f.keys())

                def get(name: str) -> Tensor:
                    if name not in keys:
                        raise ArtifactError(
                            "The probe's weights file lacks a tensor its config names.",
                            expected=name,
                            received=f"{len(keys)} tensors",
                            fix="save the probe again",
                        )
                    return f.get_tensor(name)

                probe.token_counts = get("token_counts").long()
                n_ridge = probe.training.get("n_ridge_samples", {})
                n_soft = probe.training.get("n_softmax_samples", {})
                for s in probe.fitted_sites:
                    for k in probe.offsets:
                        key = _site_key(s, k)
                        if "ridge" in probe.kinds:
                            probe.ridge[(s, k)] = RidgeProbe(
                                weight=get(f"ridge/{key}/weight").float(),
                                bias=get(f"ridge/{key}/bias").float(),
                                n_samples=int(n_ridge.get(key, 0)),
                                penalty=float(penalties.get(key, 0.0)),
                            )
                        if "softmax" in probe.kinds and f"softmax/{key}/weight" in keys:
                            probe.softmax[(s, k)] = SoftmaxProbe(
                                weight=get(f"softmax/{key}/weight").float(),
                                bias=get(f"softmax/{key}/bias").float(),
                                classes=get(f"softmax/{key}/classes").long(),
                                n_samples=int(n_soft.get(key, 0)),
                            )
        except ArtifactError:
            raise
        except Exception as exc:  # safetensors raises its own error types for damaged files
            raise ArtifactError(
                "The probe's weights file cannot be read.",
                expected=f"a valid safetensors file at {w_path}",
                received=f"{type(exc).__name__}: {exc}",
                fix="save the probe again",
            ) from exc
        probe.fitted = True
        if model is not None:
            probe.check_model(adapt(model))
        return probe
