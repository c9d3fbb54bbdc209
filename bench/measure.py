"""One measurement each: the harness as a subprocess, its compiled programs alone, the naive loops.

Every measurement writes into its own fresh sqlite store in a temporary folder and
returns a plain dict: wall seconds, compilations, metric points and each run's final
full training loss keyed by ``(batch_size, learning_rate, seed)``, so that the four
ways of training can be checked against each other.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import jax.monitoring

from bpresearch import experiment as expmod
from bpresearch import results, sweep
from bpresearch.tracking import Tracker

from . import naive

ROOT = Path(__file__).resolve().parent.parent
GRID = ROOT / "bench" / "grid.toml"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
# What JAX prints for each XLA compilation when JAX_LOG_COMPILES=1 (jax/_src/interpreters/pxla.py).
COMPILE_LINE = re.compile(r"Finished XLA compilation of (\S+) in ([\d.]+) sec")

_compiles: Counter = Counter()   # in-process XLA compilations: count and seconds, since import
_compile_s = [0.0]


def _on_duration(event: str, duration: float, **kwargs):
    if event == COMPILE_EVENT:
        _compiles[kwargs.get("fun_name", "?")] += 1
        _compile_s[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_duration)


class _Compiles:
    """Counts the XLA compilations of this process inside a ``with`` block."""

    def __enter__(self):
        self.before, self.s0 = Counter(_compiles), _compile_s[0]
        return self

    def __exit__(self, *exc):
        self.by_name = dict(_compiles - self.before)
        self.count = sum(self.by_name.values())
        self.seconds = _compile_s[0] - self.s0


def key_of(config: dict) -> tuple:
    """A run's identity across the four measurements."""
    return (int(config["train"]["batch_size"]), float(config["optimizer"]["learning_rate"]), int(config["train"]["seed"]))


def _store(tmp: str) -> str:
    return f"sqlite:///{tmp}/mlflow.db"


def harness_command() -> list[str]:
    """``bpresearch sweep`` as installed beside this interpreter (the console script users run)."""
    script = Path(sys.executable).parent / "bpresearch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bpresearch.cli"]


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def harness(overrides: list[str], env_extra: dict[str, str] | None = None) -> dict:
    """``bpresearch sweep GRID`` in a subprocess: process start, compile, training and tracking.

    ``env_extra`` adds environment variables, e.g. ``JAX_COMPILATION_CACHE_DIR`` to measure
    what a persistent compilation cache would save.
    """
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp:
        uri = _store(tmp)
        cmd = harness_command() + ["sweep", str(GRID), "--tracking-uri", uri]
        for o in overrides:
            cmd += ["--set", o]
        # cold by default: a fresh, empty persistent compilation cache (the harness keeps one)
        env = {**os.environ, "JAX_LOG_COMPILES": "1", "JAX_COMPILATION_CACHE_DIR": os.path.join(tmp, "jax-cache"),
               **(env_extra or {})}
        env.pop("MLFLOW_TRACKING_URI", None)
        cpu0, t0 = _children_cpu_s(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, _children_cpu_s() - cpu0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        compiles = [(m.group(1), float(m.group(2))) for m in COMPILE_LINE.finditer(proc.stderr)]
        parent, finals = _read_store(uri)
    return {
        "seconds": wall,
        "cpu_s": cpu,
        "compiles": len(compiles),
        "compile_s": sum(s for _, s in compiles),
        "compiles_by_name": dict(Counter(name for name, _ in compiles)),
        "points": int(parent["metric_points"]),
        "sweep": parent,
        "finals": finals,
    }


def _read_store(uri: str) -> tuple[dict, dict]:
    """(the parent sweep run's metrics, {key: final full training loss} of its child runs)."""
    from bpresearch import results as R
    from bpresearch import tracking_read

    runs = tracking_read.runs(uri, tracking_read.experiment(uri, expmod.load(GRID).name).experiment_id)
    parent = next(r for r in runs if r.tags.get(R.KIND_TAG) == R.SWEEP)
    finals = {}
    for r in runs:
        if r.tags.get(R.KIND_TAG) == R.RUN:
            p = r.params
            finals[(int(p[R.BATCH_SIZE]), float(p[R.LEARNING_RATE]), int(p[R.SEED]))] = r.metrics[R.FINAL_LOSS]
    return dict(parent.metrics), finals


def bare(exp: expmod.Experiment) -> dict:
    """``sweep.run_group`` on every group: compile and training only; no tracking, no process start."""
    finals, compile_s, run_s = {}, 0.0, 0.0
    with _Compiles() as c:
        cpu0, t0 = time.process_time(), time.perf_counter()
        for runs in exp.groups().values():
            cfg = runs[0].config
            res = sweep.run_group(cfg, [sweep.member_of(r.config) for r in runs], exp.dataset(cfg),
                                  cfg["train"]["chunk"])
            compile_s += res.compile_s
            run_s += res.run_s
            finals.update({key_of(r.config): float(f) for r, f in zip(runs, res.arrays["final_full_train_loss"])})
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"seconds": wall, "cpu_s": cpu, "compiles": c.count, "compile_s": c.seconds, "compiles_by_name": c.by_name,
            "group_compile_s": compile_s, "group_run_s": run_s, "points": 0, "finals": finals}


def naive_loop(exp: expmod.Experiment, batched: bool) -> dict:
    """The naive loop over ``exp``'s runs, logging per point or per run (``batched``)."""
    with tempfile.TemporaryDirectory(prefix="bench-naive-") as tmp, _Compiles() as c:
        cpu0, t0 = time.process_time(), time.perf_counter()
        finals, points = naive.run_sweep(_store(tmp), exp, batched)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"seconds": wall, "cpu_s": cpu, "compiles": c.count, "compile_s": c.seconds, "compiles_by_name": c.by_name,
            "points": points, "finals": {(int(b), float(lr), int(s)): v for (b, lr, s), v in finals.items()}}


def tracking_costs(exp: expmod.Experiment) -> dict:
    """The harness's writes alone, split into a fixed cost per run and a cost per metric point.

    Logs the grid's real records (from one compiled group) twice into fresh stores with
    ``Tracker.log_run``: once complete, once with no metric points; the difference is
    the points' share, the rest is create_run, params, the config artifact and set_terminated.
    """
    runs = next(iter(exp.groups().values()))
    cfg = runs[0].config
    res = sweep.run_group(cfg, [sweep.member_of(r.config) for r in runs], exp.dataset(cfg), cfg["train"]["chunk"])
    recs = results.records(runs, res)
    out = {"runs": len(recs)}
    for label, strip in (("full", False), ("no_points", True)):
        with tempfile.TemporaryDirectory(prefix="bench-tracking-") as tmp:
            tracker = Tracker(_store(tmp))
            exp_id = tracker.experiment(exp.name, exp.description)
            parent = tracker.start_sweep(exp_id, "bench", {}, {}, {})
            t0 = time.perf_counter()
            for rec in recs:
                if strip:
                    rec = results.RunRecord(rec.run, rec.params, {}, rec.summary, rec.artifacts)
                tracker.log_run(exp_id, parent, rec, {})
            out[f"{label}_s"] = time.perf_counter() - t0
            out[f"{label}_points"] = tracker.points
    n, pts = out["runs"], out["full_points"] - out["no_points_points"]
    out["per_run_s"] = out["no_points_s"] / n
    out["per_point_us"] = 1e6 * (out["full_s"] - out["no_points_s"]) / pts
    return out
