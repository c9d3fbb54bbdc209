"""How each run's curves ended, and whether a target sits in the noise floor of the best runs.

The decisions are ``bpresearch.verdicts``' (``end_level``, ``unstable``, ``chance_collapse``);
here they are applied to the frames of ``analysis.load``: a runs frame and tidy curves
(``run_id, key, step, value``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpresearch import keys as R
from bpresearch import verdicts as V

from . import curvestore

SHAPE_COLS = ["run_id", "loss_0", "end_loss", "unstable", "chance_k", "grad_ratio"]


def _by_run(curves: pd.DataFrame, key: str) -> dict:
    """run_id -> the values of one curve in step order: views into one array of that curve's points,
    made from the frame's columns (no sorted copy of the frame, no frame per run)."""
    mask = (curves["key"] == key).to_numpy(dtype=bool)
    if not mask.any():
        return {}
    run, ids = curvestore.factorized(curves["run_id"])
    run = run[mask]
    step, value = curves["step"].to_numpy()[mask], curves["value"].to_numpy(float)[mask]
    dr, ds = np.diff(run), np.diff(step)
    if not np.all((dr > 0) | ((dr == 0) & (ds > 0))):   # not yet in run, step order
        order = np.lexsort((step, run))
        run, value = run[order], value[order]
    del dr, ds, step
    starts = np.flatnonzero(np.r_[True, run[1:] != run[:-1]])
    return {ids[run[a]]: v for a, v in zip(starts, np.split(value, starts[1:]))}


def run_shapes(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per run with a full training loss curve: how it ended.

    Args:
        curves: tidy curves with ``full_train_loss`` (and ``grad_norm`` for collapse).
        runs: the runs frame (``run_id``, ``diverged``; ``full_batch`` and
            ``params.loss.kind`` where known: a collapse is judged only for cross-entropy
            runs, whose chance level is ln K; with the gradient norm at full batch, whose
            gradient is the full gradient, by the loss alone with minibatches).

    Returns:
        ``run_id``, ``loss_0`` (the first evaluation), ``end_loss`` (``verdicts.end_level``),
        ``unstable`` (``verdicts.unstable``; False for a diverged run), ``chance_k`` (K of
        ``verdicts.chance_collapse``; 0: not collapsed) and ``grad_ratio`` (the gradient norm
        at the end ÷ at the start; NaN where not judged).
    """
    loss, grad = _by_run(curves, R.FULL_TRAIN_LOSS), _by_run(curves, R.GRAD_NORM)
    rows = []
    for r in runs.to_dict("records"):
        v = loss.get(r["run_id"])
        if v is None or v.size == 0:
            continue
        diverged = bool(r.get("diverged", False))
        g = grad.get(r["run_id"])
        ce = not diverged and r.get("params.loss.kind") == "cross_entropy"
        judged = ce and g is not None and bool(r.get("full_batch", False))   # the full gradient's norm
        k = V.chance_collapse(v, g) if judged else V.chance_collapse(v) if ce and not r.get("full_batch") else 0
        rows.append({"run_id": r["run_id"], "loss_0": v[0], "end_loss": V.end_level(v),
                     "unstable": not diverged and V.unstable(v), "chance_k": k,
                     "grad_ratio": V.end_level(g) / g[0] if judged and g[0] > 0 else np.nan})
    return pd.DataFrame(rows, columns=SHAPE_COLS)


def noise_floor(curves: pd.DataFrame, table: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """Per batch size: whether the target sits in the noise floor of its best learning rate's runs.

    The floor is the range of the last ``verdicts.TAIL`` evaluations of the full training loss
    of the runs that count as reached at the best learning rate. A target at or below its top
    is not cleared by a margin: whether a run crossed it, and when, is decided by single noisy
    evaluations.

    Args:
        curves: tidy curves with ``full_train_loss``.
        table: ``measures.steps_to_target`` for one target.
        best: ``measures.best_learning_rate`` for that target.

    Returns:
        ``optimizer, batch_size, learning_rate, target, floor_lo, floor_hi, runs`` for the
        batch sizes whose target lies at or below ``floor_hi`` (the target inside the floor).
    """
    cols = ["optimizer", "batch_size", "learning_rate", "target", "floor_lo", "floor_hi", "runs"]
    loss = _by_run(curves, R.FULL_TRAIN_LOSS)
    rows = []
    for b in best[best["reached"]].itertuples():
        t = table[(table["optimizer"] == b.optimizer) & (table["batch_size"] == b.batch_size)
                  & np.isclose(table["learning_rate"], b.learning_rate) & table["reached"]]
        tails = [loss[i][-V.TAIL:] for i in t["run_id"] if i in loss]
        if not tails:
            continue
        v = np.concatenate(tails)
        target = float(t["target"].iloc[0])
        if np.nanmax(v) >= target:
            rows.append({"optimizer": b.optimizer, "batch_size": int(b.batch_size), "learning_rate": b.learning_rate,
                         "target": target, "floor_lo": float(np.nanmin(v)), "floor_hi": float(np.nanmax(v)),
                         "runs": len(tails)})
    return pd.DataFrame(rows, columns=cols)
