"""Result arrays of a group → what is logged for each run (pure; no mlflow here).

This module is the naming contract between the sweep and analysis: every metric name
(curves, summaries, ``steps_to_loss_<t>`` …), how a config becomes params (``flat_params``
and its value encoding ``param_text``, the short names), and the tags that mark runs.
Analysis reads these names from here, never spells them itself.

Logging schedule (keeps the store small, summaries stay exact):
- ``train_loss`` and ``grad_norm`` at every step below ``log_dense``, then every
  ``log_every`` steps (the raw minibatch value at that step, so stochastic noise stays
  visible); ``log_every = "auto"`` keeps that tail to about 800 points.
- ``full_train_loss`` and ``test_loss`` at every evaluated step.
- A diverged run's curves stop at its divergence step; non-finite values are never logged.
- Summary metrics come from the compiled program at full resolution.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from .diagnostics import stability_lr
from .experiment import Run
from .sweep import GroupResult
from .train import TRAJECTORY
from .workload import diag_steps

TAIL_POINTS = 800  # with log_dense = 200: about 1,000 points a curve (≈ 270 bytes each in sqlite)

# ---------------------------------------------------------------- tags
KIND_TAG = "bpresearch.kind"          # "sweep" (parent) or "run" (child)
HASH_TAG = "bpresearch.config_hash"   # experiment.config_hash of a child run's resolved config
SWEEP, RUN = "sweep", "run"           # the values of KIND_TAG
ROUND_TAG = "bpresearch.round"        # refining sweeps: 0 for the initial grid, k for the k-th round
REFINE_ARTIFACT = "refine.json"       # refining sweeps: the parent's per-group record (rounds.RefineGroup)

# ---------------------------------------------------------------- metric names
TRAIN_LOSS = "train_loss"              # curves: the minibatch loss and gradient norm at logged steps,
GRAD_NORM = "grad_norm"
FULL_TRAIN_LOSS = "full_train_loss"    # the full training and test losses at evaluated steps
TEST_LOSS = "test_loss"
CURVE_KEYS = (TRAIN_LOSS, GRAD_NORM, FULL_TRAIN_LOSS, TEST_LOSS)
SHARPNESS = "sharpness"                # diagnostics at measured steps: λ_max of the Hessian,
STABILITY_LR = "stability_lr"          # the learning rate it makes unstable,
NOISE_SCALE = "gradient_noise_scale"   # B_simple = tr(Σ)/|G|²,
HESSIAN_NOISE_SCALE = "hessian_noise_scale"  # and B_noise = tr(HΣ)/(GᵀHG)
DIAGNOSTIC_KEYS = (SHARPNESS, STABILITY_LR, NOISE_SCALE, HESSIAN_NOISE_SCALE)
FINAL_LOSS = "final_full_train_loss"   # summaries: one value per run (step 0)
MIN_LOSS = "min_full_train_loss"
DIVERGED = "diverged"                  # 1.0 or 0.0
DIVERGED_STEP = "diverged_step"        # -1 when it did not diverge
STEPS_TO_GRAD_TOL = "steps_to_grad_tol"  # with train.grad_tol: first step with full-batch |∇L| < grad_tol
REACHED_GRAD_TOL = "reached_grad_tol"    # (absent when never: censored, like steps_to_target), 1.0/0.0
PARAM_PREFIX = "param/"                # param/<name>: one parameter's value after k updates (tiny models,
                                       # train.TRACK_PARAMS_MAX), a metric history the UI plots

# the parent of a refining sweep: rounds (the most any group took), learning rates and
# configurations added, refinement groups and how many of them resolved
REFINE_ROUNDS, REFINE_LRS_ADDED, REFINE_CONFIGS_ADDED = \
    "refine_rounds", "refine_learning_rates_added", "refine_configurations_added"
REFINE_GROUPS, REFINE_GROUPS_RESOLVED = "refine_groups", "refine_groups_resolved"


def param_metric(name: str) -> str:
    """The metric history of one scalar parameter: ``param/w``, ``param/w[1]``, ``param/x``."""
    return f"{PARAM_PREFIX}{name}"


# ---------------------------------------------------------------- short params (the UI's columns)
LEARNING_RATE, BATCH_SIZE, SEED, STEPS = "learning_rate", "batch_size", "seed", "steps"
OPTIMIZER, MODEL, DATASET, LOSS = "optimizer", "model", "dataset", "loss"


@dataclass
class RunRecord:
    run: Run
    params: dict[str, str]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]   # key -> (steps int64, values float64), finite values
    summary: dict[str, float]
    artifacts: dict[str, str] = field(default_factory=dict)  # file name -> text


def logged_steps(steps: int, log_dense: int, log_every) -> np.ndarray:
    """The steps whose minibatch loss and gradient norm are logged."""
    dense = np.arange(min(steps, log_dense))
    if steps <= log_dense:
        return dense
    every = max(1, math.ceil((steps - log_dense) / TAIL_POINTS)) if log_every == "auto" else log_every
    return np.concatenate([dense, np.arange(log_dense, steps, every)])


def target_key(target: float) -> str:
    """How a loss target is written in metric names and text: ``0.06``, ``1e-06``."""
    return f"{target:g}"


def steps_key(target: float) -> str:
    """Steps to first reach full training loss < target (absent when not reached)."""
    return f"steps_to_loss_{target_key(target)}"


def examples_key(target: float) -> str:
    """Examples (steps × batch size) to the target (absent when not reached)."""
    return f"examples_to_loss_{target_key(target)}"


def above_key(target: float) -> str:
    """The last evaluated step whose full training loss was above the target, before the first below.

    Steps-to-target is the interval (above, steps]: every step at full batch, every
    ``eval_every`` steps otherwise. When not reached: the last evaluated step (censored there).
    """
    return f"steps_above_loss_{target_key(target)}"


def reached_key(target: float) -> str:
    """1.0 when the target was reached, else 0.0."""
    return f"reached_loss_{target_key(target)}"


# The first target is also logged under these names, so the UI has one column to sort by.
FIRST_TARGET_KEYS = {"steps": "steps_to_target", "examples": "examples_to_target", "reached": "reached_target",
                     "above": "steps_above_target"}


def param_text(value) -> str:
    """A config value as a param: lists and dicts as JSON, anything else as ``str``."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def param_key(section: str, key: str) -> str:
    """The param of one config entry: ``section.key``."""
    return f"{section}.{key}"


