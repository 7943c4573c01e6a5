"""The training loop of `train_tuned_lens`: plan, start, refine, validate, return the lens.

The model is frozen and run without gradients; only the residual streams at the
translator sites and the final site are captured. See ``README.md`` beside this file.
"""

import dataclasses
import math
import os
import time
import warnings
from typing import Any, Dict, List, Literal, Optional, Tuple, Union

import torch

from .._errors import InputError, NonFiniteError
from ..core import Fingerprint, check_fingerprint
from ..core._adapter import ModelAdapter, ModelLike, adapt
from ..core._sites import Site, SitesSpec, parse_sites
from ..lenses import Translators, TunedLens
from ..lenses._tuned import translator_sites
from ..lenses._tuned_io import lens_config
from ._checkpoint import Checkpointer, make_optimizer, optimizer_tensors, restore_optimizer
from ._distributed import Dist
from ._objective import capture, micro_batch_kl, pair_mask, validation_kl
from ._regularise import constrain, lstsq_start, shrink
from ._run import Run
from ._settings import (
    Callback, InitName, OptimizerName, RunPlan, Schedule, TrainSettings, TranslatorKind, budget, default_lr, lr_at,
)
from ._stream import Batches, DataLike, WindowStream, describe_data


def train_tuned_lens(
    model: ModelLike,
    data: Optional[DataLike] = None,
    *,
    sites: SitesSpec = None,
    include_mid: bool = False,
    steps: Optional[int] = None,
    token_budget: Optional[int] = None,
    batch_size: int = 1,
    grad_accum: int = 1,
    window: int = 256,
    lr: Optional[float] = None,
    schedule: Schedule = "cosine",
    warmup_steps: int = 0,
    optimizer: OptimizerName = "adam",
    weight_decay: float = 0.0,
    seed: int = 0,
    val_fraction: float = 0.05,
    max_val_tokens: int = 2048,
    init: Union[InitName, TunedLens] = "lstsq",
    init_tokens: Optional[int] = None,
    ridge: Union[float, Literal["auto"]] = "auto",
    shrink: Union[float, Literal["auto"]] = "auto",
    translator: TranslatorKind = "affine",
    rank: int = 16,
    val_data: Optional[DataLike] = None,
    select_tokens: int = 512,
    sites_per_token: Optional[int] = 4,
    chunk_rows: int = 512,
    shuffle_buffer: int = 64,
    checkpoint_dir: Union[str, "os.PathLike[str]", None] = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    progress: bool = True,
    callback: Optional[Callback] = None,
    distributed: Optional[bool] = None,
    corpus: Optional[Dict[str, Any]] = None,
) -> TunedLens:
    """Train a tuned lens on ``model`` and return it (save it with ``lens.save(dir)``).

    The default is the fast path ``bench/tuned_lens_bench.py`` measured: a least-squares
    start on the training text, then one pass of refinement over the same text that
    minimises KL(final || lens) at 4 random sites per position (``sites_per_token=None``
    decodes every site: the full objective, several times slower), batch 1, Adam at
    1e-4 with a cosine decay.

    Args:
        model: a TransformerBridge / HookedTransformer (frozen; never modified).
        data: texts (``str`` or a list of them), files or folders (``pathlib.Path``, UTF-8),
            token ids (a ``[n, window]`` tensor or lists of ids), or a function returning
            fresh data. Read as a stream, again for each epoch.
            Default (None): the default mix of the built-in corpora
            (`lensbox.data.default_training_texts`: English prose, drama and technical
            text, Python code, the Debian handbook in several languages), fetched once; the
            lens records what it was trained on in ``lens.config["corpus"]``.
        sites: translator sites (default: embed and every resid_post but the last).
        include_mid: also a translator at every resid_mid.
        steps: refinement steps; trains ``steps x batch_size`` windows. Default (with no
            ``token_budget``): 100 steps.
        token_budget: how much to train, in training tokens read: ``token_budget // window``
            windows, all read by the least-squares start, and ``windows // batch_size``
            refinement steps over them; any rounding is printed and recorded in
            ``lens.config["training"]["notes"]``.
        batch_size: windows per optimizer step (over all processes together).
        grad_accum: split each step into this many micro-batches (memory, not maths).
        window: tokens per window (no BOS is added).
        lr: learning rate (default for Adam: 1e-4 after the least-squares start or a warm start,
            1e-3 from the identity; 1.0 for SGD).
        schedule: the learning rate's decay.
        warmup_steps: warm-up steps.
        optimizer: 'adam' or 'sgd' (Nesterov momentum 0.9, like tuned-lens).
        weight_decay: decay of the translators towards the identity.
        seed: every random choice (split, shuffle, pair sampling) derives from it.
        val_fraction: the share of windows held out for validation (never trained on, not part
            of the budget); their token count is printed and recorded.
        max_val_tokens: at most this many validation tokens.
        init: 'lstsq' (closed-form least squares), 'identity', or a TunedLens to continue.
        init_tokens: tokens for the least-squares start (default: all the training windows; part
            of the budget, never more than it).
        ridge: relative ridge strength of the least-squares fit (towards the identity), or 'auto':
            chosen per site on the held-out sets (the validation windows, and ``val_data``): the two
            strengths of ``RIDGE_GRID`` with the lowest squared error, then the lower held-out KL.
        shrink: after the refinement each translator becomes ``start + shrink * (refined - start)``;
            'auto' chooses it per site from (0, 0.5, 1) by the held-out KL(final || lens); 1 keeps
            the refined translators as they are.
        translator: 'affine' (a full matrix and a bias per site), 'bias' (the bias alone: the
            logit lens shifted) or 'lowrank' (a matrix of rank ``rank`` and a bias), the
            tuned-lens paper's ablations; a low-rank matrix is stored full, in the same file format.
        rank: the rank of ``translator='lowrank'``.
        val_data: held-out text from other domains or languages (any form ``data`` takes), never
            trained on, used with the validation windows to choose ``ridge`` and ``shrink``.
        select_tokens: tokens of each held-out set used for those choices.
        sites_per_token: decode each position at this many random sites per step (an unbiased
            estimate of the full objective); None for every site.
        chunk_rows: rows per ``[rows, vocab]`` work buffer.
        shuffle_buffer: windows in the shuffle buffer.
        checkpoint_dir: folder for atomic checkpoints.
        checkpoint_every: a checkpoint every N steps.
        resume: continue the run saved in ``checkpoint_dir`` (same plan and data required).
        progress: progress bars and the plan of the run on stderr.
        callback: ``callback(step, info)`` after every optimizer step.
        distributed: use torch.distributed (default: when launched by torchrun).
        corpus: a description of the data to record in the lens config.

    When the text holds fewer training windows than asked, a ``UserWarning`` says so and
    the refinement passes over the text more than once (the least-squares start never does).
    """
    settings = TrainSettings(
        sites=sites, include_mid=include_mid, steps=steps, token_budget=token_budget, batch_size=batch_size,
        grad_accum=grad_accum, window=window, lr=lr, schedule=schedule, warmup_steps=warmup_steps,
        optimizer=optimizer, weight_decay=weight_decay, seed=seed, val_fraction=val_fraction,
        max_val_tokens=max_val_tokens, init=init, init_tokens=init_tokens, ridge=ridge, shrink=shrink,
        translator=translator, rank=rank, val_data=val_data, select_tokens=select_tokens, sites_per_token=sites_per_token, chunk_rows=chunk_rows, shuffle_buffer=shuffle_buffer,
        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume, progress=progress,
        callback=callback, distributed=distributed, corpus=corpus,
    )
    return train_with_settings(model, data, settings)


