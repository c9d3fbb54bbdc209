"""The hand-written scalar graph: agreement with jax.grad on random expressions, and its edge cases."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bpresearch.core.graph import Value

# Random expression trees over three variables, as nested tuples:
#   ("var", i) | ("const", c) | (unary, e) | (binary, e1, e2)
_UNARY = ("tanh", "sigmoid", "exp", "neg")
_BINARY = ("+", "*", "-")

_expressions = st.recursive(
    st.one_of(
        st.tuples(st.just("var"), st.integers(0, 2)),
        st.tuples(st.just("const"), st.floats(-2.0, 2.0, allow_nan=False).map(lambda c: round(c, 3))),
    ),
    lambda sub: st.one_of(
        st.tuples(st.sampled_from(_UNARY), sub),
        st.tuples(st.sampled_from(_BINARY), sub, sub),
    ),
    max_leaves=8,
)


def _evaluate(expr, variables, ops):
    """Evaluate an expression tree with one backend's operations (Value or jax.numpy)."""
    kind = expr[0]
    if kind == "var":
        return variables[expr[1]]
    if kind == "const":
        return ops["const"](expr[1])
    args = [_evaluate(e, variables, ops) for e in expr[1:]]
    return ops[kind](*args)


_VALUE_OPS = {
    "const": Value,
    "tanh": Value.tanh,
    "sigmoid": Value.sigmoid,
    "exp": Value.exp,
    "neg": lambda a: -a,
    "+": lambda a, b: a + b,
    "*": lambda a, b: a * b,
    "-": lambda a, b: a - b,
}
_JAX_OPS = {**_VALUE_OPS, "const": jnp.float32, "tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "exp": jnp.exp}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    expr=_expressions,
    point=st.tuples(*[st.floats(-2.0, 2.0, allow_nan=False)] * 3),
)
def test_random_expressions_match_jax_grad(expr, point):
    leaves = [Value(v, label=n) for v, n in zip(point, "abc")]
    try:
        out = _evaluate(expr, leaves, _VALUE_OPS)
    except OverflowError:
        assume(False)
    out.backward()
    # Keep every intermediate value bounded, so float32 rounding stays near 1e-7 relative.
    scale = max(abs(n.data) for n in out._topo())
    assume(scale < 1e3 and all(abs(v.grad) < 1e3 for v in leaves))

    value, grads = jax.value_and_grad(lambda *v: _evaluate(expr, v, _JAX_OPS), argnums=(0, 1, 2))(
        *map(jnp.float32, point)
    )
    tol = 1e-4 * (1.0 + scale)
    np.testing.assert_allclose(float(value), out.data, rtol=1e-4, atol=tol)
    np.testing.assert_allclose([float(g) for g in grads], [v.grad for v in leaves], rtol=1e-4, atol=tol)


# --- the Value class itself -------------------------------------------------------------


def test_reflected_and_derived_operators():
    a = Value(3.0)
    for expr, value, grad in [
        (lambda a: 2 * a, 6.0, 2.0),
        (lambda a: 2 + a, 5.0, 1.0),
        (lambda a: 2 - a, -1.0, -1.0),
        (lambda a: a - 2, 1.0, 1.0),
        (lambda a: 6 / a, 2.0, -6 / 9),
        (lambda a: a / 2, 1.5, 0.5),
        (lambda a: a**2, 9.0, 6.0),
        (lambda a: a**0.5, math.sqrt(3), 0.5 / math.sqrt(3)),
        (lambda a: -a, -3.0, -1.0),
        (lambda a: a.relu(), 3.0, 1.0),
        (lambda a: (-a).relu(), 0.0, 0.0),
        (lambda a: a * a, 9.0, 6.0),  # one node feeding an op twice accumulates
    ]:
        a.zero_grad()
        out = expr(a)
        out.backward()
        assert out.data == pytest.approx(value) and a.grad == pytest.approx(grad)


def test_pow_rejects_value_exponent():
    with pytest.raises(TypeError):
        Value(2.0) ** Value(3.0)


def test_sigmoid_is_stable_for_large_inputs():
    assert Value(-1000.0).sigmoid().data == 0.0
    assert Value(1000.0).sigmoid().data == 1.0


def test_backward_twice_gives_the_same_gradients():
    x = Value(2.0)
    out = x * x + x  # d/dx = 2x + 1 = 5
    out.backward()
    assert x.grad == 5.0
    out.backward()  # no stale gradients from the first call
    assert x.grad == 5.0


def test_zero_grad_resets_every_node():
    x = Value(2.0)
    out = (x * x).tanh()
    out.backward()
    out.zero_grad()
    assert all(node.grad == 0.0 for node in out._topo())


def test_backward_on_a_long_chain_does_not_recurse():
    x = Value(1.0)
    out = x
    for _ in range(5000):  # deeper than Python's default recursion limit
        out = out + x
    out.backward()
    assert out.data == 5001.0 and x.grad == 5001.0