def swept_params(sweep: dict) -> set[str]:
    """The ``section.key`` params that a ``[sweep]`` section varies from run to run.

    Args:
        sweep: the ``sweep`` table of a resolved config (``learning_rate``, ``batch_size``,
            ``seeds`` or ``section.key`` entries).
    """
    from .config import SWEPT_INTO

    out = {SWEPT_INTO.get(k, k) for k in sweep}
    if SWEPT_INTO["batch_size"] in out:  # "full" among the batch sizes sets train.full_batch too
        out.add("train.full_batch")
    return out


def flat_params(config: dict) -> dict[str, str]:
    """The resolved config flattened to ``section.key`` strings, plus short names for the UI."""
    out = {}
    for section, values in config.items():
        if isinstance(values, dict) and section != "swept":
            for k, v in values.items():
                out[param_key(section, k)] = param_text(v)
    c = config
    out.update({
        LEARNING_RATE: str(c["optimizer"]["learning_rate"]),
        BATCH_SIZE: str(c["train"]["batch_size"]),
        SEED: str(c["train"]["seed"]),
        OPTIMIZER: c["optimizer"]["kind"],
        MODEL: c["model"]["kind"] if c["model"]["kind"] != "mlp"
        else f"mlp{json.dumps(c['model']['hidden'])}",
        DATASET: c["data"]["source"] if c["data"]["source"] != "file" else f"file:{c['data']['path']}",
        LOSS: c["loss"]["kind"],
        STEPS: str(c["train"]["steps"]),
    })
    return out


