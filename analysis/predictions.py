"""Predicted against measured: what the diagnostics foretell, gathered for one group of runs.

Three predictions, each from a diagnostic the sweep logs (``[diagnostics]``), each compared
with a measure: the divergence boundary (``analysis.boundary``; unstable runs count as
diverged), the edge of stability
(``analysis.sharpness``) and the critical batch size (``analysis.noise_scales``). ``predict``
gathers them into a ``Predicted``, with the reason for each prediction that cannot be made.

Pure functions over the frames of ``analysis.load`` (runs; curves with the keys
``sharpness``, ``stability_lr``, ``gradient_noise_scale``) and ``analysis.measures``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .boundary import (
    bound_labels,
    compare_boundary,
    divergence_bracket,
    stability_at_init,
    unstable_fraction,
)
from .noise_scales import (
    critical_fits,
    headline_noise_scale,
    noise_scale_at_loss,
    noise_scale_near_target,
)
from .shapes import run_shapes
from .sharpness import edge_of_stability


@dataclass
class Predicted:
    """What the diagnostics predict for one experiment, and why a prediction is missing."""
    init: pd.Series | None               # boundary.stability_at_init row (the gradient-descent optimizer)
    cmp: pd.DataFrame | None             # boundary.compare_boundary
    missing_boundary: str                # why there is no boundary prediction ("" when there is)
    missing_noise: str                   # why there is no B_simple ("" when there is)
    eos: pd.DataFrame                    # sharpness.edge_of_stability
    every: int | None                    # steps between diagnostic measurements
    critical: dict = field(default_factory=dict)  # target -> (near, headline row or None, CriticalFits)

    @property
    def lr_mark(self) -> tuple[float, str] | None:
        if self.init is None:
            return None
        return self.init["stability_lr"], f"{bound_labels(self.init['factor'])[0]}(0) = {self.init['stability_lr']:.3g}"

    def bracket(self, full: int | None) -> tuple[float, float, str] | None:
        """The measured full-batch divergence boundary (highest stable, lowest diverged η), when closed."""
        if self.cmp is None or full is None or not (self.cmp["batch_size"] == full).any():
            return None
        r = self.cmp[self.cmp["batch_size"] == full].iloc[0]
        if not (np.isfinite(r["lowest_diverged"]) and np.isfinite(r["highest_stable"])):
            return None
        return r["highest_stable"], r["lowest_diverged"], \
            f"measured boundary, full batch: ({r['highest_stable']:.3g}, {r['lowest_diverged']:.3g}]"

    def marks(self, target: float) -> list[tuple[str, float]]:
        """Vertical lines for the scaling plot: B_simple near the target, B_crit, B_noise."""
        if target not in self.critical:
            return []
        _, head, fits = self.critical[target]
        out = [("B_simple near target", head["b_simple"] if head is not None else np.nan),
               ("B_crit (S–E fit)", fits.steps_examples.b_crit), ("B_noise (η fit)", fits.lr_scaling.b_noise)]
        return [(k, v) for k, v in out if np.isfinite(v)]


def _diag_flag(runs: pd.DataFrame, name: str) -> bool:
    col = f"params.diagnostics.{name}"
    return col in runs and (runs[col] == "True").any()


def predict(runs: pd.DataFrame, curves: pd.DataFrame, table: pd.DataFrame, bests: dict, full: int | None) -> Predicted:
    """The three predictions for one group of runs, with reasons where missing.

    Args:
        runs: the runs frame; curves: its curves (with the diagnostic keys).
        table: ``measures.steps_to_target``; bests: target -> ``measures.best_learning_rate``.
        full: the full batch size, if any.
    """
    gd = runs[runs["optimizer"] != "random_search"]
    eval_every = int(runs["params.train.eval_every"].iloc[0]) if "params.train.eval_every" in runs else 1
    if not (_diag_flag(runs, "sharpness") or _diag_flag(runs, "noise_scale")):
        none = ("no diagnostics were logged (the experiment file has no [diagnostics] section, or it turns both "
                "sharpness and noise_scale off)")
        return Predicted(None, None, none, none, edge_of_stability(curves.iloc[0:0], runs), None)
    # The sweep rounds diagnostics.every up to a multiple of eval_every.
    every = -(-int(runs["params.diagnostics.every"].iloc[0]) // eval_every) * eval_every
    init = stability_at_init(curves, gd)
    missing_boundary = ""
    if not _diag_flag(runs, "sharpness"):
        missing_boundary = "the sharpness was not measured (diagnostics.sharpness = false)"
    elif init.empty:
        missing_boundary = "no stable step was logged at step 0 (the optimizer has no stable-step bound, or no run " \
                           "logged sharpness)"
    elif init["optimizer"].nunique() > 1:
        missing_boundary = "several gradient optimizers share this experiment; their bounds differ"
    init_row = None if missing_boundary else init.iloc[0]
    cmp = None
    if init_row is not None:
        opt = gd[gd["optimizer"] == init_row["optimizer"]]
        frac = unstable_fraction(opt, run_shapes(curves, opt))   # a run whose loss grew counts as diverged
        cmp = compare_boundary(divergence_bracket(frac), float(init_row["stability_lr"]))
    eos = edge_of_stability(curves, gd, init_row["factor"] if init_row is not None else 2.0)
    if bests:  # whether each run reached the first target: stable is not the same as converged
        first = table[table["target"] == next(iter(bests))][["run_id", "reached"]]
        eos = eos.merge(first, on="run_id", how="left")
    missing_noise = "" if _diag_flag(runs, "noise_scale") else \
        "the gradient noise scale was not measured (diagnostics.noise_scale = false)"
    pred = Predicted(init_row, cmp, missing_boundary, missing_noise, eos, every)
    for t, best in bests.items():
        near = noise_scale_near_target(curves, table[table["target"] == t], best) if not missing_noise else \
            pd.DataFrame()
        head = headline_noise_scale(near)
        if not missing_noise and (head is None or head["measured_steps"] == "0"):
            # no run was measured near its target step: take B_simple where full-batch GD's loss ≈ target
            head = noise_scale_at_loss(curves, gd, t) if "full_batch" in gd else None
            head = head if head is not None else headline_noise_scale(near)
        pred.critical[t] = (near, head, critical_fits(best))
    return pred

