"""The refinement planner (pure): exact steps-to-target of gradient descent on least squares."""

import math

import numpy as np
import pytest
from oracles import EVERY, FACTOR, LAMBDA, STEPS, loss_curves, problem, refine  # noqa: E402,F401

from bpresearch.run.refine import Outcome, decide, merge_proposals, scores
from bpresearch.verdicts import uniform_count


def steps_to(curves, l0, target, every=EVERY):
    """The harness's rule: first evaluated step (every E) below target, before divergence; −1 if never."""
    ev = np.arange(0, curves.shape[1], every)
    bad = ~np.isfinite(curves) | (curves > FACTOR * max(l0, 1.0))
    out = []
    for c, b in zip(curves, bad):
        div = np.argmax(b) if b.any() else None
        hit = ev[(c[ev] < target) & ((ev < div) if div is not None else True)]
        out.append((int(hit[0]) if len(hit) else -1, div is not None and (not len(hit) or div <= hit[0])))
    return out


X, Y = problem()
CURVES_AT_ZERO, L_STAR = loss_curves(X, Y, [0.0], steps=0)
L0 = float(CURVES_AT_ZERO[0, 0])
TARGET = L_STAR + 1e-5 * (L0 - L_STAR)


def evaluate(lr, seed):
    curves, _ = loss_curves(X, Y, [lr])
    s, div = steps_to(curves, L0, TARGET)[0]
    return [Outcome(lr, seed, None if s < 0 else s, div)]


def exact_minimum():
    lrs = np.geomspace(1.0, 2.0 / LAMBDA.max() * 1.01, 1500)   # η* lies in here (checked below)
    curves, _ = loss_curves(X, Y, lrs, steps=1500)
    t = np.array([s if s >= 0 and not d else np.inf for s, d in steps_to(curves, L0, TARGET, every=1)])
    i = int(np.argmin(t))
    assert 0 < i and np.isinf(t[-1]), "the exact optimum must lie inside the fine grid"
    return int(t[i]), lrs


@pytest.fixture(scope="module")
def t_min():
    return exact_minimum()[0]


@pytest.mark.parametrize("initial", [
    np.geomspace(0.01, 0.5, 6),     # entirely below the optimum (η* ≈ 1.9, diverges above 2)
    np.geomspace(0.3, 10.0, 6),     # straddles the divergence boundary
    np.geomspace(4.0, 40.0, 3),     # every learning rate diverges
])
@pytest.mark.parametrize("resolution", [1.19, 1.05])
def test_refined_optimum_is_within_the_resolution_of_the_exact_minimum(initial, resolution, t_min):
    initial = [float(f"{x:.6g}") for x in initial]
    result, outcomes = refine(evaluate, initial, seeds=[0], targets=1, resolution=resolution,
                              max_rounds=40, slots=4)
    d = result.decisions[0]
    assert d.resolved, d
    assert d.below[0] < d.best < d.above[0]
    assert d.best / d.below[0] <= resolution * 1.00001 and d.above[0] / d.best <= resolution * 1.00001
    # the best's steps are what the oracle says, and within the resolution of the exact minimum
    assert d.best_steps == evaluate(d.best, 0)[0].steps
    assert t_min <= d.best_steps <= resolution * t_min + EVERY, (d.best, d.best_steps, t_min)
    # neighbours bracket it: both slower or equal
    assert d.below[1] >= d.best_steps and d.above[1] >= d.best_steps
    assert result.added == len({o.learning_rate for o in outcomes}) - len(initial)


def test_the_exact_minimum_needs_a_fine_grid(t_min):
    """The coarse grid alone misses the optimum by far more than the resolution: refining matters."""
    coarse = [float(f"{x:.6g}") for x in np.geomspace(0.3, 10.0, 6)]
    got = [o.steps for lr in coarse for o in evaluate(lr, 0) if o.steps is not None and not o.diverged]
    assert min(got) > 1.19 * t_min + EVERY


