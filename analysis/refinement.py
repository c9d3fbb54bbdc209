"""A refined learning rate per batch size: its bracket, whether it resolved, what it cost (pure).

A refining sweep (``[sweep] refine``) adds learning rates per group until the best one is
inside the range tried and both neighbours lie within ``resolution`` of it. The report
reads the outcome from the runs themselves: the best learning rate of each batch size over
every learning rate run (initial grid and rounds alike), its two neighbours with their
median steps (the bracket), and the configurations spent against a uniform log grid at the
same spacing over the same range. Best, bracket and resolved are ``bpresearch.verdicts``',
as in the sweep's own summary.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpresearch import keys
from bpresearch import verdicts as V


def settings(resolved: dict | None) -> dict | None:
    """``{targets, resolution, max_rounds}`` of the latest sweep's ``[sweep] refine`` (``keys.refine_table``), or None."""
    r = ((resolved or {}).get("sweep") or {}).get("refine")
    if not isinstance(r, dict):
        return None
    t = keys.refine_table(r, (resolved.get("train") or {}).get("targets") or [])
    return {"targets": [float(x) for x in t["targets"]], "resolution": float(t["resolution"]),
            "max_rounds": t["max_rounds"]}


def bracket(cell: pd.DataFrame, best: pd.DataFrame, target: float, resolution: float,
            runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """The best learning rate of each optimizer × batch size with its neighbours.

    Args:
        cell: ``measures.cells`` (median steps per learning rate, over seeds).
        best: ``measures.best_learning_rate`` for ``target``.
        target: the loss target.
        resolution: the largest neighbour ratio that counts as resolved.
        runs: the runs (for configurations spent), or None.
    Returns:
        ``best`` plus ``lr_below``, ``steps_below``, ``lr_above``, ``steps_above`` (NaN at an
        edge; steps ``inf``: not reached or diverged), ``spacing`` (the larger neighbour
        ratio), ``resolved`` (inside the range and ``spacing ≤ resolution``),
        ``configurations`` (runs at that batch size), ``uniform`` (configurations a log
        grid at ``resolution`` over the same range would need, same seeds).
    """
    c = cell[cell["target"] == target]
    out = best.copy()
    cols = {k: [] for k in ("lr_below", "steps_below", "lr_above", "steps_above", "spacing", "resolved",
                            "configurations", "uniform")}
    for r in out.itertuples():
        g = c[(c["optimizer"] == r.optimizer) & (c["batch_size"] == r.batch_size)].sort_values("learning_rate")
        lrs, med = g["learning_rate"].to_numpy(float), g["median_steps"].to_numpy(float)
        br = V.bracket(lrs, med, resolution)   # the same best as ``best`` (both ``verdicts.best``)
        for side, i in (("below", br.below), ("above", br.above)):
            cols[f"lr_{side}"].append(lrs[i] if i is not None else np.nan)
            cols[f"steps_{side}"].append(med[i] if i is not None else np.nan)
        cols["spacing"].append(br.spacing)
        cols["resolved"].append(br.resolved)
        if runs is not None:
            sel = runs[(runs["optimizer"] == r.optimizer) & (runs["batch_size"] == r.batch_size)]
            cols["configurations"].append(len(sel))
        else:
            cols["configurations"].append(int(g["n"].sum()))
        n_seeds = int(g["n"].max()) if len(g) else 0
        cols["uniform"].append(V.uniform_count(lrs[0], lrs[-1], resolution) * n_seeds if len(lrs) else 0)
    for k, v in cols.items():
        out[k] = v
    return out


def table(br: pd.DataFrame, full: int | None, fmt_steps) -> pd.DataFrame:
    """The refined optimum per batch size, with its bracket and what it cost."""
    def nb(lr, steps):
        return "— (edge)" if not np.isfinite(lr) else f"{lr:.3g}: {fmt_steps(steps)}"

    rows = []
    for r in br.itertuples():
        rows.append({"batch size": f"full ({r.batch_size})" if r.batch_size == full else str(r.batch_size),
                     "best learning rate": f"{r.learning_rate:.3g}" if r.reached else "—",
                     "steps (median)": fmt_steps(r.steps),
                     "lower neighbour: steps": nb(r.lr_below, r.steps_below),
                     "upper neighbour: steps": nb(r.lr_above, r.steps_above),
                     "spacing": f"×{r.spacing:.3g}" if np.isfinite(r.spacing) else "—",
                     "resolved": "yes" if r.resolved else "NO",
                     "configurations": f"{r.configurations}",
                     "uniform grid": f"{r.uniform}"})
    return pd.DataFrame(rows)


def findings(br: pd.DataFrame, target: float, resolution: float, full: int | None) -> list[str]:
    """What the refinement resolved and what it cost, in words."""
    def bs(b):
        return f"full ({b})" if b == full else str(b)

    n, ok = len(br), int(br["resolved"].sum())
    out = [f"Learning rate refined per batch size for loss {target:g} (resolution ×{resolution:.3g}): "
           f"{ok} of {n} batch sizes resolved (best inside the range tried, both neighbours within ×{resolution:.3g})."]
    bad = br[~br["resolved"]]
    if not bad.empty:
        why = []
        for r in bad.itertuples():
            if not r.reached:
                why.append(f"{bs(r.batch_size)}: no learning rate reached it")
            elif not (np.isfinite(r.lr_below) and np.isfinite(r.lr_above)):
                why.append(f"{bs(r.batch_size)}: best at the edge ({r.learning_rate:.3g})")
            else:
                why.append(f"{bs(r.batch_size)}: neighbours ×{r.spacing:.3g} apart")
        out.append("Not resolved — its steps are an upper bound on the tuned optimum: " + "; ".join(why)
                   + ". More rounds (refine.max_rounds) or a wider initial range would resolve it.")
    spent, uniform = int(br["configurations"].sum()), int(br["uniform"].sum())
    out.append(f"The refinement ran {spent:,} configurations where a uniform grid at spacing ×{resolution:.3g} over "
               f"the same ranges would need {uniform:,} ({spent / uniform:.0%})." if uniform else "")
    return [s for s in out if s]
