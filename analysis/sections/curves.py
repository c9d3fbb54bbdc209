"""Sections drawn from the curves over training: the loss per learning rate and batch size,
and batch against stochastic training (the seed's lost figure) with both kinds of noise."""

from __future__ import annotations

from bpresearch import keys as R

from .. import measures as M
from ..figures import curves as FC
from ..prose import bs_text
from ..prose_predicted import findings_two_noises
from .context import Context, of, sfx


def loss_curves(ctx: Context):
    """How the full training loss falls, one figure per gradient group."""
    ctx.rep.h2("Loss curves")
    target = ctx.targets[0] if ctx.targets else None
    for g in ctx.gd_groups:
        ctx.rep.figure(f"loss_curves{sfx(g)}", "How does the full training loss fall, per learning rate and batch "
                       "size?" + of(g), lambda g=g: FC.loss_curves(g.curves, g.runs, R.FULL_TRAIN_LOSS, target,
                                                                   best_per_batch_size(g)))


def best_per_batch_size(g) -> dict:
    """Batch size -> (best η for the first target, the most median steps of a best cell over the targets)."""
    out = {}
    for i, t in enumerate(g.targets):
        b = g.bests.get(t)
        if b is None:
            continue
        for r in b[b["reached"]].itertuples():
            lr, steps = out.get(int(r.batch_size), (None, 0.0))
            out[int(r.batch_size)] = (r.learning_rate if i == 0 else lr, max(steps, float(r.steps)))
    return {bs: v for bs, v in out.items() if v[0] is not None}


def batch_vs_stochastic(ctx: Context):
    """Batch size 1 against the full batch: the minibatch-loss noise and the trajectory noise, per group."""
    full = ctx.full
    ctx.rep.h2("Batch versus stochastic training")
    for g in ctx.gd_groups:
        if g.label:
            ctx.rep.h3(g.label)
        noise = M.curve_noise(g.curves)
        stable = g.runs[~g.runs["diverged"]]
        nb = M.noise_by_batch_size(noise, stable)
        nt = M.noise_by_batch_size(M.trajectory_noise(g.curves), stable)
        ctx.rep.ul([g.prefix(s) for s in findings_two_noises(nb, nt, full, g.eval_every)])
        ctx.rep.figure(f"batch_vs_stochastic{sfx(g)}", "Batch (red) against stochastic (blue) training" + of(g),
                       lambda g=g, noise=noise: FC.batch_vs_stochastic(g.curves, g.runs, noise))
        for what, frame in (("Minibatch-loss noise: std of the step-to-step change of the log loss on the batch "
                             "the optimizer sees (median over seeds)", nb),
                            (f"Trajectory noise: std of the change of the log full training loss between "
                             f"evaluations every {g.eval_every} steps (median over seeds)", nt)):
            table = frame.pivot(index="learning_rate", columns="batch_size", values="noise").round(4)
            table = table.astype(object).where(table.notna(), "—")  # a cell not run, or whose every run diverged
            table.columns = [bs_text(int(b), full) for b in table.columns]
            ctx.rep.table(what + " (—: not run, or every run diverged)", table.reset_index().rename(columns={"learning_rate": "learning rate η"}))