def test_median_over_seeds_ranks_failures_last():
    out = [Outcome(0.1, 0, 50, False), Outcome(0.1, 1, 70, False), Outcome(0.1, 2, None, False),
           Outcome(0.2, 0, 30, False), Outcome(0.2, 1, None, True), Outcome(0.2, 2, None, True),
           Outcome(0.4, 0, 40, False), Outcome(0.4, 1, 60, False)]
    s = scores(out)
    assert s[0.1] == (70, 0.0)                    # median of 50, 70, ∞
    assert s[0.2] == (math.inf, pytest.approx(2 / 3))
    assert s[0.4] == (60.0, 0.0)                  # even count: the upper median, a step that was observed


def table(rows, seeds=(0,)):
    """{lr: steps or 'div' or None} -> outcomes (same for every seed)."""
    return [Outcome(lr, s, v if isinstance(v, (int, float)) else None, v == "div")
            for lr, v in rows.items() for s in seeds]


def test_edges_extend_geometrically_and_stop_at_divergence():
    d = decide(table({0.1: 100, 0.2: 80, 0.4: 60}), 1.19, slots=4)
    assert d.status == "extend_high" and d.next_lrs == (0.8, 1.6) and d.best == 0.4
    d = decide(table({0.1: 40, 0.2: 80, 0.4: "div"}), 1.19, slots=4)
    assert d.status == "extend_low" and d.next_lrs == (0.025, 0.05)
    # the best next to a diverging learning rate is interior: refine towards the boundary
    d = decide(table({0.1: 100, 0.2: 80, 0.4: "div"}), 1.19, slots=4)
    assert d.status == "refine" and d.above == (0.4, math.inf)
    assert all(0.1 < x < 0.4 and x != 0.2 for x in d.next_lrs) and len(d.next_lrs) == 4


def test_interior_refines_until_neighbours_are_within_the_resolution():
    d = decide(table({0.1: 100, 0.2: 60, 0.4: 90}), 2 ** 0.25, slots=10)
    assert d.status == "refine"
    # three points in each octave: spacing 2^(1/4) exactly
    want = sorted([0.1 * 2 ** (k / 4) for k in (1, 2, 3)] + [0.2 * 2 ** (k / 4) for k in (1, 2, 3)])
    assert d.next_lrs == pytest.approx(want, rel=1e-5)
    d = decide(table({0.1: 100, 0.2: 60, 0.4: 90}), 2 ** 0.25, slots=2)
    assert len(d.next_lrs) == 2 and d.next_lrs[0] < 0.2 < d.next_lrs[1]
    d = decide(table({0.18: 70, 0.2: 60, 0.22: 65}), 1.19)
    assert d.resolved and d.next_lrs == () and d.best == 0.2 and d.below == (0.18, 70)


def test_nothing_reached():
    d = decide(table({0.1: None, 0.2: None}), 1.19)
    assert d.status == "search" and d.next_lrs == (0.4, 0.8)
    d = decide(table({1.0: "div", 2.0: "div"}), 1.19)
    assert d.status == "search" and d.next_lrs == (0.25, 0.5)
    d = decide(table({0.1: None, 0.4: "div"}), 1.19, slots=3)
    assert d.status == "search" and len(d.next_lrs) == 3 and all(0.1 < x < 0.4 for x in d.next_lrs)
    d = decide(table({0.1: None, 0.11: "div"}), 1.19)
    assert d.status == "stuck" and d.next_lrs == ()


def test_ties_take_the_middle_of_a_flat_bottom():
    d = decide(table({0.1: 90, 0.2: 60, 0.4: 60, 0.8: 60, 1.6: 90}), 2.0)
    assert d.best == 0.4 and d.resolved


def test_merge_and_uniform_count():
    a = decide(table({0.1: 100, 0.2: 60, 0.4: 90}), 1.5, slots=4)
    b = decide(table({0.1: 100, 0.2: 200, 0.4: 300}), 1.5, slots=4)
    m = merge_proposals([a, b], 3)
    assert len(m) == 3 and a.next_lrs[0] in m and b.next_lrs[0] in m
    assert uniform_count(0.004, 8.0, 2.0) == 12     # the digits grid: 0.004 · 2^k, k = 0 … 11 (≈)
    assert uniform_count(1.0, 16.0, 2 ** 0.25) == 17
