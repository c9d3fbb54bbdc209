"""Exact answers the tests compare the harness with (test oracles, not part of the package)."""

import math
from typing import Iterable, NamedTuple

import numpy as np

from bpresearch.run.refine import Decision, Outcome, decide, merge_proposals

# ---------------------------------------------------------------- an exact oracle
# Least squares L(w) = ½·mean((Xw − y)²) with a chosen spectrum: H = XᵀX/n has eigenvalues
# LAMBDA, y has a residual so that L* > 0. Full-batch gradient descent from w = 0 moves each
# eigen-coordinate of the error by (1 − ηλ) per step, so the loss after k steps is exactly
# L* + ½ Σ λ_i (1 − ηλ_i)^(2k) e0_i² (float64).
LAMBDA = np.array([1.0, 0.4, 0.1, 0.03, 0.01])
STEPS, EVERY, FACTOR = 3000, 5, 1000.0


def problem(seed=0, n=64):
    rng = np.random.default_rng(seed)
    d = len(LAMBDA)
    Q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    V, _ = np.linalg.qr(rng.normal(size=(d, d)))
    X = math.sqrt(n) * Q[:, :d] * np.sqrt(LAMBDA) @ V.T      # XᵀX/n = V diag(λ) Vᵀ
    w_star = rng.normal(size=d)
    y = X @ w_star + 0.3 * Q[:, d]                          # residual orthogonal to X's columns
    return X, y


def loss_curves(X, y, lrs, steps=STEPS):
    """Full training loss at steps 0..steps of GD from w = 0, for each learning rate: (len(lrs), steps+1)."""
    n = len(y)
    lam, V = np.linalg.eigh(X.T @ X / n)
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    l_star = 0.5 * np.mean((X @ w_star - y) ** 2)
    e0 = V.T @ (0.0 - w_star)                               # initial error in eigen-coordinates
    k = np.arange(steps + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        rate = (1.0 - np.asarray(lrs)[:, None] * lam[None, :]) ** 2          # (lrs, d)
        terms = rate[:, None, :] ** k[None, :, None] * (lam * e0 ** 2)[None, None, :]
        return l_star + 0.5 * terms.sum(-1), l_star


# ---------------------------------------------------------------- refinement of one group, as a plain loop
class GroupRefinement(NamedTuple):
    """Where refining one group ended: the final decision per target, rounds and points added."""
    decisions: tuple[Decision, ...]
    rounds: int
    added: int          # learning rates added beyond the initial grid


def refine(evaluate, initial_lrs: Iterable[float], seeds: Iterable[int], targets: int, resolution: float,
           max_rounds: int, slots: int) -> tuple[GroupRefinement, list[Outcome]]:
    """Drive the refinement of one group with ``evaluate(lr, seed) -> list[Outcome per target]``.

    The runner does the same round by round against compiled programs; this loop is the
    reference it is tested against (and the algorithm's test on exact step counts), built on the
    package's own ``decide`` and ``merge_proposals``.
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
