"""Convergence measures on synthetic curves whose answers are known by construction."""

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import crossings as C
from analysis import measures as M


def make_runs(rows):
    """A runs frame like ``analysis.load`` builds, from (run_id, bs, lr, seed, diverged) rows."""
    df = pd.DataFrame(rows, columns=["run_id", "batch_size", "learning_rate", "seed", "diverged"])
    df["optimizer"] = "sgd"
    df["steps"] = 100
    df["params.train.targets"] = json.dumps([0.5, 0.1])
    return df


def make_curves(series: dict, key="full_train_loss", steps=None):
    """Tidy curves from {run_id: values}; steps default to 0, 1, 2, …"""
    parts = []
    for run_id, values in series.items():
        s = np.arange(len(values)) if steps is None else np.asarray(steps[run_id])
        parts.append(pd.DataFrame({"run_id": run_id, "key": key, "step": s, "value": np.asarray(values, float)}))
    return pd.concat(parts, ignore_index=True)


def test_targets_are_read_from_params():
    assert M.targets_of(make_runs([("a", 1, 0.1, 0, False)])) == [0.5, 0.1]


def test_steps_to_target_first_step_below_and_censoring():
    runs = make_runs([("fast", 8, 0.1, 0, False), ("never", 8, 0.01, 0, False), ("blowup", 8, 10.0, 0, True)])
    curves = make_curves({"fast": [1.0, 0.7, 0.5, 0.3, 0.05, 0.2],  # 0.5 is not *below* 0.5: step 3
                          "never": [1.0, 0.9, 0.8, 0.7, 0.6, 0.55],
                          "blowup": [1.0, 3.0, 40.0]})               # the curve stops at divergence
    t = M.steps_to_target(curves, runs, [0.5, 0.1]).set_index(["run_id", "target"])
    assert t.loc[("fast", 0.5), "steps"] == 3 and t.loc[("fast", 0.5), "examples"] == 24
    assert t.loc[("fast", 0.1), "steps"] == 4 and t.loc[("fast", 0.1), "examples"] == 32
    # Censored runs stay in the table, with no number that could read as fast.
    assert len(t) == 6
    assert not t.loc[("never", 0.5), "reached"] and np.isnan(t.loc[("never", 0.5), "steps"])
    assert t.loc[("never", 0.5), "outcome"] == "not reached"
    assert t.loc[("blowup", 0.1), "outcome"] == "diverged" and np.isnan(t.loc[("blowup", 0.1), "examples"])


def test_logged_summaries_give_the_same_table():
    runs = make_runs([("a", 4, 0.1, 0, False), ("b", 4, 0.2, 0, False)])
    runs["metrics.steps_to_loss_0.5"] = [7.0, np.nan]   # absent metric = not reached
    runs["metrics.steps_to_loss_0.1"] = [np.nan, np.nan]
    t = M.steps_to_target_logged(runs, [0.5, 0.1]).set_index(["run_id", "target"])
    assert t.loc[("a", 0.5), "steps"] == 7 and t.loc[("a", 0.5), "examples"] == 28
    assert not t.loc[("b", 0.5), "reached"] and not t.loc[("a", 0.1), "reached"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(1e-3, 10.0), min_size=1, max_size=40), st.floats(1e-3, 10.0))
def test_steps_to_target_matches_a_plain_loop(values, target):
    runs = make_runs([("r", 2, 0.1, 0, False)])
    t = M.steps_to_target(make_curves({"r": values}), runs, [target]).iloc[0]
    first = next((k for k, v in enumerate(values) if v < target), None)
    assert t["reached"] == (first is not None)
    assert (np.isnan(t["steps"]) if first is None else t["steps"] == first)


def table_of(steps_by_run, bs_lr_seed, diverged=()):
    """A steps_to_target table for target 0.5 from {run_id: steps or None}."""
    rows = [(rid, *bs_lr_seed[rid], rid in diverged) for rid in steps_by_run]
    runs = make_runs(rows)
    first = {(rid, 0.5): s for rid, s in steps_by_run.items() if s is not None}
    return C._with_outcome(runs, [0.5], first)


