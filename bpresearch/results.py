"""Result arrays of a group → what is logged for each run (pure; no mlflow here).

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
from .sweep import GroupResult, diag_steps

TAIL_POINTS = 800  # with log_dense = 200: about 1,000 points a curve (≈ 270 bytes each in sqlite)


@dataclass
class RunRecord:
    run: Run
    params: dict[str, str]
    metrics: list[tuple[str, float, int]]   # (key, value, step)
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
    return f"{target:g}"


def flat_params(config: dict) -> dict[str, str]:
    """The resolved config flattened to ``section.key`` strings, plus short names for the UI."""
    out = {}
    for section, values in config.items():
        if isinstance(values, dict) and section != "swept":
            for k, v in values.items():
                out[f"{section}.{k}"] = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    c = config
    out.update({
        "learning_rate": str(c["optimizer"]["learning_rate"]),
        "batch_size": str(c["train"]["batch_size"]),
        "seed": str(c["train"]["seed"]),
        "optimizer": c["optimizer"]["kind"],
        "model": c["model"]["kind"] if c["model"]["kind"] != "mlp"
        else f"mlp{json.dumps(c['model']['hidden'])}",
        "dataset": c["data"]["source"] if c["data"]["source"] != "file" else f"file:{c['data']['path']}",
        "loss": c["loss"]["kind"],
        "steps": str(c["train"]["steps"]),
    })
    return out


def summary_metrics(config: dict, a: dict[str, np.ndarray], i: int) -> dict[str, float]:
    """Summary metrics of member i; a target never reached is absent, with reached = 0."""
    diverged = bool(a["diverged"][i])
    out = {
        "final_full_train_loss": float(a["final_full_train_loss"][i]),
        "min_full_train_loss": float(a["min_full_train_loss"][i]),
        "diverged": float(diverged),
        "diverged_step": float(a["diverged_step"][i]),
    }
    bs = config["train"]["batch_size"]
    for j, target in enumerate(config["train"]["targets"]):
        s = int(a["steps_to_target"][i, j])
        names = [f"_loss_{target_key(target)}"] + (["_target"] if j == 0 else [])
        for suffix in names:
            out["reached" + suffix] = float(s >= 0)
            if s >= 0:
                out["steps_to" + suffix] = float(s)
                out["examples_to" + suffix] = float(s * bs)
    return out


def diagnostic_metrics(config: dict, a: dict[str, np.ndarray], i: int, stop: int) -> list[tuple[str, float, int]]:
    """``sharpness``, ``stability_lr`` and ``gradient_noise_scale`` at the steps they were measured."""
    steps = diag_steps(config)
    out = []
    o = config["optimizer"]
    if "sharpness" in a:
        lam = a["sharpness"][i]
        bound = np.asarray(stability_lr(lam, o["kind"], o["momentum"]))
        for s, l, b in zip(steps, lam, bound):
            if s <= stop and np.isfinite(l):
                out.append(("sharpness", float(l), int(s)))
                if np.isfinite(b):
                    out.append(("stability_lr", float(b), int(s)))
    if "noise_scale" in a:
        out += [("gradient_noise_scale", float(v), int(s)) for s, v in zip(steps, a["noise_scale"][i])
                if s <= stop and np.isfinite(v)]
    return out


def records(runs: list[Run], result: GroupResult) -> list[RunRecord]:
    """One ``RunRecord`` per run of a group, in the group's order."""
    a = result.arrays
    out = []
    for i, run in enumerate(runs):
        c = run.config
        t = c["train"]
        stop = int(a["diverged_step"][i]) if a["diverged"][i] else t["steps"]
        metrics: list[tuple[str, float, int]] = []
        steps = logged_steps(t["steps"], t["log_dense"], t["log_every"])
        steps = steps[steps <= stop]
        for key in ("train_loss", "grad_norm"):
            vals = a[key][i][steps]
            metrics += [(key, float(v), int(s)) for s, v in zip(steps, vals) if np.isfinite(v)]
        ev = result.eval_steps
        keep = ev <= stop
        for key in ("full_train_loss", "test_loss"):
            vals = a[key][i]
            metrics += [(key, float(v), int(s)) for s, v, k in zip(ev, vals, keep) if k and np.isfinite(v)]
        if "sharpness" in a or "noise_scale" in a:
            metrics += diagnostic_metrics(c, a, i, stop)
        summary = summary_metrics(c, a, i)
        artifacts = {"config.json": json.dumps(c, indent=2, sort_keys=True)}
        out.append(RunRecord(run, flat_params(c), metrics, summary, artifacts))
    return out

