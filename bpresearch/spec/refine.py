"""Refine the learning rate per group until the fastest one is inside the range and resolved.

Pure functions (no JAX, no tracking): given what each configuration of a group did — its
learning rate, seed, steps to the target or "not reached", diverged or not — say which
learning rates to try next, or that the group is done.

The rule (Shallue et al. 2019 tune the learning rate at every batch size; this makes the
tuning automatic):

- Each learning rate is scored by the **median over seeds** of its steps to the target; a
  seed that diverged or never reached the target counts as infinitely slow, so such runs
  rank last and a learning rate where most seeds fail scores ∞.
- The best learning rate is the one with the smallest score (ties: the middle one of the
  tied run of neighbours, so a flat bottom is bracketed from both sides).
- Best at the lowest learning rate tried: extend below it in geometric steps (the grid's
  spacing at that edge). Best at the highest: extend above it, the same way. Extending
  upwards stops by itself at the divergence boundary: a learning rate that diverges scores
  ∞ and becomes the upper neighbour.
- Best inside: add points (geometric) between it and each neighbour that is further than
  ``resolution`` from it. **Resolved** when both neighbours are within ``resolution``.
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

REL = 1e-5              # learning rates closer than this (relative) are the same value (6-digit rounding)
EXTEND = 2              # learning rates added past an edge per round
DEFAULT_RATIO = 4.0     # extension step when the group has a single learning rate


@dataclass(frozen=True)
class Settings:
    """``[sweep] refine = {target, resolution, max_rounds, per_round}``."""
    targets: tuple[float, ...]          # each one of [train] targets; every one is refined
    resolution: float = 2 ** 0.25       # four learning rates per doubling around the best
    max_rounds: int = 6                 # rounds of added learning rates per group, at most
    per_round: int | None = None        # learning rates per group per round (default: fill one chunk)


KEYS = ("target", "resolution", "max_rounds", "per_round")


def parse_settings(raw, train_targets) -> Settings:
    """Validate ``[sweep] refine``; a ``ValueError``'s message is ``key: problem`` (one line)."""
    if not isinstance(raw, dict):
        raise ValueError(f"refine: must be a table such as {{ target = 0.1, resolution = 1.19, max_rounds = 6 }}, "
                         f"got {raw!r}")
    for k in raw:
        if k not in KEYS:
            raise ValueError(f"refine.{k}: unknown key (expected one of: {', '.join(KEYS)})")

    def number(key, v, lo, integer=False):
        if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) or not math.isfinite(v):
            raise ValueError(f"refine.{key}: must be {'an integer' if integer else 'a finite number'}, got {v!r}")
        if (v < lo) if integer else (v <= lo):
            raise ValueError(f"refine.{key}: must be {'≥' if integer else '>'} {lo}, got {v}")
        return v

    if not train_targets:
        raise ValueError("refine: needs [train] targets (it tunes steps to a target)")
    target = raw.get("target", train_targets[0])
    targets = target if isinstance(target, list) else [target]
    if not targets:
        raise ValueError("refine.target: must not be empty")
    for t in targets:
        number("target", t, 0.0)
        if not any(abs(t - x) <= 1e-12 * max(1.0, abs(x)) for x in train_targets):
            raise ValueError(f"refine.target: {t:g} is not one of [train] targets "
                             f"({', '.join(f'{x:g}' for x in train_targets)})")
    out = Settings(tuple(float(t) for t in targets),
                   float(number("resolution", raw.get("resolution", 2 ** 0.25), 1.0)),
                   number("max_rounds", raw.get("max_rounds", 6), 0, integer=True))
    if "per_round" in raw:
        out = Settings(out.targets, out.resolution, out.max_rounds, number("per_round", raw["per_round"], 1, True))
    return out


