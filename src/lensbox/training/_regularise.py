"""The translators' start and their regularisation: the least-squares start (ridge fixed or chosen
on held-out text), the translator family (affine, bias-only, low-rank) and the shrinkage of the
refined translators towards the start. The choices themselves are in `._select`.
"""

import itertools
from typing import List, Tuple

import torch

from .._errors import InputError
from ._lstsq import LstsqStats, low_rank, scale_invariant_norm
from ._objective import capture
from ._run import Run
from ._select import (
    FALLBACK_RIDGE, RIDGE_FINALISTS, RIDGE_KL_TOKENS, HeldOut, choose_ridge, choose_shrink, describe_sets,
    held_out_sets, held_out_stats, ridge_finalists_by_kl,
)
from ._stream import raw_windows


def lstsq_start(run: Run) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """Least squares over the first ``init_windows`` training windows, each read once (split over processes)."""
    from tqdm.auto import tqdm

    a, p, dist = run.adapter, run.plan, run.dist
    sites = run.tr.sites
    stats = LstsqStats(len(sites), a.d_model, scale_invariant_norm(a))
    n_init = min(p.init_windows, run.stream.available)
    per = max(1, p.batch_size // p.grad_accum) * dist.world
    bar = tqdm(total=n_init, desc="lstsq start", unit="win", disable=not (run.settings.progress and run.is_main), leave=False)
    it = run.stream.train_windows()
    done = 0
    while done < n_init:
        m = min(per, n_init - done)
        toks = torch.stack([next(it) for _ in range(m)])[dist.rank :: dist.world]
        if toks.shape[0]:
            streams = capture(a, toks, sites)
            F = streams[run.final].reshape(-1, a.d_model)
            stats.add(torch.stack([streams[s].reshape(F.shape[0], -1) for s in sites]), F)
        done += m
        bar.update(m)
    bar.close()
    dist.all_sum(stats.xtx)
    dist.all_sum(stats.xty)
    if p.ridge != "auto":
        W, b = stats.solve(float(p.ridge), p.translator, p.rank)
        return W, b, n_init
    held = held_out(run)
    if not held:
        run.selection["ridge_rule"] = f"fixed {FALLBACK_RIDGE}: nothing held out to choose it (val_fraction 0, no val_data)"
        W, b = stats.solve(FALLBACK_RIDGE, p.translator, p.rank)
        run.selection["ridge"] = {s.name: FALLBACK_RIDGE for s in sites}
        return W, b, n_init
    held_stats = held_out_stats(held, sites, run.final, a.d_model, stats.scale_invariant)
    W, b, chosen, errors = choose_ridge(stats, held_stats, p.translator, p.rank)
    run.selection["ridge_held_out_mse"] = errors
    W, b, chosen, kls = ridge_finalists_by_kl(a, stats, sites, held, errors, p.translator, p.rank,
                                              chunk_rows=run.settings.chunk_rows)
    run.selection["ridge"] = {s.name: lam for s, lam in zip(sites, chosen)}
    run.selection["ridge_rule"] = (f"per site, of the {RIDGE_FINALISTS} strengths with the lowest held-out squared error, "
                                   f"the lowest held-out KL(final || lens) on at most {RIDGE_KL_TOKENS} tokens per set "
                                   "(sets weighted equally)")
    run.selection["ridge_held_out_kl"] = kls
    run.say("ridge chosen per site on held-out text: " + ", ".join(
        f"{lam:g} x{chosen.count(lam)}" for lam in sorted(set(chosen))))
    return W, b, n_init


def held_out(run: Run) -> List[HeldOut]:
    """The held-out sets the regularisation is chosen on (captured once): validation windows and val_data."""
    if run.held is not None:
        return run.held
    p, a = run.plan, run.adapter
    n_sel = max(1, p.select_tokens // p.window)
    sets = {"validation windows": run.stream.val[:n_sel]}
    if run.settings.val_data is not None:
        rows = [torch.tensor(w, dtype=torch.long) for w in itertools.islice(raw_windows(a, run.settings.val_data, p.window), n_sel)]
        if not rows:
            raise InputError("val_data is shorter than one window.", expected=f"at least {p.window} tokens",
                             received="fewer", fix="pass more held-out text, or a smaller window")
        sets["val_data"] = torch.stack(rows)
    run.held = held_out_sets(a, run.tr.sites, sets, batch_size=max(1, p.batch_size // p.grad_accum))
    run.selection["held_out"] = describe_sets(run.held)
    return run.held


def constrain(run: Run) -> None:
    """Keep the translators in their family: no matrix for 'bias', rank <= rank for 'lowrank'."""
    kind = run.plan.translator
    with torch.no_grad():
        if kind == "bias":
            run.tr.weight.zero_()
        elif kind == "lowrank":
            run.tr.weight.copy_(low_rank(run.tr.weight.detach().cpu(), run.plan.rank).to(run.tr.weight.device))


def shrink(run: Run) -> None:
    """Pull the refined translators towards the start: a fixed factor, or chosen per site on held-out text."""
    p = run.plan
    if run.start is None or p.steps == 0 or p.shrink == 1.0:
        return
    if p.shrink != "auto":
        with torch.no_grad():
            W0, b0 = (t.to(run.tr.weight.device) for t in run.start)
            run.tr.weight.copy_(W0 + float(p.shrink) * (run.tr.weight - W0))
            run.tr.bias.copy_(b0 + float(p.shrink) * (run.tr.bias - b0))
        return
    held = held_out(run)
    if not held:
        run.selection["shrink_rule"] = "none: nothing held out to choose it (val_fraction 0, no val_data)"
        return
    alphas, table = choose_shrink(run.adapter, run.tr, run.start, held, chunk_rows=run.settings.chunk_rows)
    run.selection["shrink"] = {s.name: a for s, a in zip(run.tr.sites, alphas)}
    run.selection["shrink_rule"] = "per site, lowest held-out KL(final || lens) (sets weighted equally)"
    run.selection["shrink_held_out_kl"] = table
    run.say("shrinkage towards the start chosen per site on held-out text: " + ", ".join(
        f"{a:g} x{alphas.count(a)}" for a in sorted(set(alphas))))


__all__ = ["constrain", "held_out", "lstsq_start", "shrink"]
