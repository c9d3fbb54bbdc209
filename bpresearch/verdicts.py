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
  the goal is the measure of Shallue et al. 2019.
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
DIVERGED = "diverged"
NOT_REACHED = "not reached"
OUTCOMES = (REACHED, DIVERGED_AFTER, LOST, DIVERGED, NOT_REACHED)
COUNTED = (REACHED, LOST)   # the outcomes whose first crossing counts as steps to the target


# ---------------------------------------------------------------- one run
def crossed(steps) -> bool:
    """Whether a logged steps-to-target says the run crossed (None, NaN or negative: never)."""
    return steps is not None and steps >= 0   # NaN compares False


def outcome(steps, diverged: bool, final_loss: float, target: float) -> str:
    """One run's outcome for one target (``OUTCOMES``).

    Args:
        steps: its first step below the target (None, NaN or negative: never crossed).
        diverged: whether it diverged (at any step).
        final_loss: its last full training loss (NaN: unknown, no evidence it was lost).
        target: the loss target.
    """
    if crossed(steps):
        if diverged:
            return DIVERGED_AFTER
        if final_loss is not None and final_loss >= target:   # NaN compares False
            return LOST
        return REACHED
    return DIVERGED if diverged else NOT_REACHED


def counts(out: str) -> bool:
    """Whether an outcome counts as reaching the target (at its first crossing)."""
    return out in COUNTED


def run_steps(steps, diverged: bool, final_loss: float = math.nan, target: float = math.inf) -> float:
    """A run's steps to the target as the scores use them: ∞ unless it counts as reached."""
    return float(steps) if counts(outcome(steps, diverged, final_loss, target)) else math.inf


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
