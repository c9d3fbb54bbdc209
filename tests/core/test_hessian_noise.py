"""The Hessian-aware noise scale B_noise = tr(HΣ)/(GᵀHG) against closed forms.

On least squares, L(w) = (1/2N)|Xw − y|², everything is explicit: H = XᵀX/N,
g_i = x_i r_i with r = Xw − y, G = Xᵀr/N and Σ = (1/N) Σ_i (g_i − G)(g_i − G)ᵀ. B_simple
= tr(Σ)/|G|² is B_noise only when H is a multiple of the identity (McCandlish et al. 2018,
§2.2); with an anisotropic H the two differ, and the test below makes them differ by far.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from bpresearch.core import losses
from bpresearch.core.diagnostics import noise_scale_hessian, noise_scale_streamed


def linear_batch_loss(params, Xb, yb):
    return losses.half_mse(Xb @ params["w"], yb)


def closed_form(X, y, w):
    X, y, w = (np.asarray(a, np.float64) for a in (X, y, w))
    n = len(X)
    r = X @ w - y
    g = X * r[:, None]          # (N, d) per-example gradients
    G = g.mean(0)
    H = X.T @ X / n
    D = g - G
    Sigma = D.T @ D / n
    return np.trace(H @ Sigma) / (G @ H @ G), np.trace(Sigma) / (G @ G)


def problem(scales, n=96, seed=0):
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, len(scales))) * scales).astype(np.float32)
    y = (X @ rng.normal(size=len(scales)) + 0.5 * rng.normal(size=n)).astype(np.float32)
    w = rng.normal(size=len(scales)).astype(np.float32)
    return X, y, w


def test_b_noise_matches_the_closed_form_on_least_squares(block_size=7):
    # curvatures 1 and 1/100: the Hessian weights the directions very differently
    X, y, w = problem([1.0, 0.1, 0.1])
    want_noise, want_simple = closed_form(X, y, w)
    got = jax.jit(partial(noise_scale_hessian, linear_batch_loss, block_size=block_size))({"w": jnp.asarray(w)}, X, y)
    assert float(got.b_noise) == pytest.approx(want_noise, rel=2e-4)
    assert float(got.b_simple) == pytest.approx(want_simple, rel=2e-4)
    assert abs(want_simple / want_noise - 1) > 0.15  # B_simple, used before, is another number here
    ref = noise_scale_streamed(linear_batch_loss, {"w": jnp.asarray(w)}, jnp.asarray(X), jnp.asarray(y))
    assert float(got.b_simple) == pytest.approx(float(ref.b_simple), rel=1e-5)


def test_b_noise_equals_b_simple_when_the_hessian_is_isotropic():
    # orthogonal columns of equal norm: XᵀX/N = I exactly
    q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(64, 3)))
    X = (q * 8.0).astype(np.float32)  # columns of norm 8 = √64
    y = np.random.default_rng(2).normal(size=64).astype(np.float32)
    w = np.array([0.3, -1.0, 2.0], np.float32)
    got = jax.jit(partial(noise_scale_hessian, linear_batch_loss))({"w": jnp.asarray(w)}, X, y)
    assert float(got.b_noise) == pytest.approx(float(got.b_simple), rel=1e-4)
    assert float(got.b_noise) == pytest.approx(closed_form(X, y, w)[0], rel=2e-4)


def test_b_noise_on_a_small_mlp_matches_dense_hessian_and_gradients():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(12, 3)).astype(np.float32)
    y = rng.normal(size=12).astype(np.float32)
    p = {"W": jnp.asarray(rng.normal(size=(3, 4)) * 0.7, jnp.float32), "v": jnp.asarray(rng.normal(size=4), jnp.float32)}

    def batch_loss(p, Xb, yb):
        return losses.half_mse(jnp.tanh(Xb @ p["W"]) @ p["v"], yb)

    flat, unravel = ravel_pytree(p)
    H = np.asarray(jax.jit(jax.hessian(lambda f: batch_loss(unravel(f), X, y)))(flat), np.float64)
    per_example = lambda f: 0.5 * (jnp.tanh(X @ unravel(f)["W"]) @ unravel(f)["v"] - y) ** 2  # noqa: E731
    g = np.asarray(jax.jit(jax.jacrev(per_example))(flat), np.float64)  # (12, P): row i is ∇ of example i
    G = g.mean(0)
    D = g - G
    want = np.trace(H @ (D.T @ D / 12)) / (G @ H @ G)
    got = jax.jit(partial(noise_scale_hessian, batch_loss, block_size=5))(p, X, y)
    assert float(got.b_noise) == pytest.approx(want, rel=1e-3)
