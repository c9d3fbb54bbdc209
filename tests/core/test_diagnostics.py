"""Sharpness, the stable learning rate, the gradient noise scale and the critical-batch fits.

Each fact is checked against an exact answer: on linear regression the Hessian of the
half squared error is XᵀX/N, gradient descent's stability edge is 2/λ_max (or
(2 + 2β)/λ_max with heavy-ball momentum), and per-example gradients have a closed form.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from analysis.critical import fit_lr_scaling, fit_steps_examples
from bpresearch.core import losses, models, optim, train
from bpresearch.core.data import Dataset
from bpresearch.core.diagnostics import (
    NoiseScale,
    hvp,
    noise_scale_streamed,
    sharpness,
    stability_lr,
)

# --- oracles for the noise scale -------------------------------------------------------


def noise_scale_exact(batch_loss, params, X, y):
    """``noise_scale_streamed`` in one block: all N per-example gradients at once."""
    return noise_scale_streamed(batch_loss, params, X, y, block_size=X.shape[0])


def _sq_norm(tree):
    return sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(tree))


def noise_scale(batch_loss, params, X, y, key, b_small, b_big, n_draws):
    """An independent oracle: the unbiased two-batch-size estimate of B_simple (McCandlish et al. 2018, appendix A.1).

    For a batch of B examples drawn with replacement, E|G_B|² = |G|² + tr(Σ)/B, so
    |G|² ≈ (B_big|G_big|² − B_small|G_small|²)/(B_big − B_small) and
    tr(Σ) ≈ (|G_small|² − |G_big|²)/(1/B_small − 1/B_big). Both are linear in the
    measured squared norms, so they are averaged over ``n_draws`` pairs before the
    ratio is taken (a mean of ratios would be biased). Each pair is nested: the small
    batch is the first ``b_small`` of the ``b_big`` indices, which is still a
    with-replacement sample of its size and correlates the two norms, lowering the
    variance of their difference.

    Args:
        batch_loss: ``batch_loss(params, Xb, yb) -> scalar`` mean loss over the batch.
        params: the point.
        X, y: the training set, (N, ...) and (N, ...).
        key: PRNG key for the batch indices (``jax.random.randint``, as in training).
        b_small, b_big: the two batch sizes, static ints, ``b_small < b_big``.
        n_draws: number of (small, big) pairs, static.
    Returns:
        ``NoiseScale(b_simple, grad_sq, trace_sigma)``, the estimates (each may be
        negative from noise when the true value is small: use more draws).
    """
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < b_small < b_big, got {b_small}, {b_big}")
    grad = jax.grad(batch_loss)
    n = X.shape[0]

    def draw(k):
        idx = jax.random.randint(k, (b_big,), 0, n)  # (b_big,)
        small, big = idx[:b_small], idx
        return _sq_norm(grad(params, X[small], y[small])), _sq_norm(grad(params, X[big], y[big]))

    # lax.map, not vmap: one pair's activations in memory at a time.
    sq_small, sq_big = jax.lax.map(draw, jax.random.split(key, n_draws))  # (n_draws,) each
    m_small, m_big = jnp.mean(sq_small), jnp.mean(sq_big)
    grad_sq = (b_big * m_big - b_small * m_small) / (b_big - b_small)
    trace_sigma = (m_small - m_big) / (1.0 / b_small - 1.0 / b_big)
    return NoiseScale(trace_sigma / grad_sq, grad_sq, trace_sigma)


def linear_problem(n=200, d=16, seed=0, noise=0.5):
    """X with singular values spread over a decade, y with a nonzero least-squares residual."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * np.logspace(0, -1, d)  # (n, d)
    y = X @ rng.normal(size=d) + noise * rng.normal(size=n)  # (n,)
    return X.astype(np.float32), y.astype(np.float32)


def top_eigenvalue(X):
    X = X.astype(np.float64)
    return np.linalg.eigvalsh(X.T @ X / len(X)).max()


def linear_loss(X, y):
    """Full-batch half squared error of the bias-free linear neuron, as a function of params."""
    model = models.neuron(X.shape[1], activation="identity", bias=False)
    return lambda p: losses.half_mse(model.apply(p, X), y)


def linear_batch_loss(params, Xb, yb):
    return losses.half_mse(Xb @ params["w"], yb)


# --- hvp and sharpness -----------------------------------------------------------------


