"""Verdicts: did a run reach a target, which learning rate of a cell is best, is it resolved.

One decision in one place: the refiner (``run.refine``), the sweep's console summary and
``refine.json`` (``run.rounds``) and the report (``analysis.measures``,
``analysis.refinement``, ``analysis.uncertainty``) all call these functions, so they
cannot name different learning rates for the same cell. Pure (numpy at most).

The rules, and why:

- **Outcome of a run for a target.** Steps to the target is a first-passage time: the first
  evaluated step whose full training loss is below the target. A run *counts as reached*
  when it crossed and did not diverge. A run that crossed and then **diverged** does not
  count ("reached, then diverged"): its learning rate is past the stability boundary, and
  a diverging learning rate must never be named best nor carry the search above the
  boundary. A run that crossed and ended above the target again without diverging
  ("reached, then lost": SGD's noise floor near the target) **counts, at its first
  crossing**: the first crossing is a stopping time that does not depend on how long the
  run went on, whereas whether the *last* evaluation lies above the target depends on
  where the budget happened to stop and on one noisy value. The outcome keeps the words
  "then lost" so that a report can say so. Steps to result as the first step that reaches
  the goal is the measure of Shallue et al. 2019. "Lost" is judged on how the run ended,
  the median of its last ``TAIL`` evaluations (``end_level``), not on one noisy value.
- **How a run ended, beyond diverged.** A run is **unstable** when its full loss ended
  above where it started or grew steadily over its last stretch (``unstable``): it did not
  blow past the divergence limit within the budget, but it is past the stability boundary
  all the same, and the divergence bracket counts it like a divergence. A run has
  **collapsed** when its full loss sits flat at chance, ln K for K classes (a constant
  prediction), with a vanishing gradient at full batch, or after it had fallen well below
  chance with minibatches (``chance_collapse``): its sharpness falls because
  the network stopped responding, which is no catapult. Either, for a run that never
  crossed, is its own outcome; a run that crossed and then became unstable or collapsed
  counts at its first crossing like one that was lost (the refiner, which sees only the
  logged summaries, counts the same runs).
- **What the sharpness did** (full batch, against the bound factor/η; ``sharpness_regime``).
  The edge of stability (Cohen et al. 2021) is progressive sharpening up to the bound: it
  is named only when the sharpness rose from below the band into it and stayed there to
  the last measurement. A sharpness that was constant (varied by less than the band),
  or sat in the band from step 0, is not the edge of stability whatever its ratio; a
  diverged, unstable or collapsed run is named for that, never for its sharpness.
- **Score of a learning rate.** The upper median over seeds of the counted steps, a run
  that does not count being infinitely slow (censored at ∞, never dropped): the smallest
  step count by which *more than half* of the seeds had reached. It is always a step that
  was observed (no ".5" from averaging two middle values), it is finite exactly when a
  strict majority of seeds reached, and it never depends on the value of a censored run.
  With an odd number of seeds it is the ordinary median.
- **Best learning rate of a cell** (a group × batch size × target): the smallest score.
  Ties are common, because steps are counted on the evaluation grid: a run of adjacent
  learning rates with the same score is a flat bottom at this resolution, and (the
  response being a valley between steps too small and the divergence boundary) the
  optimum lies on it. The best is the **middle of the longest tied run** (geometric
  middle of the sorted learning rates; of two middles the lower; of two runs equally
  long the one at smaller learning rates, further from divergence): the point of the
  plateau furthest from neither end, so a refinement brackets it from both sides.
  Taking an end instead biases every estimate towards that end; re-ranking by the worst
  seed ranks on one noisy order statistic.
- **Resolved.** The best is inside the range tried (a neighbour on each side) and both
  neighbours lie within ``resolution`` (a ratio > 1) of it, up to ``REL`` (learning rates
  are rounded to 6 significant digits). A best at an edge of the range is not tuned: the
  optimum may lie outside.
"""

from __future__ import annotations

import math
from typing import Iterable, NamedTuple, Sequence

import numpy as np

REL = 1e-5   # learning rates closer than this (relative) are the same value (6-digit rounding)

REACHED = "reached"
DIVERGED_AFTER = "reached, then diverged"
LOST = "reached, then lost"
UNSTABLE_AFTER = "reached, then unstable"
COLLAPSED_AFTER = "reached, then collapsed"
DIVERGED = "diverged"
UNSTABLE = "unstable"
COLLAPSED = "collapsed"
NOT_REACHED = "not reached"
OUTCOMES = (REACHED, DIVERGED_AFTER, LOST, UNSTABLE_AFTER, COLLAPSED_AFTER, DIVERGED, UNSTABLE, COLLAPSED,
            NOT_REACHED)
