"""The learning-rate scaling rule: the best learning rate against the batch size, η* ∝ B^α.

Two rules are in use for carrying a tuned learning rate to another batch size: the linear
rule, α = 1 (Goyal et al. 2017, "Accurate, Large Minibatch SGD"; Krizhevsky 2014 for the
idea), and the square-root rule, α = ½ (Krizhevsky 2014; Hoffer et al. 2017), which keeps
the variance of an update fixed. Both hold only below a batch size where η* stops growing
(McCandlish et al. 2018: ε_opt = ε_max/(1 + B_noise/B); Shallue et al. 2019). Here:

- α is the least-squares slope of log η* against log B over the batch sizes whose best
  learning rate lies inside the grid tried (tuned) and reached the target; at least
  ``MIN_POINTS`` of them.
- Its interval resamples the seeds within every cell and re-picks every best learning rate
  (as ``uncertainty``'s fits do), and draws each picked rate uniformly in log within half a
  grid step of it, so that the grid's spacing, not only the seeds, widens the interval: a
  coarse grid cannot pin α down however many seeds agree. Its coverage was measured on
  planted power laws (as ``tests/analysis/test_lr_rule.py`` plants them; ``COVERAGE``).
- Where η* stops growing: the smallest batch size whose η* is within one grid step of the
  largest η* when a larger batch size follows, set beside the critical batch size fitted
  from steps and examples (``critical.fit_steps_examples``).

Pure numpy and pandas, no JAX.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from bpresearch import keys as R

from . import uncertainty as U

MIN_POINTS = 3
RULES = (("linear", 1.0, "Goyal et al. 2017"), ("square-root", 0.5, "Krizhevsky 2014"))
HALF = {0.5: "½"}
# The coverage α's interval reaches, measured on planted power laws (α = ½ and 1; 5 batch sizes
# from 4 to 1024; ×√2 and ×2 grids; each optimum off the grid; 15% seed noise; 60 draws each):
# 0.90–0.97 with 2 seeds per cell, 0.95–0.98 with 3 and 5. Stated as the 90% it aims for.
COVERAGE = 0.90


class Rule(NamedTuple):
    """The fitted rule of one group at one target."""
    alpha: U.Interval           # slope of log η* on log B, with its interval
    batch_sizes: list[int]      # the batch sizes fitted
    learning_rates: list[float]  # their best learning rates
    inside: dict                # rule name -> True (inside the interval), False, or None (no interval)
    stops_at: int | None        # the batch size where η* stops growing (None: it grows up to the largest)
    largest: int                # the largest batch size fitted
    b_crit: float               # the critical batch size fitted from steps and examples (NaN: none)


def power_fit(B, eta) -> tuple[float, float]:
    """(α, log c) of η = c·B^α by least squares in log–log; NaN with fewer than ``MIN_POINTS`` distinct B."""
    B, eta = np.asarray(B, float), np.asarray(eta, float)
    ok = np.isfinite(B) & np.isfinite(eta) & (B > 0) & (eta > 0)
    B, eta = B[ok], eta[ok]
    if np.unique(B).size < MIN_POINTS:
        return np.nan, np.nan
    alpha, logc = np.polyfit(np.log(B), np.log(eta), 1)
    return float(alpha), float(logc)


def _slopes(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Row-wise least-squares slope of Y (R, F) against x (F,)."""
    xc = x - x.mean()
    return (Y - Y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)


