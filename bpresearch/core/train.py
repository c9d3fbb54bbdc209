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

The loop, as small pure functions (the optax style: named states, free functions):
``start`` builds a run's ``Problem`` and first ``TrainState``; ``train_chunk`` evaluates
the full losses and scans ``train_step`` over ``eval_every`` steps; ``finish`` turns the
last state and the stacked chunk outputs into the result dict, with ``target_crossings``
and ``grad_tol_crossing`` for the step counts. ``make_run`` binds the static ``Plan``.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, NamedTuple

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
GROUP_AXIS = "runs"  # the vmapped axis of a group program (``make_group_program``)
# The key stream of the Lanczos start vectors: fold_in of a value no step index reaches.
_SHARPNESS_STREAM = 2**31 - 1


def param_names(model: Model) -> list[str]:
    """One name per scalar parameter, in ``ravel_pytree`` order: ``w``, ``b``; ``w[0]``, ``w[1]``; ``x``."""
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(shapes)[0]:
        base = ".".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
        n = int(np.prod(leaf.shape))
        names += [base] if n == 1 else [f"{base}[{i}]" for i in range(n)]
    return names


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


def n_chunks(steps: int, eval_every: int) -> int:
    """How many chunks of ``eval_every`` steps cover ``steps`` (the last one padded)."""
    return -(-steps // eval_every)


def eval_steps(steps: int, eval_every: int) -> np.ndarray:
    """The steps at which full losses are evaluated: 0, E, 2E, …, and ``steps``."""
    return np.append(np.arange(n_chunks(steps, eval_every)) * eval_every, steps)


# --- the states --------------------------------------------------------------------------


class Plan(NamedTuple):
    """What ``make_run`` derives once from its arguments, before any trace: static."""
    spec: TrainSpec
    model: Model
    loss_fn: Callable                     # loss(output, target) -> scalar
    method_fn: Callable[..., Method]      # method_fn(learning_rate, momentum) -> Method
    eval_steps: jax.Array                 # (len(eval_steps),) int
    targets: jax.Array                    # (len(targets),) float32
    diag_steps: np.ndarray                # diag_schedule(steps, diag_every)
    is_diag_step: jax.Array               # (n_chunks·E,) bool
    names: list[str]                      # param_names(model)
    track: bool                           # return the parameter trajectories


class Problem(NamedTuple):
    """One run inside its trace: the plan, its data, its method and its divergence limit."""
    plan: Plan
    data: Dataset
    method: Method
    key: jax.Array         # the run's data stream: minibatches, the method's draws, Lanczos starts
    limit: jax.Array       # divergence_factor × max(L0, 1)
    axis_name: str | None  # the group's vmapped axis, when the run is one member of a group


class TrainState(NamedTuple):
    """The scan carry: the params after k updates, the method's state, the divergence flag."""
    params: Any
    opt_state: Any
    diverged: jax.Array       # bool; a diverged run is frozen
    diverged_step: jax.Array  # int32, −1 while not diverged


class StepOut(NamedTuple):
    """What one step records, stacked by the scan over steps."""
    loss: jax.Array        # the minibatch loss after k updates
    grad_norm: jax.Array   # its gradient's norm
    diag: dict             # the diagnostics at step k (NaN where not measured)
    params: jax.Array      # the flat params after k updates, (n_params,) when tracked, else (0,)


class ChunkOut(NamedTuple):
    """What one chunk records, stacked by the scan over chunks."""
    full_loss: jax.Array       # the full training loss at the chunk's first step
    test_loss: jax.Array       # the test loss there (NaN without a test set)
    full_grad_norm: jax.Array  # the full gradient's norm there (grad_tol, minibatch runs; else NaN)
    steps: StepOut             # (E,) each


# --- the losses of one run ------------------------------------------------------------


def _nan() -> jax.Array:
    return jnp.float32(jnp.nan)


def full_batch(pb: Problem) -> bool:
    """Whether every step uses the whole training set (static: from the shapes)."""
    return pb.plan.spec.batch_size >= pb.data.X_train.shape[0]


def batch_loss(pb: Problem, params, Xb, yb) -> jax.Array:
    """The mean loss of ``params`` on the batch ``(Xb, yb)``."""
    return pb.plan.loss_fn(pb.plan.model.apply(params, Xb), yb)


def full_loss(pb: Problem, params) -> jax.Array:
    """The mean loss of ``params`` on the whole training set."""
    return batch_loss(pb, params, pb.data.X_train, pb.data.y_train)


def test_set_loss(pb: Problem, params) -> jax.Array:
    """The mean loss of ``params`` on the test set; NaN without one."""
    if pb.data.X_test is None:
        return _nan()
    return batch_loss(pb, params, pb.data.X_test, pb.data.y_test)


def full_grad_norm(pb: Problem, params) -> jax.Array:
    """The norm of the full training loss's gradient at ``params``."""
    return optax.tree.norm(jax.grad(partial(full_loss, pb))(params))


def flat(pb: Problem, params) -> jax.Array:
    """The params as one vector in ``param_names`` order when tracked, else (0,)."""
    return ravel_pytree(params)[0] if pb.plan.track else jnp.zeros((0,), jnp.float32)


# --- divergence ----------------------------------------------------------------------------


def is_bad(loss, limit) -> jax.Array:
    """A loss that shows divergence: non-finite, or above the limit."""
    return ~jnp.isfinite(loss) | (loss > limit)


def mark(state: TrainState, bad, k) -> TrainState:
    """``state`` with the divergence flag raised at step ``k`` where ``bad`` (the first step is kept)."""
    return state._replace(diverged=state.diverged | bad,
                          diverged_step=jnp.where(bad & ~state.diverged, k, state.diverged_step))


def anyone(flag, axis_name: str | None) -> jax.Array:
    """``flag`` in any member of the group: unbatched, so that a cond on it stays a branch."""
    return jax.lax.psum(flag.astype(jnp.int32), axis_name) > 0 if axis_name else flag


def step_diverges(pb: Problem, state: TrainState, loss, live) -> jax.Array:
    """Whether the minibatch loss of the step from ``state`` shows divergence.

    In a full-batch run the minibatch loss is the full loss. Otherwise one minibatch is no
    verdict: a loss over the limit evaluates the full loss now, and that one decides.
    """
    if full_batch(pb):
        return is_bad(loss, pb.limit)
    over = live & ~state.diverged & (loss > pb.limit)
    fl = jax.lax.cond(anyone(over, pb.axis_name), partial(full_loss, pb),
                      lambda p: jnp.float32(0.0), state.params)
    return ~jnp.isfinite(loss) | (over & is_bad(fl, pb.limit))


# --- diagnostics ---------------------------------------------------------------------------


def _measure(on, fn, params):
    # ``on`` depends only on the step index, not on vmapped values: a real branch
    return jax.lax.cond(on, fn, lambda p: _nan(), params)


def _hessian_noise_scales(pb: Problem, params) -> tuple[jax.Array, jax.Array]:
    """(B_simple, B_noise) at ``params``, float32."""
    scales = diagnostics.noise_scale_hessian(partial(batch_loss, pb), params, pb.data.X_train, pb.data.y_train)
    return tuple(v.astype(jnp.float32) for v in scales[:2])


def _noise_scale(pb: Problem, params) -> jax.Array:
    """B_simple at ``params``, float32."""
    return diagnostics.noise_scale_streamed(partial(batch_loss, pb), params, pb.data.X_train,
                                            pb.data.y_train).b_simple.astype(jnp.float32)


def diagnose(pb: Problem, params, k) -> dict:
    """The diagnostics at the params after ``k`` updates, NaN where step ``k`` measures none.

    Measured on the schedule in full-batch runs, at step 0 only in minibatch runs (each
    costs passes over the whole training set).
    """
    spec = pb.plan.spec
    on = pb.plan.is_diag_step[k] & (full_batch(pb) | (k == 0))
    out = {}
    if spec.sharpness:
        key = jax.random.fold_in(pb.key, _SHARPNESS_STREAM)
        out["sharpness"] = _measure(on, lambda p: diagnostics.sharpness(
            partial(full_loss, pb), p, key, spec.lanczos_iters).astype(jnp.float32), params)
    if spec.hessian_noise_scale:
        both = jax.lax.cond(on, partial(_hessian_noise_scales, pb), lambda p: (_nan(), _nan()), params)
        if spec.noise_scale:
            out["noise_scale"] = both[0]
        out["hessian_noise_scale"] = both[1]
    elif spec.noise_scale:
        out["noise_scale"] = _measure(on, partial(_noise_scale, pb), params)
    return out


# --- the steps -----------------------------------------------------------------------------


def minibatch(pb: Problem, key) -> tuple[jax.Array, jax.Array]:
    """The batch of one step, drawn with replacement; the whole set in a full-batch run."""
    X, y = pb.data.X_train, pb.data.y_train
    if full_batch(pb):
        return X, y
    idx = jax.random.randint(key, (pb.plan.spec.batch_size,), 0, X.shape[0])
    return X[idx], y[idx]


def _select(pred, on_true, on_false):
    """``on_true`` where ``pred``, else ``on_false``, leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def train_step(pb: Problem, state: TrainState, k) -> tuple[TrainState, StepOut]:
    """Update k + 1 (a ``lax.scan`` body): the method's step on a minibatch, then the divergence check.

    Steps past the budget (the last chunk's padding) and steps of a diverged run leave the
    state unchanged.
    """
    at_k = flat(pb, state.params)  # the params after k updates
    live = k < pb.plan.spec.steps  # the last chunk is padded past the budget: those steps never count
    k_batch, k_method = jax.random.split(jax.random.fold_in(pb.key, k))
    Xb, yb = minibatch(pb, k_batch)
    diag = diagnose(pb, state.params, k) if pb.plan.spec.diag_every else {}
    params, opt_state, loss, gnorm = pb.method.step(
        state.params, state.opt_state, lambda p: batch_loss(pb, p, Xb, yb), k_method)
    state = mark(state, step_diverges(pb, state, loss, live) & live, k)
    hold = state.diverged | ~live  # frozen, or padding past the last step
    state = state._replace(params=_select(hold, state.params, params),
                           opt_state=_select(hold, state.opt_state, opt_state))
    return state, StepOut(loss, gnorm, diag, at_k)


def train_chunk(pb: Problem, state: TrainState, c) -> tuple[TrainState, ChunkOut]:
    """Chunk ``c`` (a ``lax.scan`` body): the full losses at its first step, then its steps."""
    spec = pb.plan.spec
    k0 = c * spec.eval_every
    fl, tl = full_loss(pb, state.params), test_set_loss(pb, state.params)
    state = mark(state, is_bad(fl, pb.limit), k0)
    fg = full_grad_norm(pb, state.params) if spec.grad_tol and not full_batch(pb) else _nan()
    state, steps = jax.lax.scan(partial(train_step, pb), state, k0 + jnp.arange(spec.eval_every))
    return state, ChunkOut(fl, tl, fg, steps)


def start(plan: Plan, data: Dataset, learning_rate, momentum, seed,
          axis_name: str | None) -> tuple[Problem, TrainState]:
    """The run's problem and its state before any update (the params drawn from ``seed``)."""
    k_init, k_data = jax.random.split(jax.random.key(seed))
    params = plan.model.init(k_init)
    pb = Problem(plan, data, plan.method_fn(learning_rate, momentum), k_data, None, axis_name)
    opt_state = pb.method.init(params, partial(full_loss, pb))
    pb = pb._replace(limit=plan.spec.divergence_factor * jnp.maximum(full_loss(pb, params), 1.0))
    return pb, TrainState(params, opt_state, jnp.bool_(False), jnp.int32(-1))


# --- the summaries -------------------------------------------------------------------------


def target_crossings(targets, hit_steps, hit_loss, before, steps: int) -> tuple[jax.Array, jax.Array]:
    """(steps_to_target, steps_above_target), int32 (len(targets),) each.

    Args:
        targets: (T,) loss values.
        hit_steps: (S,) the candidate steps, increasing; hit_loss: (S,) the full loss there.
        before: (S,) whether each candidate comes before the run froze.
        steps: the step budget.
    Returns:
        The first candidate below each target (−1 when none) and the last one above it
        before that (before the end when none is below): the first crossing lies between.
    """
    reached = before[None, :] & (hit_loss[None, :] < targets[:, None])  # (targets, candidates)
    steps_to_target = jnp.where(reached.any(axis=1), hit_steps[jnp.argmax(reached, axis=1)], -1)
    first = jnp.where(steps_to_target >= 0, steps_to_target, steps + 1)
    above = before[None, :] & (hit_steps[None, :] < first[:, None])
    steps_above = jnp.max(jnp.where(above, hit_steps[None, :], -1), axis=1)
    return steps_to_target.astype(jnp.int32), steps_above.astype(jnp.int32)


def grad_tol_crossing(pb: Problem, params, out: ChunkOut, hit_steps, before) -> jax.Array:
    """The first candidate step whose full gradient norm is below ``grad_tol`` (−1 when none), int32.

    The candidates are those of ``target_crossings``: every step in a full-batch run (whose
    gradient is the full one), else every evaluated step; ``params`` are the last ones.
    """
    steps = pb.plan.spec.steps
    g_end = full_grad_norm(pb, params)
    if full_batch(pb):
        g = jnp.append(out.steps.grad_norm.reshape(-1)[:steps], g_end)
    else:
        g = jnp.append(out.full_grad_norm, g_end)
    below = before & (g < pb.plan.spec.grad_tol)
    return jnp.where(below.any(), hit_steps[jnp.argmax(below)], -1).astype(jnp.int32)


def trajectories(pb: Problem, path, params) -> dict:
    """``trajectory/<name>``: each parameter after 0 … steps updates, (steps + 1,)."""
    names = pb.plan.names
    traj = jnp.concatenate([path.reshape(-1, len(names))[:pb.plan.spec.steps], flat(pb, params)[None]])
    return {f"{TRAJECTORY}{name}": traj[:, j] for j, name in enumerate(names)}


def finish(pb: Problem, state: TrainState, out: ChunkOut) -> dict:
    """The result dict (``make_run``) from the state after the last chunk and every chunk's output."""
    spec, steps = pb.plan.spec, pb.plan.spec.steps
    fl_end, tl_end = full_loss(pb, state.params), test_set_loss(pb, state.params)
    state = mark(state, is_bad(fl_end, pb.limit), steps)
    full = jnp.append(out.full_loss, fl_end)
    test = jnp.append(out.test_loss, tl_end)
    diag = {key: v.reshape(-1)[pb.plan.diag_steps] for key, v in out.steps.diag.items()}
    valid = ~state.diverged | (pb.plan.eval_steps <= state.diverged_step)  # evaluations before the run froze
    train_loss = out.steps.loss.reshape(-1)[:steps]
    if full_batch(pb):  # every step's minibatch loss is the full loss: step resolution
        hit_steps, hit_loss = jnp.arange(steps + 1), jnp.append(train_loss, fl_end)
    else:
        hit_steps, hit_loss = pb.plan.eval_steps, full
    before = ~state.diverged | (hit_steps <= state.diverged_step)
    steps_to_target, steps_above = target_crossings(pb.plan.targets, hit_steps, hit_loss, before, steps)
    extra = {}
    if spec.grad_tol:
        extra["steps_to_grad_tol"] = grad_tol_crossing(pb, state.params, out, hit_steps, before)
    if pb.plan.track:  # (steps + 1,) each: after 0 … steps updates
        extra.update(trajectories(pb, out.steps.params, state.params))
    return {
        "train_loss": train_loss,
        "grad_norm": out.steps.grad_norm.reshape(-1)[:steps],
        "full_train_loss": full,
        "test_loss": test,
        "diverged": state.diverged,
        "diverged_step": state.diverged_step,
        "steps_to_target": steps_to_target,
        "steps_above_target": steps_above,
        "final_full_train_loss": fl_end,
        "min_full_train_loss": jnp.min(jnp.where(valid & jnp.isfinite(full), full, jnp.inf)),
        **diag,  # NaN where not measured
        **extra,
    }


# --- the programs --------------------------------------------------------------------------


def run(plan: Plan, data: Dataset, learning_rate, momentum, seed, axis_name: str | None = None) -> dict:
    """One run of ``plan``: the chunks scanned from ``start``, then ``finish`` (see ``make_run``)."""
    pb, state = start(plan, data, learning_rate, momentum, seed, axis_name)
    state, out = jax.lax.scan(partial(train_chunk, pb), state,
                              jnp.arange(n_chunks(plan.spec.steps, plan.spec.eval_every)))
    return finish(pb, state, out)


def make_plan(model: Model, loss_fn: Callable, method_fn: Callable[..., Method], spec: TrainSpec) -> Plan:
    """The static ``Plan`` of ``make_run``'s arguments."""
    steps, E = spec.steps, spec.eval_every
    schedule = diag_schedule(steps, spec.diag_every)
    names = param_names(model)
    return Plan(spec, model, loss_fn, method_fn,
                eval_steps=jnp.asarray(eval_steps(steps, E)),
                targets=jnp.asarray(spec.targets, jnp.float32).reshape(-1),
                diag_steps=schedule,
                is_diag_step=jnp.asarray(np.isin(np.arange(n_chunks(steps, E) * E), schedule)),
                names=names, track=len(names) <= TRACK_PARAMS_MAX)


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
    return partial(run, make_plan(model, loss_fn, method_fn, spec))


def make_group_program(run):
    """Jit of ``run`` vmapped over (learning_rate, momentum, seed); data is shared."""
    return jax.jit(jax.vmap(partial(run, axis_name=GROUP_AXIS), in_axes=(None, 0, 0, 0), axis_name=GROUP_AXIS))