def train_with_settings(model: ModelLike, data: Optional[DataLike], settings: TrainSettings) -> TunedLens:
    """`train_tuned_lens` with its options as one `TrainSettings` (``data=None``: the default mix)."""
    if data is None:
        from ..data import default_training_texts

        data, described = default_training_texts(progress=settings.progress)
        if settings.corpus is None:
            settings = dataclasses.replace(settings, corpus=described)
    adapter = adapt(model)
    dist = Dist(settings.distributed)
    try:
        run = _prepare(adapter, data, settings, dist)
        if run.start_step == 0 and not run.resumed:
            _initialise(run)
        _refine(run)
        shrink(run)
        return _finish(run)
    finally:
        dist.close()


def _resolve_sites(adapter: ModelAdapter, s: TrainSettings) -> List[Site]:
    final = Site.resid_post(adapter.n_layers - 1)
    if isinstance(s.init, TunedLens):
        s.init.check_model(adapter)
        return list(s.init.lens_sites)
    if s.sites is None:
        return translator_sites(adapter.n_layers, include_mid=s.include_mid)
    return [x for x in parse_sites(s.sites, adapter.n_layers, include_mid=s.include_mid) if x != final]


def make_plan(adapter: ModelAdapter, s: TrainSettings, world: int = 1) -> Tuple[RunPlan, List[str]]:
    """Resolve the settings for this model: sites, steps, windows per phase, learning rate; and rounding notes."""
    adapter.check_window(s.window, what="training")
    sites = _resolve_sites(adapter, s)
    if s.batch_size % (s.grad_accum * world):
        raise InputError(
            "batch_size must split evenly into micro-batches and processes.",
            expected=f"a multiple of grad_accum x processes = {s.grad_accum} x {world}",
            received=f"batch_size={s.batch_size}",
            fix=f"use batch_size={max(1, s.batch_size // (s.grad_accum * world)) * s.grad_accum * world}",
        )
    init_name = "warm_start" if isinstance(s.init, TunedLens) else str(s.init)
    steps, n_train, n_init, notes = budget(s, init_name)
    spt = s.sites_per_token if s.sites_per_token is not None and s.sites_per_token < len(sites) else None
    plan = RunPlan(
        sites=tuple(x.name for x in sites), steps=steps, batch_size=s.batch_size, grad_accum=s.grad_accum,
        window=s.window, lr=float(s.lr if s.lr is not None else default_lr(s.optimizer, init_name)),
        schedule=s.schedule, warmup_steps=s.warmup_steps, optimizer=s.optimizer, weight_decay=float(s.weight_decay),
        seed=s.seed, val_fraction=float(s.val_fraction), max_val_tokens=s.max_val_tokens, init=init_name,  # type: ignore[arg-type]
        init_windows=n_init, train_windows=n_train, ridge=s.ridge if s.ridge == "auto" else float(s.ridge),
        sites_per_token=spt, shuffle_buffer=s.shuffle_buffer, token_budget=s.token_budget,
        shrink=s.shrink if s.shrink == "auto" else float(s.shrink), translator=s.translator, rank=s.rank,
        select_tokens=s.select_tokens,
    )
    return plan, notes