def _half_steps(keys: pd.DataFrame, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per cell: half the log gap to the next lower and higher learning rate of its group (0 at an edge)."""
    lr = np.log(keys["learning_rate"].to_numpy(float))
    lo, hi = np.zeros_like(lr), np.zeros_like(lr)
    for gi in np.unique(group):
        J = np.flatnonzero(group == gi)   # sorted by learning rate (uncertainty._cells)
        gaps = np.diff(lr[J]) / 2
        lo[J[1:]], hi[J[:-1]] = gaps, gaps
    return lo, hi


def alpha_interval(table: pd.DataFrame, batch_sizes, point: float, n_boot: int = U.N_BOOT,
                   seed: int = U.SEED) -> U.Interval:
    """α's bootstrap interval over seeds and within the grid's resolution (module docstring).

    Args:
        table: steps-to-target rows of one target and one optimizer (distinct trajectories).
        batch_sizes: the batch sizes the point fit used.
        point: α fitted to them.
    """
    by = ["batch_size"]
    c = U._cells(table, by)
    rng = np.random.default_rng(seed)
    best, steps = U._best(c, U._medians(c, rng, n_boot))      # (R, G) cell index of each group's best
    G = c.groups["batch_size"].to_numpy(int)
    F = np.flatnonzero(np.isin(G, list(batch_sizes)))
    n = c.n[np.isin(c.group, F)]   # distinct trajectories per cell: 1 where every seed ran the same one
    lo, hi = _half_steps(c.keys, c.group)
    j = best[:, F]
    log_lr = np.log(c.keys["learning_rate"].to_numpy(float))[j] + rng.uniform(-lo[j], hi[j])
    log_lr[~np.isfinite(steps[:, F])] = np.nan   # a resample where a batch size reached nothing: a failed replicate
    iv = U.interval(point, _slopes(np.log(G[F].astype(float)), log_lr))
    seeds = f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"
    how = f"bootstrap over {seeds} distinct seeds per cell and within the grid's steps"
    return iv._replace(level=COVERAGE, how=how) if iv.ok else iv


def _stops_at(fit: pd.DataFrame, cell: pd.DataFrame) -> int | None:
    """The smallest batch size whose η* is within one grid step of the largest η*, if a larger one follows."""
    f = fit.sort_values("batch_size")
    top = f["learning_rate"].max()
    at = f[f["learning_rate"] == top]["batch_size"].iloc[0]
    lrs = np.sort(cell[cell["batch_size"] == at]["learning_rate"].unique())
    step = float(np.median(lrs[1:] / lrs[:-1])) if lrs.size > 1 else 1.0
    first = int(f[f["learning_rate"] * step * (1 + 1e-9) >= top]["batch_size"].iloc[0])
    return first if first < int(f["batch_size"].max()) else None


def rule(group, target: float, n_boot: int = U.N_BOOT) -> Rule | None:
    """The scaling rule of one report group (``groups.Group``) at ``target``; None with too few batch sizes.

    Computed once per group and target (kept in ``group.rules``): ``summary.json`` and the page read the same.
    """
    if (target, n_boot) not in group.rules:
        group.rules[target, n_boot] = _rule(group, target, n_boot)
    return group.rules[target, n_boot]


def _rule(group, target: float, n_boot: int) -> Rule | None:
    best = group.bests.get(target)
    if best is None or best.empty or best["optimizer"].nunique() != 1:
        return None
    fit = U.fit_inputs(best)
    if fit["batch_size"].nunique() < MIN_POINTS:
        return None
    alpha, _ = power_fit(fit["batch_size"], fit["learning_rate"])
    dt = group.distinct_table
    table = dt[(dt["target"] == target) & (dt["optimizer"] != "random_search")]
    iv = alpha_interval(table, fit["batch_size"].tolist(), alpha, n_boot)
    inside = {name: (bool(iv.lo <= a <= iv.hi) if iv.ok else None) for name, a, _ in RULES}
    b_crit = np.nan
    if group.pred is not None and target in group.pred.critical:
        b_crit = float(group.pred.critical[target][2].steps_examples.b_crit)
    cell = group.cell[group.cell["target"] == target] if "target" in group.cell else group.cell
    return Rule(iv, [int(b) for b in fit["batch_size"]], [float(x) for x in fit["learning_rate"]], inside,
                _stops_at(fit, cell), int(fit["batch_size"].max()), b_crit)


def entry(r: Rule) -> dict:
    """A ``Rule`` as ``summary.json`` holds it."""
    a = r.alpha
    return {"alpha": a.point, "interval": [a.lo, a.hi] if a.ok else None, "coverage": a.level if a.ok else None,
            "what": a.how or None, "why_none": a.why or None,
            "linear_inside": r.inside["linear"], "square_root_inside": r.inside["square-root"],
            "batch_sizes": r.batch_sizes, "learning_rates": r.learning_rates,
            "stops_growing_at": r.stops_at, "b_crit": r.b_crit if np.isfinite(r.b_crit) else None}


def summary(groups, targets) -> list[dict]:
    """Every group's rule at every target, for ``summary.json`` (``scaling_rule``)."""
    out = []
    for g in groups:
        if not g.gd:
            continue
        for t in targets:
            r = rule(g, t)
            if r is not None:
                out.append({**g.values, "target": R.target_key(t), **entry(r)})
    return out
