"""The scaling rule η* ∝ B^α: the fit recovers planted power laws; its interval holds the planted α
and, on a grid finer than the gap, leaves out the rule that is not planted."""

import numpy as np
import pandas as pd
import pytest

from analysis import lr_rule as LR
from analysis import measures as M

SIZES = (4, 16, 64, 256, 1024)


@pytest.mark.parametrize("alpha", [0.25, 0.5, 1.0])
def test_the_fit_recovers_an_exact_power_law(alpha):
    B = np.array(SIZES, float)
    a, logc = LR.power_fit(B, 0.003 * B ** alpha)
    assert a == pytest.approx(alpha, abs=1e-12) and np.exp(logc) == pytest.approx(0.003, rel=1e-9)
    assert np.isnan(LR.power_fit(B[:2], B[:2])[0])                    # two batch sizes: no fit
    assert np.isnan(LR.power_fit([8, 8, 8, 16], [0.1, 0.1, 0.1, 0.2])[0])   # two distinct


def planted(alpha: float, ratio: float, n_seeds: int = 3, sigma: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Steps to a target with the optimum η*(B) = 0.001·B^α on a log grid ``ratio`` apart (so on a grid point
    when B^α is a power of ``ratio``), the steps growing as (log η/η*)² away from it, with seed noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for B in SIZES:
        eta = 0.001 * B ** alpha
        for k in range(-3, 4):
            lr = float(f"{eta * ratio ** k:.6g}")
            for s in range(n_seeds):
                st = np.ceil(100 * (1 + 2 * np.log(lr / eta) ** 2) * np.exp(sigma * rng.normal()))
                rows.append({"run_id": f"{B}-{k}-{s}", "optimizer": "sgd", "batch_size": B, "learning_rate": lr,
                             "seed": s, "target": 0.5, "steps": st, "steps_lo": st, "reached": True,
                             "outcome": "reached"})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("alpha, inside, outside", [(0.5, "square-root", "linear"), (1.0, "linear", "square-root")])
def test_the_interval_holds_the_planted_rule_and_not_the_other(alpha, inside, outside):
    table = planted(alpha, 2 ** 0.5)
    best = M.best_learning_rate(M.cells(table), 0.5)
    assert np.allclose(best["learning_rate"], 0.001 * np.array(SIZES, float) ** alpha, rtol=1e-5)
    a, _ = LR.power_fit(best["batch_size"], best["learning_rate"])
    iv = LR.alpha_interval(table, list(SIZES), a, n_boot=300)
    assert a == pytest.approx(alpha, abs=1e-5)
    rules = dict((name, v) for name, v, _ in LR.RULES)
    assert iv.lo <= rules[inside] <= iv.hi and not iv.lo <= rules[outside] <= iv.hi
    assert iv.level == LR.COVERAGE and "within the grid's steps" in iv.how
    # a coarser grid cannot pin α down as finely: the grid's step widens the interval
    coarse = planted(alpha, 4.0)
    wide = LR.alpha_interval(coarse, list(SIZES), a, n_boot=300)
    assert wide.hi - wide.lo > iv.hi - iv.lo