def _prepare(adapter: ModelAdapter, data: DataLike, s: TrainSettings, dist: Dist) -> Run:
    plan, notes = make_plan(adapter, s, dist.world)
    ckpt = Checkpointer(s.checkpoint_dir) if s.checkpoint_dir is not None else None
    if ckpt is not None:
        ckpt.check_target(resume=s.resume)
    stream = WindowStream(
        adapter, data, window=plan.window, seed=plan.seed, val_fraction=plan.val_fraction,
        max_val_tokens=plan.max_val_tokens, shuffle_buffer=plan.shuffle_buffer, train_windows=plan.train_windows,
    )
    tr = Translators(_resolve_sites(adapter, s), adapter.d_model).to(adapter.device)
    opt = make_optimizer(plan.optimizer, [tr.weight, tr.bias], plan.lr, plan.weight_decay)
    run = Run(adapter, data, s, plan, dist, stream, tr, opt, ckpt, notes)
    _announce(run)
    epoch, taken = _restore(run) if ckpt is not None and ckpt.exists() else (0, 0)
    run.batches = Batches(stream, epoch, taken)
    return run


def _announce(run: Run) -> None:
    """Print the plan (text per phase, validation) and warn when the text is shorter than asked."""
    p, w, avail = run.plan, run.plan.window, run.stream.available
    budget_txt = f" (token_budget {p.token_budget})" if p.token_budget is not None else ""
    run.say(f"training text: {p.train_windows} windows x {w} tokens = {p.train_windows * w} tokens{budget_txt}")
    if p.init == "lstsq":
        run.say(f"  least-squares start: {min(p.init_windows, avail) * w} tokens, each read once")
    sites = f"{p.sites_per_token} random sites" if p.sites_per_token else f"all {len(p.sites)} sites"
    run.say(f"  refinement: {p.steps} steps x {p.batch_size} windows = {p.steps * p.tokens_per_step} tokens, "
            f"KL(final || lens) at {sites} per position")
    n_val = run.stream.val.shape[0]
    run.say(f"validation: {n_val} windows = {n_val * w} tokens held out (val_fraction {p.val_fraction}, "
            f"at most {p.max_val_tokens} tokens), never trained on" if p.val_fraction > 0 else "validation: none (val_fraction=0)")
    for note in run.notes:
        run.say(f"note: {note}")
    if 0 < avail < p.train_windows:
        passes = p.steps * p.batch_size / avail
        msg = (f"The training text holds {avail} windows of {w} tokens ({avail * w} tokens) besides the validation "
               f"windows, fewer than the {p.train_windows} windows ({p.train_windows * w} tokens) asked: the "
               f"least-squares start reads each once, the refinement passes over them {passes:.2f} times.")
        run.notes.append(msg)
        run.say(f"note: {msg}")
        warnings.warn(msg, UserWarning, stacklevel=4)


