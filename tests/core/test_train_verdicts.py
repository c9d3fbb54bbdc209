"""What the compiled loop concludes: divergence, steps-to-target intervals, when diagnostics run.

Each test is built so that the rule the loop used before would fail it: a minibatch
loss over the limit from one outlier label (once: "diverged"), a crossing between two
evaluations (once: one number, the later evaluation), diagnostics only at evaluation
steps (once: nothing between step 0 and the first multiple of ``every``).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpresearch.core import losses, models, optim, train
from bpresearch.core.data import Dataset


def make(spec, d=1, bias=False):
    return train.make_run(models.neuron(d, bias=bias, init="zeros"), losses.half_mse,
                          partial(optim.make_method, "sgd"), spec)


def outlier_problem(n=64, d=3, seed=0, outlier=40.0):
    """Teacher data with one wild label: its per-example loss at w = 0 is n × the mean's share."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)).astype(np.float32)
    y[7] = outlier
    return X, y


def test_one_outlier_label_is_not_a_divergence_but_a_real_blow_up_is():
    X, y = outlier_problem()
    factor = 10.0  # limit = 10·L0: the outlier's own loss (≈ n·L0 here) is far above it
    steps, E = 61, 8  # 64 scanned steps: 3 padded past the budget
    spec = train.TrainSpec(steps, E, 1, divergence_factor=factor)
    program = train.make_group_program(make(spec, d=3))
    lrs = jnp.array([1e-3] * 7 + [5.0], jnp.float32)
    out = jax.device_get(program(Dataset(jnp.asarray(X), jnp.asarray(y)), lrs, jnp.zeros(8), jnp.arange(8)))

    L0 = 0.5 * np.mean(y.astype(np.float64) ** 2)
    limit = factor * max(L0, 1.0)
    small = slice(0, 7)
    # the old rule's trigger happened: some batch-1 losses (the outlier drawn) were over the limit …
    assert (np.asarray(out["train_loss"][small]) > limit).any(axis=1).sum() >= 2
    # … yet the full training loss never rose above its start, so none of them diverged
    assert np.nanmax(out["full_train_loss"][small]) <= L0 * (1 + 1e-4)
    assert not out["diverged"][small].any()
    assert (out["diverged_step"][small] == -1).all()
    # η = 5 at batch size 1 on |x|² ≈ 3 really blows up: the full loss confirms it, within the budget
    assert out["diverged"][7] and 0 < out["diverged_step"][7] <= steps


def test_padded_steps_past_the_budget_never_count():
    # two examples, losses 0 and 2·L0 at w = 0; η = 0, so nothing moves and nothing can
    # diverge. A budget of 1 step with E = 8 scans 7 padded steps, whose minibatches draw the
    # second example (loss over the limit 1.5·L0) in about half the seeds: they must not count.
    X, y = np.ones((2, 1), np.float32), np.array([0.0, 2.0], np.float32)
    program = train.make_group_program(make(train.TrainSpec(1, 8, 1, divergence_factor=1.5)))
    out = jax.device_get(program(Dataset(jnp.asarray(X), jnp.asarray(y)), jnp.zeros(16), jnp.zeros(16),
                                 jnp.arange(16)))
    assert not out["diverged"].any() and (out["diverged_step"] == -1).all()
    np.testing.assert_allclose(out["final_full_train_loss"], 1.0)
    # a real blow-up inside the budget is still caught at its step: one example (x = 1, y = 1),
    # η = 3: the loss after k updates is ½·4^k, over 1000 from k = 6
    data = Dataset(jnp.ones((1, 1)), jnp.ones(1))
    out = jax.jit(make(train.TrainSpec(7, 4, 1, divergence_factor=1e3)))(data, 3.0, 0.0, 0)
    assert bool(out["diverged"]) and int(out["diverged_step"]) == 6


def test_steps_to_target_is_an_interval_around_the_true_crossing():
    # identical rows: every minibatch equals the full set, so the loss after k updates is
    # exactly ½(1 − η)^{2k} = ½·4^{−k} at η = 0.5, at any batch size; the true first
    # crossings of 0.2, 0.1 and 0.01 are steps 1, 2 and 3 (0.125, 0.031, 0.0078).
    X, y = np.ones((4, 1), np.float32), np.ones(4, np.float32)
    data = Dataset(jnp.asarray(X), jnp.asarray(y))
    targets = (0.2, 0.1, 0.01, 1e-30)
    true = [1, 2, 3]
    mini = jax.jit(make(train.TrainSpec(12, 5, 2, targets=targets)))(data, 0.5, 0.0, 0)
    full = jax.jit(make(train.TrainSpec(12, 5, 4, targets=targets)))(data, 0.5, 0.0, 0)
    lo, hi = np.asarray(mini["steps_above_target"]), np.asarray(mini["steps_to_target"])
    # evaluated at 0, 5, 10, 12: every crossing lies in (0, 5]; the old answer "5" alone hid it
    assert list(hi) == [5, 5, 5, -1] and list(lo) == [0, 0, 0, 12]
    assert all(lo[i] < s <= hi[i] for i, s in enumerate(true))
    # full batch: step resolution, an interval one step wide around the same crossings
    assert list(full["steps_to_target"]) == [1, 2, 3, -1]
    assert list(full["steps_above_target"]) == [0, 1, 2, 12]


def test_diagnostics_are_dense_early_then_every_every():
    assert list(train.diag_schedule(100, 45)) == [0, 1, 2, 4, 8, 16, 32, 45, 90]
    assert list(train.diag_schedule(10, 1)) == list(range(10))
    assert list(train.diag_schedule(6, 16)) == [0, 1, 2, 4]
    # a linear model's Hessian XᵀX/N is constant: every scheduled full-batch measurement is λ_max
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(32, 2)) * [1.0, 0.3]).astype(np.float32)
    y = rng.normal(size=32).astype(np.float32)
    data = Dataset(jnp.asarray(X), jnp.asarray(y))
    lam = np.linalg.eigvalsh(X.astype(np.float64).T @ X / 32).max()
    spec = train.TrainSpec(20, 5, 32, diag_every=10, sharpness=True, noise_scale=True, hessian_noise_scale=True)
    out = jax.jit(make(spec, d=2))(data, 0.1, 0.0, 0)
    assert out["sharpness"].shape == (len(train.diag_schedule(20, 10)),)  # steps 0, 1, 2, 4, 8, 10
    np.testing.assert_allclose(out["sharpness"], lam, rtol=1e-4)
    # both noise scales at step 0 (w = 0): B_noise = tr(HΣ)/(GᵀHG), B_simple = tr(Σ)/|G|²
    g = X.astype(np.float64) * -y[:, None]  # per-example gradients at w = 0
    G, H = g.mean(0), X.astype(np.float64).T @ X / 32
    S = (g - G).T @ (g - G) / 32
    assert float(out["hessian_noise_scale"][0]) == pytest.approx(np.trace(H @ S) / (G @ H @ G), rel=1e-3)
    assert float(out["noise_scale"][0]) == pytest.approx(np.trace(S) / (G @ G), rel=1e-3)
    # minibatch runs: step 0 only (each measurement is a pass over the whole set)
    out = jax.jit(make(spec._replace(batch_size=4), d=2))(data, 0.1, 0.0, 0)
    assert np.isfinite(out["sharpness"][0]) and np.isnan(out["sharpness"][1:]).all()
