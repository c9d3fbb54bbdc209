"""The divergence boundary, predicted and measured.

Gradient descent on a quadratic of top curvature λ_max is stable iff η < 2/λ_max
((2 + 2β)/λ_max with heavy-ball momentum β). The logged ``stability_lr`` at step 0 (median
over seeds) predicts the smallest learning rate at which full-batch runs diverge
(``stability_at_init``). On a grid the measured boundary is only bracketed: it lies between
the highest stable and the lowest diverged grid value (``divergence_bracket``), and the
prediction is judged by where it falls against that bracket (``compare_boundary``). A run
whose loss grew without passing the divergence limit within its budget is *unstable*
(``verdicts.unstable``) and counts like a divergence here (``unstable_fraction``): just
above 2/λ_max the loss grows by only (ηλ_max − 1)² per step.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpresearch import keys as R

from .measures import CELL, RUN_COLS


def bound_labels(factor: float) -> tuple[str, str]:
    """How the stability bound reads: ("2/λ_max", "2/η") for gradient descent, else with momentum."""
    return ("2/λ_max", "2/η") if np.isclose(factor, 2.0) else ("(2+2β)/λ_max", "(2+2β)/η")


def _at_step(curves: pd.DataFrame, key: str, step: int) -> pd.DataFrame:
    c = curves[(curves["key"] == key) & (curves["step"] == step)]
    return c[["run_id", "value"]]


def stability_at_init(curves: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """The predicted stable step at initialisation, per optimizer: median over seeds.

    Runs of one seed share their initial params (whatever their learning rate or batch
    size), so each seed's value is first the median over its runs, then the median is
    taken over seeds.

    Args:
        curves: tidy curves holding ``sharpness`` and ``stability_lr``.
        runs: the runs frame (``RUN_COLS``).

    Returns:
        ``optimizer, sharpness, stability_lr`` (medians over seeds at step 0),
        ``stability_lr_min``, ``stability_lr_max`` (over seeds), ``n_seeds`` and ``factor``
        = stability_lr × sharpness (2 for sgd, 2 + 2β with momentum): the bound on the
        sharpness at learning rate η is factor/η. Empty when nothing was logged at step 0.
    """
    cols = ["optimizer", "sharpness", "stability_lr", "stability_lr_min", "stability_lr_max", "n_seeds", "factor"]
    lam = _at_step(curves, R.SHARPNESS, 0).rename(columns={"value": "sharpness"})
    eta = _at_step(curves, R.STABILITY_LR, 0).rename(columns={"value": "stability_lr"})
    m = runs[RUN_COLS].merge(lam, on="run_id").merge(eta, on="run_id")
    if m.empty:
        return pd.DataFrame(columns=cols)
    per_seed = m.groupby(["optimizer", "seed"])[["sharpness", "stability_lr"]].median().reset_index()
    rows = []
    for opt, g in per_seed.groupby("optimizer", sort=True):
        rows.append({"optimizer": opt, "sharpness": g["sharpness"].median(), "stability_lr": g["stability_lr"].median(),
                     "stability_lr_min": g["stability_lr"].min(), "stability_lr_max": g["stability_lr"].max(),
                     "n_seeds": len(g),
                     "factor": float(np.median(m[m["optimizer"] == opt].eval("stability_lr * sharpness")))})
    return pd.DataFrame(rows, columns=cols)


def unstable_fraction(runs: pd.DataFrame, shapes: pd.DataFrame) -> pd.DataFrame:
    """``measures.diverged_fraction`` with unstable runs counted as diverged.

    Args:
        runs: the runs frame; shapes: ``shapes.run_shapes`` of its runs.

    Returns:
        Per optimizer × batch size × learning rate: ``n``, ``n_diverged`` (diverged or
        unstable), ``n_unstable`` (of those, unstable without diverging) and ``fraction``.
    """
    unstable = set(shapes.loc[shapes["unstable"].astype(bool), "run_id"]) if not shapes.empty else set()
    r = runs.assign(unstable=runs["run_id"].isin(unstable) & ~runs["diverged"].astype(bool))
    r = r.assign(either=r["diverged"].astype(bool) | r["unstable"])
    g = r.groupby(CELL, sort=True)
    out = pd.DataFrame({"n": g.size(), "n_diverged": g["either"].sum().astype(int),
                        "n_unstable": g["unstable"].sum().astype(int)}).reset_index()
    out["fraction"] = out["n_diverged"] / out["n"]
    return out


def divergence_bracket(frac: pd.DataFrame) -> pd.DataFrame:
    """Where on the learning-rate grid runs begin to diverge, per optimizer × batch size.

    A grid value counts as diverged when any seed diverged there (or, with
    ``unstable_fraction``, grew unstable), as stable when none did.
    The boundary then lies in (highest stable, lowest diverged]: ``highest_stable`` is the
    largest stable value *below* ``lowest_diverged``. ``largest_stable`` is the largest
    stable value anywhere, which exceeds ``lowest_diverged`` only on a grid where
    divergence is not monotone in η (``monotone`` False).

    Args:
        frac: the output of ``measures.diverged_fraction``.

    Returns:
        ``optimizer, batch_size, highest_stable, lowest_diverged, largest_stable, midpoint``
        (geometric mean of the bracket; NaN when a side is open), ``lo``, ``hi`` (the
        bracket: 0 when the smallest grid value diverged, inf when none did),
        ``grid_min``, ``grid_max``, ``monotone``, ``lowest_unstable`` (at ``lowest_diverged``
        no seed diverged, some were unstable: ``unstable_fraction``).
    """
    cols = ["optimizer", "batch_size", "highest_stable", "lowest_diverged", "largest_stable", "midpoint", "lo", "hi",
            "grid_min", "grid_max", "monotone", "lowest_unstable"]
    rows = []
    for (opt, bs), g in frac.groupby(["optimizer", "batch_size"], sort=True):
        g = g.sort_values("learning_rate")
        lr, div = g["learning_rate"].to_numpy(float), (g["n_diverged"] > 0).to_numpy()
        lowest = lr[div].min() if div.any() else np.nan
        below = lr[~div & (lr < lowest)] if div.any() else lr[~div]
        highest = below.max() if below.size else np.nan
        largest = lr[~div].max() if (~div).any() else np.nan
        unst = (g["n_unstable"] >= g["n_diverged"]).to_numpy() if "n_unstable" in g else np.zeros(len(g), bool)
        lo = highest if np.isfinite(highest) else 0.0
        hi = lowest if np.isfinite(lowest) else np.inf
        rows.append({"optimizer": opt, "batch_size": int(bs), "highest_stable": highest, "lowest_diverged": lowest,
                     "largest_stable": largest,
                     "midpoint": float(np.sqrt(lo * hi)) if 0 < lo and np.isfinite(hi) else np.nan,
                     "lo": lo, "hi": hi, "grid_min": lr.min(), "grid_max": lr.max(),
                     "monotone": not (np.isfinite(largest) and np.isfinite(lowest) and largest > lowest),
                     "lowest_unstable": bool(div.any() and unst[lr == lowest].all())})
    return pd.DataFrame(rows, columns=cols)


def compare_boundary(bracket: pd.DataFrame, predicted: float) -> pd.DataFrame:
    """The predicted boundary against each measured bracket.

    Returns:
        ``bracket`` plus ``predicted``, ``ratio`` = predicted / geometric midpoint (NaN where
        the bracket is open), ``position``: "inside" (lo ≤ predicted ≤ hi), "below" or
        "above" the bracket, and ``factor_off``: how many times outside the bracket's
        nearer end the prediction lies (1 inside).
    """
    out = bracket.copy()
    out["predicted"] = predicted
    out["ratio"] = predicted / out["midpoint"]
    out["position"] = np.select([predicted < out["lo"], predicted > out["hi"]], ["below", "above"], "inside")
    with np.errstate(divide="ignore"):
        out["factor_off"] = np.where(out["position"] == "below", out["lo"] / predicted,
                                     np.where(out["position"] == "above", predicted / out["hi"], 1.0))
    return out

