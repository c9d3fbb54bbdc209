"""The findings in words: one function per kind of finding, from the frames of ``measures``
and ``predictions`` to sentences with their numbers.

Pure: numbers in, strings out. Which findings a report holds, and in which order, is
decided in ``build``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bpresearch import results as R

from . import measures as M
from .predictions import bound_labels


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
    return f"full batch ({bs})" if full is not None and bs == full else f"batch size {bs}"


# ---------------------------------------------------------------- comparing facet values; headlines
def _group_name(label: str) -> str:
    return label or "these runs"


def findings_compare(best: pd.DataFrame, target: float, full: int | None) -> list[str]:
    """Per batch size, the facet values (groups) side by side: best learning rate and median steps.

    Args:
        best: ``measures.best_learning_rate`` of every group, one after the other, with a
            ``group`` column naming each (``groups._combined``).

    Returns:
        One sentence per batch size, the batch size where the most groups reached the
        target first (ties: the smaller batch size).
    """
    if best.empty or best["group"].nunique() < 2:
        return []
    out = []
    for bs, g in best.groupby("batch_size", sort=True):
        ok = g[g["reached"]].sort_values(["steps", "steps_max"])
        miss = g[~g["reached"]]
        where = bs_text(int(bs), full)
        if ok.empty:
            out.append((0, bs, f"At {where} no group reached loss {target:g}: "
                               f"{', '.join(map(_group_name, g['group']))}."))
            continue
        first = ok.iloc[0]
        s = (f"At {where}, loss {target:g} was reached in the fewest median steps with {first['group']}: "
             f"{plural(first['steps'], 'step')} (η={first['learning_rate']:.3g})")
        rest = [f"{fmt_steps(r['steps'])} for {r['group']} (η={r['learning_rate']:.3g})" for _, r in ok.iloc[1:].iterrows()]
        if rest:
            s += ", against " + ", ".join(rest)
            slow = ok.iloc[-1]
            if slow["steps"] > 0 and first["steps"] > 0:
                s += f" ({slow['steps'] / first['steps']:,.1f}× as many)"
        if not miss.empty:
            s += f"; not reached with {', '.join(miss['group'])}"
        out.append((len(ok), bs, s + "."))
    out.sort(key=lambda x: (-x[0], x[1]))
    return [s for _, _, s in out]


def headline_fastest(best: pd.DataFrame, target: float, full: int | None) -> list[str]:
    """The fastest cell overall (fewest median steps) and the one that needed the fewest examples."""
    ok = best[best["reached"]] if not best.empty else best
    if ok.empty:
        return [f"No cell reached loss {target:g} at any learning rate tried."]
    def where(r):
        grp = f"{r['group']}, " if r.get("group") else ""
        edge = f" — the {r['edge']} η tried, so not tuned" if r.get("edge") in ("smallest", "largest") else ""
        return f"{grp}{bs_text(int(r['batch_size']), full)}, η={r['learning_rate']:.3g}{edge}"
    f = ok.sort_values(["steps", "steps_max", "batch_size"]).iloc[0]
    spread = "one seed" if f["n"] == 1 else (f"seeds: {span(f['steps_min'], f['steps_max'], ',.0f')}"
                                             if np.isfinite(f["steps_max"]) else
                                             f"{int(f['n_reached'])} of {int(f['n'])} seeds reached it")
    s = f"Fastest to loss {target:g}: {plural(f['steps'], 'step')} at {where(f)} ({spread})"
    e = ok.sort_values(["examples", "steps"]).iloc[0]
    if e["batch_size"] != f["batch_size"] or e.get("group") != f.get("group"):
        s += f"; fewest examples: {plural(e['examples'], 'example')} at {where(e)} ({plural(e['steps'], 'step')})"
    return [s + "."]


def headline_divergence(runs: pd.DataFrame, facets: list[str]) -> list[str]:
    """How many runs diverged, per facet value when there are facets, and from which learning rate."""
    gd = runs[runs["optimizer"] != "random_search"]
    n, d = len(gd), int(gd["diverged"].sum())
    if n == 0:
        return []
    if d == 0:
        return [f"No run diverged ({n} runs, learning rates up to {gd['learning_rate'].max():.3g})."]
    lowest = gd[gd["diverged"]]["learning_rate"].min()
    s = f"{d} of {n} runs diverged, the first at learning rate {lowest:.3g}"
    if facets:
        parts = []
        for k, g in gd.groupby(facets, sort=True):
            k = k if isinstance(k, tuple) else (k,)
            label = ", ".join(f"{f.split('.')[0] if f.endswith('.kind') else f.split('.')[-1]}="
                              + (f"{v:g}" if isinstance(v, (int, float, np.integer, np.floating)) else str(v))
                              for f, v in zip(facets, k))
            parts.append(f"{label}: {int(g['diverged'].sum())} of {len(g)}")
        s += " (" + "; ".join(parts) + ")"
    return [s + "."]


# ---------------------------------------------------------------- findings from numbers
def findings_steps_source(steps: M.StepsToTargets) -> list[str]:
    """Where steps to target came from, when not from the logged summaries, or when those disagree."""
    if steps.from_curves:
        return ["The runs lack the logged steps-to-target summaries; they were computed from the "
                "full_train_loss curves instead."]
    if steps.disagree:
        return [f"Warning: on {steps.disagree} run×target pairs the logged steps-to-target disagrees "
                "with the logged full_train_loss curve; the logged summaries are used."]
    return []


def findings_best(best: pd.DataFrame, target: float, budget: int, full: int | None) -> list[str]:
    """One sentence per batch size: the fastest learning rate and its steps (seed spread)."""
    out = []
    for r in best.itertuples():
        where = bs_text(r.batch_size, full)
        if not r.reached:
            out.append(f"At {where} no learning rate reached loss {target:g} within {budget:,} steps "
                       f"(median over seeds; {r.n_lrs} learning rates tried).")
            continue
        spread = f"seeds: {r.steps_min:,.0f}–{r.steps_max:,.0f}" if np.isfinite(r.steps_max) else \
            f"only {r.n_reached} of {r.n} seeds reached it; fastest {r.steps_min:,.0f}"
        if r.n == 1:
            spread = "one seed"
        out.append(f"At {where} the fastest learning rate was {r.learning_rate:.3g}: {plural(r.steps, 'step')} "
                   f"({plural(r.examples, 'example')}) to loss {target:g} ({spread}).")
    return out


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


def findings_scaling(curve: pd.DataFrame, target: float, full: int | None) -> list[str]:
    """How steps and examples to the target change from the smallest to the largest batch size."""
    ok = curve[curve["reached"]].sort_values("batch_size")
    if len(ok) < 2:
        return []
    a, b = ok.iloc[0], ok.iloc[-1]
    ratio = a["steps"] / b["steps"]
    ideal = b["batch_size"] / a["batch_size"]
    change = (f"cut the steps to loss {target:g} from {fmt_steps(a['steps'])} to {fmt_steps(b['steps'])}, "
              f"{ratio:,.1f}× fewer" if ratio > 1 else
              f"did not cut the steps to loss {target:g}: {fmt_steps(a['steps'])} against {fmt_steps(b['steps'])}"
              + (f", {1 / ratio:,.1f}× as many" if ratio < 1 else ""))
    s = (f"Going from {bs_text(int(a['batch_size']), full)} to {bs_text(int(b['batch_size']), full)}, "
         f"{ideal:,.0f}× larger, {change} (perfect scaling: {ideal:,.0f}× fewer); the examples "
         f"went from {fmt_steps(a['examples'])} to {fmt_steps(b['examples'])}.")
    good = ok[ok["efficiency"] >= 0.5]
    tail = ""
    if len(good) < len(ok):
        last = good["batch_size"].max()
        tail = (f" The largest batch size within 2× of perfect scaling was {last:,.0f}; beyond it, larger batches "
                f"saved far fewer steps than perfect scaling would.")
    else:
        tail = " Every batch size stayed within 2× of perfect scaling."
    missing = curve[~curve["reached"]]
    if not missing.empty:
        tail += f" Not reached at all at batch size {', '.join(map(str, missing['batch_size']))}."
    return [s + tail]


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


def findings_noise(nb: pd.DataFrame, full: int) -> list[str]:
    """How much noisier batch size 1 is than the full batch: per learning rate, or as a range.

    ``nb`` (``measures.noise_by_batch_size``) should hold runs that did not diverge only: a
    diverging curve is not noise.
    """
    rows = []
    for lr, g in nb.groupby("learning_rate"):
        one, whole = g[g["batch_size"] == 1]["noise"], g[g["batch_size"] == full]["noise"]
        if one.empty or whole.empty or not np.isfinite(one.iloc[0]) or not np.isfinite(whole.iloc[0]):
            continue
        rows.append((lr, one.iloc[0], whole.iloc[0]))
    if not rows:
        return ["No learning rate has stable runs at both batch size 1 and the full batch to compare their noise."]
    what = "std of step-to-step change of log training loss, median over seeds"
    if len(rows) <= 3:
        return [f"At learning rate {lr:.3g} the batch size 1 curve is "
                + (f"{o / w:,.0f}× noisier than the full batch's" if w > 0 else
                   "noisy where the full batch's is perfectly smooth") + f" ({what}: {o:.3g} vs {w:.3g})."
                for lr, o, w in rows]
    ratios = [(o / w if w > 0 else np.inf, lr, o, w) for lr, o, w in rows]
    lo, hi = min(ratios), max(ratios)
    return [f"The batch size 1 curve is {lo[0]:,.0f}× (η={lo[1]:.3g}) to {hi[0]:,.0f}× (η={hi[1]:.3g}) noisier "
            f"than the full batch's at the {len(rows)} learning rates where neither diverged ({what}: "
            f"{lo[2]:.3g} vs {lo[3]:.3g} and {hi[2]:.3g} vs {hi[3]:.3g}); the table below has every learning rate."]


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


# ---------------------------------------------------------------- predicted against measured
def span(lo: float, hi: float, fmt: str = ".3g") -> str:
    """``lo–hi``, or one number when they agree to the digits shown."""
    a, b = format(lo, fmt), format(hi, fmt)
    return a if a == b else f"{a}–{b}"


def _init_text(init: pd.Series) -> str:
    """``2/λ_max at initialisation = 1.53 (λ_max = 1.31; one seed)``."""
    lam, _ = bound_labels(init["factor"])
    seeds = "one seed" if init["n_seeds"] == 1 else \
        f"median over {init['n_seeds']} seeds, {span(init['stability_lr_min'], init['stability_lr_max'])}"
    return f"{lam} at initialisation = {init['stability_lr']:.3g} (λ_max = {init['sharpness']:.3g}; {seeds})"


def bracket_text(r) -> str:
    """The measured divergence boundary of one batch size, as a bracket in words."""
    if not np.isfinite(r.lowest_diverged):
        return f"no run diverged up to η = {r.grid_max:.3g} (boundary > {r.grid_max:.3g})"
    if not np.isfinite(r.highest_stable):
        return f"diverged already at the smallest η = {r.lowest_diverged:.3g} (boundary ≤ {r.lowest_diverged:.3g})"
    s = (f"in ({r.highest_stable:.3g}, {r.lowest_diverged:.3g}]: highest stable η = {r.highest_stable:.3g}, "
         f"lowest diverged η = {r.lowest_diverged:.3g}; geometric midpoint {r.midpoint:.3g}")
    if not r.monotone:
        s += f" (not monotone: η = {r.largest_stable:.3g} did not diverge)"
    return s


def position_text(r) -> str:
    """Where the prediction falls against one measured bracket."""
    if r.position == "inside":
        return "inside the bracket" if np.isfinite(r.hi) else "consistent (no divergence up to the grid's end)"
    side = "below" if r.position == "below" else "above"
    return f"{r.factor_off:.2g}× {side} the bracket"


def findings_boundary(cmp: pd.DataFrame, init: pd.Series, full: int | None) -> list[str]:
    """The predicted divergence boundary against the measured one: full batch, then the others."""
    lam, _ = bound_labels(init["factor"])
    pred = init["stability_lr"]
    ref = cmp[cmp["batch_size"] == full] if full is not None else cmp.iloc[0:0]
    where = bs_text(full, full) if not ref.empty else None
    if ref.empty:
        ref = cmp.sort_values("batch_size").iloc[-1:]
        where = (f"batch size {int(ref['batch_size'].iloc[0])} (the largest; no full-batch runs, for which the "
                 f"bound is derived)")
    r = next(ref.itertuples())
    head = _init_text(init)
    if not np.isfinite(r.lowest_diverged):
        if pred > r.grid_max:
            s = (f"{head} lies beyond the grid: at {where} no run diverged up to η = {r.grid_max:.3g}, consistent "
                 f"with it, but the boundary itself was not reached.")
        else:
            s = (f"{head} predicts divergence above it, yet at {where} no run diverged up to η = {r.grid_max:.3g}, "
                 f"{r.grid_max / pred:.2g}× the prediction.")
    else:
        verb = {"inside": "predicts", "below": "underestimates", "above": "overestimates"}[r.position]
        stable = (f"did not diverge at η ≤ {r.highest_stable:.3g}" if np.isfinite(r.highest_stable)
                  else "diverged already at the smallest η of the grid")
        s = (f"{head} {verb} the divergence boundary at {where}: runs diverged at η ≥ {r.lowest_diverged:.3g} "
             f"and {stable}")
        if np.isfinite(r.midpoint):
            s += (f", so the boundary lies in ({r.highest_stable:.3g}, {r.lowest_diverged:.3g}] (geometric midpoint "
                  f"{r.midpoint:.3g}; prediction ÷ midpoint = {r.ratio:.2g})")
        s += {"inside": " — the prediction is inside the bracket.",
              "below": f" — the prediction lies {r.factor_off:.2g}× below the bracket: training stayed stable well "
                       f"beyond {lam} at initialisation (see the sharpness over training below).",
              "above": f" — the prediction lies {r.factor_off:.2g}× above the bracket: runs diverged before reaching "
                       f"the bound."}[r.position]
        if not r.monotone:
            s += f" Divergence was not monotone in η: η = {r.largest_stable:.3g} did not diverge."
    out = [s]
    others = cmp[cmp["batch_size"] != r.batch_size]
    if not others.empty:
        parts = [f"{b.batch_size}: " + (f"({b.highest_stable:.3g}, {b.lowest_diverged:.3g}]"
                                        if np.isfinite(b.midpoint) else bracket_text(b)) + f", {position_text(b)}"
                 for b in others.itertuples()]
        out.append(f"At the other batch sizes the measured boundary (highest stable, lowest diverged η] was — "
                   f"{'; '.join(parts)}. The bound {lam} is derived for full-batch gradient descent; with minibatches "
                   f"the sampling noise and the per-batch curvature move the boundary.")
    return out


def findings_edge(eos: pd.DataFrame, init: pd.Series | None, every: int | None) -> list[str]:
    """What the sharpness of full-batch runs did against 2/η: fell below it, rose to it, or stayed below."""
    if eos.empty:
        return []
    factor = init["factor"] if init is not None else 2.0
    lam, eta = bound_labels(factor)
    ok = eos[~eos["diverged"]]
    grid = sorted(eos["learning_rate"].unique())
    cadence = f", measured every {every} steps" if every else ""
    out = []
    above = ok[ok["sharpness_0"] > ok["bound"]]
    if not above.empty:
        fell = above[above["end_over_bound"] < 1]
        edge = above[(above["end_over_bound"] >= 0.9) & (above["end_over_bound"] < 1.1)]
        s = (f"Full-batch runs that started above the stability bound (λ_max(0) > {eta}) yet did not diverge, "
             f"at η = {lr_list(above['learning_rate'], grid)}: their sharpness went from "
             f"{span(above['sharpness_0'].min(), above['sharpness_0'].max())} at step 0 to "
             f"{span(above['sharpness_end'].min(), above['sharpness_end'].max())} at the end{cadence}, "
             f"{span(above['end_over_bound'].min(), above['end_over_bound'].max(), '.2f')} × their {eta}; "
             f"{len(fell)} of {len(above)} ended below it")
        if not edge.empty:
            s += f", and η = {lr_list(edge['learning_rate'], grid)} settled within 10% of it (at the edge of stability)"
        s += (f". Gradient descent moved to flatter regions where its step is stable again (the edge-of-stability "
              f"effect, Cohen et al. 2021), which is why runs beyond {lam} at initialisation did not diverge.")
        if "reached" in above:
            stuck = above[~above["reached"].astype(bool)]
            if not stuck.empty:
                last = span(stuck["sharpness_end"].min(), stuck["sharpness_end"].max())
                s += (f" Not diverging is not converging: η = {lr_list(stuck['learning_rate'], grid)} did not reach "
                      f"the first target (last sharpness {last}).")
        out.append(s)
    below = ok[ok["sharpness_0"] <= ok["bound"]]
    if not below.empty:
        edge = below[below["max_over_bound"] >= 0.9]
        m = below.loc[below["max_over_bound"].idxmax()]
        s = (f"Full-batch runs that started below their bound (η = {lr_list(below['learning_rate'], grid)}): the "
             f"largest sharpness relative to {eta} was {m['max_over_bound']:.2f} (η = {m['learning_rate']:.3g})")
        s += (f"; {len(edge)} of {len(below)} came within 10% of {eta} or beyond (edge of stability) at "
              f"η = {lr_list(edge['learning_rate'], grid)}" if not edge.empty else
              f"; none came within 10% of {eta}")
        change = below["sharpness_end"] / below["sharpness_0"]
        if np.allclose(change, 1.0, rtol=0.01) and np.allclose(below["sharpness_max"], below["sharpness_0"], rtol=0.01):
            s += f". Their sharpness stayed at {span(below['sharpness_0'].min(), below['sharpness_0'].max())} " \
                 "throughout."
        else:
            rose = below[below["sharpness_max"] > 1.1 * below["sharpness_0"]]
            s += (f"; sharpness rose by more than 10% at some point (progressive sharpening) in {len(rose)} of "
                  f"{len(below)} runs, and went from {span(below['sharpness_0'].min(), below['sharpness_0'].max())} "
                  f"at step 0 to {span(below['sharpness_end'].min(), below['sharpness_end'].max())} at the end.")
        out.append(s)
    return out


def ratio_words(r: float) -> str:
    if not np.isfinite(r):
        return "—"
    f = max(r, 1 / r)
    return "agree within 2×" if f <= 2 else f"differ by {f:.2g}×"


def noise_scale_text(head: pd.Series, target: float, full: int | None, every: int | None) -> str:
    """Exactly which B_simple stands for "near the target"."""
    if head.get("kind") == "at_loss":
        return (f"B_simple = {head['b_simple']:.3g}: the gradient noise scale of full-batch gradient descent where its "
                f"full training loss was within 1.5× of {target:g} (losses {span(head['loss_min'], head['loss_max'])}; "
                f"median over {head['n']} run(s) at η {span(head['lr_min'], head['lr_max'])}, "
                f"{span(head['b_simple_min'], head['b_simple_max'])}; steps {head['measured_steps']})")
    seeds = "one seed" if head["n"] == 1 else \
        f"median over {head['n']} seeds, {span(head['b_simple_min'], head['b_simple_max'])}"
    at = "step" + ("s " if "," in head["measured_steps"] else " ") + head["measured_steps"] + \
        (" (per seed," if head["n"] > 1 else " (")
    note = " — that is B_simple at initialisation, not near the target" if head["measured_steps"] == "0" else ""
    cadence = f"; measured every {every} steps" if every else ""
    return (f"B_simple = {head['b_simple']:.3g}: the gradient noise scale of the best run at "
            f"{bs_text(int(head['batch_size']), full)} (η = {head['learning_rate']:.3g}; {seeds}) at {at} the measured "
            f"step closest to where it first reached loss {target:g}; median step {fmt_steps(head['target_step'])}"
            f"{cadence}){note}")


def findings_critical(target: float, head: pd.Series | None, fits, full: int | None, every: int | None,
                      missing: str) -> str:
    """B_simple near the target against B_crit (steps–examples fit) and B_noise (learning-rate fit)."""
    ce, lr = fits.steps_examples, fits.lr_scaling
    parts = [f"Critical batch size for loss {target:g}:"]
    parts.append(noise_scale_text(head, target, full, every) + "." if head is not None else
                 f"B_simple is not available ({missing}).")
    parts.append(f"The fit S = S_min + E_min/B gives B_crit = E_min/S_min = {ce.b_crit:.3g} (S_min = {ce.s_min:.3g} "
                 f"steps, E_min = {ce.e_min:.3g} examples, {ce.n_points} batch sizes)." if not ce.reason else
                 f"B_crit could not be fitted: {ce.reason}.")
    parts.append(f"The fit ε_opt = ε_max/(1 + B_noise/B) gives B_noise = {lr.b_noise:.3g} (ε_max = {lr.eps_max:.3g})."
                 if not lr.reason else f"B_noise could not be fitted: {lr.reason}.")
    if head is not None:
        ratios = [f"B_simple/{n} = {head['b_simple'] / v:.2g} ({ratio_words(head['b_simple'] / v)})"
                  for n, v in (("B_crit", ce.b_crit), ("B_noise", lr.b_noise)) if np.isfinite(v)]
        if ratios:
            parts.append("; ".join(ratios) + ".")
    return " ".join(parts)


# ---------------------------------------------------------------- issue 11: only as strong as the data
def steps_interval_text(lo: float, hi: float) -> str:
    """``8`` or ``6–10``: the steps-to-target interval, never a false precision."""
    if hi is None or not np.isfinite(hi):
        return "not reached"
    a = int(np.floor(lo if lo is not None and np.isfinite(lo) else hi))
    b = int(np.ceil(hi))
    return f"{b:,}" if a >= b else f"{a:,}–{b:,}"


def untuned_text(r, full: int | None) -> str:
    """"not tuned: optimum at the grid's edge" with the range to add, for one best-learning-rate row."""
    return (f"not tuned at {bs_text(int(r.batch_size), full)}: the best η = {r.learning_rate:.3g} is the {r.edge} "
            f"tried (optimum at the grid's edge); add learning rates {r.add}")


def findings_best_intervals(best: pd.DataFrame, target: float, budget: int, full: int | None,
                            distinct: pd.DataFrame | None = None) -> list[str]:
    """One sentence per batch size: the fastest learning rate, its steps as an interval, seeds, edge flag.

    ``distinct``: ``uncertainty.distinct_counts`` (runs and distinct trajectories per cell).
    """
    out = []
    for r in best.itertuples():
        where = bs_text(r.batch_size, full)
        if not r.reached:
            out.append(f"At {where} no learning rate reached loss {target:g} (and stayed below it) within "
                       f"{budget:,} steps (median over seeds; {r.n_lrs} learning rates tried).")
            continue
        spread = f"seeds: {r.steps_min:,.0f}–{r.steps_max:,.0f}" if np.isfinite(r.steps_max) else \
            f"only {r.n_reached} of {r.n} seeds reached it; fastest {r.steps_min:,.0f}"
        if distinct is not None:
            d = distinct[(distinct["batch_size"] == r.batch_size) & np.isclose(distinct["learning_rate"],
                                                                                r.learning_rate)]
            if not d.empty and int(d["distinct"].iloc[0]) < int(d["runs"].iloc[0]):
                k = int(d["distinct"].iloc[0])
                spread = (f"{int(d['runs'].iloc[0])} seeds, {k} distinct " + ("trajectory" if k == 1 else "trajectories")
                          + (": no seed spread to measure" if k == 1 else f"; {spread}"))
        if r.n == 1:
            spread = "one seed"
        steps = steps_interval_text(r.steps_lo, r.steps)
        unit = "step" if steps == "1" else "steps"
        res = "" if "–" not in steps else " (the crossing lies between two evaluations)"
        s = (f"At {where} the fastest learning rate was {r.learning_rate:.3g}: {steps} {unit}{res} to loss "
             f"{target:g} ({spread}).")
        if not r.tuned:
            s += f" Not tuned: optimum at the grid's edge (the {r.edge} η tried); add {r.add}."
        out.append(s)
    return out


def findings_lost(table: pd.DataFrame, target: float, full: int | None) -> list[str]:
    """Cells whose runs reached the target and then diverged or ended above it again (never a best)."""
    t = table[(table["target"] == target) & table["outcome"].str.startswith("reached, then")]
    out = []
    for (bs, lr), g in t.groupby(["batch_size", "learning_rate"]):
        first = g["first_steps"]
        final = g["final_loss"].dropna()
        kinds = " or ".join(sorted({o.split(", then ")[1] for o in g["outcome"]}))
        out.append(f"At {bs_text(int(bs), full)} η = {lr:.3g}: {len(g)} run{'s' if len(g) > 1 else ''} reached loss "
                   f"{target:g} (at step {span(first.min(), first.max(), '.0f')}) and then {kinds}"
                   + (f" (final loss {span(final.min(), final.max())})" if not final.empty else "")
                   + ": counted as not reached, never as the best learning rate.")
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


def findings_scaling_intervals(best: pd.DataFrame, per_group: pd.DataFrame, target: float, full: int | None,
                               resolution: int) -> list[str]:
    """Scaling from the smallest to the largest *tuned* batch size, with 90% intervals over seeds.

    A difference is claimed only when the two steps intervals are apart; "within 2× of perfect
    scaling" only when the efficiency's 90% interval is on one side of 0.5.
    """
    from .uncertainty import Interval, classify

    m = best.merge(per_group, on=[c for c in ("optimizer", "batch_size") if c in per_group], suffixes=("", "_b"))
    ok = m[m["reached"] & m["tuned"].astype(bool)].sort_values("batch_size")
    if len(ok) < 2:
        n_t = int((best["reached"] & best["tuned"].astype(bool)).sum())
        return [f"Scaling with batch size for loss {target:g} is not resolved: {n_t} tuned batch size"
                f"{'' if n_t == 1 else 's'} reached it (an optimum at the grid's edge is not tuned)."] \
            if len(best) >= 2 else []
    a, b = ok.iloc[0], ok.iloc[-1]
    res = f" (steps on a common grid of {resolution})" if resolution > 1 else ""
    sa = steps_interval_text(a["steps_lo"], a["steps"])
    sb = steps_interval_text(b["steps_lo"], b["steps"])
    ideal = b["batch_size"] / a["batch_size"]
    apart = np.isfinite(a["steps_lo_b"]) and np.isfinite(b["steps_hi"]) and b["steps_hi"] < a["steps_lo_b"]
    s = (f"From {bs_text(int(a['batch_size']), full)} to {bs_text(int(b['batch_size']), full)} ({ideal:,.0f}× larger), "
         f"the steps to loss {target:g} went from {sa} to {sb}{res}")
    if apart:
        s += (f": fewer at the larger batch beyond the seed spread (90% intervals {a['steps_lo_b']:.3g}–"
              f"{a['steps_hi']:.3g} and {b['steps_lo_b']:.3g}–{b['steps_hi']:.3g}; perfect scaling: {ideal:,.0f}× "
              f"fewer).")
    else:
        s += ": the difference is not resolved by these seeds and this evaluation interval (90% intervals overlap)."
    verdicts = []
    for r in ok.iloc[1:].itertuples():
        iv = Interval(r.efficiency, r.efficiency_lo, r.efficiency_hi, 0.0)
        verdicts.append((int(r.batch_size), classify(iv, 0.5, "within 2× of perfect scaling",
                                                     "beyond 2× of perfect scaling"), iv))
    within = [bs for bs, v, _ in verdicts if v.startswith("within")]
    open_ = [bs for bs, v, _ in verdicts if v.startswith("not resolved")]
    beyond = [bs for bs, v, _ in verdicts if v.startswith("beyond")]
    parts = []
    if within:
        parts.append(f"within 2× of perfect scaling (efficiency's 90% interval ≥ 0.5) up to batch size {max(within)}")
    if beyond:
        parts.append(f"beyond 2× from batch size {min(beyond)}")
    if open_:
        ivs = "; ".join(f"{'full' if bs == full else bs}: {iv.lo:.2f}–{iv.hi:.2f}" for bs, _, iv in verdicts
                        if bs in open_ and np.isfinite(iv.lo))
        parts.append(f"not resolved by these seeds at batch size {', '.join(map(str, open_))}"
                     + (f" (efficiency intervals straddle 0.5: {ivs})" if ivs else ""))
    if parts:
        s += " Relative to the smallest tuned batch size: " + "; ".join(parts) + "."
    return [s]


def findings_two_noises(mini: pd.DataFrame, traj: pd.DataFrame, full: int, eval_every: int) -> list[str]:
    """Batch size 1 against full batch, for both noises, named for what they are.

    ``mini``: ``noise_by_batch_size`` of the minibatch loss (the loss on the examples the
    optimizer sees: mostly the spread of single examples' losses at batch size 1);
    ``traj``: the same of the full training loss every E steps (how much the parameters jitter).
    """
    out = []
    for what, nb, note in (("minibatch-loss noise (the loss on the batch the optimizer sees, step to step)", mini,
                            "this is mostly the spread of single examples' losses, not of the parameters"),
                           ("trajectory noise (the full training loss, evaluation to evaluation, every "
                            + ("step)" if eval_every == 1 else f"{eval_every} steps)"), traj,
                            "how much the parameters themselves jitter")):
        rows = []
        for lr, g in nb.groupby("learning_rate"):
            one, whole = g[g["batch_size"] == 1]["noise"], g[g["batch_size"] == full]["noise"]
            if one.empty or whole.empty or not (np.isfinite(one.iloc[0]) and np.isfinite(whole.iloc[0])):
                continue
            rows.append((lr, one.iloc[0], whole.iloc[0]))
        if not rows:
            continue
        txt = "; ".join(f"η = {lr:.3g}: {o:.3g} vs {w:.3g}" + (f" ({o / w:,.1f}×)" if w > 0 else "")
                        for lr, o, w in rows)
        out.append(f"Batch size 1 against full batch, {what}: {txt} (std of the change of log loss, median over "
                   f"seeds; {note}).")
    return out or ["No learning rate has stable runs at both batch size 1 and the full batch to compare their noise."]


def findings_sharpness(reg: pd.DataFrame, factor: float, every: int | None, band: float, stretch: int) -> list[str]:
    """What the full-batch sharpness did against 2/η; the edge of stability only where it was measured there."""
    if reg.empty:
        return []
    _, eta = bound_labels(factor)
    grid = sorted(reg["learning_rate"].unique())
    ok = reg[~reg["diverged"]]
    crit = (f"within ±{band:.0%} of {eta} for at least {stretch} consecutive measurements (steps 0, 1, 2, 4, … "
            f"then every {every})") if every else f"within ±{band:.0%} of {eta} for {stretch} measurements"
    out = []
    edge = ok[ok["regime"] == "edge of stability"]
    if not edge.empty:
        out.append(f"Edge of stability (Cohen et al. 2021), by the criterion {crit}: at η = "
                   f"{lr_list(edge['learning_rate'], grid)} ({len(edge)} runs; stretches at steps "
                   f"{', '.join(sorted(set(edge['edge_steps'])))}).")
    else:
        out.append(f"No full-batch run was at the edge of stability by the criterion {crit}.")
    cat = ok[ok["regime"] == "catapult"]
    if not cat.empty:
        out.append(f"Catapult-like drop at η = {lr_list(cat['learning_rate'], grid)}: sharpness started above {eta} "
                   f"({span(cat['ratio_0'].min(), cat['ratio_0'].max(), '.2g')}× it) and fell far below it by step "
                   f"{span(cat['drop_step'].min(), cat['drop_step'].max(), '.0f')} (under half), ending at "
                   f"{span(cat['ratio_end'].min(), cat['ratio_end'].max(), '.2g')}× {eta}.")
    below = ok[ok["regime"].isin(["below", "rose"])]
    if not below.empty:
        rose = below[below["regime"] == "rose"]
        out.append(f"At η = {lr_list(below['learning_rate'], grid)} the sharpness stayed below {eta}: at most "
                   f"{below['ratio_max'].max():.2g}× it" + (f"; it rose by more than 10% (progressive sharpening) at "
                                                            f"η = {lr_list(rose['learning_rate'], grid)}"
                                                            if not rose.empty else "") + ".")
    un = ok[ok["regime"] == "above, unresolved"]
    if not un.empty:
        out.append(f"At η = {lr_list(un['learning_rate'], grid)} the sharpness started above {eta} and neither hovered "
                   f"at it nor fell under half of it (last {span(un['ratio_end'].min(), un['ratio_end'].max(), '.2g')}× "
                   f"{eta}).")
    return out


MCCANDLISH_CAVEAT = ("Caveat (McCandlish et al. 2018): B_crit equals the noise scale averaged along training only in "
                     "their idealised model (a local quadratic, the best step size at every batch size); B_simple "
                     "= tr(Σ)/|G|² equals the Hessian-aware B_noise = tr(HΣ)/(GᵀHG) only when the Hessian is a "
                     "multiple of the identity, and the paper itself finds B_simple off by up to an order of magnitude.")


def findings_critical_paths(target: float, fit: dict | None, reason: str, paths: dict[str, pd.DataFrame],
                            missing_noise: str) -> str:
    """B_crit (fitted, with its 90% interval) against the path averages of B_noise and B_simple.

    ``fit``: name -> ``uncertainty.Interval`` (None: no fit); ``paths``: measured key ->
    ``predictions.noise_path_average`` frame.
    """
    from .uncertainty import Interval

    parts = [f"Critical batch size for loss {target:g}:"]
    if fit is None or not np.isfinite(fit["b_crit"].point):
        parts.append(f"B_crit could not be fitted ({reason or 'fewer than 3 tuned batch sizes reached the target'}).")
        bc = Interval(np.nan, np.nan, np.nan, 1.0)
    else:
        bc = fit["b_crit"]
        parts.append(f"the fit S = S_min + E_min/B over the tuned batch sizes gives B_crit = E_min/S_min = "
                     f"{bc.text()} (S_min = {fit['s_min'].text()} steps, E_min = {fit['e_min'].text()} examples; "
                     f"intervals: bootstrap over seeds).")
        if np.isfinite(fit["b_noise"].point):
            parts.append("The learning-rate fit ε_opt = ε_max/(1 + B_noise/B) gives B_noise (ε fit) = "
                         f"{fit['b_noise'].text()}.")
    names = {"hessian_noise_scale": "B_noise = tr(HΣ)/(GᵀHG)", "gradient_noise_scale": "B_simple = tr(Σ)/|G|²"}
    any_path = False
    for key, name in names.items():
        p = paths.get(key)
        v = p["path_average"].dropna() if p is not None and not p.empty else pd.Series(dtype=float)
        if v.empty:
            why = ("no full-batch run reached the target with it measured" if p is None or p.empty else
                   "no measurement with loss above the target and |G| ≥ 1% of its start")
            if p is None or p.empty:
                why = missing_noise if key == "gradient_noise_scale" and missing_noise else \
                    "not measured (diagnostics.hessian_noise_scale = false)" if key == "hessian_noise_scale" else why
            parts.append(f"Path average of {name}: not available: {why}.")
            continue
        any_path = True
        med = float(np.median(v))
        rng = f"; runs {v.min():.3g}–{v.max():.3g}" if len(v) > 1 else ""
        cmp = ""
        if np.isfinite(bc.point):
            if np.isfinite(bc.lo) and np.isfinite(bc.hi):
                inside = bc.lo <= med <= bc.hi
                cmp = (f" — inside B_crit's 90% interval" if inside else
                       f" — {max(med / bc.hi, bc.lo / med):.2g}× outside B_crit's 90% interval")
            else:
                cmp = f" — {med / bc.point:.2g}× B_crit (its interval is not resolved)"
        parts.append(f"Path average of {name} over full-batch training before the target (step-weighted, median "
                     f"over {len(v)} run{'s' if len(v) > 1 else ''}{rng}): {med:.3g}{cmp}.")
    if any_path or np.isfinite(bc.point):
        parts.append(MCCANDLISH_CAVEAT)
    return " ".join(parts)
