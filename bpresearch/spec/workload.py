"""What is trained, read from a resolved config: model, loss, optimizer, train spec, data.

AlgoPerf's separation of a workload (init, model, loss, data) from the optimizer, done
with plain functions of the config: ``sweep`` calls ``build_run`` and ``to_device`` and
never reads a config key itself. Each function takes the config dict (as hashed and
logged) or its typed form (``schema.Spec``) and reads the typed form.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from bpresearch.core import losses, models, optim, train
from bpresearch.core.data import Dataset
from bpresearch.spec import usercode
from bpresearch.spec.schema import Spec, spec_of

Config = dict | Spec   # a resolved run config, or its typed form


def classes(config: Config) -> bool:
    """Whether the model outputs one logit a class and the labels are integers (cross-entropy, or
    a loss of one's own with ``classes``)."""
    loss = spec_of(config).loss
    return loss.kind == "cross_entropy" or (usercode.is_file(loss.kind) and bool(loss.classes))


def n_outputs(config: Config, dataset: Dataset) -> int:
    """1 for regression; the number of classes (largest label + 1) for class logits (``classes``)."""
    if not classes(config):
        return 1
    ys = [dataset.y_train] + ([dataset.y_test] if dataset.y_test is not None else [])
    return int(max(int(y.max()) for y in ys)) + 1


def build_model(config: Config, dataset: Dataset) -> models.Model:
    """The ``(init, apply)`` pair of ``[model]``, sized to the data."""
    m = spec_of(config).model
    n_in, n_out = dataset.X_train.shape[1], n_outputs(config, dataset)
    if usercode.is_file(m.kind):
        init, apply = user_pair(config, n_out)
        return models.user_model(init, apply, jnp.asarray(dataset.X_train[:spec_of(config).train.batch_size],
                                                          jnp.float32), n_out)
    if m.kind == "neuron":
        return models.neuron(n_in, n_out, m.activation, m.bias, m.init, m.init_scale)
    if m.kind == "mlp":
        return models.mlp(n_in, n_out, m.hidden, m.activation, m.init, m.init_scale)
    return models.seed_graph(m.start)


def user_pair(config: Config, n_out: int) -> tuple[Callable, Callable]:
    """The ``(init, apply)`` a model file's factory returns for ``[model]``; UserCodeError otherwise."""
    m = spec_of(config).model
    factory = usercode.lookup(m.kind, m.sha256)
    try:
        pair = factory(**(m.options or {}), n_out=n_out)
    except Exception as e:  # the user's code: any error is theirs, reported in one line
        raise usercode.UserCodeError(f"{m.kind}({', '.join(f'{k}={v!r}' for k, v in (m.options or {}).items())}, "
                                     f"n_out={n_out}) raised {type(e).__name__}: {usercode.one_line(e)}") from None
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(map(callable, pair))):
        raise usercode.UserCodeError(f"{m.kind} returned {type(pair).__name__}, not a pair (init, apply) "
                                     "of functions")
    return tuple(pair)


def loss_fn(config: Config) -> Callable:
    """``loss(output, target) -> scalar`` of ``[loss]``."""
    loss = spec_of(config).loss
    if usercode.is_file(loss.kind):
        return losses.mean_of(usercode.lookup(loss.kind, loss.sha256))
    return losses.LOSSES[loss.kind]


def method_fn(config: Config) -> Callable[..., optim.Method]:
    """``method(learning_rate, momentum) -> Method`` of ``[optimizer]``: the two vmapped values are arguments."""
    o = spec_of(config).optimizer
    if usercode.is_optax(o.kind):
        return partial(optim.optax_method, usercode.optax_function(o.kind), dict(o.options or {}),
                       takes_momentum=usercode.takes_momentum(o.kind))
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
    ydtype = jnp.int32 if classes(config) else jnp.float32
    test = dataset.X_test is not None and len(dataset.X_test) > 0
    return Dataset(jnp.asarray(dataset.X_train, jnp.float32), jnp.asarray(dataset.y_train, ydtype),
                   jnp.asarray(dataset.X_test, jnp.float32) if test else None,
                   jnp.asarray(dataset.y_test, ydtype) if test else None, dataset.name)


def build_run(config: Config, dataset: Dataset):
    """The unjitted ``run(data, lr, momentum, seed)`` of this configuration."""
    s = spec_of(config)
    return train.make_run(build_model(s, dataset), loss_fn(s), method_fn(s), train_spec(s))


def check_user_code(config: Config, dataset: Dataset) -> None:
    """Build a config naming user code and trace one step's shapes (no training); UserCodeError
    ``(section, problem)`` where the model, loss or optimizer does not fit the contract."""
    s = spec_of(config)
    data = to_device(s, dataset)
    n, n_out = s.train.batch_size, n_outputs(s, dataset)
    X, y = data.X_train[:n], data.y_train[:n]
    model = _in("model", build_model, s, dataset)
    params = _in("model", jax.eval_shape, model.init, jax.random.key(0))
    if usercode.is_file(s.model.kind):   # the shape the factory's apply returns, before n_out = 1 is squeezed
        raw = _in("model", jax.eval_shape, user_pair(s, n_out)[1], params, X)
        if tuple(getattr(raw, "shape", ())) != (n, n_out):
            raise usercode.UserCodeError("model", f"apply returned outputs of shape {tuple(getattr(raw, 'shape', ()))}"
                                         f" for a batch of {n}; expected ({n}, {n_out})")
    out = _in("model", jax.eval_shape, model.apply, params, X)
    if usercode.is_file(s.loss.kind):
        per = _in("loss", jax.eval_shape, usercode.lookup(s.loss.kind, s.loss.sha256), out, y)
        if tuple(getattr(per, "shape", ())) != (n,):
            raise usercode.UserCodeError("loss", f"returned shape {tuple(getattr(per, 'shape', ()))} for a batch of "
                                         f"{n}; expected one loss per example, ({n},)")
    if usercode.is_optax(s.optimizer.kind):
        method = _in("optimizer", method_fn(s), jnp.float32(s.optimizer.learning_rate), jnp.float32(0.0))
        _in("optimizer", jax.eval_shape, lambda p: method.init(p, lambda q: jnp.float32(0.0)), params)


def _in(section: str, fn, *args):
    """``fn(*args)``; any error raised as ``UserCodeError(section, one line)``."""
    try:
        return fn(*args)
    except usercode.UserCodeError as e:
        raise usercode.UserCodeError(section, str(e.args[-1])) from None
    except Exception as e:  # the user's code: any error is theirs, reported in one line
        raise usercode.UserCodeError(section, f"{type(e).__name__}: {usercode.one_line(e)}") from None
