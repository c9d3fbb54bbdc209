"""Steps to a loss target, per run: where its full training loss first fell below it.

Two sources, one table. The sweep counts the crossing of every target it was given inside
the compiled program, at every evaluation (at every step in full-batch runs), and logs it as
``steps_to_loss_<t>`` and ``steps_above_loss_<t>`` (``steps_to_target_logged``). Any other
target is a question asked afterwards of the logged ``full_train_loss`` curve
(``steps_to_target``): the first crossing lies between two logged evaluations, (a, b]. A
target is never part of a run's hash, so asking a new one trains nothing; ``steps_to_targets``
takes each run × target from the sweep where it was logged, else from the curve, and says which
targets came from the curve (``StepsToTargets.curve_targets``) so that every place a report
prints them can say so.

The first crossing lies in (``steps_above``, ``steps``]: the last evaluated step above the
target and the first below (``steps_lo`` = steps_above + 1 is the earliest step it can be).
``on_common_grid`` puts every run on the coarsest evaluation grid before runs of different
resolutions are compared or fitted.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from bpresearch import keys as R
from bpresearch import verdicts as V

from .shapes import run_shapes

RUN_COLS = ["run_id", "optimizer", "batch_size", "learning_rate", "seed"]


def _with_outcome(runs: pd.DataFrame, targets, first: dict, above: dict | None = None,
                  shapes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per run × target rows; ``first[(run_id, target)]`` is the step crossed (absent: never),
    ``above[(run_id, target)]`` the last evaluated step above before it (absent: unknown),
    ``shapes``: ``shapes.run_shapes`` (None or a run absent: only the logged final loss is known)."""
    above = above or {}
    shape = shapes.set_index("run_id").to_dict("index") if shapes is not None and not shapes.empty else {}
    rows = []
    extra = [c for c in runs.columns if c.startswith("facet.")]
    for r in runs.to_dict("records"):
        final = r.get(f"metrics.{R.FINAL_LOSS}", np.nan)
        final = np.nan if final is None or pd.isna(final) else float(final)
        how = shape.get(r["run_id"], {})
        end = how.get("end_loss", final)
        for t in targets:
            s = first.get((r["run_id"], t))
            crossed = s is not None
            diverged = bool(r.get("diverged", False))
            outcome = V.outcome(s, diverged, end, t, bool(how.get("unstable", False)), how.get("chance_k", 0) > 0)
            reached = V.counts(outcome)
            a = above.get((r["run_id"], t))
            rows.append({**{c: r.get(c) for c in RUN_COLS + extra}, "target": t, "budget": r.get("steps"),
                         "reached": reached, "steps": float(s) if reached else np.nan,
                         "steps_lo": (float(a) + 1 if a is not None and a >= 0 else 0.0) if reached else np.nan,
                         "first_steps": float(s) if crossed else np.nan,
                         "examples": float(s) * r["batch_size"] if reached else np.nan,
                         "diverged": diverged, "final_loss": final, "end_loss": end, "outcome": outcome})
    cols = RUN_COLS + extra + ["target", "budget", "reached", "steps", "steps_lo", "first_steps", "examples",
                               "diverged", "final_loss", "end_loss", "outcome"]
    return pd.DataFrame(rows, columns=cols)


def curve_crossings(curves: pd.DataFrame, targets, key: str = R.FULL_TRAIN_LOSS) -> tuple[dict, dict]:
    """(first, above) from the curves: ``first[(run_id, t)]`` the first logged step with loss < t
    (absent: never), ``above[(run_id, t)]`` the last logged step before it."""
    c = curves[curves["key"] == key]
    first, above = {}, {}
    for t in targets:
        below = c[c["value"] < t]
        for run_id, step in below.groupby("run_id")["step"].min().items():
            first[(run_id, t)] = int(step)
        f = c["run_id"].map({k[0]: v for k, v in first.items() if k[1] == t}).astype(float)  # run ids may be categorical
        before = c[f.notna() & (c["step"] < f)]
        for run_id, step in before.groupby("run_id")["step"].max().items():
            above[(run_id, t)] = int(step)
    return first, above


def logged_crossings(runs: pd.DataFrame, targets) -> tuple[dict, dict, set]:
    """(first, above, missing) from the summaries the sweep logged; ``missing``: the (run_id, t)
    pairs whose run has no ``reached_loss_<t>`` (t was not a target when it trained)."""
    first, above, missing = {}, {}, set()
    for t in targets:
        col, col_above, col_reached = (f"metrics.{k(t)}" for k in (R.steps_key, R.above_key, R.reached_key))
        reached = runs[col_reached] if col_reached in runs else pd.Series(np.nan, index=runs.index)
        steps = runs[col] if col in runs else pd.Series(np.nan, index=runs.index)
        ab = runs[col_above] if col_above in runs else pd.Series(np.nan, index=runs.index)
        for run_id, r, s, a in zip(runs["run_id"], reached, steps, ab):
            if pd.isna(r) and pd.isna(s):
                missing.add((run_id, t))
            elif pd.notna(s) and s >= 0:
                first[(run_id, t)] = int(s)
                # without steps_above_loss_<t> (older stores) the interval is taken as one step
                above[(run_id, t)] = int(a) if pd.notna(a) else int(s) - 1
    return first, above, missing


