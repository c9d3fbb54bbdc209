"""One experiment's report from its frames: which measures, figures, tables and findings, in order.

A report never trains: it reads the store. What it cannot show (no finished runs, no
curves, every run diverged) it says plainly where the figure or table would be.
"""

from __future__ import annotations

import json
import time

import pandas as pd

from bpresearch import results as R

from . import figures as F
from . import load
from . import measures as M
from .predictions import Predicted, bound_labels, predict
from .prose import (findings_best, findings_best_short, findings_boundary, findings_critical, findings_divergence,
                    findings_edge, findings_noise, findings_not_reached, findings_random, findings_resolution,
                    findings_scaling, findings_seed_graph, findings_sensitivity, findings_steps_source)
from .render import Report
from .tables import best_table, outcome_table, predicted_table


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
    steps = M.steps_to_targets(runs, curves, targets)
    table = steps.table
    findings += findings_steps_source(steps)
    cell = M.cells(table)
    frac = M.diverged_fraction(runs)
    sens = M.lr_sensitivity(runs)
    gd = runs[runs["optimizer"] != "random_search"]
    n_bs, n_lr = gd["batch_size"].nunique(), gd["learning_rate"].nunique()
    seed_graph = (runs.get(f"params.{R.MODEL}") == "seed_graph").all()

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
                   lambda: F.loss_curves(curves, runs, R.FULL_TRAIN_LOSS, targets[0] if targets else None))

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
