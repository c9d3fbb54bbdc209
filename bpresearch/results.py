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

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import applicable, applicable_keys
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

# ---------------------------------------------------------------- names in the store
# The MLflow UI (3.17) lays a run's charts out in sections named by the prefix before "/":
# prefixed sections first, in alphabetical order, then the unprefixed "Model metrics". So
# the store holds the loss curves under "curves/", gradient norm and diagnostics under
# "diagnostics/" and a child run's one-value summaries under "summary/": the chart view
# leads with full_train_loss, test_loss and train_loss, and the summaries (which sorting
# and filtering need: metrics.`summary/diverged` = 1) follow; a sweep's own numbers
# (parent runs) stay unprefixed. The code uses the short names above: tracking writes
# ``stored_key``/``stored_summary`` and tracking_read gives back ``short_key``, so stores
# written before the prefixes read the same.
CURVES_PREFIX, DIAGNOSTICS_PREFIX, SUMMARY_PREFIX = "curves/", "diagnostics/", "summary/"
_PREFIXES = (CURVES_PREFIX, DIAGNOSTICS_PREFIX, SUMMARY_PREFIX)


def stored_key(key: str) -> str:
    """The MLflow name of a per-step metric: ``curves/full_train_loss``, ``diagnostics/grad_norm``."""
    if key in (FULL_TRAIN_LOSS, TRAIN_LOSS, TEST_LOSS):
        return CURVES_PREFIX + key
    if key in (GRAD_NORM, *DIAGNOSTIC_KEYS):
        return DIAGNOSTICS_PREFIX + key
    return key


def stored_summary(key: str) -> str:
    """The MLflow name of a child run's summary metric: ``summary/final_full_train_loss``."""
    return SUMMARY_PREFIX + key


def short_key(stored: str) -> str:
    """The name the code uses for a metric read from the store (either naming)."""
    for prefix in _PREFIXES:
        if stored.startswith(prefix):
            return stored[len(prefix):]
    return stored


def stored_names(key: str) -> tuple[str, ...]:
    """Every MLflow name a per-step metric ``key`` may have: prefixed now, bare in older stores."""
    return tuple(dict.fromkeys((stored_key(key), key)))


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
    dataset: dict | None = None              # ``dataset_input``: the run's MLflow dataset input
    times: tuple[int, int] | None = None     # (start, end) ms since the epoch: when it trained


def data_digest(dataset) -> str:
    """SHA-256 of a data set's arrays (train, then test), for the dataset input's digest."""
    h = hashlib.sha256()
    for a in (dataset.X_train, dataset.y_train, dataset.X_test, dataset.y_test):
        if a is not None:
            a = np.ascontiguousarray(np.asarray(a))
            h.update(f"{a.dtype}{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def dataset_input(config: dict, dataset) -> dict:
    """What the UI's *Dataset* column shows for a run: name, digest, source.

    The keyword arguments of ``mlflow.entities.Dataset``: ``name`` (``digits``,
    ``teacher``, the file's name, ``seed``), ``digest`` (the first 8 hex digits of
    ``data_digest``, or of the file's SHA-256), ``source_type`` and ``source`` (JSON:
    scikit-learn's loader or the generator with its parameters, or the file's path) and
    ``profile`` (example counts and input width).
    """
    d = config["data"]
    keep = applicable_keys(config)
    params = {k: v for k, v in d.items() if ("data", k) in keep and k not in ("source", "sha256")}
    query = "&".join(f"{k}={v}" for k, v in params.items() if k != "path")
    if d["source"] == "file":
        name, kind, uri = Path(d["path"]).name, "local", d["path"] + (f"?{query}" if query else "")
        digest = d.get("sha256") or data_digest(dataset)
    else:
        origin = {"digits": "sklearn.datasets.load_digits", "teacher": "bpresearch.data.teacher",
                  "seed": "bpresearch.data.seed_point"}.get(d["source"], d["source"])
        name, kind, uri = d["source"], "code", origin + (f"?{query}" if query else "")
        digest = data_digest(dataset)
    n_test = 0 if dataset.X_test is None else int(dataset.X_test.shape[0])
    profile = {"n_train": int(dataset.X_train.shape[0]), "n_test": n_test, "n_features": int(dataset.X_train.shape[1])}
    return {"name": name, "digest": digest[:8], "source_type": kind, "source": json.dumps({"uri": uri}),
            "profile": json.dumps(profile)}


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
    """The resolved config flattened to ``section.key`` strings, plus short names for the UI.

    Only the settings that apply to the run's data source, model and optimizer
    (``config.applicable``): no ``model.start`` for an MLP, no teacher sizes for digits.
    """
    out = {}
    for section, values in applicable(config).items():
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


def records(runs: list[Run], result: GroupResult, dataset: dict | None = None) -> list[RunRecord]:
    """One ``RunRecord`` per run of a group, in the group's order (``dataset``: its input)."""
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
        artifacts = {"config.json": json.dumps(applicable(c), indent=2, sort_keys=True)}
        out.append(RunRecord(run, flat_params(c), curves, summary, artifacts, dataset))
    return out

