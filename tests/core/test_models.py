"""Models × losses: shapes declared by init match apply; gradients match finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bpresearch.core import losses, models

X = jax.random.normal(jax.random.key(0), (7, 5))
Y_REG = jax.random.normal(jax.random.key(1), (7,))
Y_CLS = jnp.array([0, 1, 2, 1, 0, 2, 1])

CASES = [
    ("neuron-identity", models.neuron(5, 1, "identity", True, "normal"), "half_mse"),
    ("neuron-sigmoid-nobias", models.neuron(5, 1, "sigmoid", False, "glorot"), "half_mse"),
    ("neuron-tanh", models.neuron(5, 1, "tanh", True, "normal"), "half_mse"),
    ("neuron-relu", models.neuron(5, 1, "relu", True, "normal", init_scale=0.5), "half_mse"),
    ("neuron-softmax", models.neuron(5, 3, "identity", True, "normal"), "cross_entropy"),
    ("mlp-tanh-regression", models.mlp(5, 1, (8, 4), "tanh"), "half_mse"),
    ("mlp-relu-classes", models.mlp(5, 3, (8,), "relu"), "cross_entropy"),
    ("mlp-sigmoid-classes", models.mlp(5, 3, (6, 6), "sigmoid", "normal", 0.3), "cross_entropy"),
    ("seed-graph", models.seed_graph(), "half_mse"),
]


@pytest.mark.parametrize("name,model,loss", CASES, ids=[c[0] for c in CASES])
def test_gradients_match_finite_differences(name, model, loss):
    params = model.init(jax.random.key(2))
    y = Y_CLS if loss == "cross_entropy" else Y_REG
    f = lambda p: losses.LOSSES[loss](model.apply(p, X), y)
    # relu's kink is measure-zero; float32 finite differences need loose tolerances
    check_grads(f, (params,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2, eps=1e-3)


@pytest.mark.parametrize("name,model,loss", CASES, ids=[c[0] for c in CASES])
def test_output_shape(name, model, loss):
    out = model.apply(model.init(jax.random.key(3)), X)
    assert out.shape == ((7, 3) if loss == "cross_entropy" else (7,))
    assert out.dtype == jnp.float32


def test_neuron_without_bias_has_no_b_and_zeros_init_is_zero():
    p = models.neuron(5, bias=False, init="zeros").init(jax.random.key(0))
    assert set(p) == {"w"} and not np.any(np.asarray(p["w"]))


def test_mlp_param_shapes():
    p = models.mlp(64, 10, (64, 32)).init(jax.random.key(0))
    assert [l["w"].shape for l in p["layers"]] == [(64, 64), (64, 32), (32, 10)]
    assert [l["b"].shape for l in p["layers"]] == [(64,), (32,), (10,)]


def test_seed_graph_is_the_worked_example():
    m = models.seed_graph()
    p = m.init(jax.random.key(0))
    assert float(m.apply(p, jnp.zeros((1, 0)))[0]) == -12.0
    g = jax.grad(lambda p: losses.half_mse(m.apply(p, jnp.zeros((1, 0))), jnp.array([-10.0])))(p)
    assert {k: float(v) for k, v in g.items()} == {"x": 8.0, "y": 8.0, "z": -6.0}


def test_losses_known_values():
    assert float(losses.half_mse(jnp.array([-12.0]), jnp.array([-10.0]))) == 2.0
    logits = jnp.log(jnp.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]]))
    expected = -(np.log(0.5) + np.log(0.8)) / 2
    assert float(losses.cross_entropy(logits, jnp.array([0, 1]))) == pytest.approx(expected, rel=1e-6)


def test_each_activation_has_matching_jax_and_numpy_forms():
    # The teacher labels data with the numpy form and a model fits them with the jax form:
    # the two must be one function.
    from bpresearch.core.activations import ACTIVATIONS

    a = np.linspace(-30.0, 30.0, 601)
    for name, act in ACTIVATIONS.items():
        np.testing.assert_allclose(np.asarray(act.jax(jnp.asarray(a, jnp.float32))), act.numpy(a),
                                   rtol=1e-6, atol=1e-7, err_msg=name)
