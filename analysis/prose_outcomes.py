"""The findings in words about how runs ended, beyond reached and diverged: runs that grew
unstable or collapsed to chance without crossing a target, and targets that sit in the
noise floor of the best runs (``bpresearch.verdicts``, ``analysis.shapes``).

Pure: frames in, strings out, as ``prose``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bpresearch import verdicts as V

from .prose import bs_text, span
from .shapes import noise_floor

WHY = {V.UNSTABLE: "the full loss ended above its start or rose steadily, without passing the divergence limit",
       V.COLLAPSED: "the full loss sits flat at chance, ln K for K classes (at full batch with a vanishing gradient, "
                    "with minibatches after it had fallen well below): one constant prediction for every input"}


def findings_failed(table: pd.DataFrame, target: float, full: int | None) -> list[str]:
    """Cells with runs that never crossed the target and grew unstable or collapsed (not counted)."""
    t = table[(table["target"] == target) & table["outcome"].isin(list(WHY))]
    out = []
    for (bs, lr, what), g in t.groupby(["batch_size", "learning_rate", "outcome"]):
        n = len(g)
        out.append(f"At {bs_text(int(bs), full)} η = {lr:.3g}: {n} run{'s' if n > 1 else ''} {what} ({WHY[what]}; "
                   f"final loss {span(g['final_loss'].min(), g['final_loss'].max())}): counted as not reached.")
    return out


def findings_floor(curves: pd.DataFrame, table: pd.DataFrame, best: pd.DataFrame, target: float,
                   full: int | None) -> list[str]:
    """Batch sizes whose target lies in the noise floor of the runs at their best learning rate."""
    fl = noise_floor(curves, table[table["target"] == target], best)
    out = []
    for r in fl.itertuples():
        out.append(f"At {bs_text(int(r.batch_size), full)} loss {target:g} sits in the noise floor of the best "
                   f"runs (η = {r.learning_rate:.3g}: their last {V.TAIL} evaluations span "
                   f"{span(r.floor_lo, r.floor_hi)}, {r.runs} run{'s' if r.runs > 1 else ''}): whether and when a "
                   f"run crosses it is decided by single noisy evaluations, so its steps to this target say little.")
    return out


def findings_outcomes(curves: pd.DataFrame, table: pd.DataFrame, best: pd.DataFrame, target: float,
                      full: int | None, every_cell: bool = True) -> list[str]:
    """``findings_failed`` (when ``every_cell``) and ``findings_floor`` for one target."""
    out = findings_failed(table, target, full) if every_cell else []
    if not curves.empty and not best.empty and np.isfinite(target):
        out += findings_floor(curves, table, best, target, full)
    return out
