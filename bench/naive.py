"""The baseline: how a sweep is written without the harness.

For each configuration, a Python loop over steps calls one jitted step function and
hands every point to MLflow. It trains exactly what the harness trains, so that the
final losses agree and the comparison is about the machinery alone:

- the same model and loss (``bpresearch.core.models`` / ``bpresearch.core.losses``), the same
  standardized digits arrays;
- the same randomness (bpresearch/core/train.py): ``k_init, k_data = split(key(seed))``,
  params from ``k_init``; before update k, ``k_batch, _ = split(fold_in(k_data, k))``
  and ``idx = randint(k_batch, (B,), 0, n)``, a minibatch drawn with replacement;
- the same update, plain SGD ``p − η·g``, with η an argument of the jitted step so that
  one compilation per batch size serves every learning rate (the naive code is given
  this much care: a learning rate baked in as a constant would recompile per value);
- the same points: ``train_loss`` and ``grad_norm`` at every step, ``full_train_loss``
  and ``test_loss`` at 0, E, 2E, … and the last step, ``final_full_train_loss`` once.
  (With 1,000 steps the harness's logging schedule keeps every step, so both log the
  same 2,203 points a run.) Divergence is not handled: the benchmark grid has none.

Two ways of logging are measured: ``log_metric`` per point (what the MLflow quickstart
shows), and each run's curves kept in memory and written with ``log_batch`` at its end.

The careful user (``careful_sweep``) goes further: each configuration's whole run is one
jitted ``lax.scan`` (evaluations every E steps inside it), with the learning rate and the
seed as arguments, so one compilation per batch size serves the grid; its curves come back
as arrays and go to MLflow with ``log_batch`` (≤ 1,000 points a call, MLflow's limit).
What it lacks against the harness is ``vmap`` over configurations and the bulk writes.
"""

from __future__ import annotations

import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpresearch.core import losses, train
from bpresearch.core.data import Dataset
from bpresearch.spec import workload

BATCH = 1000  # MLflow's limit of metrics per log_batch call


class StepFns(NamedTuple):
    init: Callable      # seed -> (params, k_data)
    step: Callable      # (params, k_data, k, lr, X, y) -> (params, loss, grad_norm)
    full_loss: Callable  # (params, X, y) -> scalar


def make_fns(config: dict, dataset) -> StepFns:
    """The three jitted functions of one batch size (one compilation each)."""
    model = workload.build_model(config, dataset)
    loss_fn = losses.LOSSES[config["loss"]["kind"]]
    B = config["train"]["batch_size"]

    @jax.jit
    def init(seed):
        k_init, k_data = jax.random.split(jax.random.key(seed))
        return model.init(k_init), k_data

    @jax.jit
    def step(params, k_data, k, lr, X, y):
        k_batch, _ = jax.random.split(jax.random.fold_in(k_data, k))
        idx = jax.random.randint(k_batch, (B,), 0, X.shape[0])
        Xb, yb = X[idx], y[idx]
        loss, grads = jax.value_and_grad(lambda p: loss_fn(model.apply(p, Xb), yb))(params)
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        return params, loss, optax.global_norm(grads)

    @jax.jit
    def full_loss(params, X, y):
        return loss_fn(model.apply(params, X), y)

    return StepFns(init, step, full_loss)


def train_one(fns: StepFns, data: Dataset, lr: float, seed: int, steps: int, eval_every: int,
              log: Callable[[str, jax.Array, int], None]) -> jax.Array:
    """One run, step by step; ``log(key, value, step)`` receives every point. Returns the final full loss."""
    params, k_data = fns.init(seed)
    lr = jnp.float32(lr)
    for k in range(steps):
        if k % eval_every == 0:
            log("full_train_loss", fns.full_loss(params, data.X_train, data.y_train), k)
            log("test_loss", fns.full_loss(params, data.X_test, data.y_test), k)
        params, loss, gnorm = fns.step(params, k_data, k, lr, data.X_train, data.y_train)
        log("train_loss", loss, k)
        log("grad_norm", gnorm, k)
    final = fns.full_loss(params, data.X_train, data.y_train)
    log("full_train_loss", final, steps)
    log("test_loss", fns.full_loss(params, data.X_test, data.y_test), steps)
    log("final_full_train_loss", final, 0)
    return final


def _params(config: dict) -> dict[str, str]:
    t = config["train"]
    return {"learning_rate": str(config["optimizer"]["learning_rate"]), "batch_size": str(t["batch_size"]),
            "seed": str(t["seed"]), "steps": str(t["steps"]), "eval_every": str(t["eval_every"]),
            "model": "mlp" + str(config["model"]["hidden"]), "optimizer": config["optimizer"]["kind"]}


