"""Convergence measures: pure functions over the frames of ``analysis.load``.

Inputs are a runs frame (one row per run: ``run_id``, ``learning_rate``, ``batch_size``,
``seed``, ``optimizer``, ``steps``, ``diverged`` and ``metrics.*``) and a curves frame
(``run_id, key, step, value``). A run that does not reach a target within its budget is
*censored*: its steps-to-target is NaN with ``reached = False``, counted as infinitely
slow in medians and never dropped, so "not reached" can never look fast.
"""

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np
import pandas as pd

from bpresearch import results as R

RUN_COLS = ["run_id", "optimizer", "batch_size", "learning_rate", "seed"]
CELL = ["optimizer", "batch_size", "learning_rate"]


target_label = R.target_key  # how a target is written in metric names, figure names and text


def targets_of(runs: pd.DataFrame) -> list[float]:
    """The experiment's loss targets, from the ``train.targets`` param of its runs."""
    if runs.empty or "params.train.targets" not in runs:
        return []
    return [float(t) for t in json.loads(runs["params.train.targets"].iloc[0])]


def _with_outcome(runs: pd.DataFrame, targets, first: dict) -> pd.DataFrame:
    """Per run × target rows; ``first[(run_id, target)]`` is the step reached (absent: not)."""
    rows = []
    for r in runs.itertuples(index=False):
        d = r._asdict()
        for t in targets:
            s = first.get((d["run_id"], t))
            reached = s is not None
            rows.append({**{c: d.get(c) for c in RUN_COLS}, "target": t, "budget": d.get("steps"),
                         "reached": reached, "steps": float(s) if reached else np.nan,
                         "examples": float(s) * d["batch_size"] if reached else np.nan,
                         "diverged": bool(d.get("diverged", False)),
                         "outcome": "reached" if reached else ("diverged" if d.get("diverged") else "not reached")})
    cols = RUN_COLS + ["target", "budget", "reached", "steps", "examples", "diverged", "outcome"]
    return pd.DataFrame(rows, columns=cols)


def steps_to_target(curves: pd.DataFrame, runs: pd.DataFrame, targets, key: str = R.FULL_TRAIN_LOSS) -> pd.DataFrame:
    """Steps and examples to each target, from the curves: the first step with loss < target.

    Args:
        curves: tidy curves (``run_id, key, step, value``).
        runs: the runs frame (needs ``RUN_COLS``, ``steps``, ``diverged``).
        targets: loss values.
        key: the curve compared with the targets.

    Returns:
        One row per run × target: ``RUN_COLS``, ``target``, ``budget`` (steps trained),
        ``reached``, ``steps`` and ``examples`` (= steps × batch size; NaN when censored),
        ``diverged`` and ``outcome`` ("reached" | "not reached" | "diverged").
    """
    c = curves[curves["key"] == key]
    first = {}
    for t in targets:
        below = c[c["value"] < t]
        for run_id, step in below.groupby("run_id")["step"].min().items():
            first[(run_id, t)] = int(step)
    return _with_outcome(runs, targets, first)


def steps_to_target_logged(runs: pd.DataFrame, targets) -> pd.DataFrame:
    """The same table from the summary metrics ``steps_to_loss_<t>`` the sweep logged.

    These are computed in the compiled program at every evaluation, so they need no curves.
    A target whose ``steps_to_loss_<t>`` is absent counts as not reached.
    """
    first = {}
    for t in targets:
        col = f"metrics.{R.steps_key(t)}"
        if col not in runs:
            continue
        for run_id, s in zip(runs["run_id"], runs[col]):
            if pd.notna(s) and s >= 0:
                first[(run_id, t)] = int(s)
    return _with_outcome(runs, targets, first)


class StepsToTargets(NamedTuple):
    table: pd.DataFrame   # steps_to_target's columns, one row per run × target
    from_curves: bool     # the runs lack the logged summaries: computed from the curves
    disagree: int         # run × target pairs where the logged summary and the curve disagree