def _restore(run: Run) -> Tuple[int, int]:
    """Load the checkpoint into the run; return the window position (epoch, taken)."""
    ckpt = run.ckpt
    if ckpt is None:  # pragma: no cover - only called with a checkpoint
        return 0, 0
    tensors, state = ckpt.load()
    saved, mine = state.get("plan", {}), run.plan.to_dict()
    diff = sorted(k for k in set(saved) | set(mine) if saved.get(k) != mine.get(k))
    if diff:
        raise InputError(
            "Cannot resume: the settings differ from the checkpointed run.",
            expected=", ".join(f"{k}={saved.get(k)!r}" for k in diff[:6]),
            received=", ".join(f"{k}={mine.get(k)!r}" for k in diff[:6]),
            fix="resume with the original settings, or start a new run in another checkpoint_dir",
        )
    if state.get("data_sha256") != run.stream.sha256:
        raise InputError(
            "Cannot resume: the training data differ from the checkpointed run's.",
            expected=f"windows whose token ids hash to {str(state.get('data_sha256'))[:16]}... (SHA-256, recorded at "
            "every checkpoint)",
            received=f"windows hashing to {run.stream.sha256[:16]}...",
            fix="resume with the same texts (or files, or token windows), the same window and val_fraction, or start a "
            "new run in another checkpoint_dir",
        )
    fp = Fingerprint.from_json(state.get("fingerprint"), what=f"the checkpoint at {ckpt.dir}")
    check_fingerprint(fp, run.adapter.fingerprint, what=f"the checkpoint at {ckpt.dir}")
    run.tr.load_state_tensors({k[len("lens."):]: v for k, v in tensors.items() if k.startswith("lens.")},
                              source=str(ckpt.dir))
    restore_optimizer(run.opt, tensors, state["optimizer"])
    if "start.weight" in tensors:
        run.start = (tensors["start.weight"], tensors["start.bias"])
    run.selection = dict(state.get("selection", {}))
    run.start_step = int(state["step"])
    run.history = list(state.get("history", []))
    run.timing = dict(state.get("timing", run.timing))
    run.resumed = True
    return int(state["epoch"]), int(state["taken"])


