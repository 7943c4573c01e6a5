"""Training a tuned lens: streamed token windows, a chunked KL objective, checkpoints, DDP.

See ``README_training.md`` beside this file. In short:

* The model is frozen and run without gradients; only the residual streams at the
  translator sites and the final site are captured (``adapter.run_and_capture``).
* The objective is KL(final || lens), averaged over sites and positions. The final
  distribution is computed once per block of positions and reused by every site;
  logits exist only as ``[chunk_rows, d_vocab]`` buffers, and the gradient through
  the softmax is written by hand (``softmax(z) - p``), so no ``[rows, vocab]`` tensor
  is kept for autograd.
* ``init='lstsq'`` starts from the closed-form least-squares translators
  (regressing the scale-normalised final stream on each site's stream), computed
  from accumulated ``X^T X`` / ``X^T Y`` statistics.
* Checkpoints (safetensors + JSON) are written atomically every N steps; every
  random choice derives from ``(seed, epoch)`` or ``(seed, step)``, so a resumed run
  reproduces an uninterrupted one exactly on CPU.
* Data-parallel training over ``torch.distributed`` (gloo on CPU): each rank takes a
  slice of every global batch and gradients are summed with one all-reduce per step,
  so the trajectory does not depend on the number of processes.
"""

import dataclasses
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from ..core._adapter import ModelAdapter, adapt
from ..data import check_val_fraction, split_windows, windows
from .._io import sha256_file as _sha256
from .._errors import ArtifactError, InputError, ModelError, NonFiniteError
from ..core._sites import Site, parse_sites
from ..lenses._tuned import Translators, TunedLens, _base_config, _fingerprint_mismatch, _jsonable, translator_sites

DataLike = Any  # str | PathLike | iterable of those | token tensor | list of token lists


# ====================================================================== data
def _is_pathlike(x: Any) -> bool:
    return isinstance(x, os.PathLike)


def _fresh(data: DataLike) -> Any:
    """The data itself, or a fresh iterable from a factory; one-shot iterators are refused."""
    if callable(data) and not isinstance(data, (Tensor, str, os.PathLike)):
        return data()  # a factory of fresh iterables, e.g. lambda: my_generator()
    if isinstance(data, (str, os.PathLike, Tensor)):
        return data
    if iter(data) is data:
        raise InputError(
            "Training data must be readable more than once (for validation, epochs and resume).",
            expected="a list of texts, file paths, a token tensor, or a function returning a fresh iterator",
            received=f"a one-shot iterator ({type(data).__name__})",
            fix="pass list(texts), or a factory such as `lambda: read_my_texts()`",
        )
    return data


def _is_token_data(data: Any) -> bool:
    if isinstance(data, Tensor):
        return True
    if isinstance(data, (list, tuple)) and data:
        first = data[0]
        return isinstance(first, Tensor) or (
            isinstance(first, (list, tuple)) and len(first) > 0 and all(isinstance(t, int) for t in first)
        )
    return False


def raw_windows(adapter: ModelAdapter, data: DataLike, window: int) -> Iterator[List[int]]:
    """Consecutive ``window``-token windows of the data, in corpus order, as lists (``lensbox.data.windows``).

    Texts and files are tokenized without special tokens, texts joined by the EOS
    token; a ``[n, window]`` token tensor is taken row by row. No BOS is added.
    """
    data = _fresh(data)
    tok = adapter.tokenizer if not _is_token_data(data) else None
    if tok is None and not _is_token_data(data):
        adapter._require_tokenizer(fix="pass token ids (a [n_windows, window] tensor) instead of text")
    for w in windows(tok, data, window=window, d_vocab=adapter.d_vocab):
        yield w.tolist()


def _check_ids(ids: Sequence[int], d_vocab: int) -> None:
    if ids and (min(ids) < 0 or max(ids) >= d_vocab):
        raise InputError(
            "Token ids fall outside the model's vocabulary.",
            expected=f"ids in 0..{d_vocab - 1}",
            received=f"ids in {min(ids)}..{max(ids)}",
            fix="tokenize with this model's own tokenizer",
        )


def describe_data(data: DataLike) -> Dict[str, Any]:
    """A JSON description of the training data for the lens's config."""
    if isinstance(data, Tensor):
        return {"kind": "token tensor", "shape": list(data.shape)}
    if isinstance(data, str):
        return {"kind": "text", "chars": len(data), "sha256": hashlib.sha256(data.encode()).hexdigest()[:16]}
    if _is_pathlike(data):
        return {"kind": "files", "paths": [str(data)]}
    if isinstance(data, (list, tuple)):
        paths = [str(x) for x in data if _is_pathlike(x)]
        texts = [x for x in data if isinstance(x, str)]
        out: Dict[str, Any] = {"kind": "list", "items": len(data)}
        if paths:
            out["paths"] = paths[:20] + (["..."] if len(paths) > 20 else [])
        if texts:
            h = hashlib.sha256()
            for t in texts:
                h.update(t.encode())
            out["texts"] = len(texts)
            out["chars"] = sum(len(t) for t in texts)
            out["sha256"] = h.hexdigest()[:16]
        return out
    return {"kind": type(data).__name__}