class Outcome(NamedTuple):
    """What one configuration did, for one target."""
    learning_rate: float
    seed: int
    steps: float | None      # steps to the target; None: never reached (or diverged first)
    diverged: bool


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
    """learning rate -> (median steps over seeds with failures as ∞, fraction of seeds diverged)."""
    steps: dict[float, list[float]] = {}
    div: dict[float, list[bool]] = {}
    for o in outcomes:
        ok = o.steps is not None and not o.diverged and o.steps >= 0
        steps.setdefault(o.learning_rate, []).append(float(o.steps) if ok else math.inf)
        div.setdefault(o.learning_rate, []).append(bool(o.diverged))
    out = {}
    for lr, v in steps.items():
        v = sorted(v)
        n = len(v)
        med = v[n // 2] if n % 2 else (math.inf if math.isinf(v[n // 2]) else (v[n // 2 - 1] + v[n // 2]) / 2)
        out[lr] = (med, float(np.mean(div[lr])))
    return out


def _between(a: float, b: float, n: int) -> list[float]:
    """n points strictly between a < b, evenly spaced in log."""
    return [round_lr(a * (b / a) ** (k / (n + 1))) for k in range(1, n + 1)]


def _points_needed(a: float, b: float, resolution: float) -> int:
    """Points to add between a < b so that neighbours are within ``resolution``."""
    ratio = b / a
    if ratio <= resolution * (1 + REL):
        return 0
    return max(1, math.ceil(math.log(ratio) / math.log(resolution) - REL) - 1)


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
    med = [sc[lr][0] for lr in lrs]
    divf = [sc[lr][1] for lr in lrs]

    def new(cands):
        keep = []
        for x in cands:
            if x > 0 and all(abs(x - y) > REL * y for y in lrs + keep):
                keep.append(x)
        return tuple(sorted(keep[:slots]))

    def extend(at_low: bool, n: int) -> tuple[float, ...]:
        r = max(_ratio(lrs, at_low), resolution)
        edge = lrs[0] if at_low else lrs[-1]
        return new([round_lr(edge / r ** k if at_low else edge * r ** k) for k in range(1, n + 1)])

    if all(math.isinf(m) for m in med):
        diverging = [d > 0.5 for d in divf]
        if not any(diverging):      # everything too slow: larger steps
            return Decision("search", extend(False, min(slots, EXTEND)), None, math.inf, None, None)
        if all(diverging):          # everything blows up: smaller steps
            return Decision("search", extend(True, min(slots, EXTEND)), None, math.inf, None, None)
        i = max(k for k, d in enumerate(diverging) if not d)   # last that did not diverge
        j = next((k for k in range(i + 1, len(lrs)) if diverging[k]), None)
        if j is None:               # the largest ones are merely slow: go above them
            return Decision("search", extend(False, min(slots, EXTEND)), None, math.inf, None, None)
        n = _points_needed(lrs[i], lrs[j], resolution)
        nxt = new(_between(lrs[i], lrs[j], min(n, slots))) if n else ()
        return Decision("search" if nxt else "stuck", nxt, None, math.inf, None, None)

    best_val = min(med)
    tied = [k for k, m in enumerate(med) if m == best_val]
    # the middle of the longest contiguous run of tied learning rates
    runs, cur = [], [tied[0]]
    for k in tied[1:]:
        if k == cur[-1] + 1:
            cur.append(k)
        else:
            runs.append(cur)
            cur = [k]
    runs.append(cur)
    run = max(runs, key=len)
    b = run[(len(run) - 1) // 2]
    best = lrs[b]
    below = (lrs[b - 1], med[b - 1]) if b > 0 else None
    above = (lrs[b + 1], med[b + 1]) if b + 1 < len(lrs) else None
    if below is None:
        return Decision("extend_low", extend(True, min(slots, EXTEND)), best, best_val, below, above)
    if above is None:
        return Decision("extend_high", extend(False, min(slots, EXTEND)), best, best_val, below, above)
    needs = [_points_needed(below[0], best, resolution), _points_needed(best, above[0], resolution)]
    if not any(needs):
        return Decision("resolved", (), best, best_val, below, above)
    give = _split(needs, slots)
    cands = _between(below[0], best, give[0]) + _between(best, above[0], give[1])
    nxt = new(cands)
    return Decision("refine" if nxt else "stuck", nxt, best, best_val, below, above)


def uniform_count(lo: float, hi: float, resolution: float) -> int:
    """Learning rates a log grid from ``lo`` to ``hi`` needs at spacing ``resolution`` (for comparison)."""
    if hi <= lo:
        return 1
    return math.ceil(math.log(hi / lo) / math.log(resolution) - REL) + 1


class GroupRefinement(NamedTuple):
    """Where refining one group ended: the final decision per target, rounds and points added."""
    decisions: tuple[Decision, ...]
    rounds: int
    added: int          # learning rates added beyond the initial grid


def refine(evaluate, initial_lrs: Iterable[float], seeds: Iterable[int], targets: int, resolution: float,
           max_rounds: int, slots: int) -> tuple[GroupRefinement, list[Outcome]]:
    """Drive the refinement of one group with ``evaluate(lr, seed) -> list[Outcome per target]``.

    The runner does the same round by round against compiled programs; this loop is the
    reference it is tested against (and the algorithm's test on exact step counts).
    Returns the final ``GroupRefinement`` and every outcome, per target flattened in order.
    """
    seeds = list(seeds)
    by_target: list[list[Outcome]] = [[] for _ in range(targets)]

    def run(lrs):
        for lr in lrs:
            for s in seeds:
                for j, o in enumerate(evaluate(lr, s)):
                    by_target[j].append(o)

    run(list(initial_lrs))
    rounds = added = 0
    while True:
        decisions = tuple(decide(by_target[j], resolution, slots) for j in range(targets))
        nxt = merge_proposals(decisions, slots)
        if not nxt or rounds >= max_rounds:
            return GroupRefinement(decisions, rounds, added), [o for t in by_target for o in t]
        rounds += 1
        added += len(nxt)
        run(nxt)


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