def steps_to_targets(runs: pd.DataFrame, curves: pd.DataFrame, targets) -> StepsToTargets:
    """Steps and examples to each target: the one function analysis uses for them.

    The sweep logs them (``steps_to_target_logged``), counted in the compiled program at
    every evaluation, or at every step in full-batch runs; they are checked against the
    ``full_train_loss`` curves (``steps_to_target``), which are used instead when the
    summaries are missing. A full-batch run may reach a target before the curve's next
    evaluation shows it: that is not a disagreement.

    Args:
        runs: the runs frame; curves: its curves (may be empty); targets: loss values.
    """
    logged = all(f"metrics.{R.reached_key(t)}" in runs for t in targets)
    if not logged:
        return StepsToTargets(steps_to_target(curves, runs, targets), True, 0)
    table = steps_to_target_logged(runs, targets)
    if curves.empty:
        return StepsToTargets(table, False, 0)
    check = steps_to_target(curves, runs, targets)
    bad = ~np.isclose(check["steps"].fillna(-1).to_numpy(), table["steps"].fillna(-1).to_numpy())
    if "full_batch" in runs:  # full batch counts every step; the full_train_loss curve only every E
        fb = table["run_id"].map(runs.set_index("run_id")["full_batch"]).fillna(False).to_numpy(bool)
        bad &= ~(fb & (table["steps"].fillna(np.inf).to_numpy() <= check["steps"].fillna(np.inf).to_numpy()))
    return StepsToTargets(table, False, int(bad.sum()))


def cells(table: pd.DataFrame) -> pd.DataFrame:
    """Aggregate over seeds: one row per optimizer × batch size × learning rate × target.

    Args:
        table: the output of ``steps_to_target``.

    Returns:
        ``n``, ``n_reached``, ``n_diverged``; ``median_steps`` (censored runs count as
        infinitely slow, so a cell where half or more did not reach is ``inf``),
        ``min_steps``, ``max_steps`` (``inf`` when any seed did not reach),
        ``median_examples`` and ``status``: "reached" (finite median), else "diverged" when
        most censored runs diverged, else "not reached".
    """
    cols = CELL + ["target", "n", "n_reached", "n_diverged", "median_steps", "min_steps", "max_steps",
                   "median_examples", "status"]
    rows = []
    for key, g in table.groupby(CELL + ["target"], sort=True):
        s = g["steps"].fillna(np.inf).to_numpy(float)
        n, n_reached, n_div = len(g), int(g["reached"].sum()), int((g["outcome"] == "diverged").sum())
        med = float(np.median(s))
        status = "reached" if np.isfinite(med) else (
            "diverged" if n_div > (n - n_reached) - n_div else "not reached")
        rows.append([*key, n, n_reached, n_div, med, float(s.min()), float(s.max()), med * key[1], status])
    out = pd.DataFrame(rows, columns=cols)
    return out.astype({"n": int, "n_reached": int, "n_diverged": int})


def best_learning_rate(cell: pd.DataFrame, target: float) -> pd.DataFrame:
    """Per optimizer × batch size: the learning rate with the fewest median steps to target.

    Ties go to the smaller worst seed, then the smaller learning rate. A batch size where
    no learning rate reached the target is kept, with ``reached = False`` and NaN steps.

    Args:
        cell: the output of ``cells``.
        target: which target.

    Returns:
        ``optimizer, batch_size, learning_rate, steps`` (median over seeds), ``steps_min``,
        ``steps_max`` (inf: some seed did not reach), ``examples``, ``n_reached``, ``n``,
        ``n_lrs`` (learning rates tried: the trial budget), ``reached``.
    """
    rows = []
    c = cell[cell["target"] == target]
    for (opt, bs), g in c.groupby(["optimizer", "batch_size"], sort=True):
        g = g.sort_values(["median_steps", "max_steps", "learning_rate"])
        b = g.iloc[0]
        ok = bool(np.isfinite(b["median_steps"]))
        rows.append({"optimizer": opt, "batch_size": int(bs), "learning_rate": b["learning_rate"] if ok else np.nan,
                     "steps": b["median_steps"] if ok else np.nan, "steps_min": b["min_steps"] if ok else np.nan,
                     "steps_max": b["max_steps"] if ok else np.nan,
                     "examples": b["median_steps"] * bs if ok else np.nan,
                     "n_reached": int(b["n_reached"]) if ok else 0, "n": int(b["n"]),
                     "n_lrs": int(g["learning_rate"].nunique()), "reached": ok})
    return pd.DataFrame(rows, columns=["optimizer", "batch_size", "learning_rate", "steps", "steps_min",
                                       "steps_max", "examples", "n_reached", "n", "n_lrs", "reached"])


