"""Plan refinement rounds: which learning rates each group tries next, or that it is done.

Pure functions (no JAX, no tracking): given what each configuration of a group did — its
learning rate, seed, steps to the target or "not reached", diverged or not — say which
learning rates to try next. What counts as reached, the score of a learning rate, the best
one and whether it is resolved are ``bpresearch.verdicts``' (the report uses the same).

The rule (Shallue et al. 2019 tune the learning rate at every batch size; this makes the
tuning automatic):

- Best at the lowest learning rate tried: extend below it in geometric steps (the grid's
  spacing at that edge). Best at the highest: extend above it, the same way. Extending
  upwards stops by itself at the divergence boundary: a learning rate whose seeds diverge
  scores ∞ and becomes the upper neighbour.
- Best inside: add points (geometric) between it and each neighbour that is further than
  ``resolution`` from it, until it is resolved (``verdicts.bracket``).
- Nothing reaches the target: extend upwards while nothing diverges, downwards while
  everything diverges, else fill the gap between the last learning rate that did not
  diverge and the first that did (the fastest ones lie at that boundary).

New learning rates are rounded to 6 significant digits, like a ``{min, max, num}`` grid,
so a resumed refinement proposes exactly the same values (and configuration hashes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np

from bpresearch import verdicts
from bpresearch.verdicts import REL

EXTEND = 2              # learning rates added past an edge per round
DEFAULT_RATIO = 4.0     # extension step when the group has a single learning rate


class Outcome(NamedTuple):
    """What one configuration did, for one target."""
    learning_rate: float
    seed: int
    steps: float | None      # first step below the target; None: never crossed
    diverged: bool
    final_loss: float = math.nan   # its last full training loss (NaN: unknown)
    target: float = math.inf       # the target (only for ``verdicts.outcome``'s "then lost")

    @property
    def counted(self) -> float:
        """Its steps as the scores count them (``verdicts.run_steps``: ∞ unless it counts as reached)."""
        return verdicts.run_steps(self.steps, self.diverged, self.final_loss, self.target)


@dataclass(frozen=True)
class Decision:
    """The state of one group after looking at its outcomes.

    ``status``: ``"resolved"`` (best interior, both neighbours within the resolution),
    ``"refine"`` (best interior, a neighbour too far), ``"extend_low"``/``"extend_high"``
    (best at an edge), ``"search"`` (nothing reached the target yet), or ``"stuck"``
    (nothing new to try: no learning rate reaches the target and the boundary between too
    slow and diverging is already resolved).
    """
    status: str
    next_lrs: tuple[float, ...]
    best: float | None                     # the best learning rate (None if nothing reached)
    best_steps: float                      # its median steps (∞ if nothing reached)
    below: tuple[float, float] | None      # (learning rate, median steps) of the lower neighbour
    above: tuple[float, float] | None      # the same for the upper neighbour

    @property
    def resolved(self) -> bool:
        return self.status == "resolved"


def round_lr(x: float) -> float:
    return float(f"{x:.6g}")


def scores(outcomes: Iterable[Outcome]) -> dict[float, tuple[float, float]]:
    """learning rate -> (``verdicts`` score over seeds, fraction of seeds diverged)."""
    outcomes = list(outcomes)
    med = verdicts.scores((o.learning_rate, o.counted) for o in outcomes)
    div: dict[float, list[bool]] = {}
    for o in outcomes:
        div.setdefault(float(o.learning_rate), []).append(bool(o.diverged))
    return {lr: (med[lr], float(np.mean(div[lr]))) for lr in med}


def _between(a: float, b: float, n: int) -> list[float]:
    """n points strictly between a < b, evenly spaced in log."""
    return [round_lr(a * (b / a) ** (k / (n + 1))) for k in range(1, n + 1)]


def _points_needed(a: float, b: float, resolution: float) -> int:
    """Points to add between a < b so that neighbours are within ``resolution``."""
    if verdicts.within(a, b, resolution):
        return 0
    return max(1, math.ceil(math.log(b / a) / math.log(resolution) - REL) - 1)


def _split(needs: list[int], slots: int) -> list[int]:
    """Share ``slots`` among gaps that need points: at least one each, then in proportion."""
    if sum(needs) <= slots:
        return needs
    give = [min(1, n) for n in needs]
    while sum(give) < slots:
        # the gap whose spacing is coarsest after what it already gets
        i = max(range(len(needs)), key=lambda j: (needs[j] + 1) / (give[j] + 1) if give[j] < needs[j] else 0)
        if give[i] >= needs[i]:
            break
        give[i] += 1
    return give


def _ratio(lrs: list[float], at_low: bool) -> float:
    if len(lrs) < 2:
        return DEFAULT_RATIO
    return lrs[1] / lrs[0] if at_low else lrs[-1] / lrs[-2]


class _Proposals(NamedTuple):
    """The learning rates of one group so far, and how many one round may add."""
    lrs: list[float]
    resolution: float
    slots: int

    def new(self, cands) -> tuple[float, ...]:
        """The candidates not tried yet (nor among the earlier ones), at most ``slots``, sorted."""
        keep: list[float] = []
        for x in cands:
            if x > 0 and all(abs(x - y) > REL * y for y in self.lrs + keep):
                keep.append(x)
        return tuple(sorted(keep[:self.slots]))

    def extend(self, at_low: bool) -> tuple[float, ...]:
        """Past the lowest (or highest) learning rate, in the grid's geometric steps."""
        r = max(_ratio(self.lrs, at_low), self.resolution)
        edge = self.lrs[0] if at_low else self.lrs[-1]
        n = min(self.slots, EXTEND)
        return self.new([round_lr(edge / r ** k if at_low else edge * r ** k) for k in range(1, n + 1)])

    def between(self, a: float, b: float, n: int) -> tuple[float, ...]:
        return self.new(_between(a, b, n))


