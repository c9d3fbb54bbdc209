"""Steps to each loss target: the refined optimum, scaling with the batch size, the best
learning rate per cell, and every run's outcome.

One section per target; its parts come from ``PARTS``, keyed by what the experiment holds
(a refining sweep, several batch sizes, several groups), in the order they appear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd

from bpresearch import keys as R

from .. import measures as M
from .. import refinement
from ..figures import scaling as FG
from ..groups import Group, combined
from ..pages import GROUPS_COMPARED
from ..prose import (
    findings_best_short,
    findings_lost,
    findings_not_reached,
    findings_resolution,
    findings_untuned,
    fmt_steps,
)
from ..prose_intervals import (
    findings_best_intervals,
    findings_compare,
    findings_scaling_intervals,
    headline_fastest,
    ranked,
)
from ..prose_outcomes import findings_outcomes
from ..tables import best_table, outcome_table, scaling_table, with_facets
from .context import Context, cell_words, group_of


@dataclass
class Target:
    """One target's section while its parts are built."""
    t: float
    first: bool                  # the first (loosest) target: the one the headlines are about
    found: list[str]             # the section's findings, shown at its top
    cell: pd.DataFrame           # every gradient group's cells, one after the other
    best: pd.DataFrame           # every gradient group's best learning rate per batch size
    brackets: dict = field(default_factory=dict)  # group key -> refinement.bracket (a refined sweep)


class Part(NamedTuple):
    name: str
    applies: Callable[[Context, Target], bool]
    build: Callable[[Context, Target], None]


def per_target(ctx: Context):
    """One section per loss target, each made of the ``PARTS`` that apply."""
    for t in ctx.targets:
        ctx.rep.h2(f"Steps to loss {t:g}")
        found: list[str] = [f"Loss {t:g} was not a target when these runs trained: steps to it are read from "
                             "the logged full_train_loss curve, each an interval between two evaluations."
                             ] if any(t in g.steps.curve_targets for g in ctx.groups if g.steps) else []
        ctx.rep.ul(found)
        tg = Target(t, t == ctx.targets[0], found, combined(ctx.gd_groups, lambda g: g.cell, ctx.facets),
                    combined(ctx.gd_groups, lambda g: g.bests.get(t), ctx.facets))
        for part in PARTS:
            if part.applies(ctx, tg):
                part.build(ctx, tg)


# ---------------------------------------------------------------- the parts
def _refined_here(ctx: Context, tg: Target) -> bool:
    """A refining sweep ([sweep] refine) refined the learning rate for this target."""
    refined = refinement.settings(ctx.variant.resolved)
    return bool(refined) and any(abs(tg.t - x) <= 1e-9 * abs(x) for x in refined["targets"])


def refined(ctx: Context, tg: Target):
    """Per group: the refined optimum of each batch size, its bracket and what it cost."""
    settings = refinement.settings(ctx.variant.resolved)  # [sweep] refine of the latest sweep
    res = settings["resolution"]
    for g in ctx.gd_groups:
        gd_g = g.runs[g.runs["optimizer"] != "random_search"]
        tg.brackets[g.key] = br = refinement.bracket(g.cell[g.cell["optimizer"] != "random_search"], g.bests[tg.t],
                                                     tg.t, res, gd_g)
        if g.label:
            ctx.rep.p(g.label)
        ctx.rep.table(f"Refined optimum per batch size and its bracket (the neighbours' median steps to loss "
                      f"{tg.t:g}); configurations run against a uniform grid at spacing ×{res:.3g} over the same "
                      f"range", refinement.table(br, ctx.full, fmt_steps))
        tg.found += [g.prefix(x) for x in refinement.findings(br, tg.t, res, ctx.full)]


def scaling(ctx: Context, tg: Target):
    """Steps and examples against batch size, and steps over the learning rate × batch size grid."""
    t, groups = tg.t, ctx.gd_groups

    def scaling_of(g: Group) -> pd.DataFrame:
        curve = M.scaling_curve(g.bests[t])
        if g.key in tg.brackets:  # the figure marks batch sizes whose optimum is not resolved
            curve = curve.merge(tg.brackets[g.key][["optimizer", "batch_size", "resolved"]],
                                on=["optimizer", "batch_size"])
        return curve

    curve = combined(groups, scaling_of, ctx.facets)
    marks = _marks(groups[0].intervals.get(t)) if len(groups) == 1 else []
    every = max(g.eval_every for g in groups) if groups else 1
    name = f"scaling_{R.target_key(t)}"
    ctx.rep.figure(name, f"Steps and examples to loss {t:g} against batch size",
                   lambda: FG.scaling(curve, t, ctx.full, every, marks))
    if tg.first and not ctx.seed_graph:
        ctx.headline_figure = ctx.headline_figure or name
    lr_mark = groups[0].pred.lr_mark if len(groups) == 1 else None
    ctx.rep.figure(f"heatmap_{R.target_key(t)}", f"Steps to loss {t:g} over learning rate × batch size",
                   lambda: FG.steps_heatmap(tg.cell, t, ctx.full, lr_mark))