def make_scan(config: dict, dataset) -> Callable:
    """One jitted ``run(seed, lr, X, y, X_test, y_test)`` of a whole run: a ``lax.scan`` per E steps.

    Returns (full losses at 0, E, …, steps − E; test losses there; train losses and
    gradient norms at every step; final full loss; final test loss).
    """
    model = workload.build_model(config, dataset)
    loss_fn = losses.LOSSES[config["loss"]["kind"]]
    t = config["train"]
    B, steps, E = t["batch_size"], t["steps"], min(t["eval_every"], t["steps"])
    assert steps % E == 0, "the careful loop evaluates every E steps exactly"

    def one(carry, k):
        params, k_data, lr, X, y = carry
        k_batch, _ = jax.random.split(jax.random.fold_in(k_data, k))
        idx = jax.random.randint(k_batch, (B,), 0, X.shape[0])
        loss, grads = jax.value_and_grad(lambda p: loss_fn(model.apply(p, X[idx]), y[idx]))(params)
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        return (params, k_data, lr, X, y), (loss, optax.global_norm(grads))

    @jax.jit
    def run(seed, lr, X, y, X_test, y_test):
        k_init, k_data = jax.random.split(jax.random.key(seed))
        full = lambda p: loss_fn(model.apply(p, X), y)  # noqa: E731
        test = lambda p: loss_fn(model.apply(p, X_test), y_test)  # noqa: E731

        def chunk(carry, c):
            evals = (full(carry[0]), test(carry[0]))
            carry, (loss, gnorm) = jax.lax.scan(one, carry, c * E + jnp.arange(E))
            return carry, (*evals, loss, gnorm)

        carry, (f, te, loss, gnorm) = jax.lax.scan(chunk, (model.init(k_init), k_data, lr, X, y),
                                                   jnp.arange(steps // E))
        return f, te, loss.reshape(-1), gnorm.reshape(-1), full(carry[0]), test(carry[0])

    return run


def careful_sweep(uri: str, exp) -> tuple[dict[tuple, float], int]:
    """Every run of ``exp`` as one compiled scan, each logged with ``log_batch``, into the store at ``uri``.

    Returns:
        ({(batch_size, learning_rate, seed): final full training loss}, metric points logged).
    """
    import mlflow
    from mlflow.entities import Metric

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(exp.name)
    client = mlflow.MlflowClient(uri)
    runs_by_bs: dict[int, Callable] = {}
    finals, points = {}, 0
    for run in exp.runs:
        c = run.config
        t = c["train"]
        if t["batch_size"] not in runs_by_bs:
            runs_by_bs[t["batch_size"]] = make_scan(c, exp.dataset(c))
        d = workload.to_device(c, exp.dataset(c))
        out = runs_by_bs[t["batch_size"]](np.int32(t["seed"]), np.float32(c["optimizer"]["learning_rate"]),
                                          d.X_train, d.y_train, d.X_test, d.y_test)
        f, te, loss, gnorm, final, final_test = jax.device_get(out)
        ev = train.eval_steps(t["steps"], min(t["eval_every"], t["steps"]))
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, s) for k, vals, steps in (
            ("train_loss", loss, range(len(loss))), ("grad_norm", gnorm, range(len(gnorm))),
            ("full_train_loss", [*f, final], ev), ("test_loss", [*te, final_test], ev))
            for s, v in zip(steps, vals)]
        metrics.append(Metric("final_full_train_loss", float(final), now, 0))
        with mlflow.start_run(run_name=run.name) as active:
            mlflow.log_params(_params(c))
            for i in range(0, len(metrics), BATCH):
                client.log_batch(active.info.run_id, metrics=metrics[i:i + BATCH])
        points += len(metrics)
        finals[(t["batch_size"], c["optimizer"]["learning_rate"], t["seed"])] = float(final)
    return finals, points


def run_sweep(uri: str, exp, batched: bool, runs=None, times=None) -> tuple[dict[tuple, float], int]:
    """Train and log every run of ``exp`` the naive way into the store at ``uri``.

    Args:
        uri: a fresh MLflow store.
        exp: the loaded ``Experiment`` (its runs and data; nothing else of the harness is used).
        batched: False logs each point with ``log_metric``; True logs each run once with ``log_batch``.
        runs: the runs to train (default: all of ``exp.runs``).
        times: if a list, each run's wall seconds are appended to it.
    Returns:
        ({(batch_size, learning_rate, seed): final full training loss}, metric points logged).
    """
    import mlflow
    from mlflow.entities import Metric

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment(exp.name)
    client = mlflow.MlflowClient(uri)
    fns_by_bs: dict[int, StepFns] = {}
    finals, points = {}, 0
    for run in exp.runs if runs is None else runs:
        t0 = time.perf_counter()
        c = run.config
        t = c["train"]
        if t["batch_size"] not in fns_by_bs:
            fns_by_bs[t["batch_size"]] = make_fns(c, exp.dataset(c))
        data = workload.to_device(c, exp.dataset(c))
        pending: list[tuple[str, jax.Array, int]] = []
        with mlflow.start_run(run_name=run.name) as active:
            mlflow.log_params(_params(c))
            if batched:
                log = lambda key, value, step: pending.append((key, value, step))  # noqa: E731
            else:
                log = lambda key, value, step: mlflow.log_metric(key, float(value), step=step)  # noqa: E731
            final = train_one(fns_by_bs[t["batch_size"]], data, c["optimizer"]["learning_rate"], t["seed"],
                              t["steps"], min(t["eval_every"], t["steps"]), log)
            if batched:
                values = jax.device_get([v for _, v, _ in pending])
                now = int(time.time() * 1000)
                metrics = [Metric(key, float(v), now, s) for (key, _, s), v in zip(pending, values)]
                for i in range(0, len(metrics), BATCH):
                    client.log_batch(active.info.run_id, metrics=metrics[i:i + BATCH])
                n = len(metrics)
            else:
                n = 2 * t["steps"] + 2 * len(train.eval_steps(t["steps"], min(t["eval_every"], t["steps"]))) + 1
        points += n
        finals[(t["batch_size"], c["optimizer"]["learning_rate"], t["seed"])] = float(final)
        if times is not None:
            times.append(time.perf_counter() - t0)
    return finals, points

