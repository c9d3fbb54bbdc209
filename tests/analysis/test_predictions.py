"""Predicted against measured, on synthetic frames whose answers are known by construction."""

import math

import numpy as np
import pandas as pd
import pytest

from analysis import boundary as B
from analysis import noise_scales as N
from analysis import sharpness as S
from analysis.critical import fit_lr_scaling, fit_steps_examples
from analysis.figures import scaling as FG
from analysis.prose_predicted import findings_boundary
from analysis.tables import predicted_table


def frac_frame(lrs, n_diverged, n=3, bs=8):
    """A ``measures.diverged_fraction`` frame for one batch size."""
    return pd.DataFrame({"optimizer": "sgd", "batch_size": bs, "learning_rate": lrs, "n": n,
                         "n_diverged": n_diverged, "fraction": np.asarray(n_diverged) / n})


def runs_frame(rows):
    """Runs from (run_id, batch_size, lr, seed, full_batch, diverged)."""
    df = pd.DataFrame(rows, columns=["run_id", "batch_size", "learning_rate", "seed", "full_batch", "diverged"])
    df["optimizer"] = "sgd"
    return df


def curves_frame(points):
    """Tidy curves from (run_id, key, step, value)."""
    return pd.DataFrame(points, columns=["run_id", "key", "step", "value"])


def test_bracket_lies_between_highest_stable_and_lowest_diverged():
    # Partial divergence at 1.0 (one seed) already counts as diverged.
    b = B.divergence_bracket(frac_frame([0.1, 0.3, 1.0, 3.0], [0, 0, 1, 3])).iloc[0]
    assert (b["highest_stable"], b["lowest_diverged"], b["largest_stable"]) == (0.3, 1.0, 0.3)
    assert b["midpoint"] == pytest.approx(math.sqrt(0.3)) and b["monotone"]
    c = B.compare_boundary(B.divergence_bracket(frac_frame([0.1, 0.3, 1.0, 3.0], [0, 0, 1, 3])), 0.5).iloc[0]
    assert c["position"] == "inside" and c["ratio"] == pytest.approx(0.5 / math.sqrt(0.3)) and c["factor_off"] == 1
    # The bracket's ends count as inside: the boundary is somewhere in (0.3, 1.0].
    assert B.compare_boundary(B.divergence_bracket(frac_frame([0.3, 1.0], [0, 3])), 1.0).iloc[0]["position"] == "inside"


@pytest.mark.parametrize("predicted, position, factor_off", [(0.06, "below", 5.0), (2.5, "above", 2.5)])
def test_prediction_outside_the_bracket_says_by_how_much(predicted, position, factor_off):
    c = B.compare_boundary(B.divergence_bracket(frac_frame([0.1, 0.3, 1.0, 3.0], [0, 0, 1, 3])), predicted).iloc[0]
    lo_hi = {"below": 0.3, "above": 1.0}[position]
    assert c["position"] == position
    assert c["factor_off"] == pytest.approx(factor_off if position == "above" else lo_hi / predicted)


def test_open_brackets_no_divergence_all_diverged_and_non_monotone():
    none = B.divergence_bracket(frac_frame([0.1, 1.0], [0, 0])).iloc[0]
    assert np.isnan(none["lowest_diverged"]) and none["lo"] == 1.0 and none["hi"] == math.inf
    assert np.isnan(none["midpoint"])
    assert B.compare_boundary(B.divergence_bracket(frac_frame([0.1, 1.0], [0, 0])), 5.0).iloc[0]["position"] == "inside"
    low = B.compare_boundary(B.divergence_bracket(frac_frame([0.1, 1.0], [0, 0])), 0.25).iloc[0]
    assert low["position"] == "below" and low["factor_off"] == pytest.approx(4.0)
    every = B.divergence_bracket(frac_frame([0.1, 1.0], [3, 3])).iloc[0]
    assert np.isnan(every["highest_stable"]) and every["lo"] == 0 and every["hi"] == 0.1
    # Stable again above the first divergence: the bracket uses the first, and says it is not monotone.
    odd = B.divergence_bracket(frac_frame([0.1, 0.3, 1.0, 3.0], [0, 2, 0, 3])).iloc[0]
    assert (odd["highest_stable"], odd["lowest_diverged"], odd["largest_stable"]) == (0.1, 0.3, 1.0)
    assert not odd["monotone"]


