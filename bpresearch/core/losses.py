"""Losses, averaged over the batch: ``loss(output, target) -> scalar``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def half_mse(output: jax.Array, target: jax.Array) -> jax.Array:
    """The seed's loss ``½ (target − output)²``, averaged over the batch (shape (N,))."""
    return 0.5 * jnp.mean((target - output) ** 2)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy with integer labels; logits (N, C), labels (N,) int."""
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


LOSSES = {"half_mse": half_mse, "cross_entropy": cross_entropy}


def mean_of(per_example):
    """``loss(output, target) -> scalar``, the batch mean of a researcher's ``fn(outputs, y) -> (N,)``."""

    def loss(output: jax.Array, target: jax.Array) -> jax.Array:
        return jnp.mean(per_example(output, target))

    return loss
