"""The nonlinearities a config may name, each in the two forms the project needs.

``jax``: what a model applies (traced, differentiated). ``numpy``: the same function in
float64 numpy, with which the teacher neuron labels its data before the cast to float32
(``data.teacher``), so the data do not depend on JAX's float32 kernels.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Activation(NamedTuple):
    jax: Callable[[jax.Array], jax.Array]
    numpy: Callable[[np.ndarray], np.ndarray]


ACTIVATIONS: dict[str, Activation] = {
    "identity": Activation(lambda a: a, lambda a: a),
    # numpy: 1/(1+e^-a) written with tanh, so exp never overflows
    "sigmoid": Activation(jax.nn.sigmoid, lambda a: 0.5 * (1.0 + np.tanh(0.5 * a))),
    "tanh": Activation(jnp.tanh, np.tanh),
    "relu": Activation(jax.nn.relu, lambda a: np.maximum(a, 0.0)),
}
