"""The sharpness over full-batch training against the stability bound factor/η.

In full-batch runs the sharpness λ_max(t) tends to rise until it hovers at 2/η, the edge
of stability (Cohen et al. 2021), or to fall below 2/η where η started above it (a
catapult, Lewkowycz et al. 2020). The edge of stability is claimed only where it was
measured there, by a stated criterion (``EOS_BAND``, ``EOS_STRETCH``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpresearch import keys as R

from .measures import RUN_COLS

EOS_BAND = 0.1      # "at the edge of stability": sharpness within ±10% of the bound factor/η …
EOS_STRETCH = 3     # … for at least this many consecutive measurements
CATAPULT_BELOW = 0.5  # "fell far below": under half the bound, after starting above it


def edge_of_stability(curves: pd.DataFrame, runs: pd.DataFrame, factor: float = 2.0) -> pd.DataFrame:
    """Sharpness over training against the stability bound factor/η, per full-batch run.

    Args:
        curves: tidy curves with ``sharpness``.
        runs: the runs frame (needs ``full_batch``, ``diverged``).
        factor: 2 for gradient descent, 2 + 2β with momentum (``stability_at_init``).

    Returns:
        ``RUN_COLS, diverged, bound`` (= factor/η), ``sharpness_0``, ``sharpness_max``,
        ``sharpness_end`` (the last measurement), ``last_step``, ``n_points``,
        ``end_over_bound`` and ``max_over_bound``. Runs with fewer than two measurements
        (no sharpness logged after step 0) are left out.
    """
    cols = RUN_COLS + ["diverged", "bound", "sharpness_0", "sharpness_max", "sharpness_end", "last_step",
                       "n_points", "end_over_bound", "max_over_bound"]
    if "full_batch" not in runs:
        return pd.DataFrame(columns=cols)
    fb = runs[runs["full_batch"]]
    c = curves[curves["key"] == R.SHARPNESS].merge(fb[RUN_COLS + ["diverged"]], on="run_id").sort_values("step")
    rows = []
    for run_id, g in c.groupby("run_id", sort=False):
        if len(g) < 2 or g["step"].iloc[0] != 0:
            continue
        r = g.iloc[0]
        bound = factor / r["learning_rate"]
        v = g["value"].to_numpy()
        rows.append({**{k: r[k] for k in RUN_COLS}, "diverged": bool(r["diverged"]), "bound": bound,
                     "sharpness_0": v[0], "sharpness_max": v.max(), "sharpness_end": v[-1],
                     "last_step": int(g["step"].iloc[-1]), "n_points": len(v),
                     "end_over_bound": v[-1] / bound, "max_over_bound": v.max() / bound})
    return pd.DataFrame(rows, columns=cols).sort_values(["learning_rate", "seed"]).reset_index(drop=True) \
        if rows else pd.DataFrame(columns=cols)


def sharpness_regimes(curves: pd.DataFrame, runs: pd.DataFrame, factor: float = 2.0, band: float = EOS_BAND,
                      stretch: int = EOS_STRETCH) -> pd.DataFrame:
    """What the sharpness of each full-batch run did against its stability bound factor/η.

    Cohen et al. 2021 describe the edge of stability as λ_max *hovering* at 2/η. It is
    claimed here only when the measured sharpness stays within ±``band`` of the bound for
    ``stretch`` consecutive measurements or more; otherwise the run is described by what was
    measured: a catapult-like drop (started above the bound, then fell under
    ``CATAPULT_BELOW`` × bound; Lewkowycz et al. 2020), staying below, or rising.

    Args:
        curves: tidy curves with ``sharpness``.
        runs: the runs frame (needs ``full_batch``, ``diverged``).
        factor: 2 for gradient descent, 2 + 2β with heavy-ball momentum.
        band, stretch: the edge-of-stability criterion.

    Returns:
        One row per full-batch run with ≥ 2 measurements: ``RUN_COLS``, ``diverged``,
        ``bound``, ``ratio_0``, ``ratio_min``, ``ratio_max``, ``ratio_end`` (sharpness ÷
        bound), ``edge_steps`` (longest stretch within the band: "from–to", "" if none),
        ``edge_points``, ``drop_step`` (first measured step under CATAPULT_BELOW × bound after
        starting above it; −1 if none), ``n_points``, ``last_step`` and ``regime``: "edge of
        stability", "catapult", "above, unresolved" (started above, never fell far below nor
        hovered), "rose" (progressive sharpening by > 10%) or "below".
    """
    cols = RUN_COLS + ["diverged", "bound", "ratio_0", "ratio_min", "ratio_max", "ratio_end", "edge_steps",
                       "edge_points", "drop_step", "n_points", "last_step", "regime"]
    if "full_batch" not in runs:
        return pd.DataFrame(columns=cols)
    fb = runs[runs["full_batch"]]
    c = curves[curves["key"] == "sharpness"].merge(fb[RUN_COLS + ["diverged"]], on="run_id").sort_values("step")
    rows = []
    for _, g in c.groupby("run_id", sort=False):
        if len(g) < 2:
            continue
        r = g.iloc[0]
        bound = factor / r["learning_rate"]
        ratio = g["value"].to_numpy() / bound
        steps = g["step"].to_numpy()
        inside = np.abs(ratio - 1) <= band
        best, cur, best_end = 0, 0, -1
        for i, x in enumerate(inside):
            cur = cur + 1 if x else 0
            if cur > best:
                best, best_end = cur, i
        edge = f"{steps[best_end - best + 1]}–{steps[best_end]}" if best else ""
        started_above = ratio[0] > 1
        fell = np.flatnonzero(started_above & (ratio < CATAPULT_BELOW))
        drop = int(steps[fell[0]]) if fell.size else -1
        if best >= stretch:
            regime = "edge of stability"
        elif drop >= 0:
            regime = "catapult"
        elif started_above:
            regime = "above, unresolved"
        elif ratio.max() > 1.1 * ratio[0]:
            regime = "rose"
        else:
            regime = "below"
        rows.append({**{k: r[k] for k in RUN_COLS}, "diverged": bool(r["diverged"]), "bound": bound,
                     "ratio_0": ratio[0], "ratio_min": ratio.min(), "ratio_max": ratio.max(), "ratio_end": ratio[-1],
                     "edge_steps": edge, "edge_points": best, "drop_step": drop, "n_points": len(ratio),
                     "last_step": int(steps[-1]), "regime": regime})
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows, columns=cols).sort_values(["learning_rate", "seed"]).reset_index(drop=True)