def test_cells_median_counts_censored_runs_as_infinitely_slow():
    where = {"a1": (8, 0.1, 0), "a2": (8, 0.1, 1), "a3": (8, 0.1, 2),
             "b1": (8, 1.0, 0), "b2": (8, 1.0, 1), "b3": (8, 1.0, 2),
             "c1": (8, 3.0, 0), "c2": (8, 3.0, 1), "c3": (8, 3.0, 2)}
    t = table_of({"a1": 10, "a2": 20, "a3": None, "b1": 5, "b2": None, "b3": None,
                  "c1": None, "c2": None, "c3": None}, where, diverged={"c1", "c2", "b3"})
    c = M.cells(t).set_index("learning_rate")
    assert c.loc[0.1, "median_steps"] == 20 and c.loc[0.1, "max_steps"] == np.inf and c.loc[0.1, "n_reached"] == 2
    assert c.loc[0.1, "status"] == "reached"
    # One fast seed out of three is not a fast cell.
    assert c.loc[1.0, "median_steps"] == np.inf and c.loc[1.0, "status"] == "not reached"
    assert c.loc[3.0, "status"] == "diverged" and c.loc[3.0, "n_diverged"] == 2


def test_best_learning_rate_prefers_reliable_over_one_lucky_seed():
    where = {f"{bs}-{lr}-{s}": (bs, lr, s) for bs in (1, 8) for lr in (0.1, 1.0) for s in range(3)}
    steps = {}
    for rid, (bs, lr, s) in where.items():
        if bs == 8:
            steps[rid] = 30 + s if lr == 0.1 else (5 if s == 0 else None)
        else:
            steps[rid] = None  # nothing reaches at batch size 1
    best = M.best_learning_rate(M.cells(table_of(steps, where)), 0.5).set_index("batch_size")
    assert best.loc[8, "learning_rate"] == 0.1 and best.loc[8, "steps"] == 31
    assert (best.loc[8, "steps_min"], best.loc[8, "steps_max"]) == (30, 32)
    assert best.loc[8, "examples"] == 31 * 8 and best.loc[8, "n_lrs"] == 2
    assert not best.loc[1, "reached"] and np.isnan(best.loc[1, "steps"])


def test_scaling_curve_perfect_line_and_efficiency():
    best = pd.DataFrame({"optimizer": "sgd", "batch_size": [4, 1, 16, 64], "learning_rate": 0.1,
                         "steps": [25.0, 100.0, 10.0, np.nan], "steps_min": 0.0, "steps_max": 0.0,
                         "examples": np.nan, "n_reached": 1, "n": 1, "n_lrs": 3,
                         "reached": [True, True, True, False]})
    c = M.scaling_curve(best).set_index("batch_size")
    assert c.loc[4, "perfect_steps"] == 25 and c.loc[4, "efficiency"] == 1.0
    assert c.loc[16, "perfect_steps"] == 6.25 and c.loc[16, "efficiency"] == pytest.approx(0.625)
    assert c.loc[64, "perfect_steps"] == 100 / 64 and np.isnan(c.loc[64, "efficiency"])
    assert (c["perfect_examples"] == 100).all()


def test_diverged_fraction_and_threshold():
    runs = make_runs([(f"{bs}-{lr}-{s}", bs, lr, s, d)
                      for bs, pattern in ((8, (False, True, True)), (32, (False, True, False)))
                      for lr, d in zip((0.1, 1.0, 10.0), pattern) for s in (0, 1)])
    runs.loc[runs["run_id"].str.endswith("-1.0-1"), "diverged"] = False  # at η = 1 one seed of two survives
    f = M.diverged_fraction(runs).set_index(["batch_size", "learning_rate"])
    assert f.loc[(8, 10.0), "fraction"] == 1.0 and f.loc[(8, 1.0), "fraction"] == 0.5
    assert f.loc[(8, 0.1), "n_diverged"] == 0
    thr = M.divergence_threshold(M.diverged_fraction(runs)).set_index("batch_size")
    assert thr.loc[8, "lr_all_diverged"] == 10.0 and thr.loc[8, "lr_any_diverged"] == 1.0
    assert np.isnan(thr.loc[32, "lr_all_diverged"]) and thr.loc[32, "lr_any_diverged"] == 1.0


