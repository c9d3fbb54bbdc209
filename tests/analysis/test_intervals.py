"""Intervals over seeds reach the coverage their label states; no winner is named inside the noise.

Each test plants data whose answer is known: seeds drawn around a known median, identical
settings under two names, one seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import measures as M
from analysis import prose, prose_intervals, tables
from analysis import uncertainty as U
from analysis.noise_scales import critical_fits

SIZES = (8, 16, 32, 64, 128, 256)
LRS = (0.05, 0.1, 0.2)


def planted(rng, n_seeds, sigma=0.15, s_min=100.0, e_min=6400.0, sizes=SIZES, width=0.0, names=("sgd",)):
    """Steps to target S(B) = S_min + E_min/B times a log-normal seed factor (median 1) at η = 0.1;
    the neighbouring learning rates take 1.5× as many. ``width``: each crossing lies in an
    interval of that relative width below the logged step."""
    rows = []
    for opt in names:
        for B in sizes:
            for lr in LRS:
                for s in range(n_seeds):
                    st = (s_min + e_min / B) * (1.0 if lr == 0.1 else 1.5) * np.exp(sigma * rng.normal())
                    rows.append({"run_id": f"{opt}-{B}-{lr}-{s}", "optimizer": opt, "batch_size": B,
                                 "learning_rate": lr, "seed": s, "target": 0.5, "steps": np.ceil(st),
                                 "steps_lo": np.ceil(st * (1 - width)), "reached": True, "outcome": "reached"})
    return pd.DataFrame(rows)


def best_of(table, target=0.5):
    return U.with_intervals(M.best_learning_rate(M.cells(table), target), table, None)


# ---------------------------------------------------------------- coverage as labelled
def test_the_order_statistic_interval_states_the_coverage_it_reaches():
    # P(j ≤ Bin(n, 1/2) < k): the range of 2 seeds 1/2, of 3 seeds 3/4, of 5 seeds 15/16; 8 seeds: 2nd–7th, 238/256
    assert U.order_stats(1) is None
    assert U.order_stats(2) == (1, 2, 0.5)
    assert U.order_stats(3) == (1, 3, 0.75)
    assert U.order_stats(5) == (1, 5, 0.9375)
    assert U.order_stats(8) == pytest.approx((2, 7, 238 / 256))
    assert U.median_interval([3, 4, 5], [3, 4, 5]).label() == "range of 3 seeds: 75% interval"


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_the_steps_interval_covers_the_planted_median_as_often_as_its_label_says(n):
    rng = np.random.default_rng(n)
    reps, hits, levels = 150, 0, set()
    true = 100 + 6400 / 64  # the planted median at batch size 64, η = 0.1
    for _ in range(reps):
        table = planted(rng, n, sigma=0.3, sizes=(64,))
        pg = U.scaling_intervals(table, best_of(table).assign(tuned=True), n_boot=10).per_group.iloc[0]
        hits += pg["steps_lo"] <= true <= pg["steps_hi"] + 1  # steps are rounded up to whole steps
        levels.add(float(pg["steps_level"]))
    (level,) = levels
    assert level == U.order_stats(n)[2]
    se = np.sqrt(level * (1 - level) / reps)
    assert hits / reps >= level - 3 * se  # reaches its label (the old bootstrap said 90% at every n)


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_the_fits_bootstrap_reaches_the_coverage_it_is_labelled_with(n):
    rng = np.random.default_rng(100 + n)
    reps, hits = 60, 0
    for i in range(reps):
        table = planted(rng, n, sizes=(16, 64, 256))
        fit = U.scaling_intervals(table, best_of(table).assign(tuned=True), n_boot=200, seed=i).fits[("sgd",)]
        b = fit["b_crit"]
        assert b.level == U.boot_coverage(n)
        hits += b.ok and b.lo <= 64 <= b.hi
    level = U.boot_coverage(n)
    assert hits / reps >= level - 3 * np.sqrt(level * (1 - level) / reps)


# ---------------------------------------------------------------- one source; estimates inside their intervals
def test_every_estimate_lies_inside_its_interval_and_the_fits_are_the_summarys():
    rng = np.random.default_rng(7)
    for i in range(10):
        table = planted(rng, 3, sigma=0.4, width=0.3)
        best = best_of(table)
        best = best.assign(tuned=True)
        si = U.scaling_intervals(table, best, n_boot=200, seed=i)
        pg = si.per_group
        assert (pg["steps_lo"] <= pg["steps"]).all() and (pg["steps"] <= pg["steps_hi"]).all()
        eff = pg[pg["efficiency_how"] != "reference"]
        assert ((eff["efficiency_lo"] <= eff["efficiency"]) & (eff["efficiency"] <= eff["efficiency_hi"])).all()
        assert (pg["steps"].to_numpy() == best["steps"].to_numpy()).all()  # the best table's median, not another
        ce = critical_fits(best).steps_examples
        fit = si.fits[("sgd",)]
        assert fit["b_crit"].point == ce.b_crit and fit["s_min"].point == ce.s_min  # what summary.json's fits hold
        for iv in fit.values():
            assert not iv.ok or iv.lo <= iv.point <= iv.hi


def test_the_reference_batch_size_is_not_compared_with_itself():
    table = planted(np.random.default_rng(0), 3)
    best = best_of(table).assign(tuned=True)
    pg = U.scaling_intervals(table, best, n_boot=50).per_group
    t = tables.scaling_table(best, pg, None)
    assert t["within 2× of perfect scaling?"].iloc[0] == "— (the reference)"
    assert pg["efficiency_how"].iloc[0] == "reference" and np.isnan(pg["efficiency_lo"].iloc[0])


# ---------------------------------------------------------------- one seed: no interval, no verdict
def test_one_seed_gives_no_interval_and_no_verdict():
    table = planted(np.random.default_rng(0), 1, sizes=(8, 256))
    best = best_of(table).assign(tuned=True)
    si = U.scaling_intervals(table, best, n_boot=50)
    text = prose_intervals.findings_scaling_intervals(best, si.per_group, 0.5, None)[0]
    assert "fewer" not in text and "interval" not in text.replace("no interval", "")
    assert "no interval (one seed), so no verdict" in text
    lines = prose_intervals.findings_best_intervals(best, 0.5, 2000, None)
    assert all("one seed: no interval" in s for s in lines)
    table3 = planted(np.random.default_rng(0), 1, sizes=(8, 64, 256))
    fit = U.scaling_intervals(table3, best_of(table3).assign(tuned=True), n_boot=50).fits[("sgd",)]
    assert np.isfinite(fit["b_crit"].point) and not fit["b_crit"].ok
    assert "interval" not in fit["b_crit"].text().replace("no interval", "")


def test_several_seeds_with_one_trajectory_are_exact_not_a_spread():
    iv = U.median_interval([6, 6, 6][:1], [8, 8, 8][:1], runs=3)
    assert (iv.lo, iv.hi, iv.level) == (6, 8, 1.0) and iv.label() == "all 3 seeds the same trajectory"
    assert not U.median_interval([6], [8], runs=1).ok


# ---------------------------------------------------------------- no winner inside the noise
def _two_names(table):
    """The same runs under two optimizer names (sgd and momentum with β = 0 are one algorithm)."""
    both = pd.concat([table, table.assign(optimizer="momentum")], ignore_index=True)
    best = best_of(both)
    best["group"] = "optimizer=" + best["optimizer"]
    return best


@pytest.mark.parametrize("n", [1, 3])
def test_identical_settings_under_two_names_are_a_tie(n):
    best = _two_names(planted(np.random.default_rng(3), n, sizes=(8, 64)))
    for s in prose_intervals.findings_compare(best, 0.5, None):
        assert "fewest median steps with" not in s
        assert "optimizer=sgd" in s and "optimizer=momentum" in s
    head = prose_intervals.headline_fastest(best, 0.5, None)[0]
    assert "optimizer=sgd" in head and "optimizer=momentum" in head and not head.startswith("Fastest to loss 0.5: 1")


def test_a_winner_is_named_when_the_intervals_are_apart():
    table = planted(np.random.default_rng(4), 5, sizes=(8,))
    slow = table.assign(optimizer="momentum", steps=table["steps"] * 3, steps_lo=table["steps_lo"] * 3)
    best = best_of(pd.concat([table, slow], ignore_index=True))
    best["group"] = "optimizer=" + best["optimizer"]
    (s,) = prose_intervals.findings_compare(best, 0.5, None)
    assert "fewest median steps with optimizer=sgd" in s and "beyond the seed spread" in s


# ---------------------------------------------------------------- wording
def test_spreads_and_counts_read_as_words():
    r = {"n": 3, "n_reached": 3, "steps_min": 5.0, "steps_max": 5.0}
    assert prose_intervals._seeds_spread(r) == "every seed 5"  # not "seeds: 5–5"
    assert prose_intervals._seeds_spread({**r, "n": 1}) == "one seed"
    runs = pd.DataFrame({"optimizer": ["sgd"] * 3 + ["random_search"], "learning_rate": [0.1, 0.2, 0.3, 0.1],
                         "diverged": False})
    (s,) = prose.headline_divergence(runs, [])
    assert s.startswith("No run diverged (3 gradient runs") and "1 random-search run not counted" in s
