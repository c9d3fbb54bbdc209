"""Convergence measures: pure functions over the frames of ``analysis.load``.

Inputs are a runs frame (one row per run: ``run_id``, ``learning_rate``, ``batch_size``,
``seed``, ``optimizer``, ``steps``, ``diverged`` and ``metrics.*``) and a curves frame
(``run_id, key, step, value``). What counts as reached, the median over seeds and the
best learning rate are ``bpresearch.verdicts``' (the refiner uses the same): a run that
does not reach a target within its budget is *censored*: its steps-to-target is NaN with
``reached = False``, counted as infinitely slow in medians and never dropped, so "not
reached" can never look fast. A run that crossed the target and then diverged is its own
outcome ("reached, then diverged") and counts as not reached; one that ended above the
target again without diverging ("reached, then lost", judged on its last few evaluations),
or became unstable or collapsed to chance, counts at its first crossing. How a run ended
(``analysis.shapes.run_shapes``) comes from its full training loss curve.

Steps-to-target is an interval, (``steps_above``, ``steps``]: from the sweep's in-program count
for the targets it was given, from the logged curve for any other (``analysis.crossings``).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from bpresearch import keys as R
from bpresearch import verdicts as V

from .crossings import (  # noqa: F401 - steps to a target: part of this module's API
    RUN_COLS,
    StepsToTargets,
    on_common_grid,
    resolution_of,
    steps_to_target,
    steps_to_target_logged,
    steps_to_targets,
)
from .shapes import run_shapes  # noqa: F401

CELL = ["optimizer", "batch_size", "learning_rate"]
TUNED_OVER = ["optimizer", "batch_size"]  # the default grouping inside which the learning rate is tuned
OUTCOMES = V.OUTCOMES


# A final loss below this is rounding noise in float32 (residuals ~1e-5 of the targets): ratios
# against it (learning-rate sensitivity) say nothing, and the report says so instead of plotting them.
MACHINE_PRECISION_LOSS = 1e-10

target_label = R.target_key  # how a target is written in metric names, figure names and text


def targets_of(runs: pd.DataFrame) -> list[float]:
    """The loss targets the runs were swept with (their ``train.targets`` params), in order, each once."""
    if runs.empty or "params.train.targets" not in runs:
        return []
    out = []
    for text in runs["params.train.targets"].dropna().unique():
        out += [float(t) for t in json.loads(text) if float(t) not in out]
    return out


def cells(table: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Aggregate over seeds: one row per cell (``by`` × learning rate) × target.

    Args:
        table: the output of ``steps_to_target``.
        by: the columns that, with the learning rate, make a cell (default ``TUNED_OVER``;
            add any swept facet, e.g. ``model.activation``).

    Returns:
        ``n``; runs per outcome: ``n_reached`` (counted as reached, ``verdicts.counts``),
        ``n_lost`` (of those, did not stay below: lost, unstable or collapsed), ``n_diverged_after`` (reached,
        then diverged: not counted), ``n_diverged`` (diverged before reaching), ``n_unstable``
        and ``n_collapsed`` (never reached: ``verdicts.UNSTABLE``, ``verdicts.COLLAPSED``);
        ``median_steps`` (``verdicts.median``: censored runs count as infinitely slow, so a
        cell where half or more did not reach is ``inf``), ``median_steps_lo`` (the medians'
        interval lower end), ``min_steps``, ``max_steps`` (``inf`` when any seed did not
        reach), ``median_examples`` and ``status``: "reached" (finite median), else the most
        common way its runs failed: "reached, then diverged", "diverged", "unstable",
        "collapsed" or "not reached".
    """
    by = list(by or TUNED_OVER)
    counted = ["n", "n_reached", "n_lost", "n_diverged_after", "n_diverged", "n_unstable", "n_collapsed"]
    cols = by + ["learning_rate", "target", *counted, "median_steps", "median_steps_lo", "min_steps", "max_steps",
                 "median_examples", "status"]
    rows = []
    for key, g in table.groupby(by + ["learning_rate", "target"], sort=True, dropna=False):
        s = g["steps"].fillna(np.inf).to_numpy(float)
        lo = g["steps_lo"].fillna(np.inf).to_numpy(float) if "steps_lo" in g else s
        counts = g["outcome"].value_counts()
        med = V.median(s)
        fail = counts.drop(list(V.COUNTED), errors="ignore")
        status = V.REACHED if np.isfinite(med) else (str(fail.idxmax()) if not fail.empty else V.NOT_REACHED)
        bs = float(g["batch_size"].iloc[0])
        lost = sum(int(counts.get(o, 0)) for o in V.COUNTED if o != V.REACHED)
        rows.append([*key, len(g), int(g["reached"].sum()), lost,
                     int(counts.get(V.DIVERGED_AFTER, 0)), int(counts.get(V.DIVERGED, 0)),
                     int(counts.get(V.UNSTABLE, 0)), int(counts.get(V.COLLAPSED, 0)), med, V.median(lo),
                     float(s.min()), float(s.max()), med * bs, status])
    out = pd.DataFrame(rows, columns=cols)
    return out.astype({k: int for k in counted})


