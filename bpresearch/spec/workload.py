"""What is trained, read from a resolved config: model, loss, optimizer, train spec, data.

AlgoPerf's separation of a workload (init, model, loss, data) from the optimizer, done
with plain functions of the config: ``sweep`` calls ``build_run`` and ``to_device`` and
never reads a config key itself. Each function takes the config dict (as hashed and
logged) or its typed form (``schema.Spec``) and reads the typed form.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax.numpy as jnp
import numpy as np

from bpresearch.core import losses, models, optim, train
from bpresearch.core.data import Dataset
from bpresearch.spec.schema import Spec, spec_of

Config = dict | Spec   # a resolved run config, or its typed form


def n_outputs(config: Config, dataset: Dataset) -> int:
    """1 for regression; the number of classes (largest label + 1) for cross-entropy."""
    if spec_of(config).loss.kind != "cross_entropy":
        return 1
    ys = [dataset.y_train] + ([dataset.y_test] if dataset.y_test is not None else [])
    return int(max(int(y.max()) for y in ys)) + 1


def build_model(config: Config, dataset: Dataset) -> models.Model:
    """The ``(init, apply)`` pair of ``[model]``, sized to the data."""
    m = spec_of(config).model
    n_in, n_out = dataset.X_train.shape[1], n_outputs(config, dataset)
    if m.kind == "neuron":
        return models.neuron(n_in, n_out, m.activation, m.bias, m.init, m.init_scale)
    if m.kind == "mlp":
        return models.mlp(n_in, n_out, m.hidden, m.activation, m.init, m.init_scale)
    return models.seed_graph(m.start)


def loss_fn(config: Config) -> Callable:
    """``loss(output, target) -> scalar`` of ``[loss]``."""
    return losses.LOSSES[spec_of(config).loss.kind]


def method_fn(config: Config) -> Callable[..., optim.Method]:
    """``method(learning_rate, momentum) -> Method`` of ``[optimizer]``: the two vmapped values are arguments."""
    o = spec_of(config).optimizer
    return partial(optim.make_method, o.kind, b1=o.b1, b2=o.b2, eps=o.eps, search_scale=o.search_scale)


def train_spec(config: Config) -> train.TrainSpec:
    """What is static in the compiled program (``[train]`` and ``[diagnostics]``)."""
    s = spec_of(config)
    t, d = s.train, s.diagnostics
    on = d.sharpness or d.noise_scale or d.hessian_noise_scale
    return train.TrainSpec(steps=t.steps, eval_every=min(t.eval_every, t.steps),
                           batch_size=t.batch_size, targets=tuple(t.targets),
                           divergence_factor=t.divergence_factor, diag_every=d.every if on else 0,
                           sharpness=d.sharpness, noise_scale=d.noise_scale,
                           lanczos_iters=d.lanczos_iters, hessian_noise_scale=d.hessian_noise_scale,
                           grad_tol=t.grad_tol or 0.0)


def diag_steps(config: Config) -> np.ndarray:
    """The step of each entry of the diagnostic arrays (``train.diag_schedule``)."""
    t = train_spec(config)
    return train.diag_schedule(t.steps, t.diag_every)


def to_device(config: Config, dataset: Dataset) -> Dataset:
    """The data as device arrays: float32 inputs; int32 labels for cross-entropy, else float32."""
    ydtype = jnp.int32 if spec_of(config).loss.kind == "cross_entropy" else jnp.float32
    test = dataset.X_test is not None and len(dataset.X_test) > 0
    return Dataset(jnp.asarray(dataset.X_train, jnp.float32), jnp.asarray(dataset.y_train, ydtype),
                   jnp.asarray(dataset.X_test, jnp.float32) if test else None,
                   jnp.asarray(dataset.y_test, ydtype) if test else None, dataset.name)


def build_run(config: Config, dataset: Dataset):
    """The unjitted ``run(data, lr, momentum, seed)`` of this configuration."""
    s = spec_of(config)
    return train.make_run(build_model(s, dataset), loss_fn(s), method_fn(s), train_spec(s))