def summary_metrics(config: dict, a: dict[str, np.ndarray], i: int) -> dict[str, float]:
    """Summary metrics of member i; a target never reached is absent, with reached = 0.

    A loss that is not finite (a run that diverged at its first steps) is absent too: a
    report reads a missing value as missing, never NaN or inf as a number.
    """
    diverged = bool(a["diverged"][i])
    out = {
        DIVERGED: float(diverged),
        DIVERGED_STEP: float(a["diverged_step"][i]),
    }
    for key, array in ((FINAL_LOSS, "final_full_train_loss"), (MIN_LOSS, "min_full_train_loss")):
        if np.isfinite(a[array][i]):
            out[key] = float(a[array][i])
    bs = config["train"]["batch_size"]
    for j, target in enumerate(config["train"]["targets"]):
        s = int(a["steps_to_target"][i, j])
        above = int(a["steps_above_target"][i, j]) if "steps_above_target" in a else -1
        names = [{"reached": reached_key(target), "steps": steps_key(target), "examples": examples_key(target),
                  "above": above_key(target)}]
        names += [FIRST_TARGET_KEYS] if j == 0 else []
        for n in names:
            out[n["reached"]] = float(s >= 0)
            # the first crossing lies in (above, steps]; not reached: censored after the last evaluation, above
            out[n["above"]] = float(above)
            if s >= 0:
                out[n["steps"]] = float(s)
                out[n["examples"]] = float(s * bs)
    if "steps_to_grad_tol" in a:
        s = int(a["steps_to_grad_tol"][i])
        out[REACHED_GRAD_TOL] = float(s >= 0)
        if s >= 0:
            out[STEPS_TO_GRAD_TOL] = float(s)
    return out


def kept(steps: np.ndarray, values: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (steps, values) of a curve where ``keep`` holds and the value is finite, as int64 / float64."""
    keep = keep & np.isfinite(values)
    return steps[keep].astype(np.int64), values[keep].astype(np.float64)


def diagnostic_curves(config: dict, a: dict[str, np.ndarray], i: int, stop: int) -> dict[str, tuple]:
    """``sharpness``, ``stability_lr``, ``gradient_noise_scale`` (B_simple) and ``hessian_noise_scale``
    (B_noise) at the steps they were measured."""
    steps = diag_steps(config)
    out = {}
    o = config["optimizer"]
    if "sharpness" in a:
        lam = a["sharpness"][i][:len(steps)]
        bound = np.asarray(stability_lr(lam, o["kind"], o["momentum"]))
        measured = (steps[:len(lam)] <= stop) & np.isfinite(lam)
        out[SHARPNESS] = kept(steps[:len(lam)], lam, measured)
        out[STABILITY_LR] = kept(steps[:len(lam)], bound, measured)  # only where sharpness was measured
    if "noise_scale" in a:
        v = a["noise_scale"][i][:len(steps)]
        out[NOISE_SCALE] = kept(steps[:len(v)], v, steps[:len(v)] <= stop)
    if "hessian_noise_scale" in a:
        v = a["hessian_noise_scale"][i][:len(steps)]
        out[HESSIAN_NOISE_SCALE] = kept(steps[:len(v)], v, steps[:len(v)] <= stop)
    return out


def trajectory_curves(a: dict[str, np.ndarray], i: int, steps: np.ndarray) -> dict[str, tuple]:
    """``param/<name>`` at ``steps`` (the logged steps and the last), for models small enough to track."""
    return {param_metric(k[len(TRAJECTORY):]): kept(steps, a[k][i][steps], True)
            for k in a if k.startswith(TRAJECTORY)}


def records(runs: list[Run], result: GroupResult) -> list[RunRecord]:
    """One ``RunRecord`` per run of a group, in the group's order."""
    a = result.arrays
    out = []
    for i, run in enumerate(runs):
        c = run.config
        t = c["train"]
        stop = int(a["diverged_step"][i]) if a["diverged"][i] else t["steps"]
        # Vectorised: a run's curve is two arrays, never a Python object per point.
        steps = logged_steps(t["steps"], t["log_dense"], t["log_every"])
        steps = steps[steps <= stop]
        curves = {key: kept(steps, a[key][i][steps], True) for key in (TRAIN_LOSS, GRAD_NORM)}
        ev = result.eval_steps
        curves.update({key: kept(ev, a[key][i], ev <= stop) for key in (FULL_TRAIN_LOSS, TEST_LOSS)})
        if "sharpness" in a or "noise_scale" in a or "hessian_noise_scale" in a:
            curves.update(diagnostic_curves(c, a, i, stop))
        curves.update(trajectory_curves(a, i, np.append(steps, t["steps"]) if t["steps"] <= stop else steps))
        curves = {k: v for k, v in curves.items() if len(v[0])}
        summary = summary_metrics(c, a, i)
        artifacts = {"config.json": json.dumps(c, indent=2, sort_keys=True)}
        out.append(RunRecord(run, flat_params(c), curves, summary, artifacts))
    return out

