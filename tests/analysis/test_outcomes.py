"""Outcomes named for what happened: unstable, collapsed, lost against noise, the edge of stability.

Each on data whose answer is known: least squares with Hessian eigenvalues (4, 2, 1, 0.5)
trained for real (2/λ_max = 0.5 exactly), and synthetic curves planted with a collapse to
ln 10 or a target in the noise floor.
"""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from analysis import load
from analysis import measures as M
from analysis import sharpness as S
from analysis.groups import split_groups
from analysis.predictions import predict
from analysis.prose_outcomes import findings_outcomes
from analysis.prose_predicted import findings_boundary, findings_sharpness
from analysis.shapes import noise_floor, run_shapes
from analysis.summary import variant_summary
from bpresearch import keys as R
from bpresearch import verdicts as V
from bpresearch.cli import main

SPECTRUM = np.array([4.0, 2.0, 1.0, 0.5])   # Hessian eigenvalues: 2/λ_max = 0.5
LRS = [0.25, 0.47, 0.502, 0.55]
QUADRATIC = """\
name = "quadratic"
[data]
source = "file"
path = "q.npz"
[model]
kind = "neuron"
activation = "identity"
bias = false
init = "zeros"
[loss]
kind = "half_mse"
[train]
steps = 300
eval_every = 1
targets = [1e-3]
[sweep]
learning_rate = [0.25, 0.47, 0.502, 0.55]
batch_size = ["full"]
seeds = 1
[diagnostics]
every = 10
sharpness = true
noise_scale = false
"""


def exact_losses(lr: float, steps: int = 300) -> np.ndarray:
    """Full-batch gradient descent on ½·mean((Xw − y)²) from w = 0, y = X·½: each residual along
    eigenvalue λ scales by (1 − ηλ) per step; the loss is ½·Σλ·(w* − w)²."""
    t = np.arange(steps + 1)[:, None]
    return 0.5 * (SPECTRUM * 0.25 * (1 - lr * SPECTRUM) ** (2 * t)).sum(axis=1)


@pytest.fixture(scope="module")
def quadratic(tmp_path_factory):
    """The quadratic swept for real: the runs frame and curves as the report loads them."""
    tmp = tmp_path_factory.mktemp("quadratic")
    X = np.diag(np.sqrt(4 * SPECTRUM))           # 4 examples: XᵀX/N = diag(4, 2, 1, 0.5)
    np.savez(tmp / "q.npz", X=X.astype(np.float32), y=(X @ np.full(4, 0.5)).astype(np.float32))
    (tmp / "quadratic.toml").write_text(QUADRATIC)
    uri = f"sqlite:///{tmp}/mlflow.db"
    assert main(["sweep", str(tmp / "quadratic.toml"), "--tracking-uri", uri]) == 0
    runs = load.load_experiment(uri, "quadratic").runs
    curves = load.load_curves(uri, runs["run_id"], R.CURVE_KEYS + R.DIAGNOSTIC_KEYS)
    return runs.sort_values("learning_rate").reset_index(drop=True), curves


def test_the_quadratic_just_above_two_over_lambda_is_unstable_not_stable(quadratic):
    runs, curves = quadratic
    lr = dict(zip(runs["run_id"], runs["learning_rate"]))
    full = curves[curves["key"] == R.FULL_TRAIN_LOSS].sort_values("step")
    for run_id, g in full.groupby("run_id"):   # what was trained is the exact recursion (float32)
        v = g["value"].to_numpy()
        exact = exact_losses(lr[run_id])[g["step"].to_numpy()]
        ok = np.isfinite(v) & (exact < 1e4)
        np.testing.assert_allclose(v[ok], exact[ok], rtol=1e-3, atol=1e-6)
    # η = 0.502: the loss grows ×(1.008)² per step, from 0.94 to ≈ 60, under the 1000× divergence limit
    at = runs.set_index("learning_rate")["diverged"].to_dict()
    assert not at[0.502] and at[0.55] and not at[0.47]
    shapes = run_shapes(curves, runs).set_index("run_id")["unstable"].rename(index=lr).to_dict()
    assert shapes == {0.25: False, 0.47: False, 0.502: True, 0.55: False}   # a diverged run is diverged

    table = M.steps_to_targets(runs, curves, [1e-3]).table.set_index("learning_rate")["outcome"].to_dict()
    assert table == {0.25: V.REACHED, 0.47: V.REACHED, 0.502: V.UNSTABLE, 0.55: V.DIVERGED}

    pred = predict(runs, curves, M.steps_to_targets(runs, curves, [1e-3]).table, {}, 4)
    r = pred.cmp.iloc[0]
    assert pred.init["stability_lr"] == pytest.approx(0.5, rel=1e-4)
    assert (r["highest_stable"], r["lowest_diverged"], r["position"]) == (0.47, 0.502, "inside")
    assert r["lowest_unstable"]
    text = findings_boundary(pred.cmp, pred.init, 4)[0]
    assert "inside the bracket" in text and "grew unstable" in text and "below the bracket" not in text


