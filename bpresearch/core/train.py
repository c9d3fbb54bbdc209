"""One training run as a jitted ``lax.scan``; a group of runs as its ``vmap``.

Conventions (every curve in the project follows them):

- The value at step k is the loss *after k updates*; step 0 is before any update.
- ``train_loss[k]`` and ``grad_norm[k]`` (k = 0 … steps−1) are the minibatch loss and the
  gradient norm at the params after k updates, on the minibatch that makes update k+1.
- ``full_train_loss`` and ``test_loss`` are evaluated at ``eval_steps(steps, eval_every)``:
  0, E, 2E, … and always the last step.
- Minibatches are drawn *with replacement* (``jax.random.randint``), independently at
  every step. ``batch_size == n_train`` is batch training: the whole set at every step,
  no sampling, exact gradient descent (docs/seed.md §6).
- Divergence is decided on the *full* training loss or on non-finite values, never on one
  minibatch: a run diverges at step k when its minibatch loss is non-finite, or when its
  full training loss is non-finite or above ``divergence_factor × max(L0, 1)`` (L0 the
  full training loss at step 0). A minibatch loss above that limit only triggers an
  immediate evaluation of the full loss (one outlier label at batch size 1 is not a
  divergence); in full-batch runs the minibatch loss is the full loss. Divergence freezes
  the run: its params stop changing and ``diverged_step`` records the step. Padded steps
  past the budget (the last chunk is padded to ``eval_every``) never count.
- Steps-to-target is an interval: ``steps_to_target`` is the first evaluated step whose
  full training loss is below the target, before any divergence (−1 when never reached),
  and ``steps_above_target`` the last evaluated step before it whose loss was above, so
  the first crossing lies in (steps_above_target, steps_to_target]. Full-batch runs are
  evaluated at every step (every step's minibatch loss is the full loss): an interval of
  one step; minibatch runs every ``eval_every`` steps. Never reached: steps_above_target
  is the last evaluated step (the run is censored there).
- Diagnostics (off unless ``diag_every > 0``) at ``diag_schedule(steps, diag_every)``:
  steps 0, 1, 2, 4, 8, … below ``diag_every``, then every ``diag_every`` steps, so the
  rapid early changes (a catapult-like drop of sharpness in the first steps) are caught:
  ``sharpness`` (top Hessian eigenvalue of the full training loss, by Lanczos), the exact
  gradient noise scale B_simple (per-example gradients, streamed in blocks) and, when
  asked, the Hessian-aware noise scale B_noise = tr(HΣ)/(GᵀHG) (per-example gradients and
  Hessian-vector products, streamed), all properties of the point in parameter space.
  Measured at step 0 in every run and over training in full-batch runs only: each costs
  one or more passes over the whole training set (B_noise: N of them), which would
  multiply the cost of a small-batch run many times.
- Steps-to-grad-tol (when ``grad_tol > 0``, docs/seed.md §3 "when the gradient is small enough,
  we call it the minimum"): the first step whose *full-batch* gradient norm is below
  ``grad_tol``, before any divergence; −1 when never. Full-batch runs: every step (their
  ``grad_norm`` is the full gradient's norm); minibatch runs: every evaluated step, where
  the full gradient is computed for it. The run still takes all its steps.
- Parameter trajectories: a model with at most ``TRACK_PARAMS_MAX`` scalar parameters
  returns each one's value after k updates, k = 0 … steps, as ``trajectory/<name>``
  (``param_names``): the path that the ball of docs/seed.md §3 rolls along J(w).
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from bpresearch.core import diagnostics
from bpresearch.core.data import Dataset
from bpresearch.core.models import Model
from bpresearch.core.optim import Method


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
    hessian_noise_scale: bool = False  # B_noise = tr(HΣ)/(GᵀHG): N Hessian-vector products each
    grad_tol: float = 0.0           # 0: steps_to_grad_tol not measured


# Models with at most this many scalar parameters return their trajectories (3: the seed's
# graph x, y, z; a one- or two-weight neuron). More would be a metric history per weight.
TRACK_PARAMS_MAX = 3
TRAJECTORY = "trajectory/"  # the result key of one parameter's trajectory: trajectory/<name>


def param_names(model: Model) -> list[str]:
    """One name per scalar parameter, in ``ravel_pytree`` order: ``w``, ``b``; ``w[0]``, ``w[1]``; ``x``."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        base = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        n = int(np.prod(leaf.shape))
        names += [base] if n == 1 else [f"{base}[{i}]" for i in range(n)]
    return names


GROUP_AXIS = "runs"  # the vmapped axis of a group program (``make_group_program``)