def range_to_add(edge: str, grid) -> str:
    """The learning rates to try next when the optimum sits at an edge: three grid steps beyond it."""
    grid = np.asarray(sorted(grid), float)
    ratio = (grid[-1] / grid[0]) ** (1 / (grid.size - 1)) if grid.size > 1 and grid[0] > 0 else 10.0
    if edge == "largest":
        return f"{grid[-1] * ratio:.3g}–{grid[-1] * ratio ** 3:.3g}"
    if edge == "smallest":
        return f"{grid[0] / ratio ** 3:.3g}–{grid[0] / ratio:.3g}"
    return ""


def best_learning_rate(cell: pd.DataFrame, target: float, by: list[str] | None = None) -> pd.DataFrame:
    """Per ``by`` group (default optimizer × batch size): the best learning rate (``verdicts.best``).

    The fewest median steps; ties: the middle of the flat bottom (see ``bpresearch.verdicts``).
    A group where no learning rate reached the target is kept, with ``reached = False`` and
    NaN steps. A best learning rate at the smallest or largest value tried is *not tuned*:
    the optimum may lie outside the grid (``edge``; ``tuned`` False), and ``add`` names the
    range to try.

    Args:
        cell: the output of ``cells``.
        target: which target.
        by: the grouping columns (as given to ``cells``).

    Returns:
        ``by``, ``learning_rate``, ``steps`` (median over seeds), ``steps_lo`` (the lower end
        of its interval), ``steps_min``, ``steps_max`` (inf: some seed did not reach),
        ``examples``, ``n_reached``, ``n``, ``n_lrs`` (learning rates tried: the trial
        budget), ``reached``, ``edge`` ("smallest", "largest", "only" or ""), ``tuned``, ``add``.
    """
    by = list(by or TUNED_OVER)
    cols = by + ["learning_rate", "steps", "steps_lo", "steps_min", "steps_max", "examples", "n_reached", "n",
                 "n_lrs", "reached", "edge", "tuned", "add"]
    rows = []
    c = cell[cell["target"] == target]
    for key, g in c.groupby(by, sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        g = g.sort_values("learning_rate")
        grid = g["learning_rate"].to_numpy(float)
        br = V.bracket(grid, g["median_steps"].to_numpy(float))
        ok = br.best is not None
        b = g.iloc[br.best if ok else 0]
        nan = np.nan
        rows.append({**dict(zip(by, key)), "learning_rate": b["learning_rate"] if ok else nan,
                     "steps": b["median_steps"] if ok else nan,
                     "steps_lo": b.get("median_steps_lo", b["median_steps"]) if ok else nan,
                     "steps_min": b["min_steps"] if ok else nan, "steps_max": b["max_steps"] if ok else nan,
                     "examples": b["median_steps"] * float(b["batch_size"]) if ok else nan,
                     "n_reached": int(b["n_reached"]) if ok else 0, "n": int(b["n"]),
                     "n_lrs": len(grid), "reached": ok, "edge": br.edge,
                     "tuned": ok and not br.edge, "add": range_to_add(br.edge, grid)})
    out = pd.DataFrame(rows, columns=cols)
    if "batch_size" in out:
        out["batch_size"] = out["batch_size"].astype(int)
    return out


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

    "converged" is reached and stayed below (``verdicts.REACHED``); a run that reached the
    target and ended above it again is judged by its curve, like one that never reached.

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
        [t["outcome"] == V.REACHED, t["outcome"] == V.DIVERGED, t["rising"].fillna(0) > threshold],
        ["converged", "diverged", "oscillates"], "slow")
    return t


def trajectory_noise(curves: pd.DataFrame, key: str = "full_train_loss") -> pd.DataFrame:
    """Noise of the trajectory itself: std of the change of log full training loss between evaluations.

    ``curve_noise`` of the minibatch loss mostly measures how much single examples' losses
    differ (batch size 1 scatters by the per-example spread whatever the learning rate).
    The full training loss at evaluations every E steps shows how much the *parameters*
    jitter. Only pairs of evaluations the most common distance apart count (the last,
    shorter interval to the final step would mix scales).

    Returns:
        ``run_id, noise, n_pairs, gap`` (noise NaN with fewer than 2 pairs).
    """
    c = curves[(curves["key"] == key) & (curves["value"] > 0)].sort_values(["run_id", "step"])
    rows = []
    for run_id, g in c.groupby("run_id", sort=True):
        step, logv = g["step"].to_numpy(), np.log(g["value"].to_numpy())
        ds = np.diff(step)
        gap = int(np.bincount(ds).argmax()) if ds.size else 0
        d = np.diff(logv)[ds == gap]
        rows.append({"run_id": run_id, "noise": float(np.std(d)) if len(d) >= 2 else np.nan, "n_pairs": int(len(d)),
                     "gap": gap})
    return pd.DataFrame(rows, columns=["run_id", "noise", "n_pairs", "gap"])
