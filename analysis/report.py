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

from bpresearch import tracking

from . import figures as F
from . import load
from . import measures as M
from . import predictions as P

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


# ---------------------------------------------------------------- predicted against measured
def bound_labels(factor: float) -> tuple[str, str]:
    """How the stability bound reads: ("2/λ_max", "2/η") for gradient descent, else with momentum."""
    return ("2/λ_max", "2/η") if np.isclose(factor, 2.0) else ("(2+2β)/λ_max", "(2+2β)/η")


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


def _ratio_words(r: float) -> str:
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
        ratios = [f"B_simple/{n} = {head['b_simple'] / v:.2g} ({_ratio_words(head['b_simple'] / v)})"
                  for n, v in (("B_crit", ce.b_crit), ("B_noise", lr.b_noise)) if np.isfinite(v)]
        if ratios:
            parts.append("; ".join(ratios) + ".")
    return " ".join(parts)


def predicted_table(cmp: pd.DataFrame | None, init: pd.Series | None, full: int | None, critical: list,
                    missing_boundary: str, missing_critical: str = "") -> pd.DataFrame:
    """Rows "quantity, predicted, measured, predicted ÷ measured, agreement" for every prediction.

    Args:
        cmp: ``predictions.compare_boundary`` (None: no prediction of the boundary).
        init: ``predictions.stability_at_init`` row (None likewise).
        full: the full batch size, if any.
        critical: (target, headline B_simple row or None, ``CriticalFits``, why B_simple is missing).
        missing_boundary: why the boundary is not predicted, when ``cmp`` is None.
        missing_critical: why the critical batch size is not compared at all ("" when it is).
    """
    rows = []
    if cmp is None:
        rows.append(["divergence boundary", f"not available: {missing_boundary}", "—", "—", "—"])
    else:
        lam, _ = bound_labels(init["factor"])
        for r in sorted(cmp.itertuples(), key=lambda r: r.batch_size != full):
            where = "full batch" + f" ({r.batch_size})" if r.batch_size == full else \
                f"batch size {r.batch_size} (bound derived for full batch)"
            rows.append([f"divergence boundary, {where}", f"{lam}(0) = {init['stability_lr']:.3g}", bracket_text(r),
                         f"{r.ratio:.2g}" if np.isfinite(r.ratio) else "— (bracket open)", position_text(r)])
    if missing_critical:
        rows.append(["critical batch size", "—", "—", "—", f"not compared: {missing_critical}"])
    for target, head, fits, missing in critical:
        ce, lr = fits.steps_examples, fits.lr_scaling
        b_simple = (f"B_simple = {head['b_simple']:.3g} ({bs_text(int(head['batch_size']), full)}, step"
                    f"{'s' if ',' in head['measured_steps'] else ''} {head['measured_steps']}; target reached at "
                    f"{fmt_steps(head['target_step'])})"
                    if head is not None else f"B_simple not available: {missing}")
        b_crit = f"B_crit = E_min/S_min = {ce.b_crit:.3g} ({ce.n_points} batch sizes)" if not ce.reason else \
            f"B_crit not fitted: {ce.reason}"
        b_noise = f"B_noise = {lr.b_noise:.3g} (learning-rate fit)" if not lr.reason else \
            f"B_noise not fitted: {lr.reason}"
        bs = head["b_simple"] if head is not None else np.nan
        for name, pred, meas, a, b in (("B_simple vs B_crit", b_simple, b_crit, bs, ce.b_crit),
                                       ("B_simple vs B_noise", b_simple, b_noise, bs, lr.b_noise),
                                       ("B_noise vs B_crit", b_noise, b_crit, lr.b_noise, ce.b_crit)):
            r = a / b if np.isfinite(a) and np.isfinite(b) and b > 0 else np.nan
            rows.append([f"critical batch size, loss {target:g}: {name}", pred, meas,
                         f"{r:.2g}" if np.isfinite(r) else "—", _ratio_words(r)])
    return pd.DataFrame(rows, columns=["quantity", "predicted", "measured", "predicted ÷ measured", "agreement"])


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


