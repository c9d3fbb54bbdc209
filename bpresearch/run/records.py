"""Result arrays of a group → what is logged for each run (pure; no mlflow here).

The names themselves live in ``bpresearch.keys``; this module computes the values:
how a config becomes params (``flat_params``), the summary metrics, which steps of
each curve are logged.

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
from pathlib import Path

import numpy as np

from bpresearch.core.diagnostics import stability_lr
from bpresearch.core.train import TRAJECTORY
from bpresearch.keys import (
    BATCH_SIZE,
    DATASET,
    DIVERGED,
    DIVERGED_STEP,
    FINAL_LOSS,
    FIRST_TARGET_KEYS,
    FULL_TRAIN_LOSS,
    GRAD_NORM,
    HESSIAN_NOISE_SCALE,
    LEARNING_RATE,
    LOSS,
    MIN_LOSS,
    MODEL,
    NOISE_SCALE,
    OPTIMIZER,
    REACHED_GRAD_TOL,
    SEED,
    SHARPNESS,
    STABILITY_LR,
    STEPS,
    STEPS_TO_GRAD_TOL,
    TEST_LOSS,
    TRAIN_LOSS,
    above_key,
    examples_key,
    param_key,
    param_metric,
    param_text,
    reached_key,
    steps_key,
)
from bpresearch.run.sweep import GroupResult
from bpresearch.spec.config import applicable, applicable_keys
from bpresearch.spec.experiment import Run, group_key
from bpresearch.spec.workload import diag_steps
from bpresearch.store.record import RunRecord

TAIL_POINTS = 800  # with log_dense = 200: about 1,000 points a curve (≈ 270 bytes each in sqlite)


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
        out.append(RunRecord(run, flat_params(c), curves, summary, artifacts, dataset, group=group_key(c)))
    return out