def scaling_curve(best: pd.DataFrame) -> pd.DataFrame:
    """Steps-to-target against batch size with the perfect-scaling reference (Shallue et al. 2019).

    Each batch size gets its best learning rate from the same grid (the same trial budget,
    ``n_lrs``). Perfect scaling from the smallest batch size B₀ that reached the target:
    S(B) = S(B₀)·B₀/B steps, i.e. the same number of examples.

    Args:
        best: the output of ``best_learning_rate`` for one optimizer.

    Returns:
        ``best`` plus ``perfect_steps``, ``perfect_examples`` and ``efficiency`` =
        perfect_steps / steps (1: doubling the batch halves the steps; below 1: less).
    """
    out = best.sort_values("batch_size").reset_index(drop=True).copy()
    reached = out[out["reached"]]
    if reached.empty:
        out["perfect_steps"] = out["perfect_examples"] = out["efficiency"] = np.nan
        return out
    b0, s0 = reached["batch_size"].iloc[0], reached["steps"].iloc[0]
    out["perfect_steps"] = s0 * b0 / out["batch_size"]
    out["perfect_examples"] = float(s0 * b0)
    out["efficiency"] = out["perfect_steps"] / out["steps"]
    return out


def diverged_fraction(runs: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer × batch size × learning rate: ``n``, ``n_diverged`` and ``fraction``."""
    g = runs.groupby(CELL, sort=True)["diverged"]
    out = pd.DataFrame({"n": g.size(), "n_diverged": g.sum().astype(int)}).reset_index()
    out["fraction"] = out["n_diverged"] / out["n"]
    return out


def divergence_threshold(frac: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer × batch size: the smallest learning rate from which every larger one diverged.

    Returns:
        ``optimizer, batch_size, lr_all_diverged`` (NaN when the largest learning rate did not
        diverge in every seed), ``lr_any_diverged`` (smallest learning rate with any divergence).
    """
    rows = []
    for (opt, bs), g in frac.groupby(["optimizer", "batch_size"], sort=True):
        g = g.sort_values("learning_rate")
        full = (g["fraction"] >= 1.0).to_numpy()
        # Suffix of the grid where every run diverged.
        k = len(full)
        while k > 0 and full[k - 1]:
            k -= 1
        lr_all = g["learning_rate"].iloc[k] if k < len(full) else np.nan
        anyd = g[g["n_diverged"] > 0]
        rows.append({"optimizer": opt, "batch_size": bs, "lr_all_diverged": lr_all,
                     "lr_any_diverged": anyd["learning_rate"].min() if not anyd.empty else np.nan})
    return pd.DataFrame(rows, columns=["optimizer", "batch_size", "lr_all_diverged", "lr_any_diverged"])


def lr_sensitivity(runs: pd.DataFrame, metric: str = f"metrics.{R.FINAL_LOSS}") -> pd.DataFrame:
    """Final loss against learning rate, relative to the best, per batch size (DeepOBS).

    Schneider et al. 2019 (DeepOBS) judge an optimizer also by how much its result depends
    on the learning rate; here: the median final loss over seeds, divided by the best
    median at the same batch size. A diverged run's loss counts as infinite.

    Args:
        runs: the runs frame.
        metric: the column holding each run's final loss.

    Returns:
        ``optimizer, batch_size, learning_rate, loss, relative, diverged_fraction``.
    """
    r = runs.copy()
    r["loss"] = r[metric].where(~r["diverged"], np.inf).fillna(np.inf) if metric in r else np.inf
    g = r.groupby(CELL, sort=True)
    out = pd.DataFrame({"loss": g["loss"].median(), "diverged_fraction": g["diverged"].mean()}).reset_index()
    best = out.groupby(["optimizer", "batch_size"])["loss"].transform("min")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["relative"] = np.where(np.isfinite(out["loss"]), out["loss"] / best, np.inf)
    return out[CELL + ["loss", "relative", "diverged_fraction"]]


def curve_noise(curves: pd.DataFrame, key: str = R.TRAIN_LOSS) -> pd.DataFrame:
    """Noise of each run's curve: the standard deviation of step-to-step changes of log loss.

    Only pairs of consecutive steps (k, k+1) count, so the sparse tail of a long run does not
    mix one-step and many-step changes. A smooth curve (full batch) scores near 0; a noisy
    one (batch size 1) high. Non-positive losses are skipped (log undefined).

    Returns:
        ``run_id, noise, n_pairs`` (noise NaN with fewer than 2 pairs).
    """
    c = curves[(curves["key"] == key) & (curves["value"] > 0)].sort_values(["run_id", "step"])
    rows = []
    for run_id, g in c.groupby("run_id", sort=True):
        step, logv = g["step"].to_numpy(), np.log(g["value"].to_numpy())
        consecutive = np.diff(step) == 1
        d = np.diff(logv)[consecutive]
        rows.append({"run_id": run_id, "noise": float(np.std(d)) if len(d) >= 2 else np.nan, "n_pairs": int(len(d))})
    return pd.DataFrame(rows, columns=["run_id", "noise", "n_pairs"])


def noise_by_batch_size(noise: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Median curve noise over seeds per optimizer × batch size × learning rate (``noise``, ``n``)."""
    m = runs[RUN_COLS].merge(noise, on="run_id")
    g = m.groupby(CELL, sort=True)["noise"]
    return pd.DataFrame({"noise": g.median(), "n": g.count()}).reset_index()


def best_so_far(curves: pd.DataFrame, runs: pd.DataFrame, key: str = R.FULL_TRAIN_LOSS) -> pd.DataFrame:
    """Best loss so far against the number of loss evaluations.

    Random search evaluates one draw per step and keeps the best; gradient descent makes one
    gradient evaluation per step. So for both, evaluations = step, and the best loss so far
    is the running minimum of the curve.

    Returns:
        ``RUN_COLS, evaluations, best`` per logged point.
    """
    c = curves[curves["key"] == key].sort_values(["run_id", "step"])
    c = c.assign(best=c.groupby("run_id")["value"].cummin()).rename(columns={"step": "evaluations"})
    return runs[RUN_COLS].merge(c[["run_id", "evaluations", "best"]], on="run_id")


def band(frame: pd.DataFrame, by: list[str], x: str, y: str) -> pd.DataFrame:
    """Median, min and max of ``y`` over seeds at each ``x`` for each group in ``by``."""
    g = frame.groupby(by + [x], sort=True)[y]
    return pd.DataFrame({"median": g.median(), "lo": g.min(), "hi": g.max(), "n": g.count()}).reset_index()


def oscillation(curves: pd.DataFrame, key: str = R.FULL_TRAIN_LOSS) -> pd.DataFrame:
    """Share of steps on which the loss rose, over the second half of each curve.

    Separates "still falling slowly" (near 0) from "jumping without converging" (large).

    Returns:
        ``run_id, rising`` (NaN with fewer than 3 points in the second half).
    """
    c = curves[curves["key"] == key].sort_values(["run_id", "step"])
    rows = []
    for run_id, g in c.groupby("run_id", sort=True):
        v = g["value"].to_numpy()
        tail = v[len(v) // 2:]
        rows.append({"run_id": run_id, "rising": float(np.mean(np.diff(tail) > 0)) if len(tail) >= 3 else np.nan})
    return pd.DataFrame(rows, columns=["run_id", "rising"])


def verdicts(table: pd.DataFrame, osc: pd.DataFrame, threshold: float = 0.2) -> pd.DataFrame:
    """Per run and target: "converged", "slow" (falling, not reached), "oscillates" or "diverged".

    Args:
        table: the output of ``steps_to_target`` for one target.
        osc: the output of ``oscillation``.
        threshold: share of rising steps above which a run that neither reached nor
            diverged counts as oscillating rather than slow.

    Returns:
        ``table`` plus ``rising`` and ``verdict``.
    """
    t = table.merge(osc, on="run_id", how="left")
    t["verdict"] = np.select(
        [t["reached"], t["outcome"] == "diverged", t["rising"].fillna(0) > threshold],
        ["converged", "diverged", "oscillates"], "slow")
    return t