class WindowStream:
    """The deterministic window order for training: a validation split, then per-epoch shuffles.

    Windows are split into training and validation by ``lensbox.data.split_windows``
    (a hash of ``(seed, window index)``); the first validation windows, up to
    ``max_val_tokens``, form the validation set and no validation window is ever trained
    on. Training windows pass through a shuffle buffer seeded by ``(seed, epoch)``.
    """

    def __init__(
        self,
        adapter: ModelAdapter,
        data: DataLike,
        *,
        window: int,
        seed: int,
        val_fraction: float,
        max_val_tokens: int,
        shuffle_buffer: int,
    ) -> None:
        check_val_fraction(val_fraction)
        self.adapter, self.data, self.window, self.seed = adapter, data, window, seed
        self.val_fraction = val_fraction
        self.shuffle_buffer = max(1, shuffle_buffer)
        val: List[List[int]] = []
        max_val = max_val_tokens // window if val_fraction > 0 else 0
        if max_val:
            for w in split_windows(self._raw_tensors(), "val", val_fraction=val_fraction, seed=seed):
                val.append(w.tolist())
                if len(val) >= max_val:
                    break
        try:
            next(iter(self._train_windows()))
        except StopIteration:
            raise InputError(
                "The training data is shorter than one training window.",
                expected=f"at least one {window}-token window for training besides the validation windows"
                f" (val_fraction={val_fraction})",
                received=f"{len(val)} validation window(s) and no training window",
                fix="pass more text, a smaller window=, or val_fraction=0",
            ) from None
        self.val = torch.tensor(val, dtype=torch.long) if val else torch.zeros((0, window), dtype=torch.long)

    def _raw_tensors(self) -> Iterator[Tensor]:
        for w in raw_windows(self.adapter, self.data, self.window):
            yield torch.tensor(w, dtype=torch.long)

    def _train_windows(self) -> Iterator[List[int]]:
        if self.val_fraction <= 0:
            yield from raw_windows(self.adapter, self.data, self.window)
            return
        for w in split_windows(self._raw_tensors(), "train", val_fraction=self.val_fraction, seed=self.seed):
            yield w.tolist()

    def epoch(self, epoch: int) -> Iterator[List[int]]:
        rng = random.Random(f"lensbox-shuffle:{self.seed}:{epoch}")
        buf: List[List[int]] = []
        for w in self._train_windows():
            if len(buf) < self.shuffle_buffer:
                buf.append(w)
                continue
            j = rng.randrange(len(buf))
            yield buf[j]
            buf[j] = w
        rng.shuffle(buf)
        yield from buf


class _Batches:
    """Global batches of windows with a resumable position (epoch, windows taken in the epoch)."""

    def __init__(self, stream: WindowStream, epoch: int = 0, taken: int = 0) -> None:
        self.stream = stream
        self.epoch, self.taken = epoch, 0
        self._it = stream.epoch(epoch)
        for _ in range(taken):
            self._next()

    def _next(self) -> List[int]:
        for _attempt in range(2):
            try:
                w = next(self._it)
                self.taken += 1
                return w
            except StopIteration:
                if self.taken == 0:
                    raise InputError(
                        "The training data ran out.",
                        expected="data that can be read again for every epoch (a list, files or a tensor)",
                        received="an iterator that was already consumed",
                        fix="pass a list of texts or file paths instead of a generator",
                    ) from None
                self.epoch += 1
                self.taken = 0
                self._it = self.stream.epoch(self.epoch)
        raise InputError("The training data yielded no windows.", expected="some text", received="none")

    def take(self, n: int) -> Int[Tensor, "n pos"]:
        return torch.tensor([self._next() for _ in range(n)], dtype=torch.long)