def _save_checkpoint(run: Run, step: int) -> None:
    if run.ckpt is None:
        return
    if run.is_main and run.batches is not None:
        opt_tensors, opt_meta = optimizer_tensors(run.opt)
        tensors = {f"lens.{k}": v for k, v in run.tr.state_tensors().items()}
        tensors.update(opt_tensors)
        if run.start is not None:
            tensors.update({"start.weight": run.start[0].cpu().contiguous(), "start.bias": run.start[1].cpu().contiguous()})
        state = {
            "step": step, "epoch": run.batches.epoch, "taken": run.batches.taken, "plan": run.plan.to_dict(),
            "optimizer": opt_meta, "history": run.history, "timing": run.timing,
            "model_name": run.adapter.model_name, "fingerprint": run.adapter.fingerprint.to_json(),
            "data_sha256": run.stream.sha256,
            "selection": run.selection,
        }
        run.ckpt.save(tensors, state)
    run.dist.barrier()


def _initialise(run: Run) -> None:
    """The translators' start: least squares on the training windows, a given lens, or the identity."""
    t0 = time.perf_counter()
    init = run.settings.init
    if isinstance(init, TunedLens):
        with torch.no_grad():
            run.tr.weight.copy_(init.translators.weight.to(run.adapter.device))
            run.tr.bias.copy_(init.translators.bias.to(run.adapter.device))
    elif run.plan.init == "lstsq":
        W, b, n = lstsq_start(run)
        with torch.no_grad():
            run.tr.weight.copy_(W.to(run.adapter.device))
            run.tr.bias.copy_(b.to(run.adapter.device))
        run.timing["init_tokens"] = n * run.plan.window
    constrain(run)
    run.start = (run.tr.weight.detach().cpu().clone(), run.tr.bias.detach().cpu().clone())
    run.timing["init_s"] = time.perf_counter() - t0
    _save_checkpoint(run, 0)


def _refine(run: Run) -> None:
    """The KL refinement steps, with checkpoints and the progress bar."""
    from tqdm.auto import tqdm

    p = run.plan
    bar = tqdm(total=p.steps, initial=run.start_step, desc="tuned lens", unit="step",
               disable=not (run.settings.progress and run.is_main))
    ema: Optional[float] = run.history[-1]["loss"] if run.history else None
    for step in range(run.start_step, p.steps):
        t0 = time.perf_counter()
        lr = lr_at(step, p)
        loss = _step(run, step, lr)
        dt = time.perf_counter() - t0
        run.timing["train_s"] += dt
        run.timing["train_tokens"] += p.tokens_per_step
        ema = loss if ema is None else 0.9 * ema + 0.1 * loss
        run.history.append({"step": step + 1, "loss": loss, "lr": lr, "s": round(dt, 4)})
        bar.set_postfix(loss=f"{ema:.3f}", lr=f"{lr:.2g}", tok_s=f"{p.tokens_per_step / max(dt, 1e-9):.0f}")
        bar.update(1)
        if (step + 1) % run.settings.checkpoint_every == 0 or step + 1 == p.steps:
            _save_checkpoint(run, step + 1)
        if run.settings.callback is not None:
            run.settings.callback(step + 1, {"loss": loss, "lr": lr, "translators": run.tr})
    bar.close()


def _step(run: Run, step: int, lr: float) -> float:
    """One optimizer step over a global batch (micro-batches, processes); returns the mean KL."""
    p, dist, tr = run.plan, run.dist, run.tr
    for group in run.opt.param_groups:
        group["lr"] = lr
    run.opt.zero_grad(set_to_none=True)
    micro_global = p.batch_size // p.grad_accum
    n_sites = len(p.sites)
    n_pairs = micro_global * p.window * (p.sites_per_token or n_sites)
    parts = torch.zeros(2, dtype=torch.float64)
    batches = run.batches
    if batches is None:  # pragma: no cover - set by _prepare
        raise RuntimeError("no batches")
    for micro in range(p.grad_accum):
        toks = batches.take(micro_global)
        mask = None
        if p.sites_per_token is not None:
            full = pair_mask(step, micro, p.seed, micro_global * p.window, n_sites, p.sites_per_token)
            mask = full.view(n_sites, micro_global, p.window)[:, dist.rank :: dist.world].reshape(n_sites, -1)
        streams = capture(run.adapter, toks[dist.rank :: dist.world], tr.sites)
        kl, cnt = micro_batch_kl(run.adapter, tr, streams, mask=mask, weight=1.0 / (n_pairs * p.grad_accum),
                                 chunk_rows=run.settings.chunk_rows, want_grad=True)
        parts[0] += kl.sum()
        parts[1] += cnt.sum()
    if dist.on:
        flat = torch.cat([tr.weight.grad.reshape(-1), tr.bias.grad.reshape(-1)])
        dist.all_sum(flat)
        nw = tr.weight.numel()
        tr.weight.grad.copy_(flat[:nw].view_as(tr.weight))
        tr.bias.grad.copy_(flat[nw:].view_as(tr.bias))
        dist.all_sum(parts)
    loss = float(parts[0] / parts[1])
    _check_finite(run, step, lr, loss, grads=True)
    run.opt.step()
    if run.plan.translator != "affine":
        constrain(run)
    _check_finite(run, step, lr, loss, grads=False)
    return loss


