"""How sure: intervals over seeds with the coverage they achieve, for every quantity derived
from steps-to-target.

A sweep runs each cell (learning rate × batch size × any other swept value) with a few
seeds. Three kinds of interval, each labelled with the coverage it actually reaches:

- **A cell's median steps** (``median_interval``): the distribution-free order-statistic
  interval [X₍ⱼ₎, X₍ₖ₎] of the seeds (Conover 1999, §3.2; David & Nagaraja 2003, §7.1).
  It covers the true median with probability P(j ≤ Bin(n, ½) < k), whatever the
  distribution of the steps: the range of 2 seeds 50%, of 3 seeds 75%, of 5 seeds 94%; with
  8 seeds the 2nd to 7th 93%. The percentile bootstrap of a median of 3 seeds is that same
  range, so it cannot earn a "90%" label (``order_stats``). Each run's step is itself an
  interval (the crossing lies between two evaluations): the lower end is taken from the
  runs' lower ends, the upper from their upper ends.
- **Scaling efficiency** (a ratio of two cells' medians): both cells' intervals combined;
  the seeds of two cells are independent, so it covers with probability ≥ the product.
- **The critical-batch fits** (B_crit, S_min, E_min, B_noise): a percentile bootstrap that
  resamples the seeds within each cell and re-picks every best learning rate (Efron &
  Tibshirani 1993, ch. 13). Its coverage was measured on planted data
  (``tests/analysis/test_coverage.py``) and is stated as measured (``BOOT_COVERAGE``).

Nothing is an interval from one seed. Identical trajectories are one trajectory: a
deterministic run (full batch from a fixed initialisation) repeated with three seeds is
one measurement, not three; ``fingerprints`` finds them. Such a cell's steps are exact up
to the evaluation interval, and say so. Pure numpy and pandas; a classification is made
only when the interval is on one side of its threshold (``classify``).
"""

from __future__ import annotations

import hashlib
import math
from typing import NamedTuple

import numpy as np
import pandas as pd

from bpresearch import verdicts as V

from . import critical as CR
from . import curvestore
from . import measures as M
from .critical import DEGENERATE_FACTOR

LEVEL = 0.9     # the coverage an interval aims for; the one it reaches is stated with it
N_BOOT = 1000   # replicates; the percentiles move by < 1% of the interval width beyond this
SEED = 0        # the bootstrap is deterministic: same data ⇒ same intervals
# The coverage of the fits' percentile bootstrap, measured on planted data with 3 and 6 batch
# sizes (the lowest of both, rounded down to 5%): fewest distinct seeds per cell -> coverage.
BOOT_COVERAGE = {2: 0.70, 3: 0.85, 5: 0.90}


# ---------------------------------------------------------------- distinct trajectories
def fingerprints(runs: pd.DataFrame, curves: pd.DataFrame | None = None) -> pd.Series:
    """A hash per run of everything it measured: equal hashes are identical trajectories.

    From the run's loss and gradient curves (every logged value, bit for bit) when there are
    any, else from its summary metrics. Diagnostics are left out: they carry their own
    randomness (Lanczos start vectors) on an identical trajectory. Index: ``run_id``.
    """
    out = {}
    traj = None
    if curves is not None and not curves.empty:
        keep = curves["key"].isin(("train_loss", "grad_norm", "full_train_loss", "test_loss")).to_numpy()
        traj = curves if keep.all() else curves[keep]   # no copy of a group's every point when all are kept
    by_run = {} if traj is None or traj.empty else curvestore.trajectory_hashes(
        traj if curvestore.is_sorted(traj) else traj.sort_values(["run_id", "key", "step"]))
    metric_cols = sorted(c for c in runs.columns if c.startswith("metrics."))
    for r in runs.to_dict("records"):
        h = by_run.get(r["run_id"])
        if h is None:
            h = hashlib.sha1()
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
def ordinal(k: int) -> str:
    return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"