def steps_to_target(curves: pd.DataFrame, runs: pd.DataFrame, targets, key: str = R.FULL_TRAIN_LOSS,
                    shapes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Steps and examples to each target, from the curves: the first step with loss < target.

    Args:
        curves: tidy curves (``run_id, key, step, value``).
        runs: the runs frame (needs ``RUN_COLS``, ``steps``, ``diverged``).
        targets: loss values.
        key: the curve compared with the targets.
        shapes: ``shapes.run_shapes`` (default: from ``curves``).

    Returns:
        One row per run × target: ``RUN_COLS``, ``target``, ``budget`` (steps trained),
        ``reached`` (counts as reached: ``verdicts.counts``), ``steps`` (first logged step below) and ``steps_lo``
        (one past the last logged step above before it) and ``examples`` (= steps × batch
        size; NaN unless reached), ``first_steps`` (the crossing, also for runs that lost
        it), ``diverged``, ``final_loss``, ``end_loss`` (the median of the last
        ``verdicts.TAIL`` evaluations, which judges "lost"; the final loss without curves)
        and ``outcome`` (``OUTCOMES``).
    """
    first, above = curve_crossings(curves, targets, key)
    return _with_outcome(runs, targets, first, above, run_shapes(curves, runs) if shapes is None else shapes)


def steps_to_target_logged(runs: pd.DataFrame, targets, shapes: pd.DataFrame | None = None) -> pd.DataFrame:
    """The same table from the summary metrics ``steps_to_loss_<t>`` the sweep logged.

    These are computed in the compiled program at every evaluation, so they need no curves.
    A target whose ``steps_to_loss_<t>`` is absent counts as not reached. ``shapes``:
    ``shapes.run_shapes`` where the curves are known (None: the logged final loss only).
    """
    first, above, _ = logged_crossings(runs, targets)
    return _with_outcome(runs, targets, first, above, shapes)


def on_common_grid(table: pd.DataFrame, resolution: int) -> pd.DataFrame:
    """Every interval put on the grid 0, R, 2R, …: what a run evaluated every R steps would show.

    A full-batch run counted at step resolution is then compared with minibatch runs
    evaluated every R steps on equal terms (crossing at step 8 → (5, 10] with R = 5, as a
    minibatch run would report it). Intervals already on a coarser grid are kept.

    Returns:
        ``table`` with ``steps`` (upper end), ``steps_lo`` and ``examples`` on the grid.
    """
    out = table.copy()
    if resolution <= 1:
        return out
    hi = np.ceil(out["steps"] / resolution) * resolution
    lo = np.floor((out["steps_lo"] - 1) / resolution) * resolution + 1
    out["steps"] = np.maximum(hi, out["steps"])
    out["steps_lo"] = np.minimum(np.maximum(lo, 0), out["steps_lo"])
    out["examples"] = out["steps"] * out["batch_size"]
    return out


def resolution_of(table: pd.DataFrame) -> int:
    """The coarsest interval width among reached runs (1: every run counted at step resolution)."""
    r = table[table["reached"]]
    if r.empty:
        return 1
    return int(max(1, np.nanmax(r["steps"] - r["steps_lo"] + 1)))


class StepsToTargets(NamedTuple):
    table: pd.DataFrame   # steps_to_target's columns, one row per run × target
    from_curves: bool     # no run has the logged summaries of any target: all computed from the curves
    disagree: int         # run × target pairs where the logged summary and the curve disagree
    curve_targets: tuple = ()   # targets some run lacks the sweep's summary of: answered from the curve


def steps_to_targets(runs: pd.DataFrame, curves: pd.DataFrame, targets) -> StepsToTargets:
    """Steps and examples to each target: the one function analysis uses for them.

    Each run × target comes from the summary the sweep logged (``logged_crossings``: counted
    in the compiled program at every evaluation, or at every step in full-batch runs) where
    the run has one, else from its ``full_train_loss`` curve (``curve_crossings``: between two
    logged evaluations), as for a target asked after the sweep. Logged summaries are checked
    against the curves: a full-batch run may reach a target before the curve's next evaluation
    shows it, which is not a disagreement.

    Args:
        runs: the runs frame; curves: its curves (may be empty); targets: loss values.
    """
    shapes = run_shapes(curves, runs)
    first, above, missing = logged_crossings(runs, targets)
    c_first, c_above = curve_crossings(curves, targets) if not curves.empty else ({}, {})
    for k in missing:
        if k in c_first:
            first[k], above[k] = c_first[k], c_above.get(k, -1)
    table = _with_outcome(runs, targets, first, above, shapes)
    curve_targets = tuple(t for t in targets if any(k[1] == t for k in missing))
    from_curves = bool(targets) and len(missing) == len(runs) * len(targets)
    if curves.empty or from_curves:
        return StepsToTargets(table, from_curves, 0, curve_targets)
    check = _with_outcome(runs, targets, c_first, c_above, shapes)
    logged = ~pd.Series([(r, t) in missing for r, t in zip(table["run_id"], table["target"])]).to_numpy(bool)
    bad = logged & ~np.isclose(check["steps"].fillna(-1).to_numpy(float), table["steps"].fillna(-1).to_numpy(float))
    if "full_batch" in runs:  # full batch counts every step; the full_train_loss curve only every E
        fb = table["run_id"].map(runs.set_index("run_id")["full_batch"]).fillna(False).to_numpy(bool)
        bad &= ~(fb & (table["steps"].fillna(np.inf).to_numpy() <= check["steps"].fillna(np.inf).to_numpy()))
    return StepsToTargets(table, False, int(bad.sum()), curve_targets)
