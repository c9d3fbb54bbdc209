"""How sure: a bootstrap over seeds for every quantity derived from steps-to-target.

A sweep runs each cell (learning rate × batch size × any other swept value) with a few
seeds. Everything derived from them — the best learning rate per batch size, its steps
and examples to a target, the scaling efficiency, the critical-batch fits — moves when
the seeds change. Resampling the seeds *within each cell* (with replacement, the cells
independently) and recomputing the whole chain gives a distribution; its 5th and 95th
percentiles are the 90% interval (Efron & Tibshirani 1993, ch. 13, percentile interval).
Each run's steps-to-target is itself an interval (the crossing lies between two
evaluations), so every replicate also draws each run's step uniformly inside it.

Identical trajectories are one trajectory: a deterministic run (full batch from a fixed
initialisation) repeated with three seeds is one measurement, not three; ``fingerprints``
finds them and the bootstrap resamples distinct trajectories only.

Pure numpy and pandas; a classification is made only when the interval is on one side
of its threshold (``classify``).
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import numpy as np
import pandas as pd

from bpresearch import verdicts as V

from .critical import DEGENERATE_FACTOR

LEVEL = 0.9     # two-sided interval: 5th to 95th percentile
N_BOOT = 1000   # replicates; the percentiles move by < 1% of the interval width beyond this
SEED = 0        # the bootstrap is deterministic: same data ⇒ same intervals


# ---------------------------------------------------------------- distinct trajectories
def fingerprints(runs: pd.DataFrame, curves: pd.DataFrame | None = None) -> pd.Series:
    """A hash per run of everything it measured: equal hashes are identical trajectories.

    From the run's loss and gradient curves (every logged value, bit for bit) when there are
    any, else from its summary metrics. Diagnostics are left out: they carry their own
    randomness (Lanczos start vectors) on an identical trajectory. Index: ``run_id``.
    """
    out = {}
    traj = curves[curves["key"].isin(("train_loss", "grad_norm", "full_train_loss", "test_loss"))] \
        if curves is not None and not curves.empty else None
    by_run = {} if traj is None or traj.empty else {
        rid: g for rid, g in traj.sort_values(["run_id", "key", "step"]).groupby("run_id", sort=False)}
    metric_cols = sorted(c for c in runs.columns if c.startswith("metrics."))
    for r in runs.to_dict("records"):
        h = hashlib.sha1()
        g = by_run.get(r["run_id"])
        if g is not None:
            h.update(g["key"].str.cat().encode())
            h.update(np.ascontiguousarray(g[["step"]].to_numpy(np.int64)).tobytes())
            h.update(np.ascontiguousarray(g["value"].to_numpy(np.float64)).tobytes())
        else:
            h.update(repr([r.get(c) for c in metric_cols]).encode())
        out[r["run_id"]] = h.hexdigest()
    return pd.Series(out, name="fingerprint", dtype=object)


def distinct_counts(runs: pd.DataFrame, fp: pd.Series, by: list[str]) -> pd.DataFrame:
    """Per cell (``by`` × learning rate): ``runs`` and ``distinct`` trajectories among them."""
    m = runs.assign(fingerprint=runs["run_id"].map(fp))
    g = m.groupby(list(by) + ["learning_rate"], sort=True, dropna=False)
    return pd.DataFrame({"runs": g.size(), "distinct": g["fingerprint"].nunique()}).reset_index()


def keep_distinct(table: pd.DataFrame, fp: pd.Series | None) -> pd.DataFrame:
    """``table`` with one row per distinct trajectory in each cell and target (the first seed's)."""
    if fp is None:
        return table
    t = table.assign(_fp=table["run_id"].map(fp).fillna(table["run_id"]))
    cell = [c for c in t.columns if c not in ("run_id", "seed", "_fp") and c in
            ("optimizer", "batch_size", "learning_rate", "target") or c.startswith("facet.")]
    return t.drop_duplicates(cell + ["_fp"]).drop(columns="_fp")


# ---------------------------------------------------------------- intervals and classifications
class Interval(NamedTuple):
    point: float
    lo: float
    hi: float
    failed: float  # share of replicates where the quantity could not be computed

    def text(self, fmt: str = ".3g") -> str:
        if not np.isfinite(self.point):
            return "not available"
        if not (np.isfinite(self.lo) and np.isfinite(self.hi)):
            return f"{self.point:{fmt}} (90% interval not resolved)"
        a, b = format(self.lo, fmt), format(self.hi, fmt)
        return f"{self.point:{fmt}} (90% interval {a}–{b})" if a != b else f"{self.point:{fmt}} (90% interval {a})"


def interval(point: float, samples: np.ndarray, level: float = LEVEL, max_failed: float = 0.1) -> Interval:
    """The percentile interval of ``samples`` (non-finite = failed replicates) around ``point``.

    More than ``max_failed`` failed replicates leave the interval unresolved (NaN ends):
    the quantity cannot be computed for a sizeable share of plausible seed draws.
    """
    samples = np.asarray(samples, float)
    ok = np.isfinite(samples)
    failed = 1.0 - ok.mean() if samples.size else 1.0
    if not np.isfinite(point) or failed > max_failed or ok.sum() < 2:
        return Interval(float(point), np.nan, np.nan, float(failed))
    q = (1 - level) / 2
    lo, hi = np.quantile(samples[ok], [q, 1 - q])
    return Interval(float(point), float(lo), float(hi), float(failed))


def classify(iv: Interval, threshold: float, above: str, below: str,
             unresolved: str = "not resolved by these seeds") -> str:
    """``above`` when the whole interval is ≥ threshold, ``below`` when it is < threshold, else unresolved."""
    if np.isfinite(iv.lo) and iv.lo >= threshold:
        return above
    if np.isfinite(iv.hi) and iv.hi < threshold:
        return below
    return unresolved


# ---------------------------------------------------------------- the bootstrap of the scaling chain
class _Cells(NamedTuple):
    keys: pd.DataFrame       # one row per cell: by + learning_rate
    lo: np.ndarray           # (C, K) step interval lower ends (inf: not reached; NaN: no such seed)
    hi: np.ndarray           # (C, K) upper ends
    n: np.ndarray            # (C,) seeds (distinct trajectories) per cell
    group: np.ndarray        # (C,) index of the cell's tuning group (by)
    groups: pd.DataFrame     # one row per group: by


def _cells(table: pd.DataFrame, by: list[str]) -> _Cells:
    t = table.sort_values(list(by) + ["learning_rate"])
    keys, lo_rows, hi_rows = [], [], []
    for key, g in t.groupby(list(by) + ["learning_rate"], sort=True, dropna=False):
        keys.append(key if isinstance(key, tuple) else (key,))
        hi = g["steps"].fillna(np.inf).to_numpy(float)
        lo = g["steps_lo"].fillna(np.inf).to_numpy(float) if "steps_lo" in g else hi
        lo_rows.append(np.minimum(lo, hi))
        hi_rows.append(hi)
    K = max(len(r) for r in hi_rows)
    pad = lambda rows: np.array([np.pad(r, (0, K - len(r)), constant_values=np.nan) for r in rows])  # noqa: E731
    keys = pd.DataFrame(keys, columns=list(by) + ["learning_rate"])
    groups = keys[list(by)].drop_duplicates().reset_index(drop=True)
    gidx = keys[list(by)].merge(groups.reset_index(), on=list(by), how="left")["index"].to_numpy()
    return _Cells(keys, pad(lo_rows), pad(hi_rows), np.array([len(r) for r in hi_rows]), gidx, groups)


def _medians(c: _Cells, rng: np.random.Generator | None, R: int) -> np.ndarray:
    """(R, C) median steps per cell (``verdicts.medians``): resampled seeds, each step drawn within its interval.

    ``rng`` None: the data as measured, each step at its interval's midpoint (R = 1).
    """
    C, K = c.hi.shape
    if rng is None:
        s = ((c.lo + c.hi) / 2)[None]
    else:
        idx = np.floor(rng.random((R, C, K)) * c.n[None, :, None]).astype(int)  # a seed per slot, within its cell
        idx = np.where(np.arange(K)[None, None, :] < c.n[None, :, None], idx, 0)
        lo = np.take_along_axis(np.broadcast_to(c.lo, (R, C, K)), idx, 2)
        hi = np.take_along_axis(np.broadcast_to(c.hi, (R, C, K)), idx, 2)
        u = rng.random((R, C, K))
        with np.errstate(invalid="ignore"):
            s = np.where(np.isfinite(hi), lo + u * (hi - lo), np.inf)
        s = np.where(np.arange(K)[None, None, :] < c.n[None, :, None], s, np.nan)
    return V.medians(s)


def _best(c: _Cells, med: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, G) index of the best cell of each group (``verdicts.best_rows``; none reached: its first
    cell) and its median steps (inf where no cell of the group reached)."""
    R = med.shape[0]
    G = len(c.groups)
    best = np.zeros((R, G), int)
    steps = np.full((R, G), np.inf)
    for gi in range(G):
        J = np.flatnonzero(c.group == gi)  # cells of this group, sorted by learning rate
        j = np.maximum(V.best_rows(med[:, J]), 0)
        best[:, gi] = J[j]
        steps[:, gi] = med[:, J].min(axis=1)
    return best, steps


def _line_fits(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise ``critical._line_fit``: a, b of y ≈ a + b·x minimising Σ((a + b·x)/y − 1)² (NaN y: left out)."""
    ok = np.isfinite(x) & np.isfinite(y) & (y > 0)
    w = np.where(ok, 1.0 / np.where(ok, y, 1.0), 0.0)
    xx = np.where(ok, x, 0.0)
    s00, s01, s11 = (w * w).sum(1), (w * w * xx).sum(1), (w * w * xx * xx).sum(1)
    t0, t1 = w.sum(1), (w * xx).sum(1)
    det = s00 * s11 - s01 ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (s11 * t0 - s01 * t1) / det
        b = (s00 * t1 - s01 * t0) / det
    few = ok.sum(1) < 3
    return np.where(few | (det <= 0), np.nan, a), np.where(few | (det <= 0), np.nan, b)


def _fits(B: np.ndarray, S: np.ndarray, eps: np.ndarray) -> dict[str, np.ndarray]:
    """S = S_min + E_min/B and 1/ε = 1/ε_max + (B_noise/ε_max)/B, row-wise; NaN where degenerate."""
    s_min, e_min = _line_fits(np.broadcast_to(1.0 / B, S.shape), S)
    a, b = _line_fits(np.broadcast_to(1.0 / B, eps.shape), 1.0 / eps)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {"s_min": s_min, "e_min": e_min, "b_crit": e_min / s_min, "eps_max": 1.0 / a, "b_noise": b / a}
    b_lo, b_hi = np.nanmin(B), np.nanmax(B)
    lo_ok, hi_ok = b_lo / DEGENERATE_FACTOR, b_hi * DEGENERATE_FACTOR  # as ``critical.degenerate_reason``
    with np.errstate(invalid="ignore"):
        bad_ce = ~((s_min > 0) & (e_min > 0) & (out["b_crit"] >= lo_ok) & (out["b_crit"] <= hi_ok))
        bad_lr = ~((a > 0) & (out["b_noise"] >= lo_ok) & (out["b_noise"] <= hi_ok))
    for k in ("s_min", "e_min", "b_crit"):
        out[k] = np.where(bad_ce, np.nan, out[k])
    for k in ("eps_max", "b_noise"):
        out[k] = np.where(bad_lr, np.nan, out[k])
    return out


class ScalingIntervals(NamedTuple):
    per_group: pd.DataFrame  # by + steps/examples/efficiency point, lo, hi, best-η stability
    fits: dict               # series key (tuple of the by columns except batch_size) -> {name: Interval}


def scaling_intervals(table: pd.DataFrame, by: list[str], tuned: pd.DataFrame | None = None,
                      n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL) -> ScalingIntervals:
    """Bootstrap intervals for the scaling chain of one target.

    Args:
        table: ``measures.steps_to_target`` rows of one target, already deduplicated
            (``keep_distinct``) and on a common grid (``measures.on_common_grid``).
        by: the tuning groups (must include ``batch_size``; other columns are facets, and
            each combination of their values is one series of batch sizes to fit).
        tuned: per group, ``tuned`` (``measures.best_learning_rate``): only tuned groups
            enter the efficiencies' reference and the fits. None: every group.
        n_boot, seed, level: replicates, the generator's seed, the interval's coverage.

    Returns:
        ``per_group``: ``by``, ``steps``, ``steps_lo``/``steps_hi`` (interval of the best
        cell's median steps), ``examples`` likewise, ``efficiency`` likewise (relative to
        the series' smallest tuned batch size that reached), ``best_lr_share`` (share of
        replicates choosing the measured best learning rate), ``seeds`` (distinct
        trajectories in the best cell); ``fits``: per series, ``Interval`` for s_min, e_min,
        b_crit, eps_max and b_noise.
    """
    c = _cells(table, by)
    rng = np.random.default_rng(seed)
    best0, steps0 = _best(c, _medians(c, None, 1))
    best, steps = _best(c, _medians(c, rng, n_boot))
    g = c.groups.copy()
    B = g["batch_size"].to_numpy(float)
    lr_of = c.keys["learning_rate"].to_numpy(float)
    ok_group = np.ones(len(g), bool)
    if tuned is not None:
        t = g.merge(tuned[list(by) + ["tuned"]], on=list(by), how="left")["tuned"]
        ok_group = t.fillna(False).astype(bool).to_numpy()
    series_cols = [k for k in by if k != "batch_size"]
    series = g[series_cols].apply(tuple, axis=1) if series_cols else pd.Series([()] * len(g))
    eff = np.full((n_boot, len(g)), np.nan)
    eff0 = np.full((1, len(g)), np.nan)
    fits = {}
    for key in dict.fromkeys(series):
        J = np.flatnonzero((series == key).to_numpy())
        J = J[np.argsort(B[J])]
        ref = [j for j in J if ok_group[j] and np.isfinite(steps0[0, j])]
        if ref:
            j0 = ref[0]
            with np.errstate(divide="ignore", invalid="ignore"):
                eff0[0, J] = steps0[0, j0] * B[j0] / (B[J] * steps0[0, J])
                eff[:, J] = steps[:, [j0]] * B[j0] / (B[J][None] * steps[:, J])
        F = [j for j in J if ok_group[j] and np.isfinite(steps0[0, j])]
        names = ("s_min", "e_min", "b_crit", "eps_max", "b_noise")
        if len(F) >= 3:
            Bf = B[F][None]
            S_b = np.where(np.isfinite(steps[:, F]), steps[:, F], np.nan)
            f0 = _fits(Bf, steps0[:, F], lr_of[best0[:, F]])
            fb = _fits(Bf, S_b, lr_of[best[:, F]])
            fits[key] = {k: interval(float(f0[k][0]), fb[k], level) for k in names}
        else:
            fits[key] = {k: Interval(np.nan, np.nan, np.nan, 1.0) for k in names}
    q = (1 - level) / 2

    def band(x):
        import warnings

        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: batch sizes never reached
            finite = np.isfinite(x).mean(0) >= 0.9
            lo = np.where(finite, np.nanquantile(np.where(np.isfinite(x), x, np.nan), q, axis=0), np.nan)
            hi = np.where(finite, np.nanquantile(np.where(np.isfinite(x), x, np.nan), 1 - q, axis=0), np.nan)
        return lo, hi

    s_lo, s_hi = band(steps)
    e_lo, e_hi = band(eff)
    g["steps"] = steps0[0]
    g["steps_lo"], g["steps_hi"] = s_lo, s_hi
    g["examples"], g["examples_lo"], g["examples_hi"] = steps0[0] * B, s_lo * B, s_hi * B
    g["efficiency"], g["efficiency_lo"], g["efficiency_hi"] = eff0[0], e_lo, e_hi
    g["best_lr_share"] = (best == best0).mean(0)
    g["seeds"] = c.n[best0[0]]
    return ScalingIntervals(g, fits)