def _marks(si) -> list[tuple[str, float]]:
    """Vertical lines for the scaling plot: the fitted B_crit (with its interval in the label)."""
    if si is None or not si.fits:
        return []
    fit = next(iter(si.fits.values()))
    b = fit["b_crit"]
    if not np.isfinite(b.point):
        return []
    label = "B_crit (S–E fit" + (f", {b.ends()}: {b.label()})" if b.ok else ")")
    return [(label, b.point)]


def compare(ctx: Context, tg: Target):
    """The groups side by side at each batch size: a table (batch size × group), the first finding a headline."""
    if tg.first:
        ctx.headlines.extend(findings_compare(tg.best, tg.t, ctx.full)[:1])
    ctx.rep.table(f"Groups compared: median steps to loss {tg.t:g} (best η) per batch size",
                  compare_table(tg.best, ctx.full), f"{GROUPS_COMPARED}{R.target_key(tg.t)}")


def compare_table(best: pd.DataFrame, full: int | None) -> pd.DataFrame:
    """One row per group, one column per batch size: "steps (η …)", "not reached", or "not run"."""
    if best.empty:
        return pd.DataFrame()

    def text(r) -> str:
        return f"{fmt_steps(r['steps'])} (η {r['learning_rate']:.3g})" if r["reached"] else "not reached"

    sizes = sorted(int(b) for b in best["batch_size"].unique())
    col = lambda b: f"batch size {'full (%d)' % b if b == full else b}"  # noqa: E731
    rows = []
    for label, g in best.groupby("group", sort=False):
        by = {int(r["batch_size"]): text(r) for _, r in g.iterrows()}
        rows.append({"group": label, **{col(b): by.get(b, "not run") for b in sizes}})
    verdict = {"group": "fewest steps (beyond the seed spread)"}
    for b in sizes:
        ok = best[(best["batch_size"] == b) & best["reached"]].to_dict("records")
        tied = ranked(ok)[0] if ok else []
        verdict[col(b)] = "—" if not ok else tied[0]["group"] if len(tied) == 1 else f"tie ({len(tied)} groups)"
    return pd.DataFrame(rows + [verdict])


def findings(ctx: Context, tg: Target):
    """The fastest cell, then per group: the best learning rate, scaling, resolution, what was not reached."""
    t, first = tg.t, tg.first
    if first and not ctx.seed_graph and ctx.gd_groups:
        ctx.headlines.extend(headline_fastest(tg.best, t, ctx.full))
    for g in ctx.gd_groups:
        b = g.bests[t]
        found: list[str] = []
        if not ctx.seed_graph:  # the seed graph's own findings already say which η converged
            found += (findings_best_intervals(b, t, g.budget, g.full, g.distinct, g.cell) if first
                      else [findings_best_short(b, t, g.full)])
            if first and len(b) > 1:
                found += findings_untuned(b, t, g.full)
        if t in g.intervals and t in (ctx.targets[0], ctx.targets[-1]):  # the loosest and the tightest target
            sc = findings_scaling_intervals(b, g.intervals[t].per_group, t, g.full, g.resolution)
            found += sc
            if first and len(ctx.gd_groups) <= 2:
                ctx.headlines.extend(g.prefix(s) for s in sc[:1])
        if not ctx.seed_graph:
            found += findings_resolution(b, t, g.eval_every, g.full)
            if first:
                found += findings_not_reached(g.cell, t, g.budget, g.full)
                found += findings_lost(g.steps.table, t, g.full)
            found += findings_outcomes(g.curves, g.steps.table, b, t, g.full, first)
        tg.found += [g.prefix(s) for s in found]


def tables(ctx: Context, tg: Target):
    """The best learning rate per cell, scaling with its intervals, and the outcome of every run."""
    t, full, facets, groups = tg.t, ctx.full, ctx.facets, ctx.gd_groups
    ctx.rep.table(f"Best learning rate per {cell_words(facets)} (fewest median steps to loss {t:g}; ties: the middle "
                  f"of the flat bottom; steps: the interval between the last evaluation above the target and the first "
                  f"below)", with_facets(tg.best, facets,
                                         lambda b: best_table(b, full, group_of(groups, b).distinct)))
    with_iv = [g for g in groups if t in g.intervals]
    scal = combined(with_iv, lambda g: g.bests[t], facets)
    if not scal.empty:
        ctx.rep.table(f"Scaling to loss {t:g}: intervals over seeds, each with the coverage it reaches (steps: order "
                      f"statistics of the best cell's seeds; efficiency: both cells' intervals)",
                      with_facets(scal, facets, lambda b: scaling_table(b, group_of(groups, b).intervals[t]
                                                                        .per_group, full)))
    every_cell = combined(ctx.groups, lambda g: g.cell, facets)  # random search too: every run is counted
    ctx.rep.table(f"Outcomes of all runs for loss {t:g}", with_facets(every_cell, facets,
                                                                      lambda c: outcome_table(c, t, full),
                                                                      keep_optimizer=False))


PARTS: tuple[Part, ...] = (
    Part("refinement", _refined_here, refined),
    Part("scaling", lambda ctx, tg: ctx.n_bs >= 2, scaling),
    Part("groups compared", lambda ctx, tg: len(ctx.gd_groups) > 1, compare),
    Part("findings", lambda ctx, tg: True, findings),
    Part("tables", lambda ctx, tg: True, tables),
)