def diag_schedule(steps: int, every: int) -> np.ndarray:
    """The steps at which diagnostics are measured: 0, 1, 2, 4, 8, … below ``every``, then every ``every``.

    Dense early because the curvature changes fastest in the first steps (a large step
    size can push the sharpness far down within a handful of steps); all below ``steps``.
    """
    if every <= 0:
        return np.zeros(0, np.int64)
    early = [2 ** j for j in range(every.bit_length()) if 2 ** j < every]
    a = np.unique(np.concatenate([[0], early, np.arange(0, steps, every)])).astype(np.int64)
    return a[a < steps]


def eval_steps(steps: int, eval_every: int) -> np.ndarray:
    """The steps at which full losses are evaluated: 0, E, 2E, …, and ``steps``."""
    n_chunks = -(-steps // eval_every)
    return np.append(np.arange(n_chunks) * eval_every, steps)


def _select(pred, on_true, on_false):
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def make_run(model: Model, loss_fn: Callable, method_fn: Callable[..., Method], spec: TrainSpec):
    """Build ``run(data, learning_rate, momentum, seed, axis_name=None) -> dict of arrays`` (pure, unjitted).

    Args:
        model: the ``(init, apply)`` pair.
        loss_fn: ``loss(output, target) -> scalar``, averaged over the batch.
        method_fn: ``method_fn(learning_rate, momentum) -> Method``.
        spec: steps, evaluation interval, batch size, targets, divergence factor.
    Returns:
        ``run``; its dict holds ``train_loss`` and ``grad_norm`` (steps,),
        ``full_train_loss`` and ``test_loss`` (len(eval_steps),), ``diverged`` (bool),
        ``diverged_step`` (int, −1 if not), ``steps_to_target`` and ``steps_above_target``
        (len(targets),), ``final_full_train_loss``, ``min_full_train_loss`` and the
        diagnostics (len(diag_schedule),). ``axis_name``: the vmapped axis when the run is
        one member of a group (``make_group_program``): a minibatch loss over the limit in
        any member then evaluates the full loss once for the group, in a real branch.
    """
    steps, E, B = spec.steps, spec.eval_every, spec.batch_size
    n_chunks = -(-steps // E)
    ev_steps = jnp.asarray(eval_steps(steps, E))
    targets = jnp.asarray(spec.targets, jnp.float32).reshape(-1)
    schedule = diag_schedule(steps, spec.diag_every)
    is_diag_step = jnp.asarray(np.isin(np.arange(n_chunks * E), schedule))  # (n_chunks·E,), static
    names = param_names(model)
    track = len(names) <= TRACK_PARAMS_MAX

    def flat(params):  # (n_params,) in param_names order, when tracked
        return ravel_pytree(params)[0] if track else jnp.zeros((0,), jnp.float32)

    def run(data: Dataset, learning_rate, momentum, seed, axis_name: str | None = None):
        X, y = data.X_train, data.y_train
        n = X.shape[0]
        full_batch = B >= n
        k_init, k_data = jax.random.split(jax.random.key(seed))
        params = model.init(k_init)

        def full_loss(p):
            return loss_fn(model.apply(p, X), y)

        def batch_loss(p, Xb, yb):
            return loss_fn(model.apply(p, Xb), yb)

        def full_grad_norm(p):
            return optax.tree.norm(jax.grad(full_loss)(p))

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

        def anyone(flag):  # unbatched across the group, so that a cond on it stays a branch
            return jax.lax.psum(flag.astype(jnp.int32), axis_name) > 0 if axis_name else flag

        nan = jnp.float32(jnp.nan)

        def measure(on, fn, params):
            # ``on`` depends only on the step index, not on vmapped values: a real branch
            return jax.lax.cond(on, fn, lambda p: nan, params)

        def diagnose(params, k):
            on = is_diag_step[k] & (full_batch | (k == 0))
            out = {}
            if spec.sharpness:
                k_sharp = jax.random.fold_in(k_data, 2**31 - 1)  # a stream no step index uses
                out["sharpness"] = measure(on, lambda p: diagnostics.sharpness(
                    full_loss, p, k_sharp, spec.lanczos_iters).astype(jnp.float32), params)
            if spec.hessian_noise_scale:
                both = jax.lax.cond(on, lambda p: tuple(v.astype(jnp.float32) for v in diagnostics.noise_scale_hessian(
                    batch_loss, p, X, y)[:2]), lambda p: (nan, nan), params)
                if spec.noise_scale:
                    out["noise_scale"] = both[0]
                out["hessian_noise_scale"] = both[1]
            elif spec.noise_scale:
                out["noise_scale"] = measure(on, lambda p: diagnostics.noise_scale_streamed(
                    batch_loss, p, X, y).b_simple.astype(jnp.float32), params)
            return out

        def one_step(carry, k):
            params, state, div, div_step = carry
            at_k = flat(params)  # the params after k updates
            live = k < steps  # the last chunk is padded past the budget: those steps never count
            k_batch, k_method = jax.random.split(jax.random.fold_in(k_data, k))
            if full_batch:
                Xb, yb = X, y
            else:
                idx = jax.random.randint(k_batch, (B,), 0, n)
                Xb, yb = X[idx], y[idx]
            diag = diagnose(params, k) if spec.diag_every else {}
            new_params, new_state, loss, gnorm = method.step(
                params, state, lambda p: batch_loss(p, Xb, yb), k_method)
            if full_batch:  # the minibatch is the whole set: this is the full loss
                bad = is_bad(loss)
            else:  # one minibatch is no verdict: over the limit, look at the full loss now
                over = live & ~div & (loss > limit)
                fl = jax.lax.cond(anyone(over), full_loss, lambda p: jnp.float32(0.0), params)
                bad = ~jnp.isfinite(loss) | (over & is_bad(fl))
            div, div_step = mark(div, div_step, bad & live, k)
            hold = div | ~live  # frozen, or padding past the last step
            params = _select(hold, params, new_params)
            state = _select(hold, state, new_state)
            return (params, state, div, div_step), (loss, gnorm, diag, at_k)

        def chunk(carry, c):
            params, state, div, div_step = carry
            k0 = c * E
            fl, tl = full_loss(params), test_loss(params)
            div, div_step = mark(div, div_step, is_bad(fl), k0)
            fg = full_grad_norm(params) if spec.grad_tol and not full_batch else nan
            carry, (losses, gnorms, diag, path) = jax.lax.scan(
                one_step, (params, state, div, div_step), k0 + jnp.arange(E))
            return carry, (fl, tl, losses, gnorms, diag, fg, path)

        init = (params, state, jnp.bool_(False), jnp.int32(-1))
        (params, state, div, div_step), (fl, tl, losses, gnorms, diag, fg, path) = jax.lax.scan(
            chunk, init, jnp.arange(n_chunks))
        fl_end, tl_end = full_loss(params), test_loss(params)
        div, div_step = mark(div, div_step, is_bad(fl_end), steps)
        full = jnp.append(fl, fl_end)
        test = jnp.append(tl, tl_end)
        diag = {key: v.reshape(-1)[schedule] for key, v in diag.items()}  # (len(schedule),) each

        valid = ~div | (ev_steps <= div_step)  # evaluations before the run froze
        train_loss = losses.reshape(-1)[:steps]
        if full_batch:  # every step's minibatch loss is the full loss: step resolution
            hit_steps, hit_loss = jnp.arange(steps + 1), jnp.append(train_loss, fl_end)
        else:
            hit_steps, hit_loss = ev_steps, full
        before = ~div | (hit_steps <= div_step)
        reached = before[None, :] & (hit_loss[None, :] < targets[:, None])  # (targets, candidates)
        steps_to_target = jnp.where(reached.any(axis=1), hit_steps[jnp.argmax(reached, axis=1)], -1)
        # the last evaluated step above the target before the first one below (or before the end)
        first = jnp.where(steps_to_target >= 0, steps_to_target, steps + 1)
        above = before[None, :] & (hit_steps[None, :] < first[:, None])
        steps_above = jnp.max(jnp.where(above, hit_steps[None, :], -1), axis=1)
        extra = {}
        if spec.grad_tol:  # candidates as for steps-to-target: every step (full batch) or evaluated steps
            g_end = full_grad_norm(params)
            g = jnp.append(gnorms.reshape(-1)[:steps], g_end) if full_batch else jnp.append(fg, g_end)
            below = before & (g < spec.grad_tol)
            extra["steps_to_grad_tol"] = jnp.where(below.any(), hit_steps[jnp.argmax(below)], -1).astype(jnp.int32)
        if track:  # (steps + 1, n_params): after 0 … steps updates
            traj = jnp.concatenate([path.reshape(-1, len(names))[:steps], flat(params)[None]])
            extra.update({f"{TRAJECTORY}{name}": traj[:, j] for j, name in enumerate(names)})
        return {
            "train_loss": train_loss,
            "grad_norm": gnorms.reshape(-1)[:steps],
            "full_train_loss": full,
            "test_loss": test,
            "diverged": div,
            "diverged_step": div_step,
            "steps_to_target": steps_to_target.astype(jnp.int32),
            "steps_above_target": steps_above.astype(jnp.int32),
            "final_full_train_loss": fl_end,
            "min_full_train_loss": jnp.min(jnp.where(valid & jnp.isfinite(full), full, jnp.inf)),
            **diag,  # NaN where not measured
            **extra,
        }

    return run


def make_group_program(run):
    """Jit of ``run`` vmapped over (learning_rate, momentum, seed); data is shared."""
    return jax.jit(jax.vmap(partial(run, axis_name=GROUP_AXIS), in_axes=(None, 0, 0, 0), axis_name=GROUP_AXIS))