@dataclass
class Predicted:
    """What the diagnostics predict for one experiment, and why a prediction is missing."""
    init: pd.Series | None               # predictions.stability_at_init row (the gradient-descent optimizer)
    cmp: pd.DataFrame | None             # predictions.compare_boundary
    missing_boundary: str                # why there is no boundary prediction ("" when there is)
    missing_noise: str                   # why there is no B_simple ("" when there is)
    eos: pd.DataFrame                    # predictions.edge_of_stability
    every: int | None                    # steps between diagnostic measurements
    critical: dict = field(default_factory=dict)  # target -> (near, headline row or None, CriticalFits)

    @property
    def lr_mark(self) -> tuple[float, str] | None:
        if self.init is None:
            return None
        return self.init["stability_lr"], f"{bound_labels(self.init['factor'])[0]}(0) = {self.init['stability_lr']:.3g}"

    def bracket(self, full: int | None) -> tuple[float, float, str] | None:
        """The measured full-batch divergence boundary (highest stable, lowest diverged η), when closed."""
        if self.cmp is None or full is None or not (self.cmp["batch_size"] == full).any():
            return None
        r = self.cmp[self.cmp["batch_size"] == full].iloc[0]
        if not (np.isfinite(r["lowest_diverged"]) and np.isfinite(r["highest_stable"])):
            return None
        return r["highest_stable"], r["lowest_diverged"], \
            f"measured boundary, full batch: ({r['highest_stable']:.3g}, {r['lowest_diverged']:.3g}]"

    def marks(self, target: float) -> list[tuple[str, float]]:
        """Vertical lines for the scaling plot: B_simple near the target, B_crit, B_noise."""
        if target not in self.critical:
            return []
        _, head, fits = self.critical[target]
        out = [("B_simple near target", head["b_simple"] if head is not None else np.nan),
               ("B_crit (S–E fit)", fits.steps_examples.b_crit), ("B_noise (η fit)", fits.lr_scaling.b_noise)]
        return [(k, v) for k, v in out if np.isfinite(v)]


def _diag_flag(runs: pd.DataFrame, name: str) -> bool:
    col = f"params.diagnostics.{name}"
    return col in runs and (runs[col] == "True").any()


