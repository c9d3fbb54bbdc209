"""The answer a store holds: the best learning rate per batch size and target, read back from its curves.

Every way of training in the bench (the harness, Ray Tune, Optuna) is judged by one rule on
what it logged: each run's ``full_train_loss`` curve gives its first evaluated step below
each target, and ``bpresearch.verdicts`` turns the runs of a batch size into a score per
learning rate and the best one (the rule the report and the refiner use). Two stores give
the same answer when they name the same best learning rate in every cell.

A run is found by its params ``learning_rate``, ``batch_size`` and ``seed`` (what each tool
logs from its search space), its curve by the metric ``full_train_loss`` under the store's
own steps. Ray Tune's callback logs a report's metrics under the report's index, so its
runs also carry the training step as the metric ``step`` at each index: where a run has it,
it maps the index back to the training step.
"""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import tempfile
import time
from collections import defaultdict
from typing import NamedTuple

import numpy as np

from bpresearch import keys as R
from bpresearch import verdicts
from bpresearch.store import reads
from bpresearch.store.uri import sqlite_path

from . import measure

STEP = "step"   # the training step of a logged index (Ray Tune's runs)


class Cell(NamedTuple):
    """The best learning rate of one batch size for one target, its score and neighbours."""
    best: float | None          # None: no learning rate reached the target
    steps: float                # its score: the upper median over seeds of steps to the target (∞: none)
    bracket: verdicts.Bracket   # indices into ``lrs``
    lrs: tuple[float, ...]      # the learning rates tried, ascending


def curves(uri: str, experiment: str) -> dict[tuple[int, float, int], np.ndarray]:
    """``{(batch_size, learning_rate, seed): (2, n) array of training steps and full training losses}``
    of every finished run of ``experiment`` that logged the params and the curve."""
    exp = reads.experiment(uri, experiment)
    runs = [r for r in reads.runs(uri, exp.experiment_id) if r.status == "FINISHED"
            and {R.LEARNING_RATE, R.BATCH_SIZE, R.SEED} <= r.params.keys()]
    points = defaultdict(dict)
    for run_id, key, step, value, _ in reads.metric_points(uri, [r.run_id for r in runs], [R.FULL_TRAIN_LOSS, STEP]):
        points[run_id].setdefault(key, {})[step] = value
    out = {}
    for r in runs:
        loss = points[r.run_id].get(R.FULL_TRAIN_LOSS)
        if not loss:
            continue
        steps_of = points[r.run_id].get(STEP, {})
        xs = sorted(loss)
        out[(int(float(r.params[R.BATCH_SIZE])), float(r.params[R.LEARNING_RATE]), int(float(r.params[R.SEED])))] = \
            np.array([[steps_of.get(x, x) for x in xs], [loss[x] for x in xs]], float)
    return out


def run_steps(curve: np.ndarray, target: float) -> float:
    """One run's steps to ``target`` as the verdicts count them (∞ unless it counts as reached)."""
    steps, loss = curve
    below = np.flatnonzero(loss < target)
    first = float(steps[below[0]]) if below.size else None
    diverged = not np.isfinite(loss).all()
    return verdicts.run_steps(first, diverged, verdicts.end_level(loss), target)


def cells(runs: dict[tuple[int, float, int], np.ndarray], targets, resolution: float = math.inf
          ) -> dict[tuple[int, float], Cell]:
    """``{(batch_size, target): Cell}`` from ``curves``' runs, by ``verdicts``' scores and bracket."""
    out = {}
    for bs in sorted({k[0] for k in runs}):
        mine = {k: c for k, c in runs.items() if k[0] == bs}
        lrs = tuple(sorted({k[1] for k in mine}))
        for t in targets:
            score = verdicts.scores((k[1], run_steps(c, t)) for k, c in mine.items())
            s = [score[lr] for lr in lrs]
            b = verdicts.bracket(lrs, s, resolution)
            out[(bs, float(t))] = Cell(None if b.best is None else lrs[b.best],
                                       math.inf if b.best is None else s[b.best], b, lrs)
    return out


def best(runs: dict[tuple[int, float, int], np.ndarray], targets, resolution: float = math.inf) -> dict[str, dict]:
    """The answer ``curves``' runs give: ``{"bs=32 t=0.1": {"learning_rate", "steps", "resolved", "tried"}}``."""
    return {f"bs={bs} t={t:g}": {"learning_rate": c.best, "steps": c.steps, "resolved": c.bracket.resolved,
                                 "tried": len(c.lrs)}
            for (bs, t), c in cells(runs, targets, resolution).items()}


def same(a: dict[str, dict], b: dict[str, dict]) -> bool:
    """Whether two answers name the same best learning rate (to 6 digits) and steps in every cell."""
    return a.keys() == b.keys() and all(
        (x["learning_rate"] is None) == (y["learning_rate"] is None)
        and (x["learning_rate"] is None or abs(x["learning_rate"] / y["learning_rate"] - 1) <= verdicts.REL)
        and x["steps"] == y["steps"] for x, y in ((a[k], b[k]) for k in a))


def near(found: dict[str, dict], reference: dict[str, dict], resolution: float) -> dict[str, bool]:
    """Per cell of ``reference``: whether ``found`` names a learning rate within ``resolution`` of its
    best, with steps no more than its steps (as good an answer, not a neighbour that happens to be close)."""
    out = {}
    for k, ref in reference.items():
        got = found.get(k, {})
        lr = got.get("learning_rate")
        out[k] = lr is not None and ref["learning_rate"] is not None and \
            verdicts.within(*sorted((lr, ref["learning_rate"])), resolution) and got["steps"] <= ref["steps"]
    return out


# ---------------------------------------------------------------- stores
def points(uri: str) -> int:
    """Metric points in a sqlite store, every run's (what was logged, whoever logged it)."""
    con = sqlite3.connect(f"file:{sqlite_path(uri)}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0]
    finally:
        con.close()


def harness(folder: str, path, overrides: list[str]) -> dict:
    """``bpresearch sweep path`` as a subprocess into a copy of an empty store in ``folder`` (kept there),
    with a cold compilation cache, as ``measure.harness`` runs it: wall seconds and the store's URI."""
    uri = measure._store(folder)
    cmd = measure.harness_command() + ["sweep", str(path), "--tracking-uri", uri]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": tempfile.mkdtemp(prefix="jax-cache-", dir=folder)}
    env.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=measure.ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return {"wall_s": wall, "uri": uri}