def test_constant_sharpness_is_never_the_edge_of_stability(quadratic):
    runs, curves = quadratic
    reg = S.sharpness_regimes(curves, runs).set_index("learning_rate")
    # λ_max is 4 at every step: sharpness ÷ 2/η = 2η, constant; η = 0.47, 0.502 sit in the ±10% band from step 0
    assert reg["ratio_min"].to_numpy() == pytest.approx(reg["ratio_max"].to_numpy(), rel=1e-3)
    assert reg.loc[0.47, "edge_points"] >= 3
    assert reg["regime"].to_dict() == {0.25: V.CONSTANT, 0.47: V.CONSTANT, 0.502: V.UNSTABLE, 0.55: V.DIVERGED}
    found = " ".join(findings_sharpness(reg.reset_index(), 2.0, 10, S.EOS_BAND, S.EOS_STRETCH))
    assert found.startswith("No full-batch run was at the edge of stability") and "Unstable at η = 0.502" in found
    assert "At η = 0.25, 0.47 the sharpness was constant (within ±10%) at 0.5–0.94× 2/η" in found


def test_the_edge_of_stability_needs_a_rise_from_below_that_stays():
    rising = [0.3, 0.5, 0.8, 0.95, 1.02, 0.98, 1.01]
    assert V.sharpness_regime(rising).regime == V.EOS
    assert V.sharpness_regime(rising, diverged=True).regime == V.DIVERGED
    assert V.sharpness_regime(rising[:-1] + [0.7]).regime == V.ROSE            # left the band: did not stay
    for edge in (0.9, 1.1):   # a constant sharpness at either edge of the band, with estimation noise
        noisy = [edge * (1 + e) for e in (-1e-3, 1e-3, 2e-3, -2e-3, 1e-3)]
        assert V.sharpness_regime(noisy).regime == V.sharpness_regime(noisy[::-1]).regime == V.CONSTANT
    assert V.sharpness_regime([1.3, 1.1, 0.95, 0.95, 0.95]).regime == V.SETTLED          # from above: not the edge
    assert V.sharpness_regime([2.0, 0.4, 0.45]).regime == V.CATAPULT


# ---------------------------------------------------------------- a network collapsed to chance
def collapsed_run(end_loss: float, end_grad: float, n: int = 60):
    """One full-batch cross-entropy run: the loss falls from 2.5 to ``end_loss`` and sits there; the
    gradient norm falls from 1 to ``end_grad``; the sharpness starts at 4× 2/η and falls to 0.1×."""
    lr = 2.84
    runs = pd.DataFrame({"run_id": ["a"], "optimizer": "sgd", "batch_size": [1437], "learning_rate": [lr],
                         "seed": [0], "full_batch": [True], "diverged": [False], "steps": [n],
                         "params.loss.kind": ["cross_entropy"]})
    step = np.arange(n + 1)
    loss = np.where(step < 5, 2.5 - (2.5 - end_loss) * step / 5, end_loss)
    grad = np.where(step < 5, 1.0, end_grad)
    sharp = np.where(step < 10, 4.0, 0.1) * 2 / lr
    pts = [("a", k, s, v) for k, vals in ((R.FULL_TRAIN_LOSS, loss), (R.GRAD_NORM, grad), (R.SHARPNESS, sharp))
           for s, v in zip(step, vals) if k != R.SHARPNESS or s % 5 == 0]
    return runs, pd.DataFrame(pts, columns=["run_id", "key", "step", "value"])


