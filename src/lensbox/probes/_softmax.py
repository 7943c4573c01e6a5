"""Training a softmax probe: a classifier from activations to token ids.

`fit_softmax` centres and whitens the features, optionally starts from a cosine
decoder of the ridge map, runs minibatch Adam (`adam_softmax`, hand-written
gradients, no autograd graph) or L-BFGS, and folds the whitening back into weights that act
on raw activations.
"""

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

from .._errors import InputError, NonFiniteError
from ._maps import RidgeProbe, SoftmaxProbe, SoftmaxSettings

#: the grid of cosine-logit scales tried for the ridge start
_START_SCALES = (1.0, 2.0, 4.0, 8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0)


def adam_softmax(
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


def whitening(x: Float[Tensor, "n d"], whiten: bool) -> tuple[Float[Tensor, "d"], Float[Tensor, "d d"]]:
    """The feature mean and the matrix ``P`` such that ``(x - mean) @ P`` is whitened (ZCA) or standardised."""
    mu = x.mean(0)
    xc = x - mu
    if whiten:
        # ZCA whitening: a well-conditioned problem lets Adam converge in a few epochs
        cov = (xc.T.double() @ xc.double()) / max(1, x.shape[0])
        evals, evecs = torch.linalg.eigh(cov)
        floor = 1e-4 * float(evals.clamp_min(0).mean())
        P = (evecs * (evals.clamp_min(0) + floor).rsqrt()) @ evecs.T
        P = P.float()
    else:
        sd = x.std(0, unbiased=False)
        P = torch.diag(1.0 / sd.clamp_min(1e-6 * float(sd.max().clamp_min(1e-30))))
    return mu, P


def ridge_start(
    xs: Float[Tensor, "n d"],
    y_idx: Int[Tensor, "n"],
    classes: Int[Tensor, "c"],
    mu: Float[Tensor, "d"],
    P: Float[Tensor, "d d"],
    ridge: RidgeProbe,
    embed: Float[Tensor, "vocab e"],
    s: SoftmaxSettings,
    gen: torch.Generator,
) -> tuple[Float[Tensor, "d c"], Float[Tensor, "c"]]:
    """Starting weights on whitened features: a cosine decoder of the ridge map through ``W_E[classes]``.

    The scale of the cosine logits is the best of a small grid on a subsample; with
    ``prior_bias`` the log class frequencies are added to the bias.
    """
    dev = xs.device
    n_cls = int(classes.shape[0])
    e = embed[classes.to(embed.device)].float().to(dev)
    e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    # x @ Wr + br = xs @ (P^-1 Wr) + (mu @ Wr + br); P^-1 Wr solved rather than inverted
    wr = torch.linalg.solve(P.double(), ridge.weight.to(dev).double()).float()
    br = mu @ ridge.weight.to(dev) + ridge.bias.to(dev)
    w0 = wr @ e.T
    b0 = br @ e.T
    # scale: pick the best of a small grid on a subsample (cross-entropy of cosine logits)
    m = min(xs.shape[0], 4096)
    sub = torch.randperm(xs.shape[0], generator=gen)[:m].to(dev)
    pred = xs[sub] @ wr + br
    norms = pred.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    cos = (pred @ e.T) / norms
    prior = torch.zeros(n_cls, device=dev)
    if s.prior_bias:
        # the ridge scores ignore how common each token is: add the log class frequencies
        freq = torch.bincount(y_idx.to(dev), minlength=n_cls).float()
        prior = torch.log(freq / freq.sum())
    best, best_loss = 1.0, float("inf")
    for scale in _START_SCALES:
        loss = float(torch.nn.functional.cross_entropy(scale * cos + prior, y_idx[sub].to(dev)))
        if loss < best_loss:
            best, best_loss = scale, loss
    # each row's prediction norm varies; its mean turns the cosine scale into a linear one
    scale_lin = best / float(norms.mean())
    return scale_lin * w0, scale_lin * b0 + prior


def lbfgs_softmax(
    xs: Float[Tensor, "n d"], y: Int[Tensor, "n"], w: Float[Tensor, "d c"], b: Float[Tensor, "c"], s: SoftmaxSettings
) -> None:
    """Full-batch L-BFGS (``s.epochs`` iterations) on mean cross-entropy + ``l2/2 ||w||^2``; ``w``, ``b`` need grad."""
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=s.epochs, history_size=10, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(xs @ w + b, y)
        if s.l2 > 0:
            loss = loss + 0.5 * s.l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)


def fit_softmax(
    x: Float[Tensor, "n d"],
    y: Int[Tensor, "n"],
    *,
    n_vocab: int,
    settings: SoftmaxSettings | None = None,
    ridge: RidgeProbe | None = None,
    embed: Float[Tensor, "vocab e"] | None = None,
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
    mu, P = whitening(x, s.whiten)
    xs = (x - mu) @ P
    w = torch.zeros(x.shape[1], n_cls, device=dev)
    b = torch.zeros(n_cls, device=dev)
    if s.init == "ridge" and ridge is not None and embed is not None:
        w, b = ridge_start(xs, y_idx, classes, mu, P, ridge, embed, s, gen)
    w = w.clone().requires_grad_(True)
    b = b.clone().requires_grad_(True)
    y_dev = y_idx.to(dev)
    if s.optimizer == "lbfgs":
        lbfgs_softmax(xs, y_dev, w, b, s)
    else:
        adam_softmax(xs, y_dev, w, b, s, gen)
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
    return SoftmaxProbe(weight=w_raw.contiguous(), bias=b_raw.contiguous(), classes=classes.long(), n_samples=int(x.shape[0]))
