"""Convergence reports from MLflow: ``bpresearch report`` and ``make report``.

For each experiment: ``DIR/<experiment>/index.html`` (one self-contained file, figures
embedded as base64 PNG, no scripts, no external files), ``DIR/<experiment>/report.md``
with the PNGs beside it, and ``DIR/index.html`` linking them all. The report files are
also attached to the experiment's latest sweep run (artifact folder ``report/``).

A report never trains: it reads the store. What it cannot show (no finished runs, no
curves, every run diverged) it says plainly where the figure or table would be.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures as F
from . import load
from . import measures as M

EXIT_USAGE = 2


# ---------------------------------------------------------------- the report as blocks
@dataclass
class Figure:
    name: str          # file stem of the PNG
    title: str         # the question the figure answers
    png: bytes | None  # None: not applicable
    reason: str = ""   # why there is no figure


@dataclass
class Report:
    """An experiment's report: a list of blocks, rendered to HTML and Markdown."""
    name: str
    blocks: list = field(default_factory=list)   # ("h2"|"p"|"pre"|"ul", payload) | Figure | ("table", title, df)

    def h2(self, text): self.blocks.append(("h2", text))
    def p(self, text): self.blocks.append(("p", text))
    def pre(self, text): self.blocks.append(("pre", text))
    def ul(self, items): self.blocks.append(("ul", items))  # kept by reference: findings fill in later
    def table(self, title, df): self.blocks.append(("table", title, df))

    def figure(self, name: str, title: str, build):
        """Add the figure ``build()`` returns, or the reason it cannot be drawn."""
        try:
            fig = build()
        except F.NotApplicable as e:
            self.blocks.append(Figure(name, title, None, f"Not shown: {e}."))
            return
        except Exception as e:  # noqa: BLE001 - a broken figure must not stop the report
            self.blocks.append(Figure(name, title, None, f"This figure could not be drawn ({type(e).__name__}: {e})."))
            print(f"  warning: figure {name!r} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        F.plt.close(fig)
        self.blocks.append(Figure(name, title, buf.getvalue()))

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


# ---------------------------------------------------------------- number formatting
def fmt_steps(s) -> str:
    """A step or example count; a median of an even number of seeds may end in .5."""
    if s is None or not np.isfinite(s):
        return "not reached"
    return f"{s:,.0f}" if float(s).is_integer() else f"{s:,.1f}"


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


# ---------------------------------------------------------------- findings from numbers
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
    where = ", ".join("full" if b == full else str(b) for b in first["batch_size"])
    return [f"Resolution limit: at batch size {where} loss {target:g} was already reached at the first evaluation "
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
    s = (f"Going from {bs_text(int(a['batch_size']), full)} to {bs_text(int(b['batch_size']), full)}, "
         f"{ideal:,.0f}× larger, cut the steps to loss {target:g} from {fmt_steps(a['steps'])} to "
         f"{fmt_steps(b['steps'])}, {ratio:,.1f}× fewer (perfect scaling: {ideal:,.0f}× fewer); the examples "
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
            f" (median {fmt_steps(t['steps'].median())} evaluations)" if k else "")
        out.append(f"After {n_eval} loss evaluations, {name}: best loss median {g['best'].median():.3g} "
                   f"(seeds: {g['best'].min():.3g}–{g['best'].max():.3g}); {reach}.")
    return out


def findings_seed_graph(v: pd.DataFrame, curves: pd.DataFrame, target: float, budget: int) -> list[str]:
    """Which η converge, which fall too slowly, which oscillate, which diverge; and η = 0.1."""
    grid = sorted(v["learning_rate"])
    out = []
    last = curves[curves["key"] == "full_train_loss"].sort_values("step").groupby("run_id")["value"].last()
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


# ---------------------------------------------------------------- tables for display
def best_table(best: pd.DataFrame, full: int | None) -> pd.DataFrame:
    rows = []
    for r in best.itertuples():
        rows.append({"batch size": "full (%d)" % r.batch_size if r.batch_size == full else str(r.batch_size),
                     "best learning rate": f"{r.learning_rate:.3g}" if r.reached else "—",
                     "steps to target (median)": fmt_steps(r.steps),
                     "seeds min–max": (f"{r.steps_min:,.0f}–{fmt_steps(r.steps_max)}" if r.reached else "—"),
                     "examples (median)": fmt_steps(r.examples),
                     "seeds reached": f"{r.n_reached}/{r.n}",
                     "learning rates tried": str(r.n_lrs)})
    return pd.DataFrame(rows)


def outcome_table(cell: pd.DataFrame, target: float, full: int | None) -> pd.DataFrame:
    """Per batch size: how many runs reached the target, did not, and diverged."""
    c = cell[cell["target"] == target]
    rows = []
    for (opt, bs), g in c.groupby(["optimizer", "batch_size"]):
        n = int(g["n"].sum())
        reached, div = int(g["n_reached"].sum()), int(g["n_diverged"].sum())
        rows.append({"optimizer": opt, "batch size": f"full ({bs})" if bs == full else str(bs), "runs": n,
                     "reached": reached, "not reached (no divergence)": n - reached - div, "diverged": div})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- one experiment
def _what_was_run(rep: Report, data: load.ExperimentData):
    sweep = data.latest_sweep
    items = [f"MLflow store: {data.uri} (experiment id {data.experiment_id})"]
    if sweep is not None:
        tag = lambda k: sweep.get(f"tags.{k}") if isinstance(sweep.get(f"tags.{k}"), str) else "unknown"  # noqa: E731
        items.append(f"Latest sweep: {sweep['run_name']} ({sweep['status']}), run id {sweep['run_id']}; "
                     f"grid size {sweep.get('params.grid_size', '?')}, overrides: {sweep.get('params.overrides', '?')}")
        items.append(f"git commit {tag('git.commit')} (dirty: {tag('git.dirty')})")
        items.append("versions: " + ", ".join(f"{k} {tag('version.' + k)}" for k in
                                              ("python", "jax", "jaxlib", "optax", "mlflow", "numpy"))
                     + f"; backend {tag('jax.backend')} ({tag('jax.device')}), {tag('host.machine')}")
    else:
        items.append("No sweep run was found: the provenance of these runs is unknown.")
    items.append(f"Sweeps in this experiment: {len(data.sweeps)}; finished runs analysed: {len(data.runs)}")
    if data.unfinished:
        items.append("Ignored (not FINISHED): " + ", ".join(f"{n} {s}" for s, n in sorted(data.unfinished.items())))
    if data.left_out:
        items.append(f"Left out: {data.left_out} finished runs from sweeps with other settings "
                     f"({', '.join(data.left_out_keys)}) than the latest sweep's.")
    items.append(f"Report written {time.strftime('%Y-%m-%d %H:%M:%S')}")
    rep.h2("What was run")
    if data.description:
        rep.p(data.description)
    rep.ul(items)
    text = load.resolved_config_text(data)
    if text:
        rep.p("Resolved configuration (every default filled in):")
        rep.pre(text)


def build(data: load.ExperimentData, curves: pd.DataFrame) -> Report:
    """Measures, figures, tables and findings of one experiment.

    Args:
        data: the experiment as ``load.load_experiment`` read it.
        curves: its runs' curves (``load.load_curves``).

    Returns:
        The ``Report``; it always builds, saying plainly what the data cannot show.
    """
    rep = Report(data.name)
    findings: list[str] = []
    rep.h2("Findings")
    rep.ul(findings)  # filled below; the list object is shared
    _what_was_run(rep, data)
    runs = data.runs
    if runs.empty:
        findings.append("This experiment has no FINISHED runs: there is nothing to analyse"
                        + (f" ({', '.join(f'{n} {s}' for s, n in data.unfinished.items())} ignored)."
                           if data.unfinished else "."))
        return rep
    targets = M.targets_of(runs)
    full = F.full_batch_size(runs)
    budget = int(runs["steps"].max())
    eval_every = int(runs["params.train.eval_every"].iloc[0]) if "params.train.eval_every" in runs else 1
    if curves.empty:
        findings.append("No curves (metric histories) were found for these runs: the loss-curve figures are "
                        "missing; steps to target come from the logged summaries.")
    if runs["diverged"].all():
        findings.append(f"Every one of the {len(runs)} runs diverged: no learning rate in this grid trains stably.")
    logged = all(f"metrics.reached_loss_{M.target_label(t)}" in runs for t in targets)
    table = M.steps_to_target_logged(runs, targets) if logged else M.steps_to_target(curves, runs, targets)
    if not logged:
        findings.append("The runs lack the logged steps-to-target summaries; they were computed from the "
                        "full_train_loss curves instead.")
    elif not curves.empty:
        check = M.steps_to_target(curves, runs, targets)
        bad = ~np.isclose(check["steps"].fillna(-1).to_numpy(), table["steps"].fillna(-1).to_numpy())
        if bad.any():
            findings.append(f"Warning: on {int(bad.sum())} run×target pairs the logged steps-to-target disagrees "
                            "with the logged full_train_loss curve; the logged summaries are used.")
    cell = M.cells(table)
    frac = M.diverged_fraction(runs)
    sens = M.lr_sensitivity(runs)
    gd = runs[runs["optimizer"] != "random_search"]
    n_bs, n_lr = gd["batch_size"].nunique(), gd["learning_rate"].nunique()
    seed_graph = (runs.get("params.model") == "seed_graph").all()

    if not targets:
        findings.append("The runs have no loss targets (train.targets): steps to target cannot be measured.")

    # The seed's graph first: it is that experiment's whole point.
    if seed_graph:
        rep.h2("The seed's computational graph")
        ex = _seed_example(runs)
        rep.figure("seed_graph", "The graph f = (x+y)·z: values (forward) and gradients (backward)",
                   lambda: F.seed_graph(ex) if ex else (_ for _ in ()).throw(
                       F.NotApplicable("the runs lack the model.start / data.target params")))
        if targets and not curves.empty:
            v = M.verdicts(table[table["target"] == targets[0]], M.oscillation(curves))
            v = v.merge(runs[["run_id", "diverged_step"]], on="run_id")
            findings += findings_seed_graph(v, curves, targets[0], budget)
            rep.figure("seed_graph_curves", "Which learning rates η converge?",
                       lambda: F.seed_graph_curves(curves, v, targets[0]))

    if not seed_graph:  # its own curve figure above says more
        rep.h2("Loss curves")
        rep.figure("loss_curves", "How does the full training loss fall, per learning rate and batch size?",
                   lambda: F.loss_curves(curves, runs, "full_train_loss", targets[0] if targets else None))

    for t in targets:
        best = M.best_learning_rate(cell[cell["optimizer"] != "random_search"], t)
        if not seed_graph:
            findings += findings_best(best, t, budget, full) if t == targets[0] else \
                [findings_best_short(best, t, full)]
        rep.h2(f"Steps to loss {t:g}")
        rep.table(f"Best learning rate per batch size (fewest median steps to loss {t:g}; ties: better worst seed)",
                  best_table(best, full))
        rep.table(f"Outcomes of all runs for loss {t:g}", outcome_table(cell, t, full))
        if n_bs >= 2:
            rep.figure(f"heatmap_{M.target_label(t)}", f"Steps to loss {t:g} over learning rate × batch size",
                       lambda t=t: F.steps_heatmap(cell, t, full))
            curve = M.scaling_curve(best)
            if t in (targets[0], targets[-1]):  # the loosest and the tightest target
                findings += findings_scaling(curve, t, full)
            rep.figure(f"scaling_{M.target_label(t)}", f"Steps and examples to loss {t:g} against batch size",
                       lambda curve=curve, t=t: F.scaling(curve, t, full, eval_every))
        if not seed_graph:
            findings += findings_resolution(best, t, eval_every, full)
        if t == targets[0] and not seed_graph:
            findings += findings_not_reached(cell, t, budget, full)

    rep.h2("Divergence")
    if not seed_graph:  # its findings above already say which η diverged
        findings += findings_divergence(frac, full)
    shown = frac[frac["n_diverged"] > 0]
    rep.table("Cells with diverged runs (learning rate × batch size)", shown.assign(
        fraction=shown["fraction"].map(lambda x: f"{x:.0%}")) if not shown.empty else
        pd.DataFrame({"": ["No run diverged."]}))

    if n_lr >= 2:
        rep.h2("Learning-rate sensitivity")
        if not seed_graph:
            findings += findings_sensitivity(sens, full)
        rep.figure("sensitivity", "How much does the final loss depend on the learning rate?",
                   lambda: F.sensitivity(sens, full))

    if full is not None and (runs["batch_size"] == 1).any() and full != 1:
        rep.h2("Batch versus stochastic training")
        noise = M.curve_noise(curves)
        nb = M.noise_by_batch_size(noise, runs[~runs["diverged"]])
        findings += findings_noise(nb, full)
        rep.figure("batch_vs_stochastic", "Batch (red) against stochastic (blue) training",
                   lambda: F.batch_vs_stochastic(curves, runs, noise))
        rep.table("Curve noise (std of step-to-step change of log training loss, median over seeds)",
                  nb.pivot(index="learning_rate", columns="batch_size", values="noise").round(4).reset_index())

    if "random_search" in set(runs["optimizer"]):
        rep.h2("Random search against gradient descent")
        bsf = M.best_so_far(curves, runs)
        if targets and not bsf.empty:
            findings += findings_random(bsf, table, targets[0])
        rep.figure("random_vs_gd", "Best loss so far against loss evaluations",
                   lambda: F.random_vs_gd(bsf, targets[0] if targets else None))
    return rep


def _seed_example(runs: pd.DataFrame) -> dict | None:
    from bpresearch.graph import seed_example

    try:
        x, y, z = json.loads(runs["params.model.start"].iloc[0])
        target = float(runs["params.data.target"].iloc[0])
    except (KeyError, ValueError, TypeError):
        return None
    return seed_example(x=x, y=y, z=z, target=target, lr=0.1, steps=1)


# ---------------------------------------------------------------- rendering
CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.6em}table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ccc;
padding:.25em .6em;text-align:right}th{background:#f4f4f4}pre{background:#f7f7f7;padding:.8em;overflow-x:auto;
font-size:.8em}img{max-width:100%}.na{background:#fff4e5;border-left:4px solid #e67e22;padding:.6em}
figure{margin:1em 0}figcaption{font-weight:600}"""


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(v) -> str:
    if isinstance(v, float):
        return "not reached" if v == math.inf else f"{v:.4g}"
    return str(v)


def _md_table(df: pd.DataFrame) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(esc(_cell(v)) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def to_html(rep: Report) -> str:
    """The report as one self-contained HTML page (figures as base64 PNG data URIs)."""
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(rep.name)} — "
             f"convergence report</title><style>{CSS}</style></head><body>",
             f"<h1>{html.escape(rep.name)}: how quickly does training converge?</h1>"]
    for b in rep.blocks:
        if isinstance(b, Figure):
            if b.png is None:
                parts.append(f"<figure><figcaption>{html.escape(b.title)}</figcaption>"
                             f"<p class='na'>{html.escape(b.reason)}</p></figure>")
            else:
                data = base64.b64encode(b.png).decode("ascii")
                parts.append(f"<figure><figcaption>{html.escape(b.title)}</figcaption>"
                             f"<img alt='{html.escape(b.title)}' src='data:image/png;base64,{data}'></figure>")
        elif b[0] == "h2":
            parts.append(f"<h2>{html.escape(b[1])}</h2>")
        elif b[0] == "p":
            parts.append(f"<p>{html.escape(b[1])}</p>")
        elif b[0] == "pre":
            parts.append(f"<pre>{html.escape(b[1])}</pre>")
        elif b[0] == "ul":
            parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in b[1]) + "</ul>")
        elif b[0] == "table":
            parts.append(f"<p><strong>{html.escape(b[1])}</strong></p>{_html_table(b[2])}")
    parts.append("</body></html>")
    return "\n".join(parts)


def to_markdown(rep: Report) -> str:
    """The report as Markdown; figures are the PNG files written beside it."""
    parts = [f"# {rep.name}: how quickly does training converge?"]
    for b in rep.blocks:
        if isinstance(b, Figure):
            parts.append(f"**{b.title}**\n\n" + (f"> {b.reason}" if b.png is None else f"![{b.title}]({b.name}.png)"))
        elif b[0] == "h2":
            parts.append(f"## {b[1]}")
        elif b[0] == "p":
            parts.append(b[1])
        elif b[0] == "pre":
            parts.append(f"```toml\n{b[1].rstrip()}\n```")
        elif b[0] == "ul":
            parts.append("\n".join(f"- {x}" for x in b[1]))
        elif b[0] == "table":
            parts.append(f"**{b[1]}**\n\n{_md_table(b[2])}")
    return "\n\n".join(parts) + "\n"


def slug(name: str) -> str:
    """A folder name for an experiment name."""
    return re.sub(r"[^\w.-]", "_", name)


def write(rep: Report, folder: Path) -> list[Path]:
    """Write index.html, report.md and the PNGs of one report; return the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):  # figures of an earlier build that no longer apply
        old.unlink()
    files = []
    for f in rep.figures:
        if f.png is not None:
            (folder / f"{f.name}.png").write_bytes(f.png)
            files.append(folder / f"{f.name}.png")
    (folder / "index.html").write_text(to_html(rep), encoding="utf-8")
    (folder / "report.md").write_text(to_markdown(rep), encoding="utf-8")
    return files + [folder / "index.html", folder / "report.md"]