def _search(p: _Proposals, diverging: list[bool]) -> Decision:
    """Nothing reached the target: look towards the boundary between too slow and diverging."""
    def search(nxt):
        return Decision("search" if nxt else "stuck", nxt, None, math.inf, None, None)

    if not any(diverging):      # everything too slow: larger steps
        return search(p.extend(False))
    if all(diverging):          # everything blows up: smaller steps
        return search(p.extend(True))
    i = max(k for k, d in enumerate(diverging) if not d)   # last that did not diverge
    j = next((k for k in range(i + 1, len(p.lrs)) if diverging[k]), None)
    if j is None:               # the largest ones are merely slow: go above them
        return search(p.extend(False))
    n = _points_needed(p.lrs[i], p.lrs[j], p.resolution)
    return search(p.between(p.lrs[i], p.lrs[j], min(n, p.slots)) if n else ())


def decide(outcomes: Iterable[Outcome], resolution: float, slots: int = 2) -> Decision:
    """The next learning rates of one group, for one target.

    Args:
        outcomes: every configuration of the group run so far (any number of seeds each).
        resolution: the largest ratio allowed between the best learning rate and each
            neighbour (> 1; 2^(1/4) ≈ 1.19 is four points per doubling).
        slots: the most learning rates to propose (the room one round has).
    Returns:
        A ``Decision``; ``next_lrs`` is empty when resolved or stuck, else sorted, new and
        at most ``slots`` long.
    """
    sc = scores(outcomes)
    if not sc:
        raise ValueError("no outcomes")
    lrs = sorted(sc)
    p = _Proposals(lrs, resolution, slots)
    med = [sc[lr][0] for lr in lrs]
    br = verdicts.bracket(lrs, med, resolution)
    if br.best is None:
        return _search(p, [sc[lr][1] > 0.5 for lr in lrs])
    best, steps = lrs[br.best], med[br.best]
    below = None if br.below is None else (lrs[br.below], med[br.below])
    above = None if br.above is None else (lrs[br.above], med[br.above])
    if below is None:
        return Decision("extend_low", p.extend(True), best, steps, below, above)
    if above is None:
        return Decision("extend_high", p.extend(False), best, steps, below, above)
    if br.resolved:
        return Decision("resolved", (), best, steps, below, above)
    give = _split([_points_needed(below[0], best, resolution), _points_needed(best, above[0], resolution)], slots)
    nxt = p.new(_between(below[0], best, give[0]) + _between(best, above[0], give[1]))
    return Decision("refine" if nxt else "stuck", nxt, best, steps, below, above)


def merge_proposals(decisions: Iterable[Decision], slots: int) -> tuple[float, ...]:
    """One round's learning rates for a group refined at several targets: each target's
    proposals in turn (first of each, then second of each, …), deduplicated, at most ``slots``."""
    lists = [list(d.next_lrs) for d in decisions]
    out: list[float] = []
    for k in range(max((len(x) for x in lists), default=0)):
        for x in lists:
            if k < len(x) and all(abs(x[k] - y) > REL * y for y in out) and len(out) < slots:
                out.append(x[k])
    return tuple(sorted(out))