def test_hvp_matches_dense_hessian_on_a_small_mlp():
    model = models.mlp(3, 1, hidden=(4,), activation="tanh")
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(20, 3)).astype(np.float32), rng.normal(size=20).astype(np.float32)
    p = jax.jit(model.init)(jax.random.key(0))
    f = lambda q: losses.half_mse(model.apply(q, X), y)
    flat, unravel = ravel_pytree(p)
    v = np.random.default_rng(3).normal(size=flat.shape).astype(np.float32)
    got = jax.jit(lambda v: ravel_pytree(hvp(f, p, unravel(v)))[0])(v)
    dense = jax.jit(jax.hessian(lambda x: f(unravel(x))))(flat)  # (P, P)
    np.testing.assert_allclose(got, dense @ v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("d", [5, 16, 64])
def test_sharpness_is_top_eigenvalue_of_linear_regression_hessian(d):
    X, y = linear_problem(d=d, seed=d)
    params = {"w": jnp.zeros(d)}
    lam = jax.jit(lambda p, k: sharpness(linear_loss(X, y), p, k))(params, jax.random.key(0))
    assert lam.shape == ()
    assert float(lam) == pytest.approx(top_eigenvalue(X), rel=1e-3)


def test_sharpness_is_the_largest_algebraic_eigenvalue_after_lanczos_breaks_down():
    # 5 params < 20 Lanczos steps: the Krylov space is exhausted and the remaining steps are
    # masked; on a concave quadratic every eigenvalue is negative, so a spurious 0 would show.
    X, y = linear_problem(d=5, seed=4)
    f = linear_loss(X, y)
    lam = jax.jit(lambda k: sharpness(lambda p: -f(p), {"w": jnp.zeros(5)}, k))(jax.random.key(0))
    X64 = X.astype(np.float64)
    assert float(lam) == pytest.approx(-np.linalg.eigvalsh(X64.T @ X64 / len(X)).min(), rel=1e-3)


def test_sharpness_vmaps_over_params_and_keys():
    X, y = linear_problem(d=12, seed=3)
    ws = jax.random.normal(jax.random.key(0), (4, 12))  # the Hessian is the same at every point
    keys = jax.random.split(jax.random.key(1), 4)
    lams = jax.jit(jax.vmap(lambda w, k: sharpness(linear_loss(X, y), {"w": w}, k)))(ws, keys)
    assert lams.shape == (4,)
    np.testing.assert_allclose(lams, top_eigenvalue(X), rtol=1e-3)


def test_sharpness_on_a_small_mlp_matches_the_dense_hessian():
    # Non-quadratic, several parameter leaves, an indefinite Hessian: 3·6 + 6 + 6 + 1 = 31 params.
    model = models.mlp(3, 1, hidden=(6,), activation="tanh")
    X = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    p = jax.jit(model.init)(jax.random.key(0))
    f = lambda q: losses.half_mse(model.apply(q, X), y)
    flat, unravel = ravel_pytree(p)
    eigs = np.linalg.eigvalsh(np.asarray(jax.jit(jax.hessian(lambda x: f(unravel(x))))(flat), np.float64))
    lam = jax.jit(lambda q, k: sharpness(f, q, k, iters=31))(p, jax.random.key(2))
    assert float(lam) == pytest.approx(eigs.max(), rel=1e-3)


# --- the stability edge of gradient descent ----------------------------------------------


def test_stability_lr_values_and_jit():
    assert float(stability_lr(4.0, "sgd")) == pytest.approx(0.5)
    assert float(jax.jit(lambda s, b: stability_lr(s, "momentum", b))(4.0, 0.9)) == pytest.approx(0.95)
    assert np.isnan(stability_lr(4.0, "adam")) and np.isnan(stability_lr(jnp.ones(3), "random_search")).all()
    assert np.isinf(stability_lr(-1.0, "sgd"))
    with pytest.raises(ValueError, match="unknown optimizer"):
        stability_lr(1.0, "lbfgs")


@pytest.mark.parametrize("kind, beta", [("sgd", 0.0), ("momentum", 0.9)])
def test_full_batch_gd_diverges_just_above_the_edge_and_converges_just_below(kind, beta):
    X, y = linear_problem(n=128, d=8, seed=7)
    w_star = np.linalg.lstsq(X.astype(np.float64), y.astype(np.float64), rcond=None)[0]
    loss_star = 0.5 * np.mean((y - X @ w_star) ** 2)
    assert loss_star > 0.05  # a real residual: the optimum is not a zero-loss interpolation
    # w starts at 0, so the error −w* has a component along the top eigenvector of XᵀX.
    u_top = np.linalg.eigh(X.T.astype(np.float64) @ X)[1][:, -1]
    assert abs(u_top @ w_star) > 0.05 * np.linalg.norm(w_star)

    lam = jax.jit(lambda k: sharpness(linear_loss(X, y), {"w": jnp.zeros(8)}, k))(jax.random.key(0))
    edge = float(stability_lr(lam, kind, beta))
    model = models.neuron(8, activation="identity", bias=False, init="zeros")
    spec = train.TrainSpec(steps=1500, eval_every=100, batch_size=len(X))
    run = jax.jit(train.make_run(model, losses.half_mse, partial(optim.make_method, kind), spec))
    data = Dataset(jnp.asarray(X), jnp.asarray(y))

    above = run(data, jnp.float32(1.02 * edge), jnp.float32(beta), 0)
    below = run(data, jnp.float32(0.98 * edge), jnp.float32(beta), 0)
    assert bool(above["diverged"])
    assert not bool(below["diverged"])
    assert float(below["final_full_train_loss"]) == pytest.approx(loss_star, rel=1e-4)


# --- the gradient noise scale -----------------------------------------------------------


def test_noise_scale_exact_matches_closed_form_per_example_gradients():
    X, y = linear_problem(n=200, d=8, seed=1)
    w = np.random.default_rng(5).normal(size=8).astype(np.float32)
    r = jax.jit(partial(noise_scale_exact, linear_batch_loss))({"w": w}, X, y)
    X64, y64 = X.astype(np.float64), y.astype(np.float64)
    g = -(y64 - X64 @ w)[:, None] * X64  # (N, d): ∇ of ½(y_i − x_i·w)² is −(y_i − x_i·w) x_i
    G = g.mean(axis=0)
    trace_sigma = np.mean(np.sum((g - G) ** 2, axis=1))
    assert float(r.grad_sq) == pytest.approx(G @ G, rel=1e-4)
    assert float(r.trace_sigma) == pytest.approx(trace_sigma, rel=1e-4)
    assert float(r.b_simple) == pytest.approx(trace_sigma / (G @ G), rel=1e-4)


def test_noise_scale_exact_on_an_mlp_matches_a_loop_over_examples():
    model = models.mlp(4, 3, hidden=(5,))
    p = jax.jit(model.init)(jax.random.key(0))
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(30, 4)).astype(np.float32), rng.integers(0, 3, size=30).astype(np.int32)
    batch_loss = lambda q, Xb, yb: losses.cross_entropy(model.apply(q, Xb), yb)
    flat = lambda t: ravel_pytree(t)[0]
    grad = jax.jit(lambda xi, yi: flat(jax.grad(batch_loss)(p, xi, yi)))
    g = np.stack([grad(X[i:i + 1], y[i:i + 1]) for i in range(30)])  # (N, P), one example at a time
    G = g.mean(axis=0)
    r = jax.jit(partial(noise_scale_exact, batch_loss))(p, X, y)
    assert float(r.grad_sq) == pytest.approx(G @ G, rel=1e-4)
    assert float(r.trace_sigma) == pytest.approx(np.mean(np.sum((g - G) ** 2, axis=1)), rel=1e-4)