def write_index(out: Path, entries: list[tuple[str, str, str]], uri: str):
    """``DIR/index.html``: one link per report, with its first finding."""
    items = "".join(f"<li><a href='{html.escape(slug(n))}/index.html'>{html.escape(n)}</a> — {html.escape(first)}"
                    f" <small>({html.escape(count)})</small></li>" for n, count, first in entries)
    (out / "index.html").write_text(
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>bpresearch reports</title>"
        f"<style>{CSS}</style></head><body><h1>Convergence reports</h1><p>From the MLflow store "
        f"{html.escape(uri)}, written {time.strftime('%Y-%m-%d %H:%M:%S')}.</p><ul>{items}</ul></body></html>",
        encoding="utf-8")


def _attach(uri: str, data: load.ExperimentData, folder: Path):
    """Attach the report to the latest sweep run (``report/``) so the MLflow UI shows it."""
    sweep = data.latest_sweep
    if sweep is None:
        return "no sweep run to attach the report to"
    try:
        load.client(uri).log_artifacts(sweep["run_id"], str(folder), "report")
    except Exception as e:  # noqa: BLE001 - the files on disk are the report; the copy is a convenience
        return f"could not attach the report to sweep run {sweep['run_id']}: {type(e).__name__}: {e}"
    return None


def _fail(message: str) -> int:
    print(f"bpresearch: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def main(args) -> int:
    """``bpresearch report``: write the reports of ``args.experiments`` (default: all).

    Args:
        args: ``.experiments`` (names; empty = every experiment with finished runs),
            ``.tracking_uri`` (None: ``$MLFLOW_TRACKING_URI`` or ``sqlite:///mlflow.db``),
            ``.out`` (output folder).

    Returns:
        0 on success; 2 when the store or an experiment does not exist (one line on stderr).
    """
    from bpresearch.tracking import resolve_uri

    t0 = time.perf_counter()
    uri = resolve_uri(args.tracking_uri)
    try:
        with_runs = load.experiment_names(uri)
        known = load.experiment_names(uri, finished_only=False)
    except load.StoreError as e:
        return _fail(f"report: {e}")
    names = list(dict.fromkeys(args.experiments)) or with_runs
    unknown = [n for n in names if n not in known]
    if unknown:
        return _fail(f"report: no experiment {', '.join(map(repr, unknown))} in {uri}; known: "
                     f"{', '.join(known) or 'none'}")
    if not names:
        return _fail(f"report: no experiment with finished runs in {uri} (run `make sweep` first)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for name in names:
        t1 = time.perf_counter()
        data = load.load_experiment(uri, name)
        curves = load.load_curves(uri, data.runs["run_id"]) if not data.runs.empty else load.load_curves(uri, [])
        t_load = time.perf_counter() - t1
        rep = build(data, curves)
        folder = out / slug(name)
        write(rep, folder)
        problem = _attach(uri, data, folder)
        shown = sum(f.png is not None for f in rep.figures)
        print(f"report: {name}: {len(data.runs)} runs, {len(curves):,} curve points loaded in {t_load:.1f}s; "
              f"{shown} figures; {time.perf_counter() - t1:.1f}s → {folder / 'index.html'}", file=sys.stderr)
        if problem:
            print(f"  warning: {problem}", file=sys.stderr)
        first = next((b[1][0] for b in rep.blocks if not isinstance(b, Figure) and b[0] == "ul" and b[1]), "")
        entries.append((name, f"{len(data.runs)} finished runs", first))
    write_index(out, entries, uri)
    print(f"Reports: {(out / 'index.html').resolve()} ({len(names)} experiments, "
          f"{time.perf_counter() - t0:.1f}s)")
    return 0
