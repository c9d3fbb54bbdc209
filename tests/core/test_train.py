"""The compiled training loop against mathematics: closed forms, numpy, the seed's numbers."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpresearch.core import losses, models, optim, train
from bpresearch.core.data import Dataset
from bpresearch.core.seed import seed_example


def linear_problem(n=64, d=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)).astype(np.float32)
    return X, y


def make(model, spec, kind="sgd", loss=losses.half_mse):
    return train.make_run(model, loss, partial(optim.make_method, kind), spec)


def run_one(run, data, lr, momentum=0.0, seed=0):
    return jax.jit(run)(data, jnp.float32(lr), jnp.float32(momentum), jnp.int32(seed))


def test_eval_steps_convention():
    assert list(train.eval_steps(10, 3)) == [0, 3, 6, 9, 10]
    assert list(train.eval_steps(9, 3)) == [0, 3, 6, 9]
    assert list(train.eval_steps(5, 1)) == [0, 1, 2, 3, 4, 5]


def test_full_batch_gd_matches_numpy_and_reaches_least_squares():
    X, y = linear_problem()
    n, d = X.shape
    steps, lr = 400, 0.3
    run = make(models.neuron(d, bias=False, init="zeros"), train.TrainSpec(steps, 1, n))
    out = run_one(run, Dataset(jnp.asarray(X), jnp.asarray(y)), lr)

    # the same updates in plain numpy (float64): w ← w − η Xᵀ(Xw − y)/n
    w = np.zeros(d)
    curve = []
    for _ in range(steps + 1):
        curve.append(0.5 * np.mean((X @ w - y) ** 2))
        w = w - lr * X.T @ (X @ w - y) / n
    np.testing.assert_allclose(out["full_train_loss"], curve, rtol=1e-5)
    np.testing.assert_allclose(out["train_loss"], curve[:-1], rtol=1e-5)  # full batch: minibatch = full set

    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    opt = 0.5 * np.mean((X @ w_star - y) ** 2)
    assert float(out["final_full_train_loss"]) == pytest.approx(opt, rel=1e-4)
    assert not bool(out["diverged"])


def test_grad_norm_is_the_gradient_norm():
    X, y = linear_problem(n=16, d=3)
    run = make(models.neuron(3, bias=False, init="zeros"), train.TrainSpec(1, 1, 16))
    out = run_one(run, Dataset(jnp.asarray(X), jnp.asarray(y)), 0.1)
    g = X.T @ (X @ np.zeros(3) - y) / 16
    assert float(out["grad_norm"][0]) == pytest.approx(np.linalg.norm(g), rel=1e-5)


def test_same_seed_gives_bitwise_identical_curves():
    X, y = linear_problem()
    run = make(models.mlp(5, 1, (8,), "tanh"), train.TrainSpec(200, 10, 8))
    data = Dataset(jnp.asarray(X), jnp.asarray(y))
    a, b = run_one(run, data, 0.05, seed=3), run_one(run, data, 0.05, seed=3)
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]))
    c = run_one(run, data, 0.05, seed=4)
    assert not np.array_equal(np.asarray(a["train_loss"]), np.asarray(c["train_loss"]))


def test_vmapped_group_equals_each_run_alone():
    X, y = linear_problem()
    run = make(models.mlp(5, 1, (8,), "tanh"), train.TrainSpec(100, 10, 8, targets=(0.3,)))
    data = Dataset(jnp.asarray(X), jnp.asarray(y))
    lrs, seeds = jnp.array([0.01, 0.05, 0.2, 5.0]), jnp.array([0, 1, 2, 3])
    group = train.make_group_program(run)(data, lrs, jnp.zeros(4), seeds)
    for i in range(4):
        alone = run_one(run, data, lrs[i], seed=seeds[i])
        for k in alone:
            # XLA's batched kernels may sum in another order: equal to float32 rounding (≈1 ulp)
            np.testing.assert_allclose(np.asarray(group[k][i]), np.asarray(alone[k]), rtol=1e-6, atol=1e-7,
                                       err_msg=f"{k} of member {i}")


def test_changing_the_learning_rate_does_not_recompile():
    X, y = linear_problem()
    traces = []

    def counting_loss(out, target):
        traces.append(1)  # runs at trace time only
        return losses.half_mse(out, target)

    run = train.make_run(models.neuron(5), counting_loss, partial(optim.make_method, "momentum"),
                         train.TrainSpec(20, 5, 8))
    program = train.make_group_program(run)
    data = Dataset(jnp.asarray(X), jnp.asarray(y))
    program(data, jnp.array([0.1, 0.2]), jnp.array([0.9, 0.5]), jnp.array([0, 1]))
    n = len(traces)
    program(data, jnp.array([0.3, 0.01]), jnp.array([0.0, 0.99]), jnp.array([5, 6]))
    assert len(traces) == n, "a new learning rate, momentum or seed recompiled the program"


def test_seed_graph_divergence_is_flagged_at_the_right_step():
    # the hand-written graph gives the loss after each update; the first one above
    # divergence_factor × max(L0, 1) = 1000 × 2 is where the compiled run must freeze
    lr, factor = 0.12, 1e3
    history = seed_example(lr=lr, steps=30)["history"]
    expected = next(h["step"] for h in history if not np.isfinite(h["loss"]) or h["loss"] > factor * 2.0)
    run = make(models.seed_graph(), train.TrainSpec(30, 1, 1, divergence_factor=factor))
    out = run_one(run, Dataset(jnp.zeros((1, 0)), jnp.array([-10.0])), lr)
    assert bool(out["diverged"]) and int(out["diverged_step"]) == expected
    # the params froze: every loss from there on is the loss at the frozen point
    frozen = np.asarray(out["full_train_loss"])[expected:]
    assert np.all(frozen == frozen[0])


def test_seed_graph_curve_matches_hand_written_backprop():
    history = seed_example(lr=0.03, steps=20)["history"]
    run = make(models.seed_graph(), train.TrainSpec(20, 1, 1))
    out = run_one(run, Dataset(jnp.zeros((1, 0)), jnp.array([-10.0])), 0.03)
    np.testing.assert_allclose(out["full_train_loss"], [h["loss"] for h in history], rtol=1e-4, atol=1e-6)


def test_steps_to_target_is_first_evaluated_step_below():
    X, y = linear_problem()
    targets = (0.5, 0.1, 1e-9)
    data = Dataset(jnp.asarray(X), jnp.asarray(y))
    # minibatches: only evaluated steps count
    run = make(models.neuron(5, bias=False, init="zeros"), train.TrainSpec(100, 4, 8, targets=targets))
    out = run_one(run, data, 0.1)
    ev, full = train.eval_steps(100, 4), np.asarray(out["full_train_loss"])
    for t, got in zip(targets, np.asarray(out["steps_to_target"])):
        below = np.flatnonzero(full < t)
        assert got == (ev[below[0]] if len(below) else -1)
    assert np.asarray(out["steps_to_target"])[-1] == -1  # never reached: censored, not fast
    # full batch: every step's loss is the full loss, so the answer has step resolution
    run = make(models.neuron(5, bias=False, init="zeros"), train.TrainSpec(100, 4, 64, targets=targets))
    out = run_one(run, data, 0.1)
    curve = np.append(np.asarray(out["train_loss"]), float(out["final_full_train_loss"]))
    for t, got in zip(targets, np.asarray(out["steps_to_target"])):
        below = np.flatnonzero(curve < t)
        assert got == (below[0] if len(below) else -1)


def test_minibatches_are_sampled_and_full_batch_is_not():
    X, y = linear_problem(n=32)
    data = Dataset(jnp.asarray(X), jnp.asarray(y))
    small = run_one(make(models.neuron(5), train.TrainSpec(50, 5, 1)), data, 0.01)
    full = run_one(make(models.neuron(5), train.TrainSpec(50, 5, 32)), data, 0.01)
    # batch size 1: the minibatch loss jumps around the full loss; full batch: identical
    assert np.std(np.diff(np.log(np.asarray(small["train_loss"])))) > 10 * np.std(np.diff(np.log(np.asarray(full["train_loss"]))))
    np.testing.assert_allclose(full["train_loss"][::5], full["full_train_loss"][:-1], rtol=1e-6)


@pytest.mark.parametrize("kind,lr", [("sgd", 0.5), ("momentum", 0.1), ("adam", 0.05)])
def test_optimizers_converge_on_least_squares(kind, lr):
    X, y = linear_problem()
    run = make(models.neuron(5, bias=False, init="zeros"), train.TrainSpec(500, 50, 64), kind)
    out = run_one(run, Dataset(jnp.asarray(X), jnp.asarray(y)), lr, momentum=0.9)
    w_star = np.linalg.lstsq(X, y, rcond=None)[0]
    assert float(out["final_full_train_loss"]) == pytest.approx(0.5 * np.mean((X @ w_star - y) ** 2), rel=1e-3)


def test_random_search_keeps_the_best_draw():
    X, y = linear_problem(n=32, d=2)
    run = train.make_run(models.neuron(2, bias=False, init="normal"), losses.half_mse,
                         partial(optim.make_method, "random_search", search_scale=1.0), train.TrainSpec(100, 1, 32))
    out = run_one(run, Dataset(jnp.asarray(X), jnp.asarray(y)), 0.1, seed=1)
    full = np.asarray(out["full_train_loss"])
    assert np.all(np.diff(full) <= 0), "best-so-far can only go down"
    assert full[-1] < full[0]
    assert np.all(np.isnan(np.asarray(out["grad_norm"])))  # no gradient is computed
