"""One training run as a jitted ``lax.scan``; a group of runs as its ``vmap``.

Conventions (every curve in the project follows them):

- The value at step k is the loss *after k updates*; step 0 is before any update.
- ``train_loss[k]`` and ``grad_norm[k]`` (k = 0 … steps−1) are the minibatch loss and the
  gradient norm at the params after k updates, on the minibatch that makes update k+1.
- ``full_train_loss`` and ``test_loss`` are evaluated at ``eval_steps(steps, eval_every)``:
  0, E, 2E, … and always the last step.
- Minibatches are drawn *with replacement* (``jax.random.randint``), independently at
  every step. ``batch_size == n_train`` is batch training: the whole set at every step,
  no sampling, exact gradient descent (SEED.md §6).
- Divergence: a loss that is non-finite or above ``divergence_factor × max(L0, 1)``
  (L0 the full training loss at step 0), on the minibatch or at an evaluation, freezes
  the run at that step: its params stop changing and ``diverged_step`` records the step.
- Steps-to-target: the first evaluated step whose full training loss is below the
  target, before any divergence; −1 when never reached. In full-batch runs every step's
  loss is the full loss, so every step counts as evaluated (step resolution).
- Diagnostics (off unless ``diag_every > 0``), at evaluation steps every ``diag_every``
  steps (rounded up to a multiple of ``eval_every``): ``sharpness`` (top Hessian
  eigenvalue of the full training loss, by Lanczos) and the exact gradient noise scale
  B_simple (per-example gradients, streamed in blocks), both properties of the point in
  parameter space. Measured at step 0 in every run and over training in full-batch runs
  only: each costs one or more passes over the whole training set, which would multiply
  the cost of a small-batch run many times (a batch-1 run sees 1,500 examples in 1,500
  steps; one noise-scale measurement sees 1,437).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import diagnostics
from .data import Dataset
from .models import Model
from .optim import Method


class TrainSpec(NamedTuple):
    """What is static in a compiled program: changing any of these recompiles."""
    steps: int
    eval_every: int
    batch_size: int
    targets: tuple[float, ...] = ()
    divergence_factor: float = 1e3  # generous: per-sample losses may exceed the mean a lot
    diag_every: int = 0             # 0: no diagnostics
    sharpness: bool = False
    noise_scale: bool = False
    lanczos_iters: int = 20


def diag_stride(spec: TrainSpec) -> int:
    """Diagnostics run at every ``diag_stride``-th evaluation chunk."""
    return -(-spec.diag_every // spec.eval_every) if spec.diag_every else 0


def eval_steps(steps: int, eval_every: int) -> np.ndarray:
    """The steps at which full losses are evaluated: 0, E, 2E, …, and ``steps``."""
    n_chunks = -(-steps // eval_every)
    return np.append(np.arange(n_chunks) * eval_every, steps)


def _select(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def make_run(model: Model, loss_fn: Callable, method_fn: Callable[..., Method], spec: TrainSpec):
    """Build ``run(data, learning_rate, momentum, seed) -> dict of arrays`` (pure, unjitted).

    Args:
        model: the ``(init, apply)`` pair.
        loss_fn: ``loss(output, target) -> scalar``, averaged over the batch.
        method_fn: ``method_fn(learning_rate, momentum) -> Method``.
        spec: steps, evaluation interval, batch size, targets, divergence factor.
    Returns:
        ``run``; its dict holds ``train_loss`` and ``grad_norm`` (steps,),
        ``full_train_loss`` and ``test_loss`` (len(eval_steps),), ``diverged`` (bool),
        ``diverged_step`` (int, −1 if not), ``steps_to_target`` (len(targets),),
        ``final_full_train_loss`` and ``min_full_train_loss``.
    """
    steps, E, B = spec.steps, spec.eval_every, spec.batch_size
    n_chunks = -(-steps // E)
    ev_steps = jnp.asarray(eval_steps(steps, E))
    targets = jnp.asarray(spec.targets, jnp.float32).reshape(-1)

    def run(data: Dataset, learning_rate, momentum, seed):
        X, y = data.X_train, data.y_train
        n = X.shape[0]
        full_batch = B >= n
        k_init, k_data = jax.random.split(jax.random.key(seed))
        params = model.init(k_init)

        def full_loss(p):
            return loss_fn(model.apply(p, X), y)

        def test_loss(p):
            if data.X_test is None:
                return jnp.float32(jnp.nan)
            return loss_fn(model.apply(p, data.X_test), data.y_test)

        method = method_fn(learning_rate, momentum)
        state = method.init(params, full_loss)
        limit = spec.divergence_factor * jnp.maximum(full_loss(params), 1.0)

        def is_bad(loss):
            return ~jnp.isfinite(loss) | (loss > limit)

        def mark(div, div_step, bad, k):
            return div | bad, jnp.where(bad & ~div, k, div_step)

        def one_step(carry, k):
            params, state, div, div_step = carry
            k_batch, k_method = jax.random.split(jax.random.fold_in(k_data, k))
            if full_batch:
                Xb, yb = X, y
            else:
                idx = jax.random.randint(k_batch, (B,), 0, n)
                Xb, yb = X[idx], y[idx]
            new_params, new_state, loss, gnorm = method.step(
                params, state, lambda p: loss_fn(model.apply(p, Xb), yb), k_method)
            div, div_step = mark(div, div_step, is_bad(loss), k)
            hold = div | (k >= steps)  # frozen, or padding past the last step
            params = _select(hold, params, new_params)
            state = _select(hold, state, new_state)
            return (params, state, div, div_step), (loss, gnorm)

        stride = diag_stride(spec)
        nan = jnp.float32(jnp.nan)

        def measure(on, fn, params):
            # c is the scan index, not vmapped: this cond stays a real branch under vmap
            return jax.lax.cond(on, fn, lambda p: nan, params)

        def diagnose(params, c):
            on = (c % stride == 0) if stride else False
            out = {}
            if spec.sharpness:
                k_sharp = jax.random.fold_in(k_data, 2**31 - 1)  # a stream no step index uses
                out["sharpness"] = measure(on & (full_batch | (c == 0)), lambda p: diagnostics.sharpness(
                    full_loss, p, k_sharp, spec.lanczos_iters).astype(jnp.float32), params)
            if spec.noise_scale:
                out["noise_scale"] = measure(on & (full_batch | (c == 0)), lambda p: diagnostics.noise_scale_streamed(
                    batch_loss, p, X, y).b_simple.astype(jnp.float32), params)
            return out

        def batch_loss(p, Xb, yb):
            return loss_fn(model.apply(p, Xb), yb)

        def chunk(carry, c):
            params, state, div, div_step = carry
            k0 = c * E
            fl, tl = full_loss(params), test_loss(params)
            div, div_step = mark(div, div_step, is_bad(fl), k0)
            diag = diagnose(params, c)
            carry, (losses, gnorms) = jax.lax.scan(one_step, (params, state, div, div_step), k0 + jnp.arange(E))
            return carry, (fl, tl, losses, gnorms, diag)

        init = (params, state, jnp.bool_(False), jnp.int32(-1))
        (params, state, div, div_step), (fl, tl, losses, gnorms, diag) = jax.lax.scan(
            chunk, init, jnp.arange(n_chunks))
        fl_end, tl_end = full_loss(params), test_loss(params)
        div, div_step = mark(div, div_step, is_bad(fl_end), steps)
        full = jnp.append(fl, fl_end)
        test = jnp.append(tl, tl_end)

        valid = ~div | (ev_steps <= div_step)  # evaluations before the run froze
        train_loss = losses.reshape(-1)[:steps]
        if full_batch:  # every step's minibatch loss is the full loss: step resolution
            hit_steps, hit_loss = jnp.arange(steps + 1), jnp.append(train_loss, fl_end)
        else:
            hit_steps, hit_loss = ev_steps, full
        before = ~div | (hit_steps <= div_step)
        reached = before[None, :] & (hit_loss[None, :] < targets[:, None])  # (targets, candidates)
        steps_to_target = jnp.where(reached.any(axis=1), hit_steps[jnp.argmax(reached, axis=1)], -1)
        return {
            "train_loss": train_loss,
            "grad_norm": gnorms.reshape(-1)[:steps],
            "full_train_loss": full,
            "test_loss": test,
            "diverged": div,
            "diverged_step": div_step,
            "steps_to_target": steps_to_target.astype(jnp.int32),
            "final_full_train_loss": fl_end,
            "min_full_train_loss": jnp.min(jnp.where(valid & jnp.isfinite(full), full, jnp.inf)),
            **diag,  # (n_chunks,) each, NaN where not measured
        }

    return run


def make_group_program(run):
    """Jit of ``run`` vmapped over (learning_rate, momentum, seed); data is shared."""
    return jax.jit(jax.vmap(run, in_axes=(None, 0, 0, 0)))