class Interval(NamedTuple):
    point: float
    lo: float
    hi: float
    failed: float        # share of bootstrap replicates where the quantity could not be computed
    level: float = LEVEL  # the coverage it reaches (NaN: no interval)
    how: str = ""         # what it is: "range of 3 seeds", "2nd–7th of 8 seeds", "bootstrap, 5 seeds"
    why: str = ""         # why there is none ("one seed")

    @property
    def ok(self) -> bool:
        """Whether there is an interval: ends that are numbers (the upper may be ∞: not reached)."""
        return bool(np.isfinite(self.lo) and not np.isnan(self.hi))

    def label(self) -> str:
        """``90% interval``, ``range of 3 seeds: 75% interval``, ``every seed the same trajectory``."""
        if self.level >= 1 and self.how:
            return self.how
        cov = f"{math.floor(self.level * 100 + 1e-9):.0f}% interval"
        return f"{self.how}: {cov}" if self.how else cov

    def ends(self, fmt: str = ".3g") -> str:
        a, b = format(self.lo, fmt), (format(self.hi, fmt) if np.isfinite(self.hi) else "not reached")
        return a if a == b else f"{a}–{b}"

    def text(self, fmt: str = ".3g") -> str:
        if not np.isfinite(self.point):
            return "not available"
        if not self.ok:
            return f"{self.point:{fmt}} (no interval: {self.why or 'not resolved by these seeds'})"
        return f"{self.point:{fmt}} ({self.ends(fmt)}; {self.label()})"


NONE = Interval(np.nan, np.nan, np.nan, 1.0, np.nan)