def predict(runs: pd.DataFrame, curves: pd.DataFrame, table: pd.DataFrame, bests: dict, full: int | None) -> Predicted:
    """The three predictions of ``analysis.predictions`` for one experiment, with reasons where missing.

    Args:
        runs: the runs frame; curves: its curves (with the diagnostic keys).
        table: ``measures.steps_to_target``; bests: target -> ``measures.best_learning_rate``.
        full: the full batch size, if any.
    """
    gd = runs[runs["optimizer"] != "random_search"]
    eval_every = int(runs["params.train.eval_every"].iloc[0]) if "params.train.eval_every" in runs else 1
    if not (_diag_flag(runs, "sharpness") or _diag_flag(runs, "noise_scale")):
        none = ("no diagnostics were logged (the experiment file has no [diagnostics] section, or it turns both "
                "sharpness and noise_scale off)")
        return Predicted(None, None, none, none, P.edge_of_stability(curves.iloc[0:0], runs), None)
    # The sweep rounds diagnostics.every up to a multiple of eval_every.
    every = -(-int(runs["params.diagnostics.every"].iloc[0]) // eval_every) * eval_every
    init = P.stability_at_init(curves, gd)
    missing_boundary = ""
    if not _diag_flag(runs, "sharpness"):
        missing_boundary = "the sharpness was not measured (diagnostics.sharpness = false)"
    elif init.empty:
        missing_boundary = "no stable step was logged at step 0 (the optimizer has no stable-step bound, or no run " \
                           "logged sharpness)"
    elif init["optimizer"].nunique() > 1:
        missing_boundary = "several gradient optimizers share this experiment; their bounds differ"
    init_row = None if missing_boundary else init.iloc[0]
    cmp = None
    if init_row is not None:
        frac = M.diverged_fraction(gd[gd["optimizer"] == init_row["optimizer"]])
        cmp = P.compare_boundary(P.divergence_bracket(frac), float(init_row["stability_lr"]))
    eos = P.edge_of_stability(curves, gd, init_row["factor"] if init_row is not None else 2.0)
    if bests:  # whether each run reached the first target: stable is not the same as converged
        first = table[table["target"] == next(iter(bests))][["run_id", "reached"]]
        eos = eos.merge(first, on="run_id", how="left")
    missing_noise = "" if _diag_flag(runs, "noise_scale") else \
        "the gradient noise scale was not measured (diagnostics.noise_scale = false)"
    pred = Predicted(init_row, cmp, missing_boundary, missing_noise, eos, every)
    for t, best in bests.items():
        near = P.noise_scale_near_target(curves, table[table["target"] == t], best) if not missing_noise else \
            pd.DataFrame()
        head = P.headline_noise_scale(near)
        if not missing_noise and (head is None or head["measured_steps"] == "0"):
            # no run was measured near its target step: take B_simple where full-batch GD's loss ≈ target
            head = P.noise_scale_at_loss(curves, gd, t) if "full_batch" in gd else None
            head = head if head is not None else P.headline_noise_scale(near)
        pred.critical[t] = (near, head, P.critical_fits(best))
    return pred


def _predicted_section(rep: Report, findings: list, pred: Predicted, curves: pd.DataFrame, full: int | None,
                       targets: list[float], n_bs: int):
    """The "Predicted versus measured" section: table, edge-of-stability figure, noise scales, fits."""
    rep.h2("Predicted versus measured")
    if pred.every is None:
        rep.p(f"Nothing is predicted: {pred.missing_boundary}. A [diagnostics] section with sharpness = true and "
              "noise_scale = true predicts the divergence boundary (2/λ_max) and the critical batch size (B_simple).")
        return
    rep.p("Measured, on a grid: the divergence boundary lies between the highest learning rate at which no seed "
          "diverged and the lowest at which some seed did; the table gives that bracket and its geometric midpoint, "
          "and the prediction is judged by whether it falls inside. Critical batch sizes: B_simple is the exact "
          "gradient noise scale tr(Σ)/|G|² at the measured step nearest the target; B_crit = E_min/S_min and B_noise "
          "are fitted to the best learning rate per batch size (McCandlish et al. 2018).")
    if pred.cmp is not None:
        findings += findings_boundary(pred.cmp, pred.init, full)
    else:
        findings.append(f"The divergence boundary is not predicted: {pred.missing_boundary}.")
    findings += findings_edge(pred.eos, pred.init, pred.every)
    critical, critical_missing = [], ""
    if n_bs < 2:
        critical_missing = "one batch size was run, so neither B_crit nor B_noise can be fitted"
        findings.append(f"The critical batch size is not compared: {critical_missing}.")
    for t in targets if n_bs >= 2 else []:
        _, head, fits = pred.critical[t]
        missing = pred.missing_noise or (f"no best run at any batch size reached loss {t:g} with the noise scale "
                                         f"logged" if head is None else "")
        critical.append((t, head, fits, missing))
        findings.append(findings_critical(t, head, fits, full, pred.every, missing))
    rep.table("Predicted vs measured", predicted_table(pred.cmp, pred.init, full, critical, pred.missing_boundary,
                                                       critical_missing))
    _, eta = bound_labels(pred.init["factor"]) if pred.init is not None else ("", "2/η")
    rep.figure("edge_of_stability", f"Full batch: sharpness over training against {eta} (edge of stability)",
               lambda: F.edge_of_stability(curves, pred.eos, eta))
    if not pred.eos.empty:
        e = pred.eos.groupby("learning_rate").agg(
            seeds=("seed", "size"), sharpness_0=("sharpness_0", "median"), sharpness_max=("sharpness_max", "median"),
            sharpness_end=("sharpness_end", "median"), bound=("bound", "first"),
            end_over_bound=("end_over_bound", "median"), last_step=("last_step", "max")).reset_index()
        rep.table(f"Sharpness of full-batch runs against {eta} (medians over the seeds measured after step 0)",
                  e.rename(columns={"learning_rate": "η", "sharpness_0": "λ_max step 0", "sharpness_max": "λ_max max",
                                    "sharpness_end": "λ_max last", "bound": eta, "end_over_bound": f"last ÷ {eta}",
                                    "last_step": "last step"}))
    if n_bs >= 2 and not pred.missing_noise:
        for t, (near, head, fits) in pred.critical.items():
            if near.empty:
                continue
            rep.table(f"B_simple near loss {t:g}: per batch size, the best run's noise scale at the measured step "
                      f"closest to the step it reached the target", near.assign(
                          batch_size=near["batch_size"].map(lambda b: f"full ({b})" if b == full else str(b)))
                      .drop(columns=["optimizer", "rel_gap"]).rename(columns={
                          "batch_size": "batch size", "learning_rate": "η", "b_simple": "B_simple (median)",
                          "b_simple_min": "seeds min", "b_simple_max": "seeds max",
                          "target_step": "target reached (median step)", "measured_steps": "noise scale taken at step",
                          "max_gap": "largest gap (steps)", "n": "seeds"}))
        fit_rows = [{"target": f"{t:g}", "S_min": f.steps_examples.s_min, "E_min": f.steps_examples.e_min,
                     "B_crit": f.steps_examples.b_crit, "ε_max": f.lr_scaling.eps_max, "B_noise": f.lr_scaling.b_noise,
                     "points": f.steps_examples.n_points,
                     "why missing": "; ".join(x for x in (f.steps_examples.reason, f.lr_scaling.reason) if x) or "—"}
                    for t, (_, _, f) in pred.critical.items()]
        rep.table("Critical-batch fits (analysis.critical) on the best learning rate per batch size",
                  pd.DataFrame(fit_rows))


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
        if "full_batch" in runs:  # full batch counts every step; the full_train_loss curve only every E
            fb = table["run_id"].map(runs.set_index("run_id")["full_batch"]).fillna(False).to_numpy(bool)
            bad &= ~(fb & (table["steps"].fillna(np.inf).to_numpy() <= check["steps"].fillna(np.inf).to_numpy()))
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

    bests = {t: M.best_learning_rate(cell[cell["optimizer"] != "random_search"], t) for t in targets}
    pred = predict(runs, curves, table, bests, full)
    for t in targets:
        best = bests[t]
        if not seed_graph:
            findings += findings_best(best, t, budget, full) if t == targets[0] else \
                [findings_best_short(best, t, full)]
        rep.h2(f"Steps to loss {t:g}")
        rep.table(f"Best learning rate per batch size (fewest median steps to loss {t:g}; ties: better worst seed)",
                  best_table(best, full))
        rep.table(f"Outcomes of all runs for loss {t:g}", outcome_table(cell, t, full))
        if n_bs >= 2:
            rep.figure(f"heatmap_{M.target_label(t)}", f"Steps to loss {t:g} over learning rate × batch size",
                       lambda t=t: F.steps_heatmap(cell, t, full, pred.lr_mark))
            curve = M.scaling_curve(best)
            if t in (targets[0], targets[-1]):  # the loosest and the tightest target
                findings += findings_scaling(curve, t, full)
            rep.figure(f"scaling_{M.target_label(t)}", f"Steps and examples to loss {t:g} against batch size",
                       lambda curve=curve, t=t: F.scaling(curve, t, full, eval_every, pred.marks(t)))
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
                   lambda: F.sensitivity(sens, full, pred.lr_mark, pred.bracket(full)))

    _predicted_section(rep, findings, pred, curves, full, targets, n_bs)

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
    from bpresearch.seed import seed_example

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
        tracking.attach_folder(uri, sweep["run_id"], folder, "report")
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
        keys = load.CURVE_KEYS + P.DIAGNOSTIC_KEYS
        curves = load.load_curves(uri, data.runs["run_id"], keys) if not data.runs.empty else load.load_curves(uri, [])
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