# the outcomes whose first crossing counts as steps to the target
COUNTED = (REACHED, LOST, UNSTABLE_AFTER, COLLAPSED_AFTER)

TAIL = 5             # the last evaluations that say how a run ended (``end_level``)
RISE = 0.1           # unstable: a strictly rising last stretch that grew by more than this share
FLAT = 1e-3          # collapsed: the last stretch varies by at most this share of its level …
VANISH = 1e-3        # … and the gradient norm ended at most this share of its start …
CHANCE_TOL = 1e-3    # … at ln K for some K, to this relative tolerance
LEFT = 0.1           # minibatch collapse: the loss had been this share below ln K before it came back …
NEAR = 0.02          # … and its last stretch never fell below ln K, its median at most this share above …
LOWEST = 0.005       # … and its lowest point at most this share above (which K: ln 11 is 4% above ln 10)


# ---------------------------------------------------------------- one run
def crossed(steps) -> bool:
    """Whether a logged steps-to-target says the run crossed (None, NaN or negative: never)."""
    return steps is not None and steps >= 0   # NaN compares False


def outcome(steps, diverged: bool, final_loss: float, target: float, unstable: bool = False,
            collapsed: bool = False) -> str:
    """One run's outcome for one target (``OUTCOMES``).

    Args:
        steps: its first step below the target (None, NaN or negative: never crossed).
        diverged: whether it diverged (at any step).
        final_loss: how its full training loss ended: ``end_level`` of its curve where known,
            else its last value (NaN: unknown, no evidence it was lost).
        target: the loss target.
        unstable: whether it was ``unstable``; collapsed: whether it ``chance_collapse``d
            (both need its curves; the refiner, without them, passes neither).
    """
    if crossed(steps):
        if diverged:
            return DIVERGED_AFTER
        if collapsed:
            return COLLAPSED_AFTER
        if unstable:
            return UNSTABLE_AFTER
        if final_loss is not None and final_loss >= target:   # NaN compares False
            return LOST
        return REACHED
    return DIVERGED if diverged else COLLAPSED if collapsed else UNSTABLE if unstable else NOT_REACHED


def counts(out: str) -> bool:
    """Whether an outcome counts as reaching the target (at its first crossing)."""
    return out in COUNTED


def run_steps(steps, diverged: bool, final_loss: float = math.nan, target: float = math.inf) -> float:
    """A run's steps to the target as the scores use them: ∞ unless it counts as reached."""
    return float(steps) if counts(outcome(steps, diverged, final_loss, target)) else math.inf


# ---------------------------------------------------------------- how a run ended
def end_level(values) -> float:
    """How a curve ended: the median of its last ``TAIL`` values (NaN when empty)."""
    v = np.asarray(values, float)[-TAIL:]
    return float(np.median(v)) if v.size else math.nan