# ====================================================================== the KL kernel
def _final_logprobs(adapter: ModelAdapter, rows: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
    z = adapter.decode(rows).float()
    return z.sub_(torch.logsumexp(z, dim=-1, keepdim=True))


def _kl_rows(
    adapter: ModelAdapter,
    normed: Float[Tensor, "m d_model"],
    p: Float[Tensor, "m d_vocab"],
    neg_h: Float[Tensor, "m"],
    *,
    want_grad: bool,
) -> Tuple[Float[Tensor, "m"], Optional[Float[Tensor, "m d_model"]]]:
    """KL(p || softmax(unembed(normed))) per row and, optionally, its gradient w.r.t. ``normed``."""
    z = adapter.unembed(normed).float()  # [m, V]
    lse = torch.logsumexp(z, dim=-1)
    pz = torch.bmm(p[:, None, :], z[:, :, None])[:, 0, 0]
    kl = neg_h - pz + lse
    if not want_grad:
        return kl, None
    q = z.sub_(lse[:, None]).exp_().sub_(p)  # d KL / d z = softmax(z) - p
    grad = q @ adapter.W_U.to(q.dtype).T
    return kl, grad


def _site_order(sites: Sequence[Site]) -> List[Site]:
    return sorted(sites)


def _micro_batch_kl(
    adapter: ModelAdapter,
    tr: Translators,
    streams: Dict[Site, Tensor],
    *,
    mask: Optional[Tensor],
    weight: float,
    chunk_rows: int,
    want_grad: bool,
) -> Tuple[Float[Tensor, "site"], Float[Tensor, "site"]]:
    """KL summed per site over the selected (site, position) pairs of one micro-batch.

    With ``want_grad`` the gradient of ``weight * sum(KL)`` is accumulated into the
    translators' ``.grad``. ``mask`` ``[site, n]`` selects pairs (None: all).
    Returns (KL sum per site, pair count per site).
    """
    sites = tr.sites
    dev = tr.weight.device
    final = streams[Site.resid_post(adapter.n_layers - 1)]
    F = final.reshape(-1, final.shape[-1]).to(dev)
    n = F.shape[0]
    H = torch.stack([streams[s].reshape(n, -1).to(dev) for s in sites]).float()  # [S, n, d]
    S = len(sites)
    with torch.set_grad_enabled(want_grad):
        T = tr.forward_stacked(H)
        N = adapter.final_norm(T.to(final.dtype)).float()  # [S, n, d]
    Nd = N.detach()
    G = torch.zeros_like(Nd) if want_grad else None
    kl_sum = torch.zeros(S, dtype=torch.float64)
    counts = torch.zeros(S, dtype=torch.float64)
    with torch.no_grad():
        for p0 in range(0, n, chunk_rows):
            p1 = min(n, p0 + chunk_rows)
            flp = _final_logprobs(adapter, F[p0:p1])
            P = flp.exp()
            negH = (P * flp).sum(-1)
            del flp
            if mask is None:
                for si in range(S):
                    kl, g = _kl_rows(adapter, Nd[si, p0:p1], P, negH, want_grad=want_grad)
                    kl_sum[si] += kl.double().sum()
                    counts[si] += p1 - p0
                    if G is not None and g is not None:
                        G[si, p0:p1] = g * weight
            else:
                sel = mask[:, p0:p1].nonzero()  # [(site, pos)] pairs, site-major
                for c0 in range(0, sel.shape[0], chunk_rows):
                    pairs = sel[c0 : c0 + chunk_rows]
                    s_idx, pos = pairs[:, 0].to(dev), pairs[:, 1].to(dev)
                    kl, g = _kl_rows(adapter, Nd[s_idx, p0 + pos], P[pos], negH[pos], want_grad=want_grad)
                    kl_sum.index_add_(0, s_idx.cpu(), kl.double().cpu())
                    counts.index_add_(0, s_idx.cpu(), torch.ones(len(s_idx), dtype=torch.float64))
                    if G is not None and g is not None:
                        G[s_idx, p0 + pos] = g * weight
    if G is not None:
        gW, gb = torch.autograd.grad(N, [tr.weight, tr.bias], G)
        if tr.weight.grad is None:
            tr.weight.grad, tr.bias.grad = gW, gb
        else:
            tr.weight.grad.add_(gW)
            tr.bias.grad.add_(gb)
    return kl_sum, counts


# ====================================================================== least squares
def _scale_invariant_norm(adapter: ModelAdapter) -> bool:
    """True when final_norm(c x) == final_norm(x) for c > 0 (LayerNorm, RMSNorm, their folded forms)."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(4, adapter.d_model, generator=gen).to(adapter.device, adapter.dtype) * 10
    with torch.no_grad():
        a, b = adapter.final_norm(x).float(), adapter.final_norm(3 * x).float()
    return bool(torch.allclose(a, b, rtol=1e-2, atol=1e-3 * float(a.abs().max()) + 1e-6))


class LstsqStats:
    """Accumulated normal equations for regressing the final stream on each site's stream.

    With a scale-invariant final norm the target for row ``i`` is ``f_i / rms(f_i)``
    and the regressors are ``[h_i, 1] / rms(h_i)``: each token counts once whatever
    its norm, and the fitted map sends ``h`` to ``rms(h) * f / rms(f)``, which the
    final norm cannot tell from ``f``.
    """

    def __init__(self, n_sites: int, d_model: int, scale_invariant: bool) -> None:
        self.xtx = torch.zeros(n_sites, d_model + 1, d_model + 1, dtype=torch.float64)
        self.xty = torch.zeros(n_sites, d_model + 1, d_model, dtype=torch.float64)
        self.rows = 0
        self.scale_invariant = scale_invariant

    def add(self, H: Float[Tensor, "site n d_model"], F: Float[Tensor, "n d_model"]) -> None:
        H, F = H.float(), F.float()
        ones = torch.ones(*H.shape[:2], 1, dtype=H.dtype, device=H.device)
        X = torch.cat([H, ones], dim=-1)
        Y = F
        if self.scale_invariant:
            X = X / H.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
            Y = F / F.pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
        self.xtx += torch.bmm(X.transpose(1, 2), X).double().cpu()
        self.xty += torch.matmul(X.transpose(1, 2), Y).double().cpu()
        self.rows += F.shape[0]

    def solve(self, ridge: float) -> Tuple[Tensor, Tensor]:
        """Ridge-regularised (towards the identity) solutions as (weight [S,d,d], bias [S,d]) in translator form."""
        S, d1, d = self.xty.shape
        eye_aug = torch.zeros(d1, d, dtype=torch.float64)
        eye_aug[:d, :d] = torch.eye(d, dtype=torch.float64)
        W = torch.zeros(S, d, d, dtype=torch.float64)
        b = torch.zeros(S, d, dtype=torch.float64)
        for s in range(S):
            A = self.xtx[s]
            lam = ridge * float(torch.diagonal(A).mean()) + 1e-12
            M = torch.linalg.solve(A + lam * torch.eye(d1, dtype=torch.float64), self.xty[s] + lam * eye_aug)
            W[s] = M[:d].T - torch.eye(d, dtype=torch.float64)
            b[s] = M[d]
        return W.float(), b.float()


# ====================================================================== distributed
class _Dist:
    def __init__(self, distributed: Optional[bool]) -> None:
        import torch.distributed as dist

        self.dist = dist
        want = int(os.environ.get("WORLD_SIZE", "1")) > 1 if distributed is None else bool(distributed)
        self.created = False
        if want and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and os.environ.get("LENSBOX_DIST_BACKEND") == "nccl" else "gloo"
            dist.init_process_group(backend=os.environ.get("LENSBOX_DIST_BACKEND", backend))
            self.created = True
        self.on = want and dist.is_initialized()
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1

    def all_sum(self, t: Tensor) -> Tensor:
        if self.on:
            self.dist.all_reduce(t, op=self.dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.on:
            self.dist.barrier()

    def close(self) -> None:
        if self.created:
            self.dist.destroy_process_group()


# ====================================================================== settings and checkpoints
@dataclasses.dataclass
class TrainSettings:
    """Everything that determines a training run (recorded in the lens config and checkpoints)."""

    sites: List[str]
    steps: int
    batch_size: int
    grad_accum: int
    window: int
    lr: float
    schedule: str
    warmup_steps: int
    optimizer: str
    weight_decay: float
    seed: int
    val_fraction: float
    max_val_tokens: int
    init: str
    init_tokens: int
    ridge: float
    sites_per_token: Optional[int]
    shuffle_buffer: int

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.window

    def to_dict(self) -> Dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tokens_per_step"] = self.tokens_per_step
        return d


def lr_at(step: int, s: TrainSettings) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warm-up, then constant/linear/cosine decay to 0."""
    if s.warmup_steps > 0 and step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    if s.schedule == "constant":
        return s.lr
    span = max(1, s.steps - s.warmup_steps)
    frac = min(1.0, (step - s.warmup_steps) / span)
    if s.schedule == "linear":
        return s.lr * (1.0 - frac)
    return s.lr * 0.5 * (1.0 + math.cos(math.pi * frac))


CKPT_STATE = "latest.json"


class Checkpointer:
    """Atomic checkpoints in a directory: ``step-XXXXXXXX.safetensors`` + ``latest.json`` (the commit record).

    The tensors file is written to a temporary name, fsynced and renamed; then
    ``latest.json`` (step, file name, SHA-256, optimizer/stream state) is replaced the
    same way. A crash at any moment leaves the previous checkpoint readable.
    """

    def __init__(self, directory: Union[str, "os.PathLike[str]"], keep: int = 2) -> None:
        self.dir = Path(directory).expanduser()
        self.keep = keep

    def exists(self) -> bool:
        return (self.dir / CKPT_STATE).is_file()

    def save(self, tensors: Dict[str, Tensor], state: Dict[str, Any]) -> Path:
        from safetensors.torch import save_file

        self.dir.mkdir(parents=True, exist_ok=True)
        step = int(state["step"])
        name = f"step-{step:08d}.safetensors"
        tmp = self.dir / f".{name}.tmp-{os.getpid()}"
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
        _fsync(tmp)
        digest = _sha256(tmp)
        os.replace(tmp, self.dir / name)
        record = dict(state, tensors_file=name, tensors_sha256=digest)
        tmp_json = self.dir / f".{CKPT_STATE}.tmp-{os.getpid()}"
        tmp_json.write_text(json.dumps(_jsonable(record), indent=1))
        _fsync(tmp_json)
        os.replace(tmp_json, self.dir / CKPT_STATE)
        _fsync_dir(self.dir)
        old = sorted(p for p in self.dir.glob("step-*.safetensors") if p.name != name)
        for p in old[: max(0, len(old) - (self.keep - 1))]:
            p.unlink(missing_ok=True)
        return self.dir / name

    def load(self) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = json.loads((self.dir / CKPT_STATE).read_text())
            path = self.dir / state["tensors_file"]
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(
                "The checkpoint record is unreadable.",
                expected=f"{self.dir / CKPT_STATE} written by train_tuned_lens",
                received=str(exc),
                fix="delete the checkpoint directory to start over, or point at another one",
            ) from exc
        if not path.is_file() or _sha256(path) != state.get("tensors_sha256"):
            raise ArtifactError(
                "The checkpoint's tensors file is missing or does not match its record.",
                expected=f"{path.name} with SHA-256 {str(state.get('tensors_sha256'))[:16]}...",
                received="missing" if not path.is_file() else "a different file",
                fix="delete the checkpoint directory to start over",
            )
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ArtifactError("The checkpoint tensors are corrupted.", received=str(exc), fix="start over") from exc
        return tensors, state


def _fsync(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _optimizer_tensors(opt: torch.optim.Optimizer) -> Tuple[Dict[str, Tensor], Dict[str, Any]]:
    sd = opt.state_dict()
    tensors: Dict[str, Tensor] = {}
    plain: Dict[str, Dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"optim.{pid}.{k}"] = v
            else:
                plain.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain}


def _restore_optimizer(opt: torch.optim.Optimizer, tensors: Mapping[str, Tensor], meta: Mapping[str, Any]) -> None:
    state: Dict[int, Dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for pid, st in meta.get("plain_state", {}).items():
        state.setdefault(int(pid), {}).update(st)
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _make_optimizer(name: str, params: List[Tensor], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)
    raise InputError("Unknown optimizer.", expected="'adam' or 'sgd'", received=repr(name), fix="use optimizer='adam'")


# ====================================================================== public entry point
def default_lr(optimizer: str, init: str) -> float:
    """Adam: 1e-3 from the identity, 1e-4 from a least-squares or warm start (1e-3 undoes much of it on
    SmolLM2); SGD (Nesterov, as tuned-lens): 1.0."""
    if optimizer == "sgd":
        return 1.0
    return 1e-3 if init == "identity" else 1e-4


def _pair_mask(step: int, micro: int, seed: int, n: int, n_sites: int, k: int) -> Tensor:
    """Which (site, position) pairs of a global micro-batch are decoded: k random sites per position."""
    gen = torch.Generator().manual_seed((seed * 1_000_003 + step * 10_007 + micro) % (2**62))
    scores = torch.rand(n, n_sites, generator=gen)
    idx = scores.topk(k, dim=1).indices
    mask = torch.zeros(n, n_sites, dtype=torch.bool)
    mask.scatter_(1, idx, True)
    return mask.T.contiguous()  # [site, n]


def _capture(adapter: ModelAdapter, tokens: Tensor, sites: Sequence[Site]) -> Dict[Site, Tensor]:
    final = Site.resid_post(adapter.n_layers - 1)
    return adapter.run_and_capture(tokens.to(adapter.device), sorted(set(sites) | {final}))


def validation_kl(
    adapter: ModelAdapter,
    tr: Translators,
    windows: Int[Tensor, "n pos"],
    *,
    batch_size: int = 4,
    chunk_rows: int = 512,
    dist: Optional[_Dist] = None,
) -> List[float]:
    """Mean KL(final || lens) per translator site over ``windows`` (no gradients)."""
    d = dist or _Dist(False)
    S = len(tr.sites)
    tot = torch.zeros(2, S, dtype=torch.float64)
    mine = windows[d.rank :: d.world]
    for i in range(0, mine.shape[0], batch_size):
        streams = _capture(adapter, mine[i : i + batch_size], tr.sites)
        kl, cnt = _micro_batch_kl(adapter, tr, streams, mask=None, weight=0.0, chunk_rows=chunk_rows, want_grad=False)
        tot[0] += kl
        tot[1] += cnt
    d.all_sum(tot)
    return [float(tot[0, s] / tot[1, s]) if tot[1, s] > 0 else math.nan for s in range(S)]


def train_tuned_lens(
    model: Any,
    data: DataLike,
    *,
    sites: Any = None,
    include_mid: bool = False,
    steps: Optional[int] = None,
    token_budget: Optional[int] = None,
    batch_size: int = 4,
    grad_accum: int = 1,
    window: int = 256,
    lr: Optional[float] = None,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    seed: int = 0,
    val_fraction: float = 0.05,
    max_val_tokens: int = 2048,
    init: Union[str, TunedLens] = "lstsq",
    init_tokens: Optional[int] = None,
    ridge: float = 1e-3,
    sites_per_token: Optional[int] = None,
    chunk_rows: int = 512,
    shuffle_buffer: int = 64,
    checkpoint_dir: Optional[Union[str, "os.PathLike[str]"]] = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    progress: bool = True,
    callback: Optional[Callable[[int, Dict[str, Any]], Any]] = None,
    distributed: Optional[bool] = None,
    corpus: Optional[Dict[str, Any]] = None,
) -> TunedLens:
    """Train a tuned lens on ``model`` and return it (save it with ``lens.save(dir)``).

    Args:
        model: a TransformerBridge / HookedTransformer (frozen; never modified).
        data: texts (``str`` or a list of them), files or directories (``pathlib.Path``,
            UTF-8), or token ids (a ``[n, window]`` tensor or lists of ids). Read as a
            stream; lists and files can be read again for later epochs.
        sites: translator sites (default: embed and every resid_post but the last).
        include_mid: also train translators for every resid_mid.
        steps / token_budget: how long to train (``token_budget`` tokens =
            ``ceil(token_budget / (batch_size * window))`` steps). Default 100 steps.
        batch_size: windows per optimizer step (over all processes together).
        grad_accum: split each step into this many micro-batches (memory, not maths).
        window: tokens per window (no BOS is added; position 0 of every window is a
            real token of the corpus).
        lr, schedule, warmup_steps: learning rate (default for Adam: 1e-4 after the least-squares
            initialisation or a warm start, 1e-3 from the identity; 1.0 for SGD),
            'cosine' | 'linear' | 'constant' decay, linear warm-up steps.
        optimizer: 'adam' (default) or 'sgd' (Nesterov momentum 0.9, like tuned-lens).
        weight_decay: decay of the translators towards the identity.
        seed: every random choice (shuffle, pair sampling) derives from it.
        val_fraction, max_val_tokens: held-out windows (every round(1/f)-th) for validation.
        init: 'lstsq' (closed-form least squares, default), 'identity', or a TunedLens to continue.
        init_tokens: tokens used for the least-squares statistics (default: 16 windows' worth x 4).
        ridge: relative ridge strength of the least-squares fit (towards the identity).
        sites_per_token: decode each position at only this many random sites per step
            (an unbiased estimate of the full objective at a fraction of the cost); None = all.
        chunk_rows: rows per ``[rows, vocab]`` work buffer.
        checkpoint_dir, checkpoint_every, resume: atomic checkpoints every N steps;
            ``resume=True`` continues the run saved there (same settings required).
        progress: a tqdm bar with the running loss.
        callback: ``callback(step, info)`` after every optimizer step.
        distributed: use torch.distributed (default: when launched by torchrun).
        corpus: a description of the data to record in the lens config.
    """
    adapter = adapt(model)
    t_start = time.perf_counter()
    dist = _Dist(distributed)
    try:
        return _train(
            adapter, data, dist, t_start,
            sites=sites, include_mid=include_mid, steps=steps, token_budget=token_budget, batch_size=batch_size,
            grad_accum=grad_accum, window=window, lr=lr, schedule=schedule, warmup_steps=warmup_steps,
            optimizer=optimizer, weight_decay=weight_decay, seed=seed, val_fraction=val_fraction,
            max_val_tokens=max_val_tokens, init=init, init_tokens=init_tokens, ridge=ridge,
            sites_per_token=sites_per_token, chunk_rows=chunk_rows, shuffle_buffer=shuffle_buffer,
            checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume, progress=progress,
            callback=callback, corpus=corpus,
        )
    finally:
        dist.close()


def _validate(**kw: Any) -> None:
    checks = [
        ("batch_size", kw["batch_size"] >= 1, "a positive number of windows per step"),
        ("grad_accum", kw["grad_accum"] >= 1, "a positive integer"),
        ("window", kw["window"] >= 2, "at least 2 tokens"),
        ("chunk_rows", kw["chunk_rows"] >= 1, "a positive integer"),
        ("checkpoint_every", kw["checkpoint_every"] >= 1, "a positive integer"),
        ("schedule", kw["schedule"] in {"cosine", "linear", "constant"}, "'cosine', 'linear' or 'constant'"),
        ("warmup_steps", kw["warmup_steps"] >= 0, "a non-negative integer"),
        ("ridge", kw["ridge"] >= 0, "a non-negative number"),
        ("weight_decay", kw["weight_decay"] >= 0, "a non-negative number"),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise InputError(f"Invalid {name}.", expected=expected, received=repr(kw[name]), fix=f"fix {name}=")


def _train(adapter: ModelAdapter, data: DataLike, dist: _Dist, t_start: float, **kw: Any) -> TunedLens:
    from tqdm.auto import tqdm

    _validate(**kw)
    n_layers = adapter.n_layers
    final = Site.resid_post(n_layers - 1)
    if kw["sites"] is None:
        sites = translator_sites(n_layers, include_mid=kw["include_mid"])
    else:
        sites = [s for s in parse_sites(kw["sites"], n_layers, include_mid=kw["include_mid"]) if s != final]
    if isinstance(kw["init"], TunedLens):
        warm = kw["init"]
        warm.check_model(adapter)
        sites = warm.lens_sites
    batch_size, grad_accum, window = kw["batch_size"], kw["grad_accum"], kw["window"]
    if batch_size % (grad_accum * dist.world):
        raise InputError(
            "batch_size must split evenly into micro-batches and processes.",
            expected=f"a multiple of grad_accum x processes = {grad_accum} x {dist.world}",
            received=f"batch_size={batch_size}",
            fix=f"use batch_size={max(1, batch_size // (grad_accum * dist.world)) * grad_accum * dist.world}",
        )
    if kw["steps"] is not None and kw["token_budget"] is not None:
        raise InputError("Give steps or token_budget, not both.", expected="one of them", received="both", fix="drop one")
    if kw["token_budget"] is not None:
        steps = max(1, math.ceil(kw["token_budget"] / (batch_size * window)))
    else:
        steps = 100 if kw["steps"] is None else int(kw["steps"])
    if steps < 0:
        raise InputError("steps must be >= 0.", expected=">= 0", received=str(steps), fix="steps=100")
    spt = kw["sites_per_token"]
    if spt is not None and not 1 <= spt <= len(sites):
        raise InputError(
            "sites_per_token out of range.",
            expected=f"1..{len(sites)} (or None for every site)",
            received=repr(spt),
            fix="use e.g. sites_per_token=8",
        )
    init_name = "warm_start" if isinstance(kw["init"], TunedLens) else str(kw["init"])
    if init_name not in {"lstsq", "identity", "warm_start"}:
        raise InputError("Unknown init.", expected="'lstsq', 'identity' or a TunedLens", received=repr(kw["init"]), fix="init='lstsq'")
    init_tokens = kw["init_tokens"] if kw["init_tokens"] is not None else 64 * window
    settings = TrainSettings(
        sites=[s.name for s in sites], steps=steps, batch_size=batch_size, grad_accum=grad_accum, window=window,
        lr=float(kw["lr"] if kw["lr"] is not None else default_lr(kw["optimizer"], init_name)),
        schedule=kw["schedule"], warmup_steps=int(kw["warmup_steps"]), optimizer=kw["optimizer"],
        weight_decay=float(kw["weight_decay"]), seed=int(kw["seed"]), val_fraction=float(kw["val_fraction"]),
        max_val_tokens=int(kw["max_val_tokens"]), init=init_name, init_tokens=int(init_tokens),
        ridge=float(kw["ridge"]), sites_per_token=spt, shuffle_buffer=int(kw["shuffle_buffer"]),
    )
    stream = WindowStream(
        adapter, data, window=window, seed=settings.seed, val_fraction=settings.val_fraction,
        max_val_tokens=settings.max_val_tokens, shuffle_buffer=settings.shuffle_buffer,
    )
    device = adapter.device
    tr = Translators(sites, adapter.d_model).to(device)
    opt = _make_optimizer(settings.optimizer, [tr.weight, tr.bias], settings.lr, settings.weight_decay)
    ckpt = Checkpointer(kw["checkpoint_dir"]) if kw["checkpoint_dir"] is not None else None
    fingerprint = adapter.fingerprint()
    history: List[Dict[str, Any]] = []
    timing = {"init_s": 0.0, "train_s": 0.0, "train_tokens": 0, "init_tokens": 0}
    start_step, epoch, taken = 0, 0, 0
    resumed = False
    is_main = dist.rank == 0

    if ckpt is not None and ckpt.exists():
        if not kw["resume"]:
            raise ArtifactError(
                "The checkpoint directory already holds a training run.",
                expected="an empty checkpoint directory, or resume=True to continue that run",
                received=str(ckpt.dir),
                fix="pass resume=True (--resume) to continue it, or choose another checkpoint_dir",
            )
        tensors, state = ckpt.load()
        saved = state.get("settings", {})
        mine = settings.to_dict()
        diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
        if diff:
            raise InputError(
                "Cannot resume: the settings differ from the checkpointed run.",
                expected=", ".join(f"{k}={saved.get(k)!r}" for k in diff[:6]),
                received=", ".join(f"{k}={mine.get(k)!r}" for k in diff[:6]),
                fix="resume with the original settings, or start a new run in another checkpoint_dir",
            )
        why = _fingerprint_mismatch(state.get("fingerprint", {}), fingerprint)
        if why is not None:
            raise ModelError(
                "Cannot resume: the checkpoint was made on another model.",
                expected=str(state.get("model_name")),
                received=f"{adapter.model_name}: {why}",
                fix="resume with the model the run started on",
            )
        tr.load_state_tensors({k[len("lens."):]: v for k, v in tensors.items() if k.startswith("lens.")}, source=str(ckpt.dir))
        _restore_optimizer(opt, tensors, state["optimizer"])
        start_step, epoch, taken = int(state["step"]), int(state["epoch"]), int(state["taken"])
        history = list(state.get("history", []))
        timing = dict(state.get("timing", timing))
        resumed = True
    batches = _Batches(stream, epoch, taken)

    def save_checkpoint(step: int) -> None:
        if ckpt is None:
            return
        if is_main:
            opt_tensors, opt_meta = _optimizer_tensors(opt)
            tensors = {f"lens.{k}": v for k, v in tr.state_tensors().items()}
            tensors.update(opt_tensors)
            state = {
                "step": step, "epoch": batches.epoch, "taken": batches.taken, "settings": settings.to_dict(),
                "optimizer": opt_meta, "history": history, "timing": timing, "model_name": adapter.model_name,
                "fingerprint": fingerprint, "format": "lensbox.tuned_lens.checkpoint", "format_version": 1,
            }
            ckpt.save(tensors, state)
        dist.barrier()

    # ---------------------------------------------------------------- initialisation
    if not resumed:
        t0 = time.perf_counter()
        if settings.init == "warm_start":
            with torch.no_grad():
                tr.weight.copy_(kw["init"].translators.weight.to(device))
                tr.bias.copy_(kw["init"].translators.bias.to(device))
        elif settings.init == "lstsq":
            stats = LstsqStats(len(sites), adapter.d_model, _scale_invariant_norm(adapter))
            n_init = max(1, settings.init_tokens // window)
            n_init = max(dist.world, (n_init // dist.world) * dist.world)
            init_batches = _Batches(stream, 0, 0)
            per = max(dist.world, batch_size // grad_accum)
            per = (per // dist.world) * dist.world
            bar = tqdm(total=n_init, desc="lstsq init", unit="win", disable=not (kw["progress"] and is_main), leave=False)
            done = 0
            while done < n_init:
                m = min(per, n_init - done)
                toks = init_batches.take(m)[dist.rank :: dist.world]
                if toks.shape[0]:
                    streams = _capture(adapter, toks, sites)
                    F = streams[final].reshape(-1, adapter.d_model)
                    H = torch.stack([streams[s].reshape(F.shape[0], -1) for s in sites])
                    stats.add(H, F)
                done += m
                bar.update(m)
            bar.close()
            dist.all_sum(stats.xtx)
            dist.all_sum(stats.xty)
            W, b = stats.solve(settings.ridge)
            with torch.no_grad():
                tr.weight.copy_(W.to(device))
                tr.bias.copy_(b.to(device))
            timing["init_tokens"] = n_init * window
        timing["init_s"] = time.perf_counter() - t0
        save_checkpoint(0)

    # ---------------------------------------------------------------- training loop
    micro_global = batch_size // grad_accum
    bar = tqdm(total=steps, initial=start_step, desc="tuned lens", unit="step", disable=not (kw["progress"] and is_main))
    ema: Optional[float] = history[-1]["loss"] if history else None
    for step in range(start_step, steps):
        t0 = time.perf_counter()
        lr = lr_at(step, settings)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss_parts = torch.zeros(2, dtype=torch.float64)
        n_pairs_global = micro_global * window * (spt or len(sites))
        for micro in range(grad_accum):
            toks = batches.take(micro_global)
            mask = None
            if spt is not None:
                full = _pair_mask(step, micro, settings.seed, micro_global * window, len(sites), spt)
                mask = full.view(len(sites), micro_global, window)[:, dist.rank :: dist.world].reshape(len(sites), -1)
            mine = toks[dist.rank :: dist.world]
            streams = _capture(adapter, mine, sites)
            kl, cnt = _micro_batch_kl(
                adapter, tr, streams, mask=mask, weight=1.0 / (n_pairs_global * grad_accum),
                chunk_rows=kw["chunk_rows"], want_grad=True,
            )
            loss_parts[0] += kl.sum()
            loss_parts[1] += cnt.sum()
        if dist.on:
            flat = torch.cat([tr.weight.grad.reshape(-1), tr.bias.grad.reshape(-1)])
            dist.all_sum(flat)
            nw = tr.weight.numel()
            tr.weight.grad.copy_(flat[:nw].view_as(tr.weight))
            tr.bias.grad.copy_(flat[nw:].view_as(tr.bias))
            dist.all_sum(loss_parts)
        loss = float(loss_parts[0] / loss_parts[1])
        if not math.isfinite(loss) or not bool(torch.isfinite(tr.weight.grad).all()):
            last = f"step {(step // kw['checkpoint_every']) * kw['checkpoint_every']} in {ckpt.dir}" if ckpt else "none (no checkpoint_dir)"
            raise NonFiniteError(
                "The training loss became NaN or infinite; training stopped.",
                expected="a finite KL loss",
                received=f"loss {loss} at step {step}",
                fix=(
                    f"lower lr (now {lr:g}) or use init='lstsq'; check the model for NaN activations. "
                    f"The last good checkpoint is kept: {last}"
                ),
            )
        opt.step()
        if not bool(torch.isfinite(tr.weight).all()):
            raise NonFiniteError(
                "The translator weights became non-finite; training stopped.",
                expected="finite weights",
                received=f"non-finite weights after step {step}",
                fix="lower lr; the last good checkpoint is kept",
            )
        dt = time.perf_counter() - t0
        timing["train_s"] += dt
        timing["train_tokens"] += batch_size * window
        ema = loss if ema is None else 0.9 * ema + 0.1 * loss
        history.append({"step": step + 1, "loss": loss, "lr": lr, "s": round(dt, 4)})
        bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr:.2g}", tok_s=f"{batch_size * window / max(dt, 1e-9):.0f}")
        bar.update(1)
        if (step + 1) % kw["checkpoint_every"] == 0 or step + 1 == steps:
            save_checkpoint(step + 1)
        if kw["callback"] is not None:
            kw["callback"](step + 1, {"loss": loss, "lr": lr, "translators": tr})
    bar.close()

    # ---------------------------------------------------------------- validation and result
    metrics: Dict[str, Any] = {}
    if stream.val.shape[0] > 0:
        val = validation_kl(adapter, tr, stream.val, batch_size=max(1, micro_global), chunk_rows=kw["chunk_rows"], dist=dist)
        metrics["val_tokens"] = int(stream.val.numel())
        metrics["val_kl_per_site"] = {s.name: v for s, v in zip(sites, val)}
        metrics["val_kl_mean"] = sum(val) / len(val)
    if history:
        tail = history[-min(10, len(history)) :]
        metrics["train_loss_last"] = sum(h["loss"] for h in tail) / len(tail)
    metrics["train_tokens"] = timing["train_tokens"]
    metrics["init_tokens"] = timing["init_tokens"]
    metrics["train_s"] = round(timing["train_s"], 3)
    metrics["init_s"] = round(timing["init_s"], 3)
    if timing["train_s"] > 0:
        metrics["train_tokens_per_s"] = round(timing["train_tokens"] / timing["train_s"], 2)
    config = _base_config(adapter)
    config["training"] = dict(settings.to_dict(), processes=dist.world, resumed=resumed)
    config["corpus"] = kw["corpus"] if kw["corpus"] is not None else describe_data(data)
    config["metrics"] = metrics
    config["loss_curve"] = [[h["step"], round(h["loss"], 5)] for h in history]
    lens = TunedLens(tr.cpu() if device.type != "cpu" else tr, config=config)
    if is_main and kw["progress"] and "val_kl_mean" in metrics:
        print(f"[lensbox] validation KL(final || tuned lens), mean over sites: {metrics['val_kl_mean']:.4f} nats", file=sys.stderr)
    return lens


__all__ = ["train_tuned_lens", "TrainSettings", "WindowStream", "raw_windows", "validation_kl", "LstsqStats", "Checkpointer", "lr_at"]
