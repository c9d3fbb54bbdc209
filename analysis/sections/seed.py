"""The seed's own sections (docs/seed.md §3–5): its computational graph and the post's worked
update, "too small takes very long", the ball on the curve, and "when the gradient is small
enough, we call it the minimum"."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bpresearch import keys as R

from .. import load
from .. import measures as M
from ..figures import seed as FS
from ..figures.style import NotApplicable
from ..groups import Group
from ..prose import findings_seed_graph
from ..prose_seed import (
    findings_ball,
    findings_grad_tol,
    findings_small_vs_best,
    worked_update,
)
from ..trajectories import grad_tol_table, param_names, paths, pick_runs
from .context import Context, of, sfx

POST_LR, POST_STEPS = 0.1, 6   # the post's learning rate, and how many of its updates the report follows


# ---------------------------------------------------------------- the seed's graph
def graph(ctx: Context):
    """docs/seed.md §4–5: the graph with values and gradients, the post's update, which η converge."""
    ctx.rep.h2("The seed's computational graph")
    ctx.rep.ul(ctx.seed_findings)
    target = ctx.targets[0] if ctx.targets else 0.0
    for g in ctx.groups:
        v = ctx.verdicts.get(g.key)
        gd_cell = g.cell[g.cell["optimizer"] != "random_search"]
        best0 = M.best_learning_rate(gd_cell, ctx.targets[0]).iloc[0] if ctx.targets and not gd_cell.empty else None
        ex, why = _seed_example(g.runs, ctx.run_side.seed_example)
        post = None
        if ex:
            at = v[np.isclose(v["learning_rate"], ex["lr"])] if v is not None else pd.DataFrame()
            post = worked_update(ex, at["verdict"].iloc[0] if not at.empty else None, best0, target)
            ctx.seed_findings.append(g.prefix(post["sentence"]))

        def update(ex=ex, post=post, best0=best0, why=why):
            if not ex:
                raise NotApplicable(why)
            return FS.seed_graph_update(ex, post, best0, target)

        ctx.rep.figure(f"seed_graph{sfx(g)}", "The graph f = (x+y)·z: values (forward) and gradients (backward), "
                       "and the post's one-step update with η = 0.1" + of(g), update)
        if v is not None:
            lines = [g.prefix(s) for s in findings_seed_graph(v, g.curves, ctx.targets[0], g.budget)]
            ctx.seed_findings.extend(lines)
            ctx.headlines.extend(s for s in lines if "converged (loss" in s or "The post's" in s)
            ctx.rep.figure(f"seed_graph_curves{sfx(g)}", "Which learning rates η converge?" + of(g),
                           lambda v=v, g=g: FS.seed_graph_curves(g.curves, v, ctx.targets[0]))
            ctx.headline_figure = ctx.headline_figure or f"seed_graph_curves{sfx(g)}"


def _seed_example(runs: pd.DataFrame, seed_example) -> tuple[dict | None, str]:
    """The post's worked example from the runs' start point and target, or None and why not."""
    if seed_example is None:
        return None, "the seed's worked example is computed by the run side, and this report was built without it"
    try:
        x, y, z = json.loads(runs["params.model.start"].iloc[0])
        target = float(runs["params.data.target"].iloc[0])
    except (KeyError, ValueError, TypeError):
        return None, "the runs lack the model.start / data.target params"
    return seed_example(x=x, y=y, z=z, target=target, lr=POST_LR, steps=POST_STEPS), ""


# ---------------------------------------------------------------- the seed's rules, per group
def rules(ctx: Context):
    """Per group: too small takes very long, the ball on the curve, a small enough gradient."""
    for g in ctx.groups:
        small = ctx.seed_findings if ctx.seed_graph else []  # the seed graph's list: its findings go there
        if ctx.targets and ctx.seed_model and g.gd:  # docs/seed.md §3: too small is slow
            small += [g.prefix(s) for s in findings_small_vs_best(g.cell, g.runs, ctx.targets[0], g.budget, g.full)]
        found: list[str] = []
        ball(ctx, g, found)
        grad_tol(ctx, g, found)
        if not ctx.seed_graph and (small or found):
            ctx.rep.ul(small + [g.prefix(s) for s in found])
        elif found:
            ctx.rep.ul([g.prefix(s) for s in found])


