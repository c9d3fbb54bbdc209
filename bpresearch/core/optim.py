"""Optimizers behind one "propose, evaluate, keep" interface.

A ``Method`` is a pair of pure functions:

- ``init(params, objective) -> state``
- ``step(params, state, objective, key) -> (params, state, loss, grad_norm)``

where ``objective(params) -> scalar`` is the loss on the current minibatch and ``loss``
is the objective at the params *before* the step (the value "after k updates").

Gradient methods are optax transformations wrapped in ``optax.inject_hyperparams``, so
the learning rate (and momentum) live in the optimizer state as data: one compiled
program serves every value of a sweep without recompiling (docs/architecture.md: what is swept is data).

The seed's straw man, random search (docs/seed.md §2), fits the same interface: each step
draws a fresh parameter vector at random, evaluates it once, and keeps it only if its
loss is lower than the best so far. One step costs one loss evaluation, as one step of
gradient descent costs one gradient evaluation, so both can be compared per evaluation.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class Method(NamedTuple):
    init: Callable[..., Any]
    step: Callable[..., tuple]


def gradient_method(tx: optax.GradientTransformation) -> Method:
    """Wrap an optax transformation as a ``Method``."""

    def init(params, objective):
        del objective
        return tx.init(params)

    def step(params, state, objective, key):
        del key
        loss, grads = jax.value_and_grad(objective)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss, optax.tree.norm(grads)

    return Method(init, step)


class RandomSearchState(NamedTuple):
    best_loss: jax.Array  # objective of the params kept so far


def random_search(scale: float) -> Method:
    """Draw every parameter from N(0, scale²) at each step; keep the draw if it is better.

    ``grad_norm`` is NaN: random search computes no gradient.
    """

    def init(params, objective):
        return RandomSearchState(best_loss=objective(params))

    def step(params, state, objective, key):
        leaves, treedef = jax.tree.flatten(params)
        keys = jax.random.split(key, len(leaves))
        proposal = treedef.unflatten(
            [scale * jax.random.normal(k, jnp.shape(p), jnp.result_type(p)) for k, p in zip(keys, leaves)])
        loss = objective(proposal)
        better = loss < state.best_loss
        kept = jax.tree.map(lambda new, old: jnp.where(better, new, old), proposal, params)
        return kept, RandomSearchState(jnp.where(better, loss, state.best_loss)), state.best_loss, jnp.float32(jnp.nan)

    return Method(init, step)


def _sgd(learning_rate, momentum, hp) -> Method:
    return gradient_method(optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate))


def _momentum(learning_rate, momentum, hp) -> Method:
    return gradient_method(optax.inject_hyperparams(optax.sgd)(learning_rate=learning_rate, momentum=momentum))


def _adam(learning_rate, momentum, hp) -> Method:
    return gradient_method(optax.inject_hyperparams(optax.adam)(
        learning_rate=learning_rate, b1=hp["b1"], b2=hp["b2"], eps=hp["eps"]))


def _random_search(learning_rate, momentum, hp) -> Method:
    return random_search(hp["search_scale"])


class Optimizer(NamedTuple):
    """One row of ``OPTIMIZERS``.

    make: ``make(learning_rate, momentum, hp) -> Method``; ``hp`` holds the constants
        ``b1``, ``b2``, ``eps``, ``search_scale``; learning rate and momentum may be traced.
    stable_numerator: ``c(momentum)`` in the stability bound η < c/λ_max on a quadratic of
        curvature λ_max (``diagnostics.stability_lr``), or None where there is no such bound.
    """
    make: Callable[[Any, Any, dict], Method]
    stable_numerator: Callable[[Any], Any] | None


# Every optimizer a config may name. Plain GD multiplies the top mode by 1 − ηλ per step:
# stable iff η < 2/λ. Heavy ball (optax ``sgd(momentum=β)``: t ← g + βt, p ← p − ηt): the
# top mode obeys z² − (1 + β − ηλ)z + β = 0, stable iff η < (2 + 2β)/λ (Polyak 1964; Goh
# 2017, "Why Momentum Really Works", §2). Adam and random search have no such bound.
OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(_sgd, lambda momentum: 2.0),
    "momentum": Optimizer(_momentum, lambda momentum: 2.0 + 2.0 * momentum),
    "adam": Optimizer(_adam, None),
    "random_search": Optimizer(_random_search, None),
}


def optimizer(kind: str) -> Optimizer:
    """The row of ``OPTIMIZERS`` named ``kind``; ValueError naming the choices otherwise.

    ``optax:<name>`` (``optax_method``) has no row: it is built from its name, and its
    stability constant is not known (``stable_numerator`` None: no prediction is made).
    """
    if kind.startswith("optax:"):
        return Optimizer(None, None)
    try:
        return OPTIMIZERS[kind]
    except KeyError:
        raise ValueError(f"unknown optimizer {kind!r}; expected one of {', '.join(OPTIMIZERS)}") from None


def make_method(kind: str, learning_rate: jax.Array, momentum: jax.Array | float = 0.9,
                b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                search_scale: float = 1.0) -> Method:
    """The optimizer named by ``kind``; ``learning_rate`` and ``momentum`` may be traced values.

    Args:
        kind: ``sgd`` (plain gradient descent), ``momentum`` (heavy ball, optax's
            ``sgd(momentum=β)``), ``adam`` or ``random_search`` (ignores the learning rate).
        learning_rate: step size η.
        momentum: β of heavy-ball momentum.
        b1, b2, eps: Adam's constants.
        search_scale: std of random search's draws.
    Returns:
        A ``Method``.
    """
    hp = {"b1": b1, "b2": b2, "eps": eps, "search_scale": search_scale}
    return optimizer(kind).make(learning_rate, momentum, hp)


def optax_method(fn: Callable[..., optax.GradientTransformation], options: dict, learning_rate: jax.Array,
                 momentum: jax.Array | float = 0.0, takes_momentum: bool = False) -> Method:
    """Any optax optimizer ``fn`` (``optax.adamw``) as a ``Method``, its learning rate injected.

    Args:
        fn: the optax optimizer; ``options`` are its other keyword arguments (constants).
        learning_rate: step size η, a traced value (``optax.inject_hyperparams``).
        momentum: passed as ``fn``'s ``momentum`` when ``takes_momentum``: traced, as the heavy ball's.
    Returns:
        A ``Method``.
    """
    kw = dict(options, **({"momentum": momentum} if takes_momentum else {}))
    static = tuple(k for k, v in options.items() if isinstance(v, bool) or not isinstance(v, (int, float)))
    return gradient_method(optax.inject_hyperparams(fn, static_args=static)(learning_rate=learning_rate, **kw))