def test_a_network_stuck_at_ln_k_with_no_gradient_is_collapsed_not_a_catapult():
    runs, curves = collapsed_run(math.log(10), 1e-8)
    reg = S.sharpness_regimes(curves, runs).iloc[0]
    assert reg["regime"] == V.COLLAPSED and reg["chance_k"] == 10 and reg["drop_step"] >= 0
    found = " ".join(findings_sharpness(S.sharpness_regimes(curves, runs), 2.0, 5, S.EOS_BAND, S.EOS_STRETCH))
    assert "chance for 10 classes" in found and "Catapult" not in found
    table = M.steps_to_targets(runs, curves, [0.5]).table
    assert table["outcome"].tolist() == [V.COLLAPSED] and not table["reached"].any()
    assert "1 run collapsed" in " ".join(findings_outcomes(curves, table, M.best_learning_rate(M.cells(table), 0.5),
                                                           0.5, 1437))
    # the same drop with a loss off chance, or a gradient that did not vanish, stays a catapult
    for end_loss, end_grad in ((1.479, 1e-8), (math.log(10), 0.05)):
        runs, curves = collapsed_run(end_loss, end_grad)
        assert S.sharpness_regimes(curves, runs).iloc[0]["regime"] == V.CATAPULT


def test_a_minibatch_run_that_learned_then_fell_back_to_ln_k_is_collapsed():
    """Batch size 8: the full loss falls below the target 0.5, then jumps back to ln 10 and stays
    just above it while the minibatch gradient stays large (the output bias keeps seeing each batch's
    class mix). It counts at its first crossing, named "reached, then collapsed"; a run that
    never left chance (too small a learning rate) is only not reached."""
    ln10, step = math.log(10), np.arange(0, 301, 5)
    jitter = ln10 + 0.004 + 0.03 * np.abs(np.sin(step))              # above chance only, as in digits-mlp at bs 8
    learned = np.where(step < 100, 2.3 - 1.9 * step / 100, np.where(step < 150, 0.4, jitter))
    stuck = np.full(step.size, ln10) - 1e-4 * step / 300            # hardly moves from its start at chance
    runs = pd.DataFrame({"run_id": ["a", "b"], "optimizer": "sgd", "batch_size": 8, "learning_rate": [4.0, 1e-4],
                         "seed": 0, "full_batch": False, "diverged": False, "steps": 300,
                         "params.loss.kind": "cross_entropy", f"metrics.{R.FINAL_LOSS}": [ln10, stuck[-1]]})
    grad = np.full(step.size, 0.8)                                   # a minibatch's: it never vanishes
    curves = pd.DataFrame([(rid, k, s, v) for rid, loss in (("a", learned), ("b", stuck))
                           for k, vals in ((R.FULL_TRAIN_LOSS, loss), (R.GRAD_NORM, grad)) for s, v in zip(step, vals)],
                          columns=["run_id", "key", "step", "value"])
    shapes = run_shapes(curves, runs).set_index("run_id")
    assert shapes.loc["a", "chance_k"] == 10 and shapes.loc["b", "chance_k"] == 0
    table = M.steps_to_targets(runs, curves, [0.5]).table.set_index("run_id")
    assert table.loc["a", "outcome"] == V.COLLAPSED_AFTER and V.counts(table.loc["a", "outcome"])
    assert table.loc["b", "outcome"] == V.NOT_REACHED
    assert V.chance_collapse(learned) == 10 and V.chance_collapse(learned, grad) == 0   # full batch: needs grad → 0
    # an evaluation better than chance at the end, a level well above it, or flat off chance: no collapse
    assert V.chance_collapse(np.r_[learned[:-1], 2.25]) == 0
    assert V.chance_collapse(np.where(step < 150, learned, 1.05 * ln10)) == 0
    assert V.chance_collapse(np.where(step < 150, learned, 1.479)) == 0


