"""One variant's report from its frames: which measures, figures, tables and findings, in order.

A variant (``load.Variant``) is one set of fixed settings of an experiment; its runs are
split into *groups*, one per combination of facet values (every swept key other than
learning rate, batch size and seed: ``optimizer.kind``, ``model.activation`` …). Every
measure is computed within a group, so runs are never pooled across facet values; a
*cell* is a group × batch size (× learning rate). Tables carry one column per facet,
figures one panel, colour or figure per group, and findings name the group they are
about; ``summary`` collects the same numbers for ``summary.json``.

A report never trains: it reads the store. What it cannot show (no finished runs, no
curves, every run diverged) it says plainly where the figure or table would be.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from bpresearch import keys as R

from . import figures as F
from . import load, refinement
from . import measures as M
from . import predictions as P
from . import seedfigs as SF
from . import uncertainty as U
from .groups import Group, _combined, _value_text, facet_label, split_groups
from .predictions import bound_labels
from .prose import (
    findings_best_intervals,
    findings_best_short,
    findings_compare,
    findings_divergence,
    findings_lost,
    findings_not_reached,
    findings_random,
    findings_resolution,
    findings_scaling_intervals,
    findings_seed_graph,
    findings_sensitivity,
    findings_steps_source,
    findings_untuned,
    fmt_steps,
    headline_divergence,
    headline_fastest,
)
from .prose_predicted import findings_boundary, findings_critical_paths, findings_sharpness, findings_two_noises
from .render import Figure, Report
from .summary import variant_summary
from .tables import (
    best_table,
    critical_table,
    divergence_table,
    outcome_table,
    predicted_table,
    scaling_table,
    with_facets,
)


# ---------------------------------------------------------------- what was run
def _what_was_run(rep: Report, data: load.ExperimentData, variant: load.Variant, groups: list[Group],
                  others: list[tuple[load.Variant, str | None]]):
    sweep = variant.latest_sweep
    rep.h2("What was run")
    if data.description:
        rep.p(data.description)
    items = [f"This page: {variant.label} — {len(variant.runs)} finished runs "
             f"(of {len(data.runs)} in the experiment), from {len(variant.sweeps)} sweep(s)."]
    if variant.facets:
        items.append("Swept besides learning rate, batch size and seed (each value analysed on its own, never "
                     "pooled): " + "; ".join(f"{f} = {', '.join(_value_text(v) for v in sorted(set(variant.runs[f])))}"
                                             for f in variant.facets) + ".")
    seeds = variant.runs.groupby([*variant.facets, "batch_size", "learning_rate"])["seed"].nunique() \
        if not variant.runs.empty else pd.Series(dtype=int)
    if not seeds.empty:
        lo, hi = int(seeds.min()), int(seeds.max())
        items.append(f"Seeds per cell (facet values × batch size × learning rate): {lo}" +
                     (f"–{hi}" if hi != lo else ""))
    if others:
        listed = "; ".join(f"{v.label} ({len(v.runs)} runs" + (f", page {link}" if link else "") + ")"
                           for v, link in others)
        items.append(f"Other variants of this experiment (sweeps with other fixed settings, reported separately, "
                     f"never mixed with these runs): {listed}.")
    items.append(f"MLflow store: {data.uri} (experiment id {data.experiment_id})")
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
    if data.unfinished:
        items.append("Ignored (not FINISHED): " + ", ".join(f"{n} {s}" for s, n in sorted(data.unfinished.items())))
    items.append(f"Report written {time.strftime('%Y-%m-%d %H:%M:%S')}")
    rep.ul(items)
    text = load.resolved_config_text(variant)
    if text:
        rep.p("Resolved configuration (every default filled in):")
        rep.pre(text)


# ---------------------------------------------------------------- predicted against measured
def _predicted_section(rep: Report, g: Group, n_bs: int):
    """Table, edge-of-stability figure, noise scales and fits of one group."""
    pred, full, targets, curves, runs = g.pred, g.full, g.targets, g.curves, g.runs
    table, intervals = g.distinct_table, g.intervals
    findings: list[str] = []
    rep.ul(findings)
    if pred.every is None:
        rep.p(f"Nothing is predicted: {pred.missing_boundary}. A [diagnostics] section with sharpness = true and "
              "noise_scale = true predicts the divergence boundary (2/λ_max) and the critical batch size (B_simple).")
        return
    if pred.cmp is not None:
        findings += findings_boundary(pred.cmp, pred.init, full)
    else:
        findings.append(f"The divergence boundary is not predicted: {pred.missing_boundary}.")
    factor = pred.init["factor"] if pred.init is not None else 2.0
    regimes = P.sharpness_regimes(curves, runs, factor)
    findings += findings_sharpness(regimes, factor, pred.every, P.EOS_BAND, P.EOS_STRETCH)
    critical_rows = []
    if n_bs < 2:
        findings.append("The critical batch size is not compared: one batch size was run, so B_crit cannot be "
                        "fitted.")
    for t in targets if n_bs >= 2 else []:
        t_table = table[table["target"] == t]
        paths = {k: P.noise_path_average(curves, runs, t_table, k) for k in (R.HESSIAN_NOISE_SCALE, R.NOISE_SCALE)}
        fit = next(iter(intervals[t].fits.values()), None) if t in intervals else None
        reason = "; ".join(x for x in (pred.critical[t][2].steps_examples.reason,) if x) if t in pred.critical else ""
        findings.append(findings_critical_paths(t, fit, reason, paths, pred.missing_noise))
        critical_rows.append((t, fit, reason, paths))
    rep.table("Predicted vs measured: the divergence boundary", predicted_table(
        pred.cmp, pred.init, full, [], pred.missing_boundary, ""))
    if critical_rows:
        rep.table("Critical batch size: fitted from the sweep (90% intervals over seeds) against noise scales "
                  "measured along full-batch training", critical_table(critical_rows))
    _, eta = bound_labels(factor)
    rep.figure(f"edge_of_stability{_sfx(g)}", f"Full batch: sharpness over training against {eta} (edge of stability)"
               + _of(g), lambda: F.edge_of_stability(curves, pred.eos, eta))
    if not regimes.empty:
        e = regimes.groupby(["learning_rate", "regime"]).agg(
            seeds=("seed", "size"), r0=("ratio_0", "median"), rmin=("ratio_min", "median"),
            rmax=("ratio_max", "median"), rend=("ratio_end", "median"), edge=("edge_steps", "first"),
            drop=("drop_step", "min"), last_step=("last_step", "max")).reset_index()
        e["drop"] = e["drop"].map(lambda x: "—" if x < 0 else str(int(x)))
        e["edge"] = e["edge"].replace("", "—")
        for col in ("r0", "rmin", "rmax", "rend"):
            e[col] = e[col].map(lambda x: f"{x:.3g}")
        rep.table(f"Sharpness of full-batch runs ÷ {eta} (medians over seeds; edge of stability: within "
                  f"±{P.EOS_BAND:.0%} for ≥ {P.EOS_STRETCH} consecutive measurements)",
                  e.rename(columns={"learning_rate": "learning rate η", "regime": "what the sharpness did",
                                    "seeds": "runs", "r0": f"step 0 ÷ {eta}", "rmin": f"min ÷ {eta}",
                                    "rmax": f"max ÷ {eta}", "rend": f"last ÷ {eta}",
                                    "edge": "longest stretch in band (steps)", "drop": "fell under half at step",
                                    "last_step": "last measured step"}))


def _marks(si) -> list[tuple[str, float]]:
    """Vertical lines for the scaling plot: the fitted B_crit (with its interval in the label)."""
    if si is None or not si.fits:
        return []
    fit = next(iter(si.fits.values()))
    b = fit["b_crit"]
    if not np.isfinite(b.point):
        return []
    label = "B_crit (S–E fit" + (f", 90%: {b.lo:.3g}–{b.hi:.3g})" if np.isfinite(b.lo) else ")")
    return [(label, b.point)]


def _sfx(g: Group) -> str:
    return f"_{g.key}" if g.key else ""


def _of(g: Group) -> str:
    return f" — {g.label}" if g.label else ""


# ---------------------------------------------------------------- the report
def build(data: load.ExperimentData, curves: pd.DataFrame, variant: load.Variant | None = None,
          others: list[tuple[load.Variant, str | None]] = ()) -> Report:
    """Measures, figures, tables and findings of one variant of an experiment.

    Args:
        data: the experiment as ``load.load_experiment`` read it.
        curves: its runs' curves (``load.load_curves``; may hold other variants' runs too).
        variant: which variant (default: the first, the base sweep).
        others: the experiment's other variants and the relative link to each one's page.

    Returns:
        The ``Report`` (``rep.summary`` holds its ``summary.json`` entry); it always builds,
        saying plainly what the data cannot show.
    """
    if variant is None:
        variant = data.variants[0] if data.variants else load.Variant("base", {}, {}, [], data.runs, data.sweeps)
    title = data.name if variant.base or len(data.variants) <= 1 else f"{data.name} — {variant.label}"
    rep = Report(title)
    headlines: list[str] = []
    rep.h2("Summary")
    rep.ul(headlines)  # filled below; the list object is shared
    summary_at = len(rep.blocks)
    runs = variant.runs
    groups = split_groups(runs, curves, variant.facets) if not runs.empty else []
    _what_was_run(rep, data, variant, groups, list(others))
    rep.summary = variant_summary(variant, groups)
    if runs.empty:
        headlines.append("This experiment has no FINISHED runs: there is nothing to analyse"
                         + (f" ({', '.join(f'{n} {s}' for s, n in data.unfinished.items())} ignored)."
                            if data.unfinished else "."))
        return rep
    notes: list[str] = []
    if curves.empty or curves[curves["run_id"].isin(runs["run_id"])].empty:
        notes.append("No curves (metric histories) were found for these runs: the loss-curve figures are "
                     "missing; steps to target come from the logged summaries.")
    if runs["diverged"].all():
        headlines.append(f"Every one of the {len(runs)} runs diverged: no learning rate in this grid trains stably.")
    for g in groups:
        notes += [g.prefix(s) for s in findings_steps_source(g.steps)]
    targets = groups[0].targets
    if not targets:
        notes.append("The runs have no loss targets (train.targets): steps to target cannot be measured.")
    gd_groups = [g for g in groups if g.gd]
    gd_runs = runs[runs["optimizer"] != "random_search"]
    n_bs, n_lr = gd_runs["batch_size"].nunique(), gd_runs["learning_rate"].nunique()
    full = F.full_batch_size(runs)
    seed_graph = (runs.get(f"params.{R.MODEL}") == "seed_graph").all()
    facets = variant.facets
    headline_figure = None

    # The seed's graph first: it is that experiment's whole point.
    found: list[str] = []
    verdicts = {}   # group key -> verdicts of the first target: converged, slow, oscillates, diverged
    for g in groups:
        if targets and not g.curves.empty:
            v = M.verdicts(g.steps.table[g.steps.table["target"] == targets[0]], M.oscillation(g.curves))
            verdicts[g.key] = v.merge(g.runs[["run_id", "diverged_step"]], on="run_id")
    if seed_graph:
        rep.h2("The seed's computational graph")
        rep.ul(found)
        for g in groups:
            v = verdicts.get(g.key)
            gd_cell = g.cell[g.cell["optimizer"] != "random_search"]
            best0 = M.best_learning_rate(gd_cell, targets[0]).iloc[0] if targets and not gd_cell.empty else None
            ex = _seed_example(g.runs)
            post = None
            if ex:
                at = v[np.isclose(v["learning_rate"], ex["lr"])] if v is not None else pd.DataFrame()
                post = SF.worked_update(ex, at["verdict"].iloc[0] if not at.empty else None, best0,
                                        targets[0] if targets else 0.0)
                found.append(g.prefix(post["sentence"]))
            rep.figure(f"seed_graph{_sfx(g)}", "The graph f = (x+y)·z: values (forward) and gradients (backward), and "
                       "the post's one-step update with η = 0.1" + _of(g),
                       lambda ex=ex, post=post, best0=best0: SF.seed_graph_update(
                           ex, post, best0, targets[0] if targets else 0.0) if ex else
                       (_ for _ in ()).throw(F.NotApplicable("the runs lack the model.start / data.target params")))
            if v is not None:
                lines = [g.prefix(s) for s in findings_seed_graph(v, g.curves, targets[0], g.budget)]
                found += lines
                headlines += [s for s in lines if "converged (loss" in s or "The post's" in s]
                rep.figure(f"seed_graph_curves{_sfx(g)}", "Which learning rates η converge?" + _of(g),
                           lambda v=v, g=g: F.seed_graph_curves(g.curves, v, targets[0]))
                headline_figure = headline_figure or f"seed_graph_curves{_sfx(g)}"
    model_kind = runs.get(f"params.{R.MODEL}")
    for g in groups:
        seed_found = found if seed_graph else []
        if targets and model_kind is not None and model_kind.isin(["seed_graph", "neuron"]).all() and g.gd:
            seed_found += [g.prefix(s) for s in SF.findings_small_vs_best(g.cell, g.runs, targets[0], g.budget,
                                                                          g.full)]  # docs/seed.md §3: too small is slow
        ball: list[str] = []
        _ball_section(rep, ball, data, g.runs, g.curves, verdicts.get(g.key), targets, _sfx(g), _of(g))
        _grad_tol_section(rep, ball, g.runs, g.steps.table, targets, g.budget)
        if not seed_graph and (seed_found or ball):
            notes_seed = [g.prefix(s) for s in seed_found + ball]
            rep.ul(notes_seed)
        elif ball:
            rep.ul([g.prefix(s) for s in ball])
    if notes:
        rep.h2("Notes on the data")
        rep.ul(notes)

    if not seed_graph:  # its own curve figure above says more
        rep.h2("Loss curves")
        for g in gd_groups:
            rep.figure(f"loss_curves{_sfx(g)}", "How does the full training loss fall, per learning rate and batch "
                       "size?" + _of(g), lambda g=g: F.loss_curves(g.curves, g.runs, R.FULL_TRAIN_LOSS,
                                                                   targets[0] if targets else None))

    for t in targets:
        rep.h2(f"Steps to loss {t:g}")
        found = []
        rep.ul(found)
        cell = _combined(gd_groups, lambda g: g.cell, facets)
        best = _combined(gd_groups, lambda g: g.bests.get(t), facets)
        refined = refinement.settings(variant.resolved)   # [sweep] refine of the latest sweep, if any
        brs = {}
        if refined and any(abs(t - x) <= 1e-9 * abs(x) for x in refined["targets"]):
            for g in gd_groups:
                gd_g = g.runs[g.runs["optimizer"] != "random_search"]
                brs[g.key] = refinement.bracket(g.cell[g.cell["optimizer"] != "random_search"], g.bests[t], t,
                                                refined["resolution"], gd_g)
                if g.label:
                    rep.p(g.label)
                rep.table(f"Refined optimum per batch size and its bracket (the neighbours' median steps to loss "
                          f"{t:g}); configurations run against a uniform grid at spacing "
                          f"×{refined['resolution']:.3g} over the same range", refinement.table(brs[g.key], full,
                                                                                              fmt_steps))
                found += [g.prefix(x) for x in refinement.findings(brs[g.key], t, refined["resolution"], full)]

        def scaling_of(g):
            curve = M.scaling_curve(g.bests[t])
            if g.key in brs:  # the figure marks batch sizes whose optimum is not resolved
                curve = curve.merge(brs[g.key][["optimizer", "batch_size", "resolved"]], on=["optimizer", "batch_size"])
            return curve

        if n_bs >= 2:
            curve = _combined(gd_groups, scaling_of, facets)
            marks = _marks(gd_groups[0].intervals.get(t)) if len(gd_groups) == 1 else []
            every = max(g.eval_every for g in gd_groups) if gd_groups else 1
            name = f"scaling_{M.target_label(t)}"
            rep.figure(name, f"Steps and examples to loss {t:g} against batch size",
                       lambda curve=curve, t=t, marks=marks, every=every: F.scaling(curve, t, full, every, marks))
            if t == targets[0] and not seed_graph:
                headline_figure = headline_figure or name
            rep.figure(f"heatmap_{M.target_label(t)}", f"Steps to loss {t:g} over learning rate × batch size",
                       lambda cell=cell, t=t: F.steps_heatmap(cell, t, full, gd_groups[0].pred.lr_mark
                                                              if len(gd_groups) == 1 else None))
        if len(gd_groups) > 1:
            compare = findings_compare(best, t, full)
            found += compare
            if t == targets[0]:
                headlines += compare[:1]
        if t == targets[0] and not seed_graph and gd_groups:
            headlines += headline_fastest(best, t, full)
        for g in gd_groups:
            if g.runs["optimizer"].eq("random_search").all():
                continue
            b = g.bests[t]
            if not seed_graph:
                found += [g.prefix(s) for s in (findings_best_intervals(b, t, g.budget, g.full, g.distinct)
                                                if t == targets[0] else [findings_best_short(b, t, g.full)])]
                if t == targets[0] and len(b) > 1:
                    found += [g.prefix(s) for s in findings_untuned(b, t, g.full)]
            if t in g.intervals and t in (targets[0], targets[-1]):  # the loosest and the tightest target
                sc = [g.prefix(s) for s in findings_scaling_intervals(b, g.intervals[t].per_group, t, g.full,
                                                                      g.resolution)]
                found += sc
                if t == targets[0] and len(gd_groups) <= 2:
                    headlines += sc[:1]
            if not seed_graph:
                found += [g.prefix(s) for s in findings_resolution(b, t, g.eval_every, g.full)]
            if t == targets[0] and not seed_graph:
                found += [g.prefix(s) for s in findings_not_reached(g.cell, t, g.budget, g.full)]
                found += [g.prefix(s) for s in findings_lost(g.steps.table, t, g.full)]
        rep.table(f"Best learning rate per {_cell_words(facets)} (fewest median steps to loss {t:g}; ties: better "
                  f"worst seed; steps: the interval between the last evaluation above the target and the first "
                  f"below)", with_facets(best, facets, lambda b: best_table(b, full, _group_of(gd_groups, b).distinct)))
        scal = _combined([g for g in gd_groups if t in g.intervals], lambda g: g.bests[t], facets)
        if not scal.empty:
            res = max(g.resolution for g in gd_groups if t in g.intervals)
            rep.table(f"Scaling to loss {t:g}: 90% intervals over seeds (bootstrap, {U.N_BOOT} resamples of the "
                      f"seeds within each cell; steps on a common grid of {res})",
                      with_facets(scal, facets, lambda b: scaling_table(b, _group_of(gd_groups, b).intervals[t]
                                                                        .per_group, full)))
        every_cell = _combined(groups, lambda g: g.cell, facets)  # random search too: every run is counted
        rep.table(f"Outcomes of all runs for loss {t:g}", with_facets(every_cell, facets,
                                                                      lambda c: outcome_table(c, t, full),
                                                                      keep_optimizer=False))

    rep.h2("Divergence")
    found = []
    rep.ul(found)
    if not seed_graph:  # its findings above already say which η diverged
        for g in gd_groups:
            found += [g.prefix(s) for s in findings_divergence(g.frac, g.full)]
    headlines += headline_divergence(runs, facets)
    frac = _combined(gd_groups, lambda g: g.frac, facets)
    rep.table(f"Cells with diverged runs ({_cell_words(facets)} × learning rate)",
              with_facets(frac, facets, lambda f: divergence_table(f, full), empty="No run diverged."))

    if n_lr >= 2:
        rep.h2("Learning-rate sensitivity")
        found = []
        rep.ul(found)
        if not seed_graph:
            for g in gd_groups:
                found += [g.prefix(s) for s in findings_sensitivity(g.sens, g.full)]
        sens = _combined(gd_groups, lambda g: g.sens, facets)
        one = gd_groups[0].pred if len(gd_groups) == 1 else None
        rep.figure("sensitivity", "How much does the final loss depend on the learning rate?",
                   lambda: F.sensitivity(sens, full, one.lr_mark if one else None, one.bracket(full) if one else None))

    rep.h2("Predicted versus measured")
    rep.p("Measured, on a grid: the divergence boundary lies between the highest learning rate at which no seed "
          "diverged and the lowest at which some seed did; the table gives that bracket and its geometric midpoint, "
          "and the prediction is judged by whether it falls inside. Critical batch size: B_crit = E_min/S_min is "
          "fitted to the best learning rate per tuned batch size (S = S_min + E_min/B, McCandlish et al. 2018), with "
          "a 90% interval from a bootstrap over seeds; under that model B_crit is the noise scale averaged along "
          "training, so it is set beside the step-weighted path averages of the measured noise scales, B_noise = "
          "tr(HΣ)/(GᵀHG) and B_simple = tr(Σ)/|G|², taken only where the loss was above the target and |G| ≥ 1% of "
          "its start.")
    for g in gd_groups:
        if g.label:
            rep.h3(g.label)
        _predicted_section(rep, g, g.runs[g.runs["optimizer"] != "random_search"]["batch_size"].nunique())
        if g is gd_groups[0] and g.pred.cmp is not None:
            lines = findings_boundary(g.pred.cmp, g.pred.init, g.full)
            headlines += [g.prefix(lines[0])] if lines and len(headlines) < 5 else []

    if full is not None and (runs["batch_size"] == 1).any() and full != 1:
        rep.h2("Batch versus stochastic training")
        for g in gd_groups:
            if g.label:
                rep.h3(g.label)
            noise = M.curve_noise(g.curves)
            stable = g.runs[~g.runs["diverged"]]
            nb = M.noise_by_batch_size(noise, stable)
            nt = M.noise_by_batch_size(M.trajectory_noise(g.curves), stable)
            rep.ul([g.prefix(s) for s in findings_two_noises(nb, nt, full, g.eval_every)])
            rep.figure(f"batch_vs_stochastic{_sfx(g)}", "Batch (red) against stochastic (blue) training" + _of(g),
                       lambda g=g, noise=noise: F.batch_vs_stochastic(g.curves, g.runs, noise))
            for what, frame in (("Minibatch-loss noise: std of the step-to-step change of the log loss on the batch "
                                 "the optimizer sees (median over seeds)", nb),
                                (f"Trajectory noise: std of the change of the log full training loss between "
                                 f"evaluations every {g.eval_every} steps (median over seeds)", nt)):
                table = frame.pivot(index="learning_rate", columns="batch_size", values="noise").round(4)
                table.columns = [f"batch size {'full (%d)' % b if b == full else b}" for b in table.columns]
                rep.table(what, table.reset_index().rename(columns={"learning_rate": "learning rate η"}))

    if "random_search" in set(runs["optimizer"]):
        rep.h2("Random search against gradient descent")
        others_f = [f for f in facets if f != "optimizer.kind"]
        parts = [({}, runs)] if not others_f else \
            [(dict(zip(others_f, k if isinstance(k, tuple) else (k,))), g) for k, g in runs.groupby(others_f)]
        for values, sub in parts:
            label = facet_label(values)
            sc = curves[curves["run_id"].isin(sub["run_id"])]
            bsf = M.best_so_far(sc, sub)
            if targets and not bsf.empty:
                table = pd.concat([g.steps.table for g in groups if g.runs["run_id"].isin(sub["run_id"]).any()])
                lines = [f"{label}: {s}" if label else s for s in findings_random(bsf, table, targets[0])]
                rep.ul(lines)
                # the headline: random search against the gradient-descent learning rate that ended lowest
                end = bsf[bsf.groupby("run_id")["evaluations"].transform("max") == bsf["evaluations"]]
                rank = end.groupby(["optimizer", "learning_rate"])["best"].median().reset_index()
                rank = rank.assign(rs=rank["optimizer"] == "random_search").sort_values(
                    ["rs", "best"], ascending=[False, True])
                keys = list(end.groupby(["optimizer", "learning_rate"]).groups)
                order = [keys.index((o, lr)) for o, lr in zip(rank["optimizer"], rank["learning_rate"])]
                picked = [lines[i] for i in order if rank.iloc[order.index(i)]["rs"]][:1] + \
                    [lines[i] for i in order if not rank.iloc[order.index(i)]["rs"]][:1]
                headlines += picked
            name = "random_vs_gd" + (f"_{load.slug_text('_'.join(map(_value_text, values.values())))}" if label else "")
            rep.figure(name, "Best loss so far against loss evaluations" + (f" — {label}" if label else ""),
                       lambda bsf=bsf: F.random_vs_gd(bsf, targets[0] if targets else None))
            headline_figure = headline_figure or name

    if headline_figure is None and gd_groups and not seed_graph:
        headline_figure = f"loss_curves{_sfx(gd_groups[0])}"
    _to_summary(rep, headline_figure, summary_at)
    del headlines[5:]
    rep.summary["headlines"] = list(headlines)
    return rep


def _group_of(groups: list[Group], frame: pd.DataFrame) -> Group:
    """The group a slice of a combined frame (``_combined``) came from."""
    label = frame["group"].iloc[0] if "group" in frame and not frame.empty else ""
    return next(g for g in groups if g.label == label)


def _cell_words(facets: list[str]) -> str:
    return " × ".join([*facets, "batch size"])


def _to_summary(rep: Report, name: str | None, at: int):
    """Move the figure that best answers the question up into the summary; leave a pointer behind."""
    for i, b in enumerate(rep.blocks):
        if isinstance(b, Figure) and b.name == name and b.png is not None:
            rep.blocks[i] = ("p", f"({b.title}: the figure is in the summary at the top.)")
            rep.blocks.insert(at, b)
            return


def _ball_section(rep: Report, findings: list, data: load.ExperimentData, runs: pd.DataFrame,
                  curves: pd.DataFrame, v: pd.DataFrame | None, targets: list[float], sfx: str = "", of: str = ""):
    """docs/seed.md §3, the ball on the curve: iterates from the logged param/<name> histories on J(w)."""
    names = SF.param_names(runs)
    if not names:
        return
    rep.h2("The ball on the curve" + of)
    logged = ", ".join(R.param_metric(n) for n in names)
    if len(names) > 2:
        rep.p(f"Each parameter's trajectory is logged as a metric history ({logged}); with {len(names)} parameters "
              "J cannot be drawn as a curve or contours: compare the histories in the MLflow UI.")
        return
    rep.p("Gradient descent as a ball rolling down the loss: w ← w − η·∇J(w). The dots are the iterates the sweep "
          f"logged ({logged}), drawn on J evaluated over a grid from the runs' resolved config; the learning rates "
          "are chosen from this sweep's results: the slowest that reached the target, the fastest, and the "
          "smallest that diverged (or else oscillated).")
    picks = SF.pick_runs(v, targets[0]) if v is not None else []
    findings += SF.findings_ball(picks, names)
    track = SF.paths(curves, names)

    def draw():
        if v is None:
            raise F.NotApplicable("needs a loss target and the full_train_loss curves to choose the learning rates")
        cfg = load.run_config(data.uri, picks[0].run_id) if picks else None
        if cfg is None:
            raise F.NotApplicable("no run's config.json artifact was found to evaluate J(w)")
        J = SF.surface(cfg)
        return SF.ball_on_curve(track, picks, J, names[0]) if len(names) == 1 else \
            SF.contour_paths(track, picks, J, names)

    rep.figure(f"ball_on_curve{sfx}", "Gradient descent's iterates on J(w): too small, well chosen, too large" + of,
               draw)


def _grad_tol_section(rep: Report, findings: list, runs: pd.DataFrame, table: pd.DataFrame,
                      targets: list[float], budget: int):
    """docs/seed.md §3, "when the gradient is small enough, we call it the minimum": train.grad_tol."""
    col = "params.train.grad_tol"
    if col not in runs or runs[col].isna().all() or not targets:
        return
    tol = float(pd.to_numeric(runs[col], errors="coerce").dropna().iloc[0])
    gt = SF.grad_tol_table(runs, table, targets[0])
    findings += SF.findings_grad_tol(gt, tol, targets[0], budget)
    rep.h2("Gradient small enough")
    rep.p(f"The step at which the full-batch gradient norm |∇J| first fell below train.grad_tol = {tol:g}, against "
          f"the step at which the loss first fell below {targets[0]:g}; both censored (not reached) when they did not "
          "happen within the budget or before a divergence. The runs kept their full step budget.")
    rep.table(f"Steps to |∇J| < {tol:g} and to loss < {targets[0]:g}", gt.drop(columns=["run_id"]).rename(columns={
        "learning_rate": "η", "batch_size": "batch size", "steps_to_target": f"steps to loss {targets[0]:g}",
        "steps_to_grad_tol": f"steps to |∇J| < {tol:g}"}).fillna(np.inf))


def _seed_example(runs: pd.DataFrame) -> dict | None:
    from bpresearch.core.seed import seed_example

    try:
        x, y, z = json.loads(runs["params.model.start"].iloc[0])
        target = float(runs["params.data.target"].iloc[0])
    except (KeyError, ValueError, TypeError):
        return None
    return seed_example(x=x, y=y, z=z, target=target, lr=0.1, steps=6)