@pytest.mark.parametrize("block_size", [1, 64, 200, 1000])  # 64: three full blocks, one padded
def test_noise_scale_streamed_equals_all_at_once(block_size):
    X, y = linear_problem(n=200, d=8, seed=1)
    params = {"w": np.random.default_rng(5).normal(size=8).astype(np.float32)}
    one = jax.jit(partial(noise_scale_exact, linear_batch_loss))(params, X, y)
    blocks = jax.jit(partial(noise_scale_streamed, linear_batch_loss, block_size=block_size))(params, X, y)
    np.testing.assert_allclose(blocks, one, rtol=1e-5)


def test_noise_scale_two_batch_estimate_is_within_10_percent_of_exact():
    X, y = linear_problem(n=200, d=8, seed=1)
    X, y = jnp.asarray(X), jnp.asarray(y)
    params = {"w": jnp.asarray(np.random.default_rng(5).normal(size=8), jnp.float32)}
    exact = jax.jit(partial(noise_scale_exact, linear_batch_loss))(params, X, y)
    assert 2 < float(exact.b_simple) < 64  # between the two batch sizes: both terms matter
    est = jax.jit(lambda k: noise_scale(linear_batch_loss, params, X, y, k, 2, 64, 8000))(jax.random.key(0))
    for name in ("b_simple", "grad_sq", "trace_sigma"):
        assert float(getattr(est, name)) == pytest.approx(float(getattr(exact, name)), rel=0.1), name


def test_noise_scale_vmaps_over_params():
    X, y = linear_problem(n=100, d=4, seed=2)
    ws = jax.random.normal(jax.random.key(0), (3, 4))
    f = jax.vmap(lambda w: noise_scale(linear_batch_loss, {"w": w}, jnp.asarray(X), jnp.asarray(y),
                                       jax.random.key(1), 4, 16, 10))
    one = jax.jit(lambda w: noise_scale(linear_batch_loss, {"w": w}, jnp.asarray(X), jnp.asarray(y),
                                        jax.random.key(1), 4, 16, 10))(ws[1])
    np.testing.assert_allclose(jax.jit(f)(ws).b_simple[1], one.b_simple, rtol=1e-5)