def test_stability_at_init_is_the_median_over_seeds_of_each_seeds_median():
    runs = runs_frame([("a", 8, 0.1, 0, False, False), ("b", 8, 1.0, 0, False, False),
                       ("c", 8, 0.1, 1, False, False), ("d", 8, 0.1, 2, False, False)])
    lam = {"a": 2.0, "b": 2.0, "c": 4.0, "d": 1.0}  # seeds: 2, 4, 1 → median 2 → 2/λ = 1
    pts = [(r, "sharpness", 0, v) for r, v in lam.items()] + [(r, "stability_lr", 0, 2 / v) for r, v in lam.items()]
    pts += [("a", "stability_lr", 10, 100.0)]  # a later step never counts
    init = B.stability_at_init(curves_frame(pts), runs).iloc[0]
    assert init["stability_lr"] == pytest.approx(1.0) and init["sharpness"] == pytest.approx(2.0)
    assert (init["stability_lr_min"], init["stability_lr_max"], init["n_seeds"]) == (0.5, 2.0, 3)
    assert init["factor"] == pytest.approx(2.0)
    assert B.stability_at_init(curves_frame(pts).iloc[0:0], runs).empty


def test_edge_of_stability_measures_full_batch_runs_against_2_over_eta():
    runs = runs_frame([("f1", 100, 0.5, 0, True, False), ("f2", 100, 0.1, 0, True, False),
                       ("once", 100, 2.0, 0, True, True), ("mini", 10, 0.5, 0, False, False)])
    pts = [("f1", "sharpness", s, v) for s, v in [(0, 6.0), (10, 3.8), (20, 4.1)]]  # 2/η = 4: hovers at it
    pts += [("f2", "sharpness", s, v) for s, v in [(0, 6.0), (10, 8.0), (20, 7.0)]]  # 2/η = 20: below
    pts += [("once", "sharpness", 0, 6.0), ("mini", "sharpness", 0, 6.0), ("mini", "sharpness", 10, 5.0)]
    e = S.edge_of_stability(curves_frame(pts), runs).set_index("run_id")
    assert sorted(e.index) == ["f1", "f2"]  # diverged before a second measurement; not full batch: left out
    assert e.loc["f1", "bound"] == pytest.approx(4.0) and e.loc["f1", "end_over_bound"] == pytest.approx(4.1 / 4)
    assert e.loc["f2", "max_over_bound"] == pytest.approx(8 / 20) and e.loc["f2", "last_step"] == 20
    # With momentum β = 0.9 the bound is (2 + 2β)/η.
    assert S.edge_of_stability(curves_frame(pts), runs, 3.8).set_index("run_id").loc["f1", "bound"] == \
        pytest.approx(7.6)


def test_noise_scale_is_taken_at_the_measured_step_closest_to_the_target():
    pts = [(r, "gradient_noise_scale", s, 100 * k + s) for k, r in enumerate(["s0", "s1", "s2", "other"])
           for s in (0, 10, 20, 30)]
    table = pd.DataFrame({"run_id": ["s0", "s1", "s2", "other"], "optimizer": "sgd", "batch_size": 8,
                          "learning_rate": [0.1, 0.1, 0.1, 0.3], "reached": True, "steps": [14.0, 15.0, 16.0, 1.0]})
    best = pd.DataFrame({"optimizer": ["sgd"], "batch_size": [8], "learning_rate": [0.1], "reached": [True]})
    near = N.noise_scale_near_target(curves_frame(pts), table, best).iloc[0]
    # 14 → step 10; 15 is a tie between 10 and 20 → the earlier, 10; 16 → 20.
    assert near["measured_steps"] == "10, 20" and near["max_gap"] == 5
    assert near["b_simple"] == pytest.approx(np.median([10, 110, 220]))
    assert (near["b_simple_min"], near["b_simple_max"], near["n"], near["target_step"]) == (10, 220, 3, 15)


def test_headline_noise_scale_is_the_one_measured_closest_to_its_target():
    near = pd.DataFrame({"batch_size": [1, 8, 256], "b_simple": [50.0, 60.0, 10.0], "rel_gap": [0.1, 0.1, 1.0]})
    assert N.headline_noise_scale(near)["batch_size"] == 8  # a tie goes to the larger batch
    assert N.headline_noise_scale(near.iloc[0:0]) is None


