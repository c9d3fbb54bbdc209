"""J(w), the loss landscape of a run, from its logged config: what the report's ball on the
curve (docs/seed.md §3) draws the logged iterates on.

Analysis imports no JAX; the CLI hands ``loss_surface`` to ``analysis.report``.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from bpresearch.core import data as D
from bpresearch.spec import config as C
from bpresearch.spec import workload as W


def loss_surface(config: dict) -> Callable[[np.ndarray], np.ndarray]:
    """``J(W)``: the full training loss at each row of ``W`` (m, n_params), from a run's logged config.

    Args:
        config: the run's ``config.json`` (only the keys that apply; the rest are filled in
            with their defaults).

    Returns:
        J, taking parameters in the order of ``bpresearch.core.train.param_names`` (the
        ``param/<name>`` histories) and returning float64 losses.

    Raises:
        ValueError: the data cannot be rebuilt from the config alone (a user's data file).
    """
    config = C.complete(config)   # the logged config holds only the keys that apply
    if config["data"]["source"] == "file":
        raise ValueError("J(w) needs the training data, and a user's data file is not kept in the store")
    ds = W.to_device(config, D.load(".", **config["data"]))
    model = W.build_model(config, ds)
    loss = W.loss_fn(config)
    _, unravel = ravel_pytree(model.init(jax.random.key(0)))
    J = jax.jit(jax.vmap(lambda theta: loss(model.apply(unravel(theta), ds.X_train), ds.y_train)))
    return lambda Wm: np.asarray(J(jnp.asarray(np.atleast_2d(Wm), jnp.float32)), float)