def ball(ctx: Context, g: Group, findings: list):
    """docs/seed.md §3, the ball on the curve: iterates from the logged param/<name> histories on J(w)."""
    names = param_names(g.runs)
    if not names:
        return
    rep = ctx.rep
    rep.h2("The ball on the curve" + of(g))
    logged = ", ".join(R.param_metric(n) for n in names)
    if len(names) > 2:
        rep.p(f"Each parameter's trajectory is logged as a metric history ({logged}); with {len(names)} parameters "
              "J cannot be drawn as a curve or contours: compare the histories in the MLflow UI.")
        return
    rep.p("Gradient descent as a ball rolling down the loss: w ← w − η·∇J(w). The dots are the iterates the sweep "
          f"logged ({logged}), drawn on J evaluated over a grid from the runs' resolved config; the learning rates "
          "are chosen from this sweep's results: the slowest that reached the target, the fastest, and the "
          "smallest that diverged (or else oscillated).")
    v = ctx.verdicts.get(g.key)
    picks = pick_runs(v, ctx.targets[0]) if v is not None else []
    findings += findings_ball(picks, names)
    track = paths(g.curves, names)

    def draw():
        if v is None:
            raise NotApplicable("needs a loss target and the full_train_loss curves to choose the learning rates")
        cfg = load.run_config(ctx.data.uri, picks[0].run_id) if picks else None
        if cfg is None:
            raise NotApplicable("no run's config.json artifact was found to evaluate J(w)")
        J = _landscape(cfg, ctx.run_side.loss_surface)
        return FS.ball_on_curve(track, picks, J, names[0]) if len(names) == 1 else \
            FS.contour_paths(track, picks, J, names)

    rep.figure(f"ball_on_curve{sfx(g)}", "Gradient descent's iterates on J(w): too small, well chosen, too large"
               + of(g), draw)


def _landscape(cfg: dict, loss_surface):
    """J(w) from a run's logged config, through the run side; ``NotApplicable`` where it cannot be had."""
    if cfg.get("data", {}).get("source") == "file":
        raise NotApplicable("J(w) needs the training data, and a user's data file is not kept in the store")
    if loss_surface is None:
        raise NotApplicable("J(w) is evaluated by the run side, and this report was built without it")
    return loss_surface(cfg)


def grad_tol(ctx: Context, g: Group, findings: list):
    """docs/seed.md §3, "when the gradient is small enough, we call it the minimum": train.grad_tol."""
    runs, targets = g.runs, ctx.targets
    col = "params.train.grad_tol"
    if col not in runs or runs[col].isna().all() or not targets:
        return
    tol = float(pd.to_numeric(runs[col], errors="coerce").dropna().iloc[0])
    gt = grad_tol_table(runs, g.steps.table, targets[0])
    findings += findings_grad_tol(gt, tol, targets[0], g.budget)
    ctx.rep.h2("Gradient small enough")
    ctx.rep.p(f"The step at which the full-batch gradient norm |∇J| first fell below train.grad_tol = {tol:g}, "
              f"against the step at which the loss first fell below {targets[0]:g}; both censored (not reached) when "
              "they did not happen within the budget or before a divergence. The runs kept their full step budget.")
    ctx.rep.table(f"Steps to |∇J| < {tol:g} and to loss < {targets[0]:g}", gt.drop(columns=["run_id"]).rename(columns={
        "learning_rate": "η", "batch_size": "batch size", "steps_to_target": f"steps to loss {targets[0]:g}",
        "steps_to_grad_tol": f"steps to |∇J| < {tol:g}"}).fillna(np.inf))
