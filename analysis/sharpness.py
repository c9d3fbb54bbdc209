"""The sharpness over full-batch training against the stability bound factor/η.

In full-batch runs the sharpness λ_max(t) tends to rise until it hovers at 2/η, the edge
of stability (Cohen et al. 2021), or to fall below 2/η where η started above it (a
catapult, Lewkowycz et al. 2020). The edge of stability is claimed only where it was
measured there, by a stated criterion (``EOS_BAND``, ``EOS_STRETCH``): the sharpness rose
from below the band into it and stayed (``verdicts.sharpness_regime``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpresearch import keys as R
from bpresearch import verdicts as V

from .measures import RUN_COLS
from .shapes import run_shapes

EOS_BAND = V.EOS_BAND              # "at the bound": sharpness within ±10% of factor/η …
EOS_STRETCH = V.EOS_STRETCH        # … for at least this many consecutive measurements
CATAPULT_BELOW = V.CATAPULT_BELOW  # "fell far below": under half the bound, after starting above it


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

    The regime is ``verdicts.sharpness_regime``'s: the edge of stability only where the
    sharpness rose from below the band (±``band`` of the bound) into it and stayed there for
    ``stretch`` measurements or more, up to the last; never for a constant sharpness, nor
    for a run that diverged, grew unstable or collapsed to chance (named for that, from its
    loss curve: ``shapes.run_shapes``).

    Args:
        curves: tidy curves with ``sharpness`` (and ``full_train_loss``, ``grad_norm``).
        runs: the runs frame (needs ``full_batch``, ``diverged``).
        factor: 2 for gradient descent, 2 + 2β with heavy-ball momentum.
        band, stretch: the edge-of-stability criterion.

    Returns:
        One row per full-batch run with ≥ 2 measurements: ``RUN_COLS``, ``diverged``,
        ``bound``, ``ratio_0``, ``ratio_min``, ``ratio_max``, ``ratio_end`` (sharpness ÷
        bound), ``edge_steps`` (longest stretch within the band: "from–to", "" if none),
        ``edge_points``, ``drop_step`` (first measured step under CATAPULT_BELOW × bound after
        starting above it; −1 if none), ``n_points``, ``last_step``, ``regime`` (``verdicts``:
        "edge of stability", "catapult", "fell to the bound", "above, unresolved", "rose",
        "below", "constant", "diverged", "unstable" or "collapsed"), ``loss_0``, ``end_loss`` and
        ``chance_k`` (K of a collapse to ln K; 0: none) and ``grad_ratio``.
    """
    cols = RUN_COLS + ["diverged", "bound", "ratio_0", "ratio_min", "ratio_max", "ratio_end", "edge_steps",
                       "edge_points", "drop_step", "n_points", "last_step", "regime", "loss_0", "end_loss", "chance_k",
                       "grad_ratio"]
    if "full_batch" not in runs:
        return pd.DataFrame(columns=cols)
    fb = runs[runs["full_batch"]]
    c = curves[curves["key"] == R.SHARPNESS].merge(fb[RUN_COLS + ["diverged"]], on="run_id").sort_values("step")
    shape = run_shapes(curves, fb).set_index("run_id")
    rows = []
    for run_id, g in c.groupby("run_id", sort=False):
        if len(g) < 2:
            continue
        r = g.iloc[0]
        bound = factor / r["learning_rate"]
        ratio = g["value"].to_numpy() / bound
        steps = g["step"].to_numpy()
        how = shape.loc[run_id] if run_id in shape.index else pd.Series({"unstable": False, "chance_k": 0})
        reg = V.sharpness_regime(ratio, bool(r["diverged"]), bool(how["unstable"]), how["chance_k"] > 0, band, stretch)
        n_edge = reg.edge_to - reg.edge_from + 1 if reg.edge_from >= 0 else 0
        rows.append({**{k: r[k] for k in RUN_COLS}, "diverged": bool(r["diverged"]), "bound": bound,
                     "ratio_0": ratio[0], "ratio_min": ratio.min(), "ratio_max": ratio.max(), "ratio_end": ratio[-1],
                     "edge_steps": f"{steps[reg.edge_from]}–{steps[reg.edge_to]}" if n_edge else "",
                     "edge_points": n_edge, "drop_step": int(steps[reg.drop]) if reg.drop >= 0 else -1,
                     "n_points": len(ratio), "last_step": int(steps[-1]), "regime": reg.regime,
                     "loss_0": how.get("loss_0", np.nan), "end_loss": how.get("end_loss", np.nan),
                     "chance_k": int(how["chance_k"]), "grad_ratio": how.get("grad_ratio", np.nan)})
    if not rows:
        return pd.DataFrame(columns=cols)
    return pd.DataFrame(rows, columns=cols).sort_values(["learning_rate", "seed"]).reset_index(drop=True)