def test_lr_sensitivity_relative_to_best_and_divergence_is_infinite():
    runs = make_runs([("a", 8, 0.1, 0, False), ("b", 8, 1.0, 0, False), ("c", 8, 10.0, 0, True)])
    runs["metrics.final_full_train_loss"] = [0.4, 0.1, 5.0]
    s = M.lr_sensitivity(runs).set_index("learning_rate")
    assert s.loc[1.0, "relative"] == 1.0 and s.loc[0.1, "relative"] == pytest.approx(4.0)
    assert s.loc[10.0, "relative"] == np.inf and s.loc[10.0, "diverged_fraction"] == 1.0


def test_curve_noise_smooth_is_zero_and_alternating_is_known():
    k = np.arange(51)  # 50 changes, 25 up and 25 down: their mean is 0
    smooth = np.exp(-0.1 * k)                      # Δ log loss = −0.1 every step: no spread
    zigzag = np.exp(np.where(k % 2 == 0, 0.3, -0.3))  # Δ log loss = ±0.6: std 0.6
    n = M.curve_noise(make_curves({"s": smooth, "z": zigzag}, key="train_loss")).set_index("run_id")
    assert n.loc["s", "noise"] == pytest.approx(0.0, abs=1e-12)
    assert n.loc["z", "noise"] == pytest.approx(0.6)
    assert n.loc["z", "n_pairs"] == 50


def test_curve_noise_ignores_gaps_of_a_sparse_tail():
    # Dense steps 0..9 falling smoothly, then a tail every 100 steps with big jumps between.
    steps = list(range(10)) + [100, 200, 300]
    values = list(np.exp(-0.1 * np.arange(10))) + [1e-5, 1.0, 1e-5]
    n = M.curve_noise(make_curves({"r": values}, key="train_loss", steps={"r": steps}))
    assert n["noise"].iloc[0] == pytest.approx(0.0, abs=1e-12) and n["n_pairs"].iloc[0] == 9


def test_best_so_far_is_the_running_minimum_against_evaluations():
    runs = make_runs([("rs", 200, 1.0, 0, False)])
    runs["optimizer"] = "random_search"
    b = M.best_so_far(make_curves({"rs": [3.0, 5.0, 2.0, 4.0, 1.0]}), runs)
    assert b["evaluations"].tolist() == [0, 1, 2, 3, 4]
    assert b["best"].tolist() == [3.0, 3.0, 2.0, 2.0, 1.0]


def test_band_over_seeds():
    f = pd.DataFrame({"lr": 0.1, "step": [0, 0, 0, 1, 1, 1], "value": [1.0, 2.0, 4.0, 0.5, 0.6, 0.9]})
    b = M.band(f, ["lr"], "step", "value").set_index("step")
    assert b.loc[0, ["median", "lo", "hi", "n"]].tolist() == [2.0, 1.0, 4.0, 3]


def test_verdicts_separate_slow_oscillating_diverged_converged():
    runs = make_runs([("conv", 1, 0.01, 0, False), ("slow", 1, 0.07, 0, False),
                      ("osc", 1, 0.1, 0, False), ("div", 1, 0.12, 0, True)])
    k = np.arange(40)
    curves = make_curves({"conv": np.exp(-k), "slow": np.exp(-0.05 * k),
                          "osc": np.where(k % 2 == 0, 8.0, 6.0), "div": [1.0, 10.0, 1e4]})
    table = M.steps_to_target(curves, runs, [1e-6])
    v = M.verdicts(table, M.oscillation(curves)).set_index("run_id")["verdict"]
    assert v.to_dict() == {"conv": "converged", "slow": "slow", "osc": "oscillates", "div": "diverged"}
