"""Models as ``(init, apply)`` pairs of pure functions over a params pytree.

``init(key) -> params`` and ``apply(params, X) -> output``. Builders take only the
settings they use, so the same pair serves every learning rate and seed of a sweep.

- ``neuron``: the seed's ``F(w·x + b)`` (docs/seed.md §1); with F = identity it is linear
  regression. ``bias=False`` is the seed's b = 0: ``b`` is then not a parameter at all.
- ``mlp``: a multi-layer network (docs/seed.md §7).
- ``seed_graph``: ``f = (x + y)·z`` with x, y, z as the learned parameters (docs/seed.md §4–5).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from bpresearch.core.activations import ACTIVATIONS

INITS = ("zeros", "normal", "glorot")


class Model(NamedTuple):
    init: Callable[[jax.Array], dict]
    apply: Callable[[dict, jax.Array], jax.Array]


def _weight(key: jax.Array, shape: tuple[int, ...], init: str, scale: float) -> jax.Array:
    """A weight matrix drawn by ``init``; ``scale`` is the std of ``normal``."""
    if init == "zeros":
        return jnp.zeros(shape, jnp.float32)
    if init == "normal":
        return scale * jax.random.normal(key, shape, jnp.float32)
    if init == "glorot":  # a vector of weights is one column: fan_in = n, fan_out = 1
        return jax.nn.initializers.glorot_normal()(key, shape if len(shape) > 1 else (*shape, 1),
                                                   jnp.float32).reshape(shape)
    raise ValueError(f"unknown init {init!r}; expected one of {', '.join(INITS)}")


def neuron(n_in: int, n_out: int = 1, activation: str = "identity", bias: bool = True,
           init: str = "zeros", init_scale: float = 1.0) -> Model:
    """The seed's neuron ``F(w·x + b)``.

    Args:
        n_in: number of input features.
        n_out: 1 gives an output of shape (N,) (regression); more gives (N, n_out) logits.
        activation: F, one of ``ACTIVATIONS``.
        bias: learn ``b``; False is the seed's ``b = 0``.
        init: ``zeros``, ``normal`` (std ``init_scale``) or ``glorot``.
    Returns:
        ``Model(init, apply)``.
    """
    F = ACTIVATIONS[activation].jax
    shape = (n_in,) if n_out == 1 else (n_in, n_out)

    def init_fn(key):
        params = {"w": _weight(key, shape, init, init_scale)}
        if bias:
            params["b"] = jnp.zeros(shape[1:], jnp.float32)
        return params

    def apply_fn(params, X):
        a = X @ params["w"]
        if "b" in params:
            a = a + params["b"]
        return F(a)

    return Model(init_fn, apply_fn)


def mlp(n_in: int, n_out: int, hidden: Sequence[int] = (64, 32), activation: str = "relu",
        init: str = "glorot", init_scale: float = 1.0) -> Model:
    """A fully connected network; the last layer is linear (logits or a regression output).

    Args:
        n_in, n_out: input features and outputs (n_out = 1 gives shape (N,)).
        hidden: widths of the hidden layers.
        activation: the hidden layers' nonlinearity, one of ``ACTIVATIONS``.
        init: weight init; biases start at zero.
    Returns:
        ``Model(init, apply)``; params are ``{"layers": [{"w": (m, n), "b": (n,)}, ...]}``.
    """
    F = ACTIVATIONS[activation].jax
    widths = [n_in, *hidden, n_out]

    def init_fn(key):
        keys = jax.random.split(key, len(widths) - 1)
        return {"layers": [{"w": _weight(k, (m, n), init, init_scale), "b": jnp.zeros((n,), jnp.float32)}
                           for k, m, n in zip(keys, widths[:-1], widths[1:])]}

    def apply_fn(params, X):
        *hidden_layers, last = params["layers"]
        for layer in hidden_layers:
            X = F(X @ layer["w"] + layer["b"])
        out = X @ last["w"] + last["b"]
        return out[:, 0] if n_out == 1 else out

    return Model(init_fn, apply_fn)


def seed_graph(start: Sequence[float] = (-2.0, 5.0, -4.0)) -> Model:
    """The seed's graph ``f = (x + y)·z``; x, y, z are the parameters, the input is ignored.

    ``init`` ignores its key: the seed starts from the fixed point ``start``.
    ``apply`` returns f once per row of X, so the batch losses are the seed's loss.
    """
    x0, y0, z0 = (float(v) for v in start)

    def init_fn(key):
        del key
        return {"x": jnp.float32(x0), "y": jnp.float32(y0), "z": jnp.float32(z0)}

    def apply_fn(params, X):
        f = (params["x"] + params["y"]) * params["z"]
        return jnp.broadcast_to(f, X.shape[:1])

    return Model(init_fn, apply_fn)


def user_model(init: Callable, apply: Callable, x: jax.Array, n_out: int) -> Model:
    """A researcher's ``(init, apply)`` pair as a ``Model``.

    Args:
        init: ``init(key, x) -> params``, any pytree, for one batch ``x`` of inputs.
        apply: ``apply(params, x) -> outputs`` of shape (batch, n_out).
        x: the batch ``init`` is given (its values may set shapes, nothing else should depend on them).
        n_out: the outputs; 1 gives an output of shape (N,), as the built-in models (regression).
    Returns:
        ``Model(init, apply)`` with ``init(key)``, as the built-in models.
    """

    def init_fn(key):
        return init(key, x)

    def apply_fn(params, X):
        out = apply(params, X)
        return out[:, 0] if n_out == 1 else out

    return Model(init_fn, apply_fn)