# ---------------------------------------------------------------- a target in the noise floor
def test_one_noisy_evaluation_does_not_lose_a_target_in_the_noise_floor():
    """Target 0.047 at batch size 4: every seed crossed by step 113 and hovers at 0.0468 ± 0.0003;
    two seeds' last evaluation reads 0.047092."""
    rng = np.random.default_rng(0)
    steps = np.arange(0, 301, 5)
    runs, pts = [], []
    for seed in range(4):
        loss = np.maximum(0.0468 + 0.0002 * rng.standard_normal(steps.size), 0.0466)
        cross = 95 + 5 * seed                                  # crossed at step 95 … 110
        loss = np.where(steps < cross, 1.0 - steps / 120, np.where(steps == cross, 0.0467, loss))
        if seed < 2:
            loss[-1] = 0.047092
        runs.append({"run_id": f"s{seed}", "optimizer": "sgd", "batch_size": 4, "learning_rate": 0.04, "seed": seed,
                     "diverged": False, "steps": 300, "full_batch": False,
                     f"metrics.{R.FINAL_LOSS}": loss[-1]})
        pts += [(f"s{seed}", R.FULL_TRAIN_LOSS, s, v) for s, v in zip(steps, loss)]
    runs, curves = pd.DataFrame(runs), pd.DataFrame(pts, columns=["run_id", "key", "step", "value"])
    table = M.steps_to_targets(runs, curves, [0.047]).table
    assert (table["first_steps"] <= 113).all()
    assert table["outcome"].tolist() == [V.REACHED] * 4          # not "reached, then lost" on one evaluation
    best = M.best_learning_rate(M.cells(table), 0.047)
    floor = noise_floor(curves, table, best).iloc[0]
    assert floor["floor_lo"] < 0.047 <= floor["floor_hi"] == pytest.approx(0.047092) and floor["runs"] == 4
    assert "sits in the noise floor" in " ".join(findings_outcomes(curves, table, best, 0.047, None))
    # summary.json flags it too, with the numbers the page prints; a target clear of the floor is not flagged
    runs["params.train.targets"] = "[0.047, 0.5]"
    variant = SimpleNamespace(overrides={}, facets=[], label="base", slug="base", base=True, runs=runs)
    cell = variant_summary(variant, split_groups(runs, curves, []))["cells"][0]
    flag = cell["targets"]["0.047"]["noise_floor"]
    assert flag == {"learning_rate": 0.04, "lo": pytest.approx(floor["floor_lo"]), "hi": pytest.approx(0.047092),
                    "runs": 4}
    assert cell["targets"]["0.5"]["noise_floor"] is None
    # lost when the last few evaluations are above, and a target well above the floor is not flagged
    curves.loc[curves["step"] >= 280, "value"] = 0.0475
    assert set(M.steps_to_targets(runs, curves, [0.047]).table["outcome"]) == {V.LOST}
    assert noise_floor(curves, M.steps_to_targets(runs, curves, [0.5]).table,
                       M.best_learning_rate(M.cells(M.steps_to_targets(runs, curves, [0.5]).table), 0.5)).empty


# ---------------------------------------------------------------- the rules, and the refiner kept
def test_unstable_ended_above_its_start_or_rose_steadily():
    assert V.unstable(exact_losses(0.502)) and not V.unstable(exact_losses(0.47))
    falling_then_rising = np.concatenate([np.geomspace(1, 1e-3, 60), np.geomspace(1e-3, 1e-2, 20)])
    assert V.unstable(falling_then_rising)
    assert not V.unstable(np.concatenate([np.geomspace(1, 1e-3, 60), np.full(20, 1e-3)]))
    assert not V.unstable([1.0, np.inf, 2.0])                   # non-finite: diverged, judged by that
    assert V.end_level([5, 1, 1, 1, 9]) == 1 and V.chance_classes(math.log(10)) == 10
    assert V.chance_classes(1.479) == 0


@pytest.mark.parametrize("unstable, collapsed", [(True, False), (False, True), (True, True)])
def test_a_crossed_run_counts_whatever_its_curve_did_as_the_refiner_counts_it(unstable, collapsed):
    # the refiner has no curves: it counts a crossed, non-diverged run at its first crossing
    for final in (0.1, 0.7):
        out = V.outcome(10, False, final, 0.5, unstable, collapsed)
        assert V.counts(out) == V.counts(V.outcome(10, False, final, 0.5)) is True
    assert not V.counts(V.outcome(None, False, 0.7, 0.5, unstable, collapsed))
    assert V.outcome(10, True, 0.7, 0.5, unstable, collapsed) == V.DIVERGED_AFTER