def order_stats(n: int, level: float = LEVEL) -> tuple[int, int, float] | None:
    """(j, k, coverage): the narrowest symmetric [X₍ⱼ₎, X₍ₖ₎] of n seeds covering the median with
    probability ≥ ``level`` (1-based; k = n + 1 − j), else the full range and what it reaches. None: n < 2."""
    if n < 2:
        return None
    pmf = [math.comb(n, i) / 2 ** n for i in range(n + 1)]
    best = (1, n, 1.0 - 2 * pmf[0])
    for j in range(2, n // 2 + 1):
        cov = sum(pmf[j:n + 1 - j])   # P(j ≤ Bin(n, ½) ≤ k − 1)
        if cov < level:
            break
        best = (j, n + 1 - j, cov)
    return best


def median_interval(lo, hi, runs: int | None = None, level: float = LEVEL) -> Interval:
    """The order-statistic interval of a cell's median steps (``verdicts.median`` of ``hi``).

    Args:
        lo, hi: per distinct trajectory, the ends of its steps-to-target interval (NaN or ∞:
            not reached).
        runs: the runs behind them (several runs, one trajectory: the steps are exact up to
            the evaluation interval; one run: no interval).
    """
    hi = np.sort(np.nan_to_num(np.asarray(hi, float), nan=np.inf))
    lo = np.sort(np.minimum(np.nan_to_num(np.asarray(lo, float), nan=np.inf), hi))
    n = hi.size
    point = V.median(hi)
    if n == 0:
        return NONE
    if n == 1:
        if runs and runs > 1:
            return Interval(point, lo[0], hi[0], 0.0, 1.0, f"all {runs} seeds the same trajectory")
        return Interval(point, np.nan, np.nan, 0.0, np.nan, why="one seed")
    j, k, cov = order_stats(n, level)
    how = f"range of {n} seeds" if (j, k) == (1, n) else f"{ordinal(j)}–{ordinal(k)} of {n} seeds"
    return Interval(point, lo[j - 1], hi[k - 1], 0.0, cov, how)


def ratio_interval(num: Interval, den: Interval, scale: float = 1.0) -> Interval:
    """scale·num/den with both cells' intervals: covers with probability ≥ the product (independent seeds)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        point = scale * num.point / den.point
        if not (num.ok and den.ok):
            return Interval(point, np.nan, np.nan, 0.0, np.nan, why=num.why or den.why or "one seed")
        lo, hi = scale * num.lo / den.hi, scale * num.hi / den.lo
    level = num.level * den.level   # a lower bound on the coverage: both cells covered
    return Interval(point, lo, hi, 0.0, level, "" if level < 1 else "every seed the same trajectory")


def apart(a: Interval, b: Interval) -> int:
    """-1 when a's interval lies wholly below b's, 1 when above, 0 when they overlap or either has none."""
    if not (a.ok and b.ok):
        return 0
    return -1 if a.hi < b.lo else 1 if b.hi < a.lo else 0


def interval(point: float, samples: np.ndarray, level: float = LEVEL, max_failed: float = 0.1) -> Interval:
    """The percentile interval of ``samples`` (non-finite = failed replicates) around ``point``.

    More than ``max_failed`` failed replicates leave the interval unresolved (NaN ends):
    the quantity cannot be computed for a sizeable share of plausible seed draws. The
    interval is widened to hold ``point`` when the percentiles miss it (coverage only grows).
    """
    samples = np.asarray(samples, float)
    ok = np.isfinite(samples)
    failed = 1.0 - ok.mean() if samples.size else 1.0
    if not np.isfinite(point) or failed > max_failed or ok.sum() < 2:
        return Interval(float(point), np.nan, np.nan, float(failed), np.nan,
                        why="the fit fails on too many resamples of the seeds" if np.isfinite(point) else "")
    q = (1 - level) / 2
    lo, hi = np.quantile(samples[ok], [q, 1 - q])
    return Interval(float(point), float(min(lo, point)), float(max(hi, point)), float(failed), level)


def classify(iv: Interval, threshold: float, above: str, below: str,
             unresolved: str = "not resolved by these seeds") -> str:
    """``above`` when the whole interval is ≥ threshold, ``below`` when it is < threshold, else unresolved."""
    if iv.ok and iv.lo >= threshold:
        return above
    if iv.ok and iv.hi < threshold:
        return below
    return unresolved


# ---------------------------------------------------------------- every best cell's interval
IV_COLS = ["iv_lo", "iv_hi", "iv_level", "iv_how", "iv_why", "distinct"]


def with_intervals(best: pd.DataFrame, table: pd.DataFrame, counts: pd.DataFrame | None,
                   by: list[str] | None = None) -> pd.DataFrame:
    """``best`` (``measures.best_learning_rate`` of one target) with its best cell's interval.

    Args:
        table: the steps table of that target, one row per distinct trajectory (``keep_distinct``).
        counts: ``distinct_counts`` (runs per cell); None: each row is its own run.
    Returns:
        ``best`` plus ``iv_lo``, ``iv_hi``, ``iv_level``, ``iv_how``, ``iv_why`` (``median_interval``)
        and ``distinct`` (distinct trajectories in the best cell).
    """
    by = list(by or M.TUNED_OVER)
    out = best.copy()
    vals = []
    for r in best.to_dict("records"):
        if not r["reached"]:
            vals.append([np.nan, np.nan, np.nan, "", "not reached", 0])
            continue
        m = np.isclose(table["learning_rate"], r["learning_rate"])
        for k in by:
            m &= (table[k] == r[k]).to_numpy()
        g = table[m]
        runs = len(g)
        if counts is not None:
            cm = np.isclose(counts["learning_rate"], r["learning_rate"])
            for k in by:
                cm &= (counts[k] == r[k]).to_numpy()
            runs = int(counts.loc[cm, "runs"].sum()) or runs
        iv = median_interval(g["steps_lo"], g["steps"], runs)
        vals.append([iv.lo, iv.hi, iv.level, iv.how, iv.why, len(g)])
    for i, c in enumerate(IV_COLS):
        out[c] = [v[i] for v in vals] if vals else pd.Series(dtype=object)
    return out


def row_interval(r, scale: float = 1.0) -> Interval:
    """The interval of one row of ``with_intervals`` (times ``scale``: the batch size gives examples)."""
    get = r.get if isinstance(r, dict) else (lambda k, d=None: getattr(r, k, d))
    p, lo, hi = get("steps"), get("iv_lo", np.nan), get("iv_hi", np.nan)
    return Interval(p * scale, lo * scale, hi * scale, 0.0, get("iv_level", np.nan), get("iv_how", "") or "",
                    get("iv_why", "") or "")


# ---------------------------------------------------------------- the bootstrap of the critical-batch fits
class _Cells(NamedTuple):
    keys: pd.DataFrame       # one row per cell: by + learning_rate
    steps: np.ndarray        # (C, K) steps per distinct trajectory (inf: not reached; NaN: no such seed)
    n: np.ndarray            # (C,) seeds (distinct trajectories) per cell
    group: np.ndarray        # (C,) index of the cell's tuning group (by)
    groups: pd.DataFrame     # one row per group: by


def _cells(table: pd.DataFrame, by: list[str]) -> _Cells:
    t = table.sort_values(list(by) + ["learning_rate"])
    keys, rows = [], []
    for key, g in t.groupby(list(by) + ["learning_rate"], sort=True, dropna=False):
        keys.append(key if isinstance(key, tuple) else (key,))
        rows.append(g["steps"].fillna(np.inf).to_numpy(float))
    K = max(len(r) for r in rows)
    keys = pd.DataFrame(keys, columns=list(by) + ["learning_rate"])
    groups = keys[list(by)].drop_duplicates().reset_index(drop=True)
    gidx = keys[list(by)].merge(groups.reset_index(), on=list(by), how="left")["index"].to_numpy()
    steps = np.array([np.pad(r, (0, K - len(r)), constant_values=np.nan) for r in rows])
    return _Cells(keys, steps, np.array([len(r) for r in rows]), gidx, groups)


BOOT_BLOCK = 1 << 21   # resampled seeds drawn at once (R × C × K is O(runs × replicates): drawn in blocks)


def _medians(c: _Cells, rng: np.random.Generator, R: int) -> np.ndarray:
    """(R, C) median steps per cell (``verdicts.medians``) of the seeds resampled within each cell.

    Drawn a block of replicates at a time: the generator's stream, so every number, is the
    same as in one draw, and memory stays bounded however many runs a cell has."""
    C, K = c.steps.shape
    per = max(1, BOOT_BLOCK // max(1, C * K))
    out = []
    for r in range(0, R, per):
        n = min(per, R - r)
        idx = np.floor(rng.random((n, C, K)) * c.n[None, :, None]).astype(int)  # a seed per slot, within its cell
        s = np.take_along_axis(np.broadcast_to(c.steps, (n, C, K)), idx, 2)
        out.append(V.medians(np.where(np.arange(K)[None, None, :] < c.n[None, :, None], s, np.nan)))
    return np.concatenate(out) if out else np.zeros((0, C))


def _best(c: _Cells, med: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(R, G) index of the best cell of each group (``verdicts.best_rows``; none reached: its first
    cell) and its median steps (inf where no cell of the group reached)."""
    R, G = med.shape[0], len(c.groups)
    best, steps = np.zeros((R, G), int), np.full((R, G), np.inf)
    for gi in range(G):
        J = np.flatnonzero(c.group == gi)  # cells of this group, sorted by learning rate
        best[:, gi] = J[np.maximum(V.best_rows(med[:, J]), 0)]
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
    lo_ok, hi_ok = np.nanmin(B) / DEGENERATE_FACTOR, np.nanmax(B) * DEGENERATE_FACTOR  # as critical.degenerate_reason
    with np.errstate(invalid="ignore"):
        bad_ce = ~((s_min > 0) & (e_min > 0) & (out["b_crit"] >= lo_ok) & (out["b_crit"] <= hi_ok))
        bad_lr = ~((a > 0) & (out["b_noise"] >= lo_ok) & (out["b_noise"] <= hi_ok))
    for k in ("s_min", "e_min", "b_crit"):
        out[k] = np.where(bad_ce, np.nan, out[k])
    for k in ("eps_max", "b_noise"):
        out[k] = np.where(bad_lr, np.nan, out[k])
    return out


FIT_NAMES = ("s_min", "e_min", "b_crit", "eps_max", "b_noise")


def fit_points(best: pd.DataFrame) -> dict[str, float]:
    """The fits' point estimates: ``critical`` on the tuned batch sizes that reached (``fit_inputs``)."""
    ok = fit_inputs(best)
    ce = CR.fit_steps_examples(ok["steps"].to_numpy(float), ok["examples"].to_numpy(float))
    lr = CR.fit_lr_scaling(ok["batch_size"].to_numpy(float), ok["learning_rate"].to_numpy(float))
    return {"s_min": ce.s_min, "e_min": ce.e_min, "b_crit": ce.b_crit, "eps_max": lr.eps_max, "b_noise": lr.b_noise}


def fit_inputs(best: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``best`` a critical-batch fit uses: reached, and tuned (optimum inside the grid)."""
    return best[best["reached"] & best["tuned"].astype(bool)] if "tuned" in best else best[best["reached"]]


def boot_coverage(seeds: int) -> float:
    """The coverage the fits' bootstrap reaches with ``seeds`` distinct seeds per cell (``BOOT_COVERAGE``)."""
    known = [k for k in BOOT_COVERAGE if k <= seeds]
    return BOOT_COVERAGE[max(known)] if known else np.nan


class ScalingIntervals(NamedTuple):
    per_group: pd.DataFrame  # by + steps/examples/efficiency point, lo, hi, level; best-η stability
    fits: dict               # series key (tuple of the by columns except batch_size) -> {name: Interval}


def _efficiency(g: pd.DataFrame, J: np.ndarray) -> None:
    """Efficiency of each group of one series against its smallest tuned batch size that reached, in place."""
    ok = (g["reached"].fillna(False).astype(bool) & g["tuned"].fillna(False).astype(bool)).to_numpy()
    ref = [j for j in J if ok[j]]
    if not ref:
        return
    j0 = ref[0]
    iv0 = row_interval(g.iloc[j0].to_dict())
    for j in J:
        r = g.iloc[j].to_dict()
        if j == j0:
            g.loc[j, ["efficiency", "efficiency_how"]] = 1.0, "reference"
            continue
        if not r["reached"]:
            continue
        iv = ratio_interval(iv0, row_interval(r), g.at[j0, "batch_size"] / r["batch_size"])
        g.loc[j, ["efficiency", "efficiency_lo", "efficiency_hi", "efficiency_level"]] = \
            iv.point, iv.lo, iv.hi, iv.level
        g.loc[j, "efficiency_how"] = iv.how or iv.why


def scaling_intervals(table: pd.DataFrame, best: pd.DataFrame | None = None, by: list[str] | None = None,
                      n_boot: int = N_BOOT, seed: int = SEED, counts: pd.DataFrame | None = None) -> ScalingIntervals:
    """Intervals for the scaling chain of one target.

    Args:
        table: ``measures.steps_to_target`` rows of one target, one per distinct trajectory
            (``keep_distinct``), each at its own evaluation resolution.
        best: ``measures.best_learning_rate`` of that target (with ``with_intervals``' columns,
            else they are added); None: computed from ``table``.
        by: the tuning groups (must include ``batch_size``; other columns are facets, and
            each combination of their values is one series of batch sizes to fit).
        n_boot, seed: the fits' bootstrap replicates and the generator's seed.
        counts: ``distinct_counts`` (runs per cell), for ``with_intervals``.

    Returns:
        ``per_group``: ``best``'s rows with ``steps_lo``/``steps_hi``/``steps_level`` (the best
        cell's ``median_interval``), ``examples`` likewise, ``efficiency`` (against the series'
        smallest tuned batch size that reached; ``efficiency_how`` "reference" there) with
        ``efficiency_lo``/``_hi``/``_level`` (``ratio_interval``), ``best_lr_share`` (share of
        bootstrap replicates choosing the same best learning rate), ``seeds`` (distinct
        trajectories in the best cell); ``fits``: per series, an ``Interval`` for each of
        ``FIT_NAMES``, its point the one ``critical`` fits to ``fit_inputs``.
    """
    by = list(by or M.TUNED_OVER)
    if best is None:
        best = M.best_learning_rate(M.cells(table, by), float(table["target"].iloc[0]), by)
    if "iv_lo" not in best:
        best = with_intervals(best, table, counts, by)
    c = _cells(table, by)
    best_r, steps_r = _best(c, _medians(c, np.random.default_rng(seed), n_boot))
    g = c.groups.merge(best.drop(columns="steps_lo"), on=by, how="left")
    g["steps_lo"], g["steps_hi"], g["steps_level"] = g["iv_lo"], g["iv_hi"], g["iv_level"]
    B = g["batch_size"].to_numpy(float)
    g["examples_lo"], g["examples_hi"] = g["iv_lo"] * B, g["iv_hi"] * B
    lr_r = c.keys["learning_rate"].to_numpy(float)[best_r]
    g["best_lr_share"] = np.isclose(lr_r, g["learning_rate"].to_numpy(float)[None]).mean(0)
    g["seeds"] = g["distinct"]
    g["efficiency"] = g["efficiency_lo"] = g["efficiency_hi"] = g["efficiency_level"] = np.nan
    g["efficiency_how"] = ""
    series_cols = [k for k in by if k != "batch_size"]
    series = g[series_cols].apply(tuple, axis=1) if series_cols else pd.Series([()] * len(g))
    fits = {}
    for key in dict.fromkeys(series):
        J = np.flatnonzero((series == key).to_numpy())
        J = J[np.argsort(B[J])]
        _efficiency(g, J)
        fits[key] = _fit_intervals(c, g, J, steps_r, lr_r)
    return ScalingIntervals(g, fits)


def _fit_intervals(c: _Cells, g: pd.DataFrame, J: np.ndarray, steps_r: np.ndarray, lr_r: np.ndarray) -> dict:
    """The fits of one series: points as ``fit_points``, bootstrap intervals labelled with ``boot_coverage``."""
    sub = g.iloc[J]
    inputs = fit_inputs(sub)
    points = fit_points(sub)
    F = J[np.isin(J, inputs.index)]
    if len(F) < 3:
        return {k: Interval(points[k], np.nan, np.nan, 1.0, np.nan, why="fewer than 3 tuned batch sizes")
                for k in FIT_NAMES}
    seeds = int(c.n[np.isin(c.group, F)].min())
    cov = boot_coverage(seeds)
    steps = steps_r[:, F]
    with np.errstate(invalid="ignore"):
        fb = _fits(B=g["batch_size"].to_numpy(float)[F][None], S=np.where(np.isfinite(steps), steps, np.nan),
                   eps=lr_r[:, F])
    out = {}
    for k in FIT_NAMES:
        iv = interval(points[k], fb[k])
        if not np.isfinite(cov):
            iv = Interval(iv.point, np.nan, np.nan, iv.failed, np.nan, why="one seed per cell")
        elif iv.ok:
            iv = iv._replace(level=cov, how=f"bootstrap, {seeds} seeds per cell")
        out[k] = iv
    return out