def _check_finite(run: Run, step: int, lr: float, loss: float, *, grads: bool) -> None:
    every = run.settings.checkpoint_every
    last = f"step {(step // every) * every} in {run.ckpt.dir}" if run.ckpt else "none (no checkpoint_dir)"
    if grads and (not math.isfinite(loss) or not bool(torch.isfinite(run.tr.weight.grad).all())):
        raise NonFiniteError(
            "The training loss became NaN or infinite; training stopped.",
            expected="a finite KL loss",
            received=f"loss {loss} at step {step}",
            fix=(f"lower lr (now {lr:g}) or use init='lstsq'; check the model for NaN activations. "
                 f"The last good checkpoint is kept: {last}"),
        )
    if not grads and not bool(torch.isfinite(run.tr.weight).all()):
        raise NonFiniteError(
            "The translator weights became non-finite; training stopped.",
            expected="finite weights",
            received=f"non-finite weights after step {step}",
            fix=f"lower lr; the last good checkpoint is kept: {last}",
        )


def _finish(run: Run) -> TunedLens:
    """Validate, build the config (plan, data, metrics, loss curve) and return the lens."""
    p, tr = run.plan, run.tr
    metrics: Dict[str, Any] = {}
    n_val = int(run.stream.val.shape[0])
    if n_val > 0:
        val = validation_kl(run.adapter, tr, run.stream.val, batch_size=max(1, p.batch_size // p.grad_accum),
                            chunk_rows=run.settings.chunk_rows, dist=run.dist)
        metrics["val_kl_per_site"] = {s.name: v for s, v in zip(tr.sites, val)}
        metrics["val_kl_mean"] = sum(val) / len(val)
    metrics["val_tokens"] = n_val * p.window
    if run.history:
        tail = run.history[-min(10, len(run.history)) :]
        metrics["train_loss_last"] = sum(h["loss"] for h in tail) / len(tail)
    t = run.timing
    metrics.update(train_tokens=int(t["train_tokens"]), init_tokens=int(t["init_tokens"]),
                   train_s=round(t["train_s"], 3), init_s=round(t["init_s"], 3))
    if t["train_s"] > 0:
        metrics["train_tokens_per_s"] = round(t["train_tokens"] / t["train_s"], 2)
    config = lens_config(run.adapter)
    config["training"] = dict(
        p.to_dict(), processes=run.dist.world, resumed=run.resumed, data_windows=run.stream.available,
        text_tokens=min(p.train_windows, run.stream.available) * p.window, val_windows=n_val,
        val_tokens=n_val * p.window, notes=list(run.notes), selection=run.selection,
    )
    config["corpus"] = run.settings.corpus if run.settings.corpus is not None else describe_data(run.data)
    config["metrics"] = metrics
    config["loss_curve"] = [[h["step"], round(h["loss"], 5)] for h in run.history]
    lens = TunedLens(tr.cpu() if run.adapter.device.type != "cpu" else tr, config=config)
    if "val_kl_mean" in metrics:
        run.say(f"validation KL(final || tuned lens), mean over sites: {metrics['val_kl_mean']:.4f} nats "
                f"on {metrics['val_tokens']} held-out tokens")
    return lens


__all__ = ["make_plan", "train_tuned_lens", "train_with_settings"]
