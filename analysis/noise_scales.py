"""The gradient noise scale against the critical batch size (McCandlish et al. 2018).

B_simple = tr(Σ)/|G|² near the target (``noise_scale_near_target``, ``noise_scale_at_loss``)
predicts B_crit = E_min/S_min of the steps-against-examples fit and B_noise of the
best-learning-rate fit (``critical_fits``); under their model B_crit is the noise scale
averaged along training, weighted by the steps spent (``noise_path_average``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from bpresearch import keys as R

from .critical import CriticalFit, LrScalingFit, fit_lr_scaling, fit_steps_examples
from .measures import RUN_COLS


def noise_scale_near_target(curves: pd.DataFrame, table: pd.DataFrame, best: pd.DataFrame) -> pd.DataFrame:
    """B_simple near the target, for each batch size's best learning rate.

    For every seed of the best cell that reached the target at step s, the
    ``gradient_noise_scale`` taken is the one at the measured step closest to s (the
    earlier on a tie): it is measured only every ``diagnostics.every`` steps, so the
    step used may differ from s; ``max_gap`` says by how much at most.

    Args:
        curves: tidy curves with ``gradient_noise_scale``.
        table: the output of ``measures.steps_to_target`` for the target.
        best: the output of ``measures.best_learning_rate`` for the same target.

    Returns:
        ``optimizer, batch_size, learning_rate, b_simple`` (median over the seeds that
        reached), ``b_simple_min``, ``b_simple_max``, ``target_step`` (median step at which
        they reached the target), ``measured_steps`` (the steps used, as text), ``max_gap``,
        ``n``. Batch sizes whose best cell did not reach, or has no noise scale logged, are
        left out.
    """
    cols = ["optimizer", "batch_size", "learning_rate", "b_simple", "b_simple_min", "b_simple_max", "target_step",
            "measured_steps", "max_gap", "rel_gap", "n"]
    gns = curves[curves["key"] == R.NOISE_SCALE]
    rows = []
    for b in best[best["reached"]].itertuples():
        cell = table[(table["optimizer"] == b.optimizer) & (table["batch_size"] == b.batch_size)
                     & (table["learning_rate"] == b.learning_rate) & table["reached"]]
        picks = []
        for r in cell.itertuples():
            g = gns[gns["run_id"] == r.run_id]
            if g.empty:
                continue
            gap = (g["step"] - r.steps).abs().to_numpy()
            i = int(np.lexsort((g["step"].to_numpy(), gap))[0])  # smallest gap, then the earlier step
            picks.append((g["value"].iloc[i], int(g["step"].iloc[i]), r.steps, gap[i]))
        if not picks:
            continue
        v = np.array([p[0] for p in picks])
        rows.append({"optimizer": b.optimizer, "batch_size": int(b.batch_size), "learning_rate": b.learning_rate,
                     "b_simple": float(np.median(v)), "b_simple_min": v.min(), "b_simple_max": v.max(),
                     "target_step": float(np.median([p[2] for p in picks])),
                     "measured_steps": ", ".join(str(s) for s in sorted({p[1] for p in picks})),
                     "max_gap": float(max(p[3] for p in picks)), "n": len(picks)})
        rows[-1]["rel_gap"] = rows[-1]["max_gap"] / max(rows[-1]["target_step"], 1.0)
    return pd.DataFrame(rows, columns=cols)


class CriticalFits(NamedTuple):
    steps_examples: CriticalFit   # S_min, E_min, B_crit = E_min/S_min
    lr_scaling: LrScalingFit      # ε_max, B_noise


def critical_fits(best: pd.DataFrame) -> CriticalFits:
    """Both fits of ``analysis.critical`` from the best learning rate per batch size.

    Batch sizes where the target was not reached carry NaN and are dropped by the fits.
    """
    ok = best[best["reached"] & best["tuned"].astype(bool)] if "tuned" in best else best[best["reached"]]
    return CriticalFits(fit_steps_examples(ok["steps"].to_numpy(float), ok["examples"].to_numpy(float)),
                        fit_lr_scaling(ok["batch_size"].to_numpy(float), ok["learning_rate"].to_numpy(float)))


def noise_scale_at_loss(curves: pd.DataFrame, runs: pd.DataFrame, target: float, tol: float = 1.5) -> pd.Series | None:
    """B_simple where full-batch gradient descent's loss is near the target (McCandlish et al. 2018).

    B_simple is a property of the point in parameter space, measured over training only in
    full-batch runs. For every full-batch run, the measurement whose ``full_train_loss`` at
    the same step is closest to the target (in log ratio) is taken, if within a factor
    ``tol`` of it; the result is the median over those runs.

    Returns:
        A row like ``headline_noise_scale``'s with ``kind = "at_loss"``, ``loss_min`` and
        ``loss_max`` (the losses at the measurements used), or None when no run came close.
    """
    full = runs[runs.get("full_batch", False) & (runs["optimizer"] != "random_search")] \
        if "full_batch" in runs else runs.iloc[:0]
    if full.empty:
        return None
    c = curves[curves["run_id"].isin(full["run_id"])]
    g = c[c["key"] == R.NOISE_SCALE][["run_id", "step", "value"]]
    f = c[c["key"] == R.FULL_TRAIN_LOSS][["run_id", "step", "value"]].rename(columns={"value": "loss"})
    both = g.merge(f, on=["run_id", "step"])
    both = both[(both["loss"] > 0) & np.isfinite(both["value"])]
    if both.empty:
        return None
    both["gap"] = np.abs(np.log(both["loss"] / target))
    pick = both.loc[both.groupby("run_id")["gap"].idxmin()]
    pick = pick[pick["gap"] <= np.log(tol)]
    if pick.empty:
        return None
    v = pick["value"].to_numpy()
    lrs = full.set_index("run_id").loc[pick["run_id"], "learning_rate"].to_numpy()
    return pd.Series({"kind": "at_loss", "optimizer": full["optimizer"].iloc[0], "batch_size": int(full["batch_size"].iloc[0]),
                      "learning_rate": float(np.median(lrs)), "lr_min": float(lrs.min()), "lr_max": float(lrs.max()),
                      "b_simple": float(np.median(v)), "b_simple_min": float(v.min()), "b_simple_max": float(v.max()),
                      "loss_min": float(pick["loss"].min()), "loss_max": float(pick["loss"].max()),
                      "measured_steps": ", ".join(str(int(s)) for s in sorted(set(pick["step"]))),
                      "target_step": float(np.median(pick["step"])), "max_gap": 0.0, "rel_gap": 0.0, "n": len(pick)})


def headline_noise_scale(near: pd.DataFrame) -> pd.Series | None:
    """The B_simple that stands for "near the target": the batch size measured closest to it.

    B_simple is measured every ``diagnostics.every`` steps, so a fast run (a large batch
    reaching the target in a few steps) often has only its step-0 value, which is B_simple
    at initialisation, not near the target. The row kept is the one with the smallest gap
    relative to the step at which the target was reached (``rel_gap``); ties go to the
    larger batch size, whose path is closer to the full-batch one the theory describes.
    """
    if near.empty:
        return None
    return near.sort_values(["rel_gap", "batch_size"], ascending=[True, False]).iloc[0]


def _nearest(curve: pd.DataFrame, step: int) -> float:
    """The value logged at the step nearest ``step`` (the earlier on a tie); NaN for an empty curve."""
    if curve.empty:
        return np.nan
    s = curve["step"].to_numpy()
    i = int(np.argmin(np.abs(s - step)))
    return float(curve["value"].iloc[i])


GRAD_FLOOR = 0.01  # a noise scale is used only where |G| ≥ 1% of its value at step 0: B ∝ 1/|G|² blows up


def noise_path_average(curves: pd.DataFrame, runs: pd.DataFrame, table: pd.DataFrame, key: str,
                       grad_floor: float = GRAD_FLOOR) -> pd.DataFrame:
    """The step-weighted average of a noise scale along each full-batch run's path to the target.

    McCandlish et al. 2018 (§2.3, appendix D): under S = S_min + E_min/B, B_crit = E_min/S_min
    is the noise scale averaged over training, weighted by the steps spent. Only measurements
    that carry information count: taken before the target was reached (loss above it) and
    where the gradient norm is at least ``grad_floor`` × its value at step 0 (near a minimum
    |G| → 0 and B = tr(·)/|G|²-like ratios explode: values like 5.5e12 are not noise scales).
    Each kept measurement stands for the steps up to the next one (the last: up to the
    target step), so the dense early measurements weigh what they cover, no more.

    Args:
        curves: tidy curves with ``key``, ``grad_norm`` and ``train_loss`` (full batch: the
            full loss at every logged step) or ``full_train_loss``.
        runs: the runs frame (``full_batch``).
        table: ``measures.steps_to_target`` rows of one target.
        key: ``gradient_noise_scale`` (B_simple) or ``hessian_noise_scale`` (B_noise).

    Returns:
        Per full-batch run that reached the target: ``RUN_COLS``, ``target_step``,
        ``n_points`` (measurements kept), ``path_average`` (NaN when none qualify).
    """
    cols = RUN_COLS + ["target_step", "n_points", "path_average"]
    if "full_batch" not in runs or not (curves["key"] == key).any():  # not measured at all
        return pd.DataFrame(columns=cols)
    ok = table[table["reached"]].merge(runs.loc[runs["full_batch"], ["run_id"]], on="run_id")
    if ok.empty:
        return pd.DataFrame(columns=cols)
    c = curves[curves["run_id"].isin(ok["run_id"])]
    rows = []
    for r in ok.itertuples(index=False):
        g = c[c["run_id"] == r.run_id]
        v = g[g["key"] == key][["step", "value"]].sort_values("step")
        grad = g[g["key"] == "grad_norm"].sort_values("step")
        loss = g[g["key"].isin(["train_loss", "full_train_loss"])].sort_values("step")
        g0 = _nearest(grad, 0)
        keep = []
        for s, x in zip(v["step"], v["value"]):
            if s >= r.steps:
                continue
            lo, gn = _nearest(loss, s), _nearest(grad, s)
            if np.isfinite(x) and lo > r.target and np.isfinite(g0) and gn >= grad_floor * g0:
                keep.append((s, x))
        if keep:
            s = np.array([k[0] for k in keep] + [r.steps], float)
            w = np.diff(s)
            avg = float(np.sum(w * np.array([k[1] for k in keep])) / np.sum(w))
        else:
            avg = np.nan
        rows.append({**{k: getattr(r, k) for k in RUN_COLS}, "target_step": r.steps, "n_points": len(keep),
                     "path_average": avg})
    return pd.DataFrame(rows, columns=cols)
