"""The findings in words: one function per kind of finding, from the frames of ``measures``
and the predictions (``boundary``, ``sharpness``, ``noise_scales``) to sentences with their numbers.

Pure: numbers in, strings out. Which findings a report holds, and in which order, is
decided in ``analysis.sections``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bpresearch import keys as R

from . import measures as M


# ---------------------------------------------------------------- number formatting
def fmt_steps(s) -> str:
    """A step or example count, a whole number (a count that is not one, such as a mean, is rounded up)."""
    if s is None or not np.isfinite(s):
        return "not reached"
    return f"{math.ceil(s - 1e-9):,}"


def plural(n: int, word: str) -> str:
    return f"{fmt_steps(n)} {word}" + ("" if n == 1 else "s")


def lr_list(subset, grid) -> str:
    """Learning rates as ranges of the grid: ``0.005–0.06, 0.1``; one value alone stays alone."""
    grid = sorted(grid)
    subset = set(subset)
    parts, run = [], []
    for lr in grid + [None]:
        if lr is not None and lr in subset:
            run.append(lr)
            continue
        if run:
            parts.append(f"{run[0]:.3g}" if len(run) == 1 else
                         f"{run[0]:.3g}, {run[1]:.3g}" if len(run) == 2 else f"{run[0]:.3g}–{run[-1]:.3g}")
        run = []
    return ", ".join(parts)


def bs_text(bs: int, full: int | None) -> str:
    """A batch size in a sentence: ``full batch (256)`` or ``batch size 8``."""
    return f"full batch ({bs})" if full is not None and bs == full else f"batch size {bs}"


def bs_label(bs: int, full: int | None) -> str:
    """A batch size as an axis tick or a legend names it: ``full (256)`` or ``8``."""
    return f"full ({bs})" if full is not None and bs == full else str(bs)


# ---------------------------------------------------------------- comparing facet values; headlines
def _group_name(label: str) -> str:
    return label or "these runs"


def headline_divergence(runs: pd.DataFrame, facets: list[str]) -> list[str]:
    """How many runs diverged, per facet value when there are facets, and from which learning rate."""
    gd = runs[runs["optimizer"] != "random_search"]
    n, d = len(gd), int(gd["diverged"].sum())
    if n == 0:
        return []
    other = len(runs) - n
    rest = f"; {plural(other, 'random-search run')} not counted: {'it has' if other == 1 else 'they have'} no " \
        "learning rate" if other else ""
    if d == 0:
        return [f"No run diverged ({plural(n, 'gradient run' if other else 'run')}, learning rates up to "
                f"{gd['learning_rate'].max():.3g}{rest})."]
    lowest = gd[gd["diverged"]]["learning_rate"].min()
    s = f"{d} of {plural(n, 'gradient run' if other else 'run')} diverged, the first at learning rate {lowest:.3g}"
    if facets:
        parts = []
        for k, g in gd.groupby(facets, sort=True):
            k = k if isinstance(k, tuple) else (k,)
            label = ", ".join(f"{f.split('.')[0] if f.endswith('.kind') else f.split('.')[-1]}="
                              + (f"{v:g}" if isinstance(v, (int, float, np.integer, np.floating)) else str(v))
                              for f, v in zip(facets, k))
            parts.append(f"{label}: {int(g['diverged'].sum())} of {len(g)}")
        s += " (" + "; ".join(parts) + ")"
    return [s + (f" ({rest[2:]})" if rest else "") + "."]


# ---------------------------------------------------------------- findings from numbers
def findings_steps_source(steps: M.StepsToTargets) -> list[str]:
    """Where steps to target came from, when not from the logged summaries, or when those disagree."""
    if steps.from_curves:
        return ["The runs lack the logged steps-to-target summaries; they were computed from the "
                "full_train_loss curves instead."]
    if steps.curve_targets:
        out = [f"Loss {', '.join(f'{t:g}' for t in steps.curve_targets)}: not a target when these runs trained, so "
               "steps to it come from the logged full_train_loss curve: the first crossing lies between two "
               "evaluations (a, b], shown as a–b, not the sweep's in-program count. Nothing was retrained."]
        return out + findings_steps_source(steps._replace(curve_targets=()))
    if steps.disagree:
        return [f"Warning: on {steps.disagree} run×target pairs the logged steps-to-target disagrees "
                "with the logged full_train_loss curve; the logged summaries are used."]
    return []


def findings_best_short(best: pd.DataFrame, target: float, full: int | None) -> str:
    """One sentence for a further target: the best learning rate and steps at every batch size."""
    parts = [f"{'full' if r.batch_size == full else r.batch_size}: "
             + (f"η={r.learning_rate:.3g}, {fmt_steps(r.steps)}" if r.reached else "not reached")
             for r in best.itertuples()]
    return f"To loss {target:g}, best learning rate and median steps per batch size — {'; '.join(parts)}."


def findings_resolution(best: pd.DataFrame, target: float, eval_every: int, full: int | None) -> list[str]:
    """Warn where the best steps-to-target is the first evaluation: the true value may be lower.

    Steps to target are counted at evaluations every ``eval_every`` steps, so a target met at
    the first evaluation is an upper bound, and the scaling curve flattens there by construction.
    """
    if eval_every <= 1:
        return []
    first = best[best["reached"] & (best["steps"] <= eval_every)]
    if first.empty:
        return []
    where = ", ".join(bs_text(int(b), full) for b in first["batch_size"])
    return [f"Resolution limit: at {where} loss {target:g} was already reached at the first evaluation "
            f"(step {eval_every}; the loss is evaluated every {eval_every} steps), so those step counts are upper "
            f"bounds and the scaling curve there is flat by construction; a smaller train.eval_every would "
            f"resolve them."]


def findings_divergence(frac: pd.DataFrame, full: int | None) -> list[str]:
    """Where the grid diverged: the learning rate from which every run diverged, per batch size."""
    gd = frac[frac["optimizer"] != "random_search"]
    if gd["n_diverged"].sum() == 0:
        return [f"No run diverged ({len(gd)} learning rate × batch size cells)."]
    thr = M.divergence_threshold(gd)
    grid = sorted(gd["learning_rate"].unique())
    out = []
    for r in thr.itertuples():
        where = bs_text(r.batch_size, full)
        cell = gd[gd["batch_size"] == r.batch_size]
        if np.isfinite(r.lr_all_diverged):
            above = [lr for lr in grid if lr >= r.lr_all_diverged]
            every = " in every seed" if cell["n"].max() > 1 else ""
            s = (f"At {where} every learning rate ≥ {r.lr_all_diverged:.3g} diverged{every}"
                 if len(above) > 1 else f"At {where} learning rate {r.lr_all_diverged:.3g} diverged{every}")
            partial = cell[(cell["n_diverged"] > 0) & (cell["fraction"] < 1)]
            if not partial.empty:
                s += f"; some seeds diverged also at {lr_list(partial['learning_rate'], grid)}"
            out.append(s + ".")
        elif np.isfinite(r.lr_any_diverged):
            partial = cell[cell["n_diverged"] > 0]
            out.append(f"At {where} some runs diverged at learning rate {lr_list(partial['learning_rate'], grid)} "
                       f"({int(partial['n_diverged'].sum())} of {int(partial['n'].sum())} runs there).")
        else:
            out.append(f"At {where} no run diverged.")
    return out


def findings_not_reached(cell: pd.DataFrame, target: float, budget: int, full: int | None) -> list[str]:
    """Learning rates that neither reached the target nor diverged, per batch size."""
    out = []
    c = cell[(cell["target"] == target) & (cell["optimizer"] != "random_search")]
    grid = sorted(c["learning_rate"].unique())
    for bs, g in c.groupby("batch_size"):
        nr = g[g["status"] == "not reached"]
        if not nr.empty:
            lrs = "learning rate" + ("s" if len(nr) > 1 else "")
            out.append(f"At {bs_text(bs, full)} {lrs} {lr_list(nr['learning_rate'], grid)} did not reach "
                       f"loss {target:g} within {budget:,} steps and did not diverge (median seed).")
    return out


def findings_sensitivity(sens: pd.DataFrame, full: int | None) -> list[str]:
    """Per batch size: the learning rates whose final loss is within 2× of the best."""
    out = []
    s = sens[sens["optimizer"] != "random_search"]
    grid = sorted(s["learning_rate"].unique())
    for bs, g in s.groupby("batch_size"):
        if not np.isfinite(g["loss"]).any():
            out.append(f"At {bs_text(bs, full)} every learning rate diverged (median seed).")
            continue
        near = g[g["relative"] <= 2]
        best = g.loc[g["loss"].idxmin()]
        if best["loss"] < M.MACHINE_PRECISION_LOSS:
            fin = g[np.isfinite(g["loss"])]
            out.append(f"At {bs_text(bs, full)} the lowest final loss was {best['loss']:.3g} "
                       f"(η={best['learning_rate']:.3g}), at machine precision: ratios against it are meaningless, "
                       f"so none is shown; the {len(fin)} learning rates that did not diverge ended at "
                       f"{span(fin['loss'].min(), fin['loss'].max())}.")
            continue
        out.append(f"At {bs_text(bs, full)} the lowest final loss was {best['loss']:.3g} "
                   f"(η={best['learning_rate']:.3g}); {len(near)} of {len(g)} learning rates ended within 2× of it "
                   f"({lr_list(near['learning_rate'], grid)}).")
    return out


def findings_random(bsf: pd.DataFrame, table: pd.DataFrame, target: float) -> list[str]:
    """Random search against gradient descent at the common budget of loss evaluations."""
    out = []
    last = bsf.groupby("run_id")["evaluations"].transform("max") == bsf["evaluations"]
    end = bsf[last]
    n_eval = int(end["evaluations"].min()) if not end.empty else 0
    for (opt, lr), g in end.groupby(["optimizer", "learning_rate"]):
        name = "random search" if opt == "random_search" else f"gradient descent with η={lr:g}"
        t = table[(table["optimizer"] == opt) & (table["learning_rate"] == lr) & (table["target"] == target)]
        k, n = int(t["reached"].sum()), len(t)
        reach = f"reached loss {target:g} in {k} of {n} seeds" + (
            f" (median {fmt_steps(np.quantile(t['steps'].dropna(), 0.5, method='higher'))} evaluations)" if k else "")
        out.append(f"After {n_eval} loss evaluations, {name}: best loss median {g['best'].median():.3g} "
                   f"(seeds: {g['best'].min():.3g}–{g['best'].max():.3g}); {reach}.")
    return out


def findings_seed_graph(v: pd.DataFrame, curves: pd.DataFrame, target: float, budget: int) -> list[str]:
    """Which η converge, which fall too slowly, which oscillate, which diverge; and η = 0.1."""
    grid = sorted(v["learning_rate"])
    out = []
    last = curves[curves["key"] == R.FULL_TRAIN_LOSS].sort_values("step").groupby("run_id")["value"].last()
    conv = v[v["verdict"] == "converged"]
    if not conv.empty:
        fast = conv.loc[conv["steps"].idxmin()]
        slow = conv.loc[conv["steps"].idxmax()]
        out.append(f"η = {lr_list(conv['learning_rate'], grid)} converged (loss < {target:g}); fastest "
                   f"η = {fast['learning_rate']:g} in {fast['steps']:.0f} steps, slowest η = {slow['learning_rate']:g} "
                   f"in {slow['steps']:.0f} steps.")
    for verdict, words in (("slow", f"still falling at step {budget}, converging too slowly to reach {target:g}"),
                           ("oscillates", "kept jumping without converging and without diverging")):
        g = v[v["verdict"] == verdict]
        if not g.empty:
            finals = sorted(x for x in (last.get(r) for r in g["run_id"]) if x is not None)
            end = "" if not finals else f" (final loss {finals[0]:.3g})" if len(finals) == 1 else \
                f" (final loss {finals[0]:.3g}–{finals[-1]:.3g})"
            verb = "was " if verdict == "slow" and len(g) == 1 else "were " if verdict == "slow" else ""
            out.append(f"η = {lr_list(g['learning_rate'], grid)} {verb}{words}{end}.")
    d = v[v["verdict"] == "diverged"]
    if not d.empty:
        at = [str(int(s)) for s in d["diverged_step"]] if "diverged_step" in d else []
        where = "" if not at else f" (at step {at[0]})" if len(at) == 1 else f" (at steps {', '.join(at)})"
        out.append(f"η = {lr_list(d['learning_rate'], grid)} diverged{where}.")
    post = v[np.isclose(v["learning_rate"], 0.1)]
    if not post.empty:
        r = post.iloc[0]
        words = {"converged": f"converges, in {r['steps']:.0f} steps",
                 "slow": "does not converge: it is still falling at the end",
                 "oscillates": "does not converge: the loss keeps jumping",
                 "diverged": "does not converge: it diverges"}[r["verdict"]]
        out.append(f"The post's η = 0.1 {words}.")
    return out


def span(lo: float, hi: float, fmt: str = ".3g") -> str:
    """``lo–hi``, or one number when they agree to the digits shown."""
    a, b = format(lo, fmt), format(hi, fmt)
    return a if a == b else f"{a}–{b}"


# ---------------------------------------------------------------- only as strong as the data
def steps_interval_text(lo: float, hi: float) -> str:
    """``8`` or ``6–10``: the steps-to-target interval, never a false precision."""
    if hi is None or not np.isfinite(hi):
        return "not reached"
    a = int(np.floor(lo if lo is not None and np.isfinite(lo) else hi))
    b = int(np.ceil(hi))
    return f"{b:,}" if a >= b else f"{a:,}–{b:,}"


def findings_lost(table: pd.DataFrame, target: float, full: int | None) -> list[str]:
    """Cells whose runs reached the target and then diverged (not counted) or ended above it again
    (counted at the first crossing: ``bpresearch.verdicts``)."""
    t = table[(table["target"] == target) & table["outcome"].str.startswith("reached, then")]
    out = []
    for (bs, lr), g in t.groupby(["batch_size", "learning_rate"]):
        first = g["first_steps"]
        judged = "end_loss" in g and not g["diverged"].any() and not g["end_loss"].equals(g["final_loss"])
        final = g["end_loss" if judged else "final_loss"].dropna()
        kinds = " or ".join(sorted({o.split(", then ")[1] for o in g["outcome"]}))
        out.append(f"At {bs_text(int(bs), full)} η = {lr:.3g}: {len(g)} run{'s' if len(g) > 1 else ''} reached loss "
                   f"{target:g} (at step {span(first.min(), first.max(), '.0f')}) and then {kinds}"
                   + (f" ({'median of the last evaluations' if judged else 'final loss'} "
                      f"{span(final.min(), final.max())})" if not final.empty else "")
                   + (": counted as not reached, never as the best learning rate." if kinds == "diverged" else
                      ": counted at the first crossing (steps to a target are a first passage), but the loss did not"
                      " stay below it" + ("; the diverged ones as not reached." if "diverged" in kinds else ".")))
    return out


def findings_untuned(best: pd.DataFrame, target: float, full: int | None) -> list[str]:
    """One sentence naming every batch size whose optimum sits at the grid's edge, and what to add."""
    bad = best[best["reached"] & ~best["tuned"].astype(bool)]
    if bad.empty:
        return []
    parts = [f"{'full' if r.batch_size == full else r.batch_size}: η = {r.learning_rate:.3g} ({r.edge}; add {r.add})"
             for r in bad.itertuples()]
    return [f"Not tuned for loss {target:g} — the best learning rate is at the edge of the grid at "
            f"{len(bad)} of {len(best)} batch sizes ({'; '.join(parts)}). Those batch sizes are left out of the "
            f"scaling comparison and the critical-batch fits: their optimum may lie outside the range tried."]