def test_noise_scale_rejects_batch_sizes_in_the_wrong_order():
    with pytest.raises(ValueError, match="b_small < b_big"):
        noise_scale(linear_batch_loss, {"w": jnp.zeros(2)}, jnp.ones((4, 2)), jnp.ones(4), jax.random.key(0), 8, 8, 1)


# --- critical batch size fits -----------------------------------------------------------

S_MIN, B_CRIT = 300.0, 50.0
E_MIN = S_MIN * B_CRIT
BATCHES = 2.0 ** np.arange(1, 12)  # 2 … 2048, both sides of B_crit


def steps_and_examples(noise=0.0, seed=0):
    """S = S_min(1 + B_crit/B) and E = B·S, so (S/S_min − 1)(E/E_min − 1) = 1 exactly."""
    S = S_MIN * (1 + B_CRIT / BATCHES)
    S = S * np.exp(noise * np.random.default_rng(seed).normal(size=S.shape))
    return S, BATCHES * S


def test_fit_steps_examples_recovers_exact_parameters():
    fit = fit_steps_examples(*steps_and_examples())
    assert fit.reason == "" and fit.n_points == len(BATCHES)
    assert (fit.s_min, fit.e_min, fit.b_crit) == pytest.approx((S_MIN, E_MIN, B_CRIT), rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_fit_steps_examples_with_2_percent_noise(seed):
    fit = fit_steps_examples(*steps_and_examples(noise=0.02, seed=seed))
    assert fit.reason == ""
    assert (fit.s_min, fit.e_min, fit.b_crit) == pytest.approx((S_MIN, E_MIN, B_CRIT), rel=0.1)


def test_fit_steps_examples_drops_unreached_targets():
    S, E = steps_and_examples()
    S[3], E[3] = -1, -BATCHES[3]  # steps_to_target = −1: never reached
    E[5] = np.nan
    fit = fit_steps_examples(S, E)
    assert fit.n_points == len(BATCHES) - 2 and fit.b_crit == pytest.approx(B_CRIT, rel=1e-9)


@pytest.mark.parametrize("S, E, reason", [
    ([100.0, 50.0], [200.0, 400.0], "2 usable points"),
    ([100.0, -1.0, np.nan, 80.0], [100.0, -8.0, 64.0, 320.0], "2 usable points"),
    ([100.0, 200.0, 400.0], [200.0, 400.0, 800.0], "one batch size only"),
    ([50.0, 100.0, 200.0], [100.0, 400.0, 1600.0], "non-physical"),  # steps grow with the batch
])
def test_fit_steps_examples_degenerate_inputs_give_nan_and_a_reason(S, E, reason):
    fit = fit_steps_examples(S, E)
    assert np.isnan([fit.s_min, fit.e_min, fit.b_crit]).all()
    assert reason in fit.reason


EPS_MAX, B_NOISE = 0.5, 40.0


def best_lrs(noise=0.0, seed=0):
    eps = EPS_MAX / (1 + B_NOISE / BATCHES)
    return BATCHES, eps * np.exp(noise * np.random.default_rng(seed).normal(size=eps.shape))


def test_fit_lr_scaling_recovers_exact_parameters():
    fit = fit_lr_scaling(*best_lrs())
    assert fit.reason == ""
    assert (fit.eps_max, fit.b_noise) == pytest.approx((EPS_MAX, B_NOISE), rel=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_fit_lr_scaling_with_2_percent_noise(seed):
    fit = fit_lr_scaling(*best_lrs(noise=0.02, seed=seed))
    assert fit.reason == ""
    assert (fit.eps_max, fit.b_noise) == pytest.approx((EPS_MAX, B_NOISE), rel=0.1)


def test_fit_lr_scaling_batch_independent_learning_rate_is_a_failed_fit():
    # B_noise = 0 sits at its bound: the data say only that it is below the batch sizes measured
    fit = fit_lr_scaling(BATCHES, np.full(BATCHES.shape, 0.1))
    assert fit.reason.startswith("degenerate fit") and np.isnan(fit.b_noise)


@pytest.mark.parametrize("B, eps, reason", [
    ([8.0, 16.0], [0.1, 0.2], "2 usable points"),
    ([8.0, 8.0, 8.0, 16.0], [0.1, 0.1, 0.1, 0.2], "2 distinct batch sizes"),
    ([8.0, 16.0, 32.0], [0.01, 0.025, 0.07], "no saturation"),  # ε grows faster than B
    ([8.0, 16.0, 32.0], [0.4, 0.2, 0.1], "non-physical"),  # ε falls with B
])
def test_fit_lr_scaling_degenerate_inputs_give_nan_and_a_reason(B, eps, reason):
    fit = fit_lr_scaling(B, eps)
    assert np.isnan([fit.eps_max, fit.b_noise]).all()
    assert reason in fit.reason
