"""One experiment's report from its frames: which measures, figures, tables and findings, in order.

A report never trains: it reads the store. What it cannot show (no finished runs, no
curves, every run diverged) it says plainly where the figure or table would be.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd

from bpresearch import results as R

from . import figures as F
from . import load
from . import measures as M
from . import predictions as P
from . import uncertainty as U
from . import seedfigs as SF
from .predictions import Predicted, bound_labels, predict
from .prose import (findings_best_intervals, findings_best_short, findings_boundary, findings_critical_paths,
                    findings_divergence, findings_lost, findings_not_reached, findings_random, findings_resolution,
                    findings_scaling_intervals, findings_seed_graph, findings_sensitivity, findings_sharpness,
                    findings_steps_source, findings_two_noises, findings_untuned)
from . import refinement
from .prose import fmt_steps
from .render import Report
from .tables import best_table, critical_table, outcome_table, predicted_table, scaling_table


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
                       targets: list[float], n_bs: int, runs: pd.DataFrame, table: pd.DataFrame, intervals: dict):
    """The "Predicted versus measured" section: table, edge-of-stability figure, noise scales, fits."""
    rep.h2("Predicted versus measured")
    if pred.every is None:
        rep.p(f"Nothing is predicted: {pred.missing_boundary}. A [diagnostics] section with sharpness = true and "
              "noise_scale = true predicts the divergence boundary (2/λ_max) and the critical batch size (B_simple).")
        return
    rep.p("Measured, on a grid: the divergence boundary lies between the highest learning rate at which no seed "
          "diverged and the lowest at which some seed did; the table gives that bracket and its geometric midpoint, "
          "and the prediction is judged by whether it falls inside. Critical batch size: B_crit = E_min/S_min is "
          "fitted to the best learning rate per tuned batch size (S = S_min + E_min/B, McCandlish et al. 2018), with "
          "a 90% interval from a bootstrap over seeds; under that model B_crit is the noise scale averaged along "
          "training, so it is set beside the step-weighted path averages of the measured noise scales, B_noise = "
          "tr(HΣ)/(GᵀHG) and B_simple = tr(Σ)/|G|², taken only where the loss was above the target and |G| ≥ 1% of "
          "its start.")
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
    rep.figure("edge_of_stability", f"Full batch: sharpness over training against {eta} (edge of stability)",
               lambda: F.edge_of_stability(curves, pred.eos, eta))
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
                  e.rename(columns={"learning_rate": "η", "regime": "what the sharpness did", "seeds": "runs",
                                    "r0": f"step 0 ÷ {eta}", "rmin": f"min ÷ {eta}", "rmax": f"max ÷ {eta}",
                                    "rend": f"last ÷ {eta}", "edge": "longest stretch in band (steps)",
                                    "drop": "fell under half at step", "last_step": "last measured step"}))


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
    fp = U.fingerprints(runs, curves)
    distinct = U.distinct_counts(runs, fp, M.TUNED_OVER)
    resolution = M.resolution_of(table)
    common = M.on_common_grid(U.keep_distinct(table, fp), resolution)
    cell = M.cells(table)
    frac = M.diverged_fraction(runs)
    sens = M.lr_sensitivity(runs)
    gd = runs[runs["optimizer"] != "random_search"]
    n_bs, n_lr = gd["batch_size"].nunique(), gd["learning_rate"].nunique()
    seed_graph = (runs.get(f"params.{R.MODEL}") == "seed_graph").all()

    if not targets:
        findings.append("The runs have no loss targets (train.targets): steps to target cannot be measured.")

    v = None  # verdicts of the first target: converged, slow, oscillates, diverged
    if targets and not curves.empty:
        v = M.verdicts(table[table["target"] == targets[0]], M.oscillation(curves))
        v = v.merge(runs[["run_id", "diverged_step"]], on="run_id")
    gd_cell = cell[cell["optimizer"] != "random_search"]
    best0 = M.best_learning_rate(gd_cell, targets[0]).iloc[0] if targets and not gd_cell.empty else None

    # The seed's graph first: it is that experiment's whole point.
    if seed_graph:
        rep.h2("The seed's computational graph")
        ex = _seed_example(runs)
        post = None
        if ex:
            at = v[np.isclose(v["learning_rate"], ex["lr"])] if v is not None else pd.DataFrame()
            post = SF.worked_update(ex, at["verdict"].iloc[0] if not at.empty else None, best0,
                                    targets[0] if targets else 0.0)
            findings.append(post["sentence"])
        rep.figure("seed_graph", "The graph f = (x+y)·z: values (forward) and gradients (backward), and the post's "
                   "one-step update with η = 0.1",
                   lambda: SF.seed_graph_update(ex, post, best0, targets[0] if targets else 0.0) if ex else
                   (_ for _ in ()).throw(F.NotApplicable("the runs lack the model.start / data.target params")))
        if v is not None:
            findings += findings_seed_graph(v, curves, targets[0], budget)
            rep.figure("seed_graph_curves", "Which learning rates η converge?",
                       lambda: F.seed_graph_curves(curves, v, targets[0]))
    model_kind = runs.get(f"params.{R.MODEL}")
    if targets and model_kind is not None and model_kind.isin(["seed_graph", "neuron"]).all():
        findings += SF.findings_small_vs_best(cell, runs, targets[0], budget, full)  # SEED.md §3: too small is slow
    _ball_section(rep, findings, data, runs, curves, v, targets)
    _grad_tol_section(rep, findings, runs, table, targets, budget)

    if not seed_graph:  # its own curve figure above says more
        rep.h2("Loss curves")
        rep.figure("loss_curves", "How does the full training loss fall, per learning rate and batch size?",
                   lambda: F.loss_curves(curves, runs, R.FULL_TRAIN_LOSS, targets[0] if targets else None))

    bests = {t: M.best_learning_rate(cell[cell["optimizer"] != "random_search"], t) for t in targets}
    refined = refinement.settings(data.resolved)   # [sweep] refine of the latest sweep, if any
    pred = predict(runs, curves, table, bests, full)
    intervals = {}
    for t in targets if n_bs >= 2 else []:
        c = common[(common["target"] == t) & (common["optimizer"] != "random_search")]
        if not c.empty:
            intervals[t] = U.scaling_intervals(c, M.TUNED_OVER, bests[t])
    for t in targets:
        best = bests[t]
        if not seed_graph:
            findings += findings_best_intervals(best, t, budget, full, distinct) if t == targets[0] else \
                [findings_best_short(best, t, full)]
            findings += findings_untuned(best, t, full) if t == targets[0] and len(best) > 1 else []
        rep.h2(f"Steps to loss {t:g}")
        rep.table(f"Best learning rate per batch size (fewest median steps to loss {t:g}; ties: better worst seed; "
                  f"steps: the interval between the last evaluation above the target and the first below)",
                  best_table(best, full, distinct))
        br = None
        if refined and any(abs(t - x) <= 1e-9 * abs(x) for x in refined["targets"]):
            br = refinement.bracket(cell[cell["optimizer"] != "random_search"], best, t, refined["resolution"], gd)
            rep.table(f"Refined optimum per batch size and its bracket (the neighbours' median steps to loss {t:g}); "
                      f"configurations run against a uniform grid at spacing ×{refined['resolution']:.3g} over "
                      f"the same range", refinement.table(br, full, fmt_steps))
            findings += refinement.findings(br, t, refined["resolution"], full)
        rep.table(f"Outcomes of all runs for loss {t:g}", outcome_table(cell, t, full))
        if n_bs >= 2:
            rep.figure(f"heatmap_{M.target_label(t)}", f"Steps to loss {t:g} over learning rate × batch size",
                       lambda t=t: F.steps_heatmap(cell, t, full, pred.lr_mark))
            curve = M.scaling_curve(best)
            if br is not None:  # the figure marks batch sizes whose optimum is not resolved
                curve = curve.merge(br[["optimizer", "batch_size", "resolved"]], on=["optimizer", "batch_size"])
            if t in intervals:
                if t in (targets[0], targets[-1]):  # the loosest and the tightest target
                    findings += findings_scaling_intervals(best, intervals[t].per_group, t, full, resolution)
                rep.table(f"Scaling to loss {t:g}: 90% intervals over seeds (bootstrap, {U.N_BOOT} resamples of the "
                          f"seeds within each cell; steps on a common grid of {resolution})",
                          scaling_table(best, intervals[t].per_group, full))
            rep.figure(f"scaling_{M.target_label(t)}", f"Steps and examples to loss {t:g} against batch size",
                       lambda curve=curve, t=t: F.scaling(curve, t, full, eval_every, _marks(intervals.get(t))))
        if not seed_graph:
            findings += findings_resolution(best, t, eval_every, full)
        if t == targets[0] and not seed_graph:
            findings += findings_not_reached(cell, t, budget, full)
            findings += findings_lost(table, t, full)

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

    _predicted_section(rep, findings, pred, curves, full, targets, n_bs, runs, U.keep_distinct(table, fp),
                       intervals)

    if full is not None and (runs["batch_size"] == 1).any() and full != 1:
        rep.h2("Batch versus stochastic training")
        noise = M.curve_noise(curves)
        stable = runs[~runs["diverged"]]
        nb = M.noise_by_batch_size(noise, stable)
        nt = M.noise_by_batch_size(M.trajectory_noise(curves), stable)
        findings += findings_two_noises(nb, nt, full, eval_every)
        rep.figure("batch_vs_stochastic", "Batch (red) against stochastic (blue) training",
                   lambda: F.batch_vs_stochastic(curves, runs, noise))
        for what, frame in (("Minibatch-loss noise: std of the step-to-step change of the log loss on the batch "
                             "the optimizer sees (median over seeds)", nb),
                            (f"Trajectory noise: std of the change of the log full training loss between "
                             f"evaluations every {eval_every} steps (median over seeds)", nt)):
            rep.table(what, frame.pivot(index="learning_rate", columns="batch_size", values="noise").round(4)
                      .reset_index().rename(columns={"learning_rate": "η"}))

    if "random_search" in set(runs["optimizer"]):
        rep.h2("Random search against gradient descent")
        bsf = M.best_so_far(curves, runs)
        if targets and not bsf.empty:
            findings += findings_random(bsf, table, targets[0])
        rep.figure("random_vs_gd", "Best loss so far against loss evaluations",
                   lambda: F.random_vs_gd(bsf, targets[0] if targets else None))
    return rep


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


def _ball_section(rep: Report, findings: list, data: load.ExperimentData, runs: pd.DataFrame,
                  curves: pd.DataFrame, v: pd.DataFrame | None, targets: list[float]):
    """SEED.md §3, the ball on the curve: iterates from the logged param/<name> histories on J(w)."""
    names = SF.param_names(runs)
    if not names:
        return
    rep.h2("The ball on the curve")
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

    rep.figure("ball_on_curve", "Gradient descent's iterates on J(w): too small, well chosen, too large", draw)


def _grad_tol_section(rep: Report, findings: list, runs: pd.DataFrame, table: pd.DataFrame,
                      targets: list[float], budget: int):
    """SEED.md §3, "when the gradient is small enough, we call it the minimum": train.grad_tol."""
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
    from bpresearch.seed import seed_example

    try:
        x, y, z = json.loads(runs["params.model.start"].iloc[0])
        target = float(runs["params.data.target"].iloc[0])
    except (KeyError, ValueError, TypeError):
        return None
    return seed_example(x=x, y=y, z=z, target=target, lr=0.1, steps=6)
