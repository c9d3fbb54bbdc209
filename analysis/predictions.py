"""Predicted against measured: what the diagnostics foretell, set beside what the sweep found.

Three predictions, each from a diagnostic the sweep logs (``[diagnostics]``), each compared
with a measure of ``analysis.measures``:

- the divergence boundary: gradient descent on a quadratic of top curvature λ_max is stable
  iff η < 2/λ_max ((2 + 2β)/λ_max with heavy-ball momentum β). The logged ``stability_lr``
  at step 0 (median over seeds) predicts the smallest learning rate at which full-batch runs
  diverge. On a grid the measured boundary is only bracketed: it lies between the highest
  stable and the lowest diverged grid value (``divergence_bracket``).
- the edge of stability (Cohen et al. 2021): in full-batch runs the sharpness λ_max(t) tends
  to rise until it hovers at 2/η, or falls below 2/η where η started above it
  (``edge_of_stability``).
- the critical batch size (McCandlish et al. 2018): the gradient noise scale
  B_simple = tr(Σ)/|G|² near the target predicts B_crit = E_min/S_min from the
  steps-against-examples fit and B_noise from the best-learning-rate fit
  (``noise_scale_near_target``, ``critical_fits``).

Pure functions over the frames of ``analysis.load`` (runs; curves with the keys
``sharpness``, ``stability_lr``, ``gradient_noise_scale``) and ``analysis.measures``;
``predict`` gathers all three for one experiment into a ``Predicted``, with the reason
for each prediction that cannot be made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import pandas as pd

from bpresearch import keys as R

from . import measures as M
from .critical import CriticalFit, LrScalingFit, fit_lr_scaling, fit_steps_examples
from .measures import RUN_COLS


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


def divergence_bracket(frac: pd.DataFrame) -> pd.DataFrame:
    """Where on the learning-rate grid runs begin to diverge, per optimizer × batch size.

    A grid value counts as diverged when any seed diverged there, as stable when none did.
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
        ``grid_min``, ``grid_max``, ``monotone``.
    """
    cols = ["optimizer", "batch_size", "highest_stable", "lowest_diverged", "largest_stable", "midpoint", "lo", "hi",
            "grid_min", "grid_max", "monotone"]
    rows = []
    for (opt, bs), g in frac.groupby(["optimizer", "batch_size"], sort=True):
        g = g.sort_values("learning_rate")
        lr, div = g["learning_rate"].to_numpy(float), (g["n_diverged"] > 0).to_numpy()
        lowest = lr[div].min() if div.any() else np.nan
        below = lr[~div & (lr < lowest)] if div.any() else lr[~div]
        highest = below.max() if below.size else np.nan
        largest = lr[~div].max() if (~div).any() else np.nan
        lo = highest if np.isfinite(highest) else 0.0
        hi = lowest if np.isfinite(lowest) else np.inf
        rows.append({"optimizer": opt, "batch_size": int(bs), "highest_stable": highest, "lowest_diverged": lowest,
                     "largest_stable": largest,
                     "midpoint": float(np.sqrt(lo * hi)) if 0 < lo and np.isfinite(hi) else np.nan,
                     "lo": lo, "hi": hi, "grid_min": lr.min(), "grid_max": lr.max(),
                     "monotone": not (np.isfinite(largest) and np.isfinite(lowest) and largest > lowest)})
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


# ---------------------------------------------------------------- one experiment's predictions
def bound_labels(factor: float) -> tuple[str, str]:
    """How the stability bound reads: ("2/λ_max", "2/η") for gradient descent, else with momentum."""
    return ("2/λ_max", "2/η") if np.isclose(factor, 2.0) else ("(2+2β)/λ_max", "(2+2β)/η")


@dataclass
class Predicted:
    """What the diagnostics predict for one experiment, and why a prediction is missing."""
    init: pd.Series | None               # predictions.stability_at_init row (the gradient-descent optimizer)
    cmp: pd.DataFrame | None             # predictions.compare_boundary
    missing_boundary: str                # why there is no boundary prediction ("" when there is)
    missing_noise: str                   # why there is no B_simple ("" when there is)
    eos: pd.DataFrame                    # predictions.edge_of_stability
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
    """The three predictions of ``analysis.predictions`` for one experiment, with reasons where missing.

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
        frac = M.diverged_fraction(gd[gd["optimizer"] == init_row["optimizer"]])
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


# ---------------------------------------------------------------- claims only where measured
EOS_BAND = 0.1      # "at the edge of stability": sharpness within ±10% of the bound factor/η …
EOS_STRETCH = 3     # … for at least this many consecutive measurements
CATAPULT_BELOW = 0.5  # "fell far below": under half the bound, after starting above it


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