def test_critical_fits_recover_exact_parameters_from_the_best_per_batch_size():
    B = np.array([1, 4, 16, 64, 256, 1024], float)
    S = 10 + 1000 / B
    eps = 0.5 / (1 + 20 / B)
    best = pd.DataFrame({"batch_size": B, "steps": S, "examples": S * B, "learning_rate": eps, "reached": True})
    best.loc[len(best)] = [4096.0, np.nan, np.nan, np.nan, False]  # not reached: dropped, not fitted
    f = N.critical_fits(best)
    assert f.steps_examples.b_crit == pytest.approx(100) and f.steps_examples.n_points == 6
    assert f.lr_scaling.b_noise == pytest.approx(20) and f.lr_scaling.eps_max == pytest.approx(0.5)


def test_boundary_finding_and_table_say_inside_or_how_far_outside():
    init = pd.Series({"optimizer": "sgd", "sharpness": 1.307, "stability_lr": 1.53, "stability_lr_min": 1.53,
                      "stability_lr_max": 1.53, "n_seeds": 1, "factor": 2.0})
    frac = pd.concat([frac_frame([1.0, 1.4, 1.7, 3.0], [0, 0, 1, 1], n=1, bs=256),
                      frac_frame([1.0, 1.4, 1.7, 3.0], [1, 1, 1, 1], n=1, bs=4)])
    cmp = B.compare_boundary(B.divergence_bracket(frac), 1.53)
    text = " ".join(findings_boundary(cmp, init, full=256))
    assert "2/λ_max at initialisation = 1.53 (λ_max = 1.31; one seed) predicts the divergence boundary at full " \
           "batch (256): runs diverged at η ≥ 1.7 and did not diverge at η ≤ 1.4" in text
    assert "geometric midpoint 1.54" in text and "the prediction is inside the bracket" in text
    assert "4: diverged already at the smallest η = 1" in text
    fits = N.CriticalFits(fit_steps_examples([20, 5, 1], [80, 80, 256]), fit_lr_scaling([4, 16], [0.3, 0.3]))
    t = predicted_table(cmp, init, 256, [(0.06, None, fits, "not logged")], "").set_index("quantity")
    row = t.loc["divergence boundary, full batch (256)"]
    assert row["agreement"] == "inside the bracket"
    assert row["predicted ÷ measured"] == f"{1.53 / math.sqrt(1.4 * 1.7):.2g}"
    assert "in (1.4, 1.7]" in row["measured"]
    # Every η diverged at batch size 4: the boundary is in (0, 1.0], and 1.53 is 1.5× above it.
    assert t.loc["divergence boundary, batch size 4 (bound derived for full batch)", "agreement"] == \
        "1.5× above the bracket"
    crit = t.loc["critical batch size, loss 0.06: B_simple vs B_noise"]
    assert "B_simple not available: not logged" in crit["predicted"]
    assert "B_noise not fitted: 2 usable" in crit["measured"]


@pytest.mark.parametrize("value, y, note", [(1.0, 1.0, ""), (math.sqrt(10), 1.5, ""), (100.0, 2.5, "above"),
                                            (0.01, -0.5, "below")])
def test_a_learning_rate_is_placed_between_the_rows_of_a_log_grid(value, y, note):
    pos, text = FG._grid_position(value, [0.1, 1.0, 10.0])
    assert pos == pytest.approx(y) and note in text


def test_noise_scale_at_loss_takes_the_full_batch_measurement_nearest_the_target():
    import pandas as pd

    from analysis.noise_scales import noise_scale_at_loss

    runs = pd.DataFrame({"run_id": ["a", "b", "c"], "full_batch": [True, True, False],
                         "optimizer": ["sgd"] * 3, "batch_size": [100, 100, 8], "learning_rate": [0.1, 0.2, 0.1]})
    rows = []
    for rid, losses, gns in (("a", [1.0, 0.52, 0.2], [10, 20, 30]), ("b", [1.0, 0.3, 0.1], [11, 21, 31]),
                             ("c", [0.5, 0.5, 0.5], [999, 999, 999])):
        for step, (l, g) in zip((0, 10, 20), zip(losses, gns)):
            rows += [(rid, "full_train_loss", step, l), (rid, "gradient_noise_scale", step, g)]
    curves = pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])
    head = noise_scale_at_loss(curves, runs, 0.5)
    # run a: loss 0.52 at step 10 → 20; run b: nearest is 0.3 (within 1.5×? 0.5/0.3 = 1.67: no); c is not full batch
    assert head["n"] == 1 and head["b_simple"] == 20 and head["measured_steps"] == "10"
    assert noise_scale_at_loss(curves, runs, 1e-6) is None