def last_stretch(values) -> np.ndarray:
    """The last quarter of a curve's evaluations, at least ``TAIL`` of them."""
    v = np.asarray(values, float)
    return v[-max(TAIL, v.size // 4):]


def unstable(losses) -> bool:
    """Whether a full-loss curve (in step order) ended above where it started, or grew steadily
    at the end: strictly rising over its ``last_stretch``, by more than ``RISE``.

    A curve with a non-finite value diverged and is judged by that; fewer than two values say nothing.
    """
    v = np.asarray(losses, float)
    if v.size < 2 or not np.isfinite(v).all():
        return False
    if end_level(v) > v[0]:
        return True
    s = last_stretch(v)
    return s.size > 2 and bool((np.diff(s) > 0).all()) and s[-1] > s[0] * (1 + RISE)


def chance_classes(loss: float) -> int:
    """K when ``loss`` is ln K for an integer K ≥ 2 (to ``CHANCE_TOL``): the cross-entropy of a
    constant, uniform prediction over K classes; else 0."""
    if not (np.isfinite(loss) and loss > 0.5):
        return 0
    k = round(math.exp(loss))
    return k if k >= 2 and abs(loss - math.log(k)) <= CHANCE_TOL * math.log(k) else 0


def chance_collapse(losses, grad_norms=None) -> int:
    """K when a run collapsed to chance (ln K for K classes: one constant, uniform prediction), else 0.

    - Full batch (``grad_norms`` given): the full cross-entropy loss is flat at ln K over its
      ``last_stretch`` (varies by at most ``FLAT`` of its level, at ln K to ``CHANCE_TOL``)
      and the gradient norm ended at most ``VANISH`` of its first value (``end_level``).
    - Minibatch (``grad_norms`` None): the gradient does not vanish, and the loss is not flat:
      the output bias keeps following each batch's class mix, which only ever costs loss above
      ln K (digits-mlp at batch size 8, η = 1: 2.309–2.398 for the last 75 evaluations). So:
      over the last stretch the loss never fell below ln K (to ``CHANCE_TOL``: no evaluation
      better than chance), its lowest point lies within ``LOWEST`` of ln K (which says which
      K) and its median within ``NEAR``; and before, the loss
      had been more than ``LEFT`` below ln K. The network learned, then lost everything; a
      run that never left chance (too small a learning rate) is only slow.

    Args:
        losses: the full training loss in step order (cross-entropy: ln K is chance only there).
        grad_norms: the full-batch gradient norm in step order; None for a minibatch run.
    """
    v = np.asarray(losses, float)
    if v.size < 2 or not np.isfinite(v).all():
        return 0
    s, level = last_stretch(v), end_level(v)
    if grad_norms is None:
        k = round(math.exp(min(s.min(), 50.0)))
        chance = math.log(k) if k >= 2 else math.nan
        ok = ((1 - CHANCE_TOL) * chance <= s.min() <= (1 + LOWEST) * chance and np.median(s) <= (1 + NEAR) * chance
              and v.min() < (1 - LEFT) * chance)
        return k if ok else 0
    if s.max() - s.min() > FLAT * abs(level):
        return 0
    g = np.asarray(grad_norms, float)
    if g.size < 2 or not np.isfinite(g).all() or g[0] <= 0 or end_level(g) > VANISH * g[0]:
        return 0
    return chance_classes(level)


# ---------------------------------------------------------------- over seeds
def median(steps: Iterable[float]) -> float:
    """The upper median of steps over seeds (∞ for a seed that did not reach; ∞ when empty)."""
    v = sorted(float(s) for s in steps)
    return v[len(v) // 2] if v else math.inf


def medians(steps: np.ndarray) -> np.ndarray:
    """``median`` along the last axis of an array padded with NaN (no seed there)."""
    a = np.sort(steps, axis=-1)   # NaN sorts last, after ∞
    n = (~np.isnan(a)).sum(-1)
    out = np.take_along_axis(a, (n // 2)[..., None].clip(max=a.shape[-1] - 1), -1)[..., 0]
    return np.where(n > 0, out, np.inf)


def scores(runs: Iterable[tuple[float, float]]) -> dict[float, float]:
    """learning rate -> its score (``median``) from (learning rate, ``run_steps``) pairs."""
    by: dict[float, list[float]] = {}
    for lr, s in runs:
        by.setdefault(float(lr), []).append(s)
    return {lr: median(v) for lr, v in by.items()}


# ---------------------------------------------------------------- over learning rates
def best(score: Sequence[float]) -> int | None:
    """Index of the best learning rate, ``score`` given in ascending learning rate (None: none finite).

    The smallest score; ties: the middle (the lower of two) of the longest run of adjacent
    tied learning rates, the first such run when several are equally long.
    """
    b = int(best_rows(np.asarray(score, float).reshape(1, -1))[0])
    return None if b < 0 else b


def best_rows(score: np.ndarray) -> np.ndarray:
    """``best`` of each row of a (R, L) array of scores (ascending learning rate); -1 where none is finite."""
    s = np.asarray(score, float)
    if s.shape[1] == 0:
        return np.full(s.shape[0], -1)
    tied = (s == s.min(axis=1, keepdims=True)) & np.isfinite(s)
    run = np.zeros(s.shape, int)   # length of the run of tied learning rates ending at each one
    run[:, 0] = tied[:, 0]
    for j in range(1, s.shape[1]):
        run[:, j] = (run[:, j - 1] + 1) * tied[:, j]
    end = run.argmax(axis=1)       # the end of the first longest run
    length = run[np.arange(len(s)), end]
    return np.where(length > 0, end - length + 1 + (length - 1) // 2, -1)


def within(a: float, b: float, resolution: float) -> bool:
    """Whether learning rates a ≤ b are at most ``resolution`` apart (ratio, up to ``REL``)."""
    return b / a <= resolution * (1 + REL)


class Bracket(NamedTuple):
    """The best learning rate of a cell with its neighbours (indices into the sorted learning rates)."""
    best: int | None       # None: no learning rate reached
    below: int | None      # the next smaller learning rate tried (None: the best is the smallest)
    above: int | None      # the next larger (None: the best is the largest)
    edge: str              # "smallest", "largest", "only" (one learning rate tried) or ""
    spacing: float         # the larger ratio to a neighbour (NaN without both)
    resolved: bool         # inside the range and both neighbours within the resolution


def bracket(lrs: Sequence[float], score: Sequence[float], resolution: float = math.inf) -> Bracket:
    """The best of ``lrs`` (ascending) by ``score``, its neighbours and whether it is resolved.

    With ``resolution`` ∞ (the default) resolved means inside the range tried: tuned.
    """
    b = best(score)
    if b is None:
        return Bracket(None, None, None, "", math.nan, False)
    n = len(lrs)
    below, above = (b - 1 if b > 0 else None), (b + 1 if b + 1 < n else None)
    edge = "only" if n == 1 else "smallest" if below is None else "largest" if above is None else ""
    if edge:
        return Bracket(b, below, above, edge, math.nan, False)
    spacing = max(lrs[b] / lrs[below], lrs[above] / lrs[b])
    ok = within(lrs[below], lrs[b], resolution) and within(lrs[b], lrs[above], resolution)
    return Bracket(b, below, above, "", spacing, ok)


def uniform_count(lo: float, hi: float, resolution: float) -> int:
    """Learning rates a log grid from ``lo`` to ``hi`` needs at spacing ``resolution`` (a refinement's cost yardstick)."""
    if hi <= lo:
        return 1
    return math.ceil(math.log(hi / lo) / math.log(resolution) - REL) + 1


# ---------------------------------------------------------------- the sharpness of a full-batch run
EOS = "edge of stability"
CATAPULT = "catapult"
SETTLED = "fell to the bound"
ABOVE = "above, unresolved"
ROSE = "rose"
BELOW = "below"
CONSTANT = "constant"
EOS_BAND = 0.1        # "at the bound": sharpness within ±10% of factor/η …
EOS_STRETCH = 3       # … for at least this many consecutive measurements
CATAPULT_BELOW = 0.5  # "fell far below": under half the bound, after starting above it


class Regime(NamedTuple):
    """What a run's sharpness did against its bound (``sharpness_regime``); indices into its measurements."""
    regime: str
    edge_from: int     # the longest stretch within the band (-1: none) …
    edge_to: int       # … and its last measurement
    drop: int          # the first measurement under CATAPULT_BELOW × bound after starting above it (-1: none)


def sharpness_regime(ratio, diverged: bool = False, unstable_run: bool = False, collapsed: bool = False,
                     band: float = EOS_BAND, stretch: int = EOS_STRETCH) -> Regime:
    """What the sharpness of one full-batch run did, from its measurements ÷ the bound factor/η.

    Diverged, collapsed and unstable runs are named for that. A **constant** sharpness (its
    largest measurement at most 1 + ``band`` times its smallest) is named so whatever its
    level, so that identical trajectories cannot fall on two sides of a threshold by the
    noise of the eigenvalue estimate. Otherwise: the **edge of stability** when the
    sharpness rose from below the band (under 1 − ``band``) into it and stayed there to the
    last measurement for ``stretch`` measurements or more; a **catapult** when it started above the bound and fell under ``CATAPULT_BELOW`` of it;
    **fell to the bound** when it started above and ended in the band as long; **above,
    unresolved** when it started above otherwise; **rose** by more than 10% from its start
    (progressive sharpening); else **below**.
    """
    r = np.asarray(ratio, float)
    inside = np.abs(r - 1) <= band
    best, cur, end = 0, 0, -1
    for i, x in enumerate(inside):
        cur = cur + 1 if x else 0
        if cur > best:
            best, end = cur, i
    start = end - best + 1 if best else -1
    above = bool(r[0] > 1)
    fell = np.flatnonzero(r < CATAPULT_BELOW) if above else np.array([], int)
    drop = int(fell[0]) if fell.size else -1
    stays = best >= stretch and end == r.size - 1
    constant = r.max() <= r.min() * (1 + band)
    if diverged or collapsed or unstable_run:
        regime = DIVERGED if diverged else COLLAPSED if collapsed else UNSTABLE
    elif constant:
        regime = CONSTANT
    elif stays and start > 0 and r[start - 1] < 1 - band:
        regime = EOS
    elif drop >= 0:
        regime = CATAPULT
    elif above:
        regime = SETTLED if stays else ABOVE
    else:
        regime = ROSE if r.max() > 1.1 * r[0] else BELOW
    return Regime(regime, start, end if best else -1, drop)
