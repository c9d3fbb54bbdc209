"""One measurement each: the harness as a subprocess, its compiled programs alone, the naive loops.

Every measurement writes into its own copy of an empty sqlite store (created once by
MLflow, as every sweep after a store's first finds it: ``_store``) in a temporary folder;
creating a store is measured on its own (``store_creation``). Each returns a plain dict: wall seconds, compilations, metric points and each run's final
full training loss keyed by ``(batch_size, learning_rate, seed)``, so that the four
ways of training can be checked against each other.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import jax.monitoring
import numpy as np

from bpresearch.run import records, sweep
from bpresearch.spec import experiment as expmod
from bpresearch.store import record, sqlstore
from bpresearch.store.tracking import open_store

from . import naive, servers

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


_template: list[Path] = []   # the empty store every measurement copies (made on first use)


def _store(tmp: str) -> str:
    """A copy of an empty MLflow store at ``tmp``/mlflow.db (its experiments and runs are the measurement's)."""
    if not _template:
        folder = Path(tempfile.mkdtemp(prefix="bench-template-"))
        open_store(f"sqlite:///{folder}/mlflow.db")   # MLflow creates and migrates it
        _template.append(folder / "mlflow.db")
    shutil.copy(_template[0], Path(tmp) / "mlflow.db")
    return f"sqlite:///{tmp}/mlflow.db"


def store_creation(times: int = 3) -> list[float]:
    """Seconds MLflow takes to create (and migrate) a new sqlite store, in this process, ``times`` times."""
    out = []
    with tempfile.TemporaryDirectory(prefix="bench-create-") as tmp:
        for i in range(times):
            t0 = time.perf_counter()
            open_store(f"sqlite:///{tmp}/new{i}.db")
            out.append(time.perf_counter() - t0)
    return out


def harness_command() -> list[str]:
    """``bpresearch sweep`` as installed beside this interpreter (the console script users run)."""
    script = Path(sys.executable).parent / "bpresearch"
    return [str(script)] if script.exists() else [sys.executable, "-m", "bpresearch.cli"]


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def harness(overrides: list[str], env_extra: dict[str, str] | None = None, source: str | None = None,
            new_store: bool = False) -> dict:
    """``bpresearch sweep GRID`` in a subprocess: process start, compile, training and tracking.

    ``env_extra`` adds environment variables, e.g. ``JAX_COMPILATION_CACHE_DIR`` to measure
    what a persistent compilation cache would save. ``source``: another checkout of the
    project (an earlier commit), run with this interpreter's packages, for a before/after.
    ``new_store``: the sweep creates its store (a user's very first sweep) instead of
    finding an empty one.
    """
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db" if new_store else _store(tmp)
        cmd = (harness_command() if source is None else [sys.executable, "-m", "bpresearch.cli"]) + \
            ["sweep", str(GRID), "--tracking-uri", uri]
        for o in overrides:
            cmd += ["--set", o]
        # cold by default: a fresh, empty persistent compilation cache (the harness keeps one)
        env = {**os.environ, "JAX_LOG_COMPILES": "1", "JAX_COMPILATION_CACHE_DIR": os.path.join(tmp, "jax-cache"),
               **(env_extra or {})}
        env.pop("MLFLOW_TRACKING_URI", None)
        if source is not None:
            env["PYTHONPATH"] = source
        cpu0, t0 = _children_cpu_s(), time.perf_counter()
        proc = subprocess.run(cmd, cwd=source or ROOT, env=env, capture_output=True, text=True)
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
    from bpresearch import keys as R
    from bpresearch.store import reads as tracking_read

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


def careful(exp: expmod.Experiment) -> dict:
    """The careful user's sweep: one compiled ``lax.scan`` per run, ``log_batch`` per run (``naive.careful_sweep``)."""
    with tempfile.TemporaryDirectory(prefix="bench-careful-") as tmp, _Compiles() as c:
        cpu0, t0 = time.process_time(), time.perf_counter()
        finals, points = naive.careful_sweep(_store(tmp), exp)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"seconds": wall, "cpu_s": cpu, "compiles": c.count, "compile_s": c.seconds, "compiles_by_name": c.by_name,
            "points": points, "finals": {(int(b), float(lr), int(s)): v for (b, lr, s), v in finals.items()}}


def naive_sampled(exp: expmod.Experiment, per_batch_size: int = 2) -> dict:
    """The per-point naive loop on the first ``per_batch_size`` runs of each batch size, extrapolated to the grid.

    The loop costs the same for every run of a batch size but the first (which compiles):
    the estimate is, per batch size, the first run's seconds plus the mean of the others
    times the remaining runs. Its final losses are those of the runs it trained.
    """
    by_bs: dict[int, list] = {}
    for run in exp.runs:
        by_bs.setdefault(run.config["train"]["batch_size"], []).append(run)
    sample = [r for runs in by_bs.values() for r in runs[:per_batch_size]]
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-naive-") as tmp, _Compiles() as c:
        cpu0, t0 = time.process_time(), time.perf_counter()
        finals, points = naive.run_sweep(_store(tmp), exp, False, sample, times)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    est, i = 0.0, 0
    for runs in by_bs.values():
        t = times[i:i + min(per_batch_size, len(runs))]
        i += len(t)
        rest = sum(t[1:]) / (len(t) - 1) if len(t) > 1 else t[0]
        est += t[0] + rest * (len(runs) - 1)
    return {"seconds": est, "measured_s": wall, "sampled_runs": len(sample), "cpu_s": cpu * est / wall,
            "compiles": c.count, "compile_s": c.seconds, "compiles_by_name": c.by_name,
            "points": points * len(exp.runs) // len(sample), "sampled_points": points,
            "finals": {(int(b), float(lr), int(s)): v for (b, lr, s), v in finals.items()}}


def _group_records(exp: expmod.Experiment) -> list:
    runs = next(iter(exp.groups().values()))
    cfg = runs[0].config
    res = sweep.run_group(cfg, [sweep.member_of(r.config) for r in runs], exp.dataset(cfg), cfg["train"]["chunk"])
    return records.records(runs, res)


# bare sqlite3 connection settings of the ceiling: sqlite's defaults,
# the settings of the harness's bulk connection (bpresearch.store.sqlstore), and those with synchronous=OFF
CEILING_SETTINGS = {"defaults": [], "bulk": [f"cache_size = -{sqlstore.CACHE_KIB}"],
                    "bulk_sync_off": [f"cache_size = -{sqlstore.CACHE_KIB}", "synchronous = OFF"]}


def write_path(exp: expmod.Experiment, copies: int = 8, recs: list | None = None) -> dict:
    """The harness's write path against sqlite itself, on the same metric rows.

    The grid's first group of real records, ``copies`` times over (one ``Store.log_runs``
    per copy, as the runner calls it per group), is written into a fresh store; then the
    very same metric rows, built beforehand, go into another fresh store by a bare
    ``sqlite3`` ``executemany`` into MLflow's ``metrics`` table (its composite primary key
    and two indexes), one transaction: the ceiling; and once more in one transaction per
    copy, the write path's own commits (each a durable fsync). A second pass writes the records
    without their curves: the fixed cost per run (runs, tags, params, config artifact).
    MLflow's own client path (``open_store(bulk=False)``: create_run, ``log_batch``,
    set_terminated) writes 4 of the records, for scale. ``recs``: the records, if already trained.
    """
    recs = recs if recs is not None else _group_records(exp)
    out = {"runs": len(recs) * copies}
    with tempfile.TemporaryDirectory(prefix="bench-write-") as tmp:
        _store(tmp)  # the empty store, copied for every measurement
        empty = Path(tmp) / "empty.db"
        shutil.copy(Path(tmp) / "mlflow.db", empty)
        for label, strip in (("full", False), ("no_points", True)):
            shutil.copy(empty, Path(tmp) / "mlflow.db")
            tracker = open_store(_store(tmp))
            exp_id = tracker.experiment(exp.name, exp.description)
            parent = tracker.start_sweep(exp_id, "bench", {}, {}, {})
            todo = recs if not strip else [record.RunRecord(r.run, r.params, {}, r.summary, r.artifacts) for r in recs]
            p0, t0 = tracker.points, time.perf_counter()
            for _ in range(copies):
                tracker.log_runs(exp_id, parent, todo, {"bpresearch.group": "bench"})
            out[f"{label}_s"] = time.perf_counter() - t0
            out[f"{label}_points"] = tracker.points - p0
        new = [sqlstore.NewRun(sqlstore.new_run_id(), r.run.name, 1, "", 1, {}, {}, r.curves, r.summary)
               for _ in range(copies) for r in recs]
        rows = [row for run in new for part in sqlstore.metric_rows(run)[0] for row in part]
        out["ceiling_points"] = len(rows)
        for label, pragmas in CEILING_SETTINGS.items():
            db = Path(tmp) / f"ceiling-{label}.db"
            shutil.copy(empty, db)
            con = sqlite3.connect(db, isolation_level=None)
            for p in pragmas:
                con.execute(f"PRAGMA {p}")
            t0 = time.perf_counter()
            con.execute("BEGIN")
            con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                            "VALUES (?, ?, ?, ?, ?, ?)", rows)
            con.execute("COMMIT")
            out[f"ceiling_{label}_s"] = time.perf_counter() - t0
            con.close()
        # the same rows in the write path's own commits (one per copy: a group), into a growing store
        db = Path(tmp) / "ceiling-commits.db"
        shutil.copy(empty, db)
        con = sqlite3.connect(db, isolation_level=None)
        con.execute(f"PRAGMA cache_size = -{sqlstore.CACHE_KIB}")
        per_copy = len(rows) // copies
        t0 = time.perf_counter()
        for i in range(copies):
            con.execute("BEGIN")
            con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                            "VALUES (?, ?, ?, ?, ?, ?)", rows[i * per_copy:(i + 1) * per_copy if i < copies - 1 else None])
            con.execute("COMMIT")
        out["ceiling_commits_s"] = time.perf_counter() - t0
        con.close()
        shutil.copy(empty, Path(tmp) / "mlflow.db")
        tracker = open_store(_store(tmp), bulk=False)
        exp_id = tracker.experiment(exp.name, exp.description)
        parent = tracker.start_sweep(exp_id, "bench", {}, {}, {})
        t0 = time.perf_counter()
        tracker.log_runs(exp_id, parent, recs[:4], {})
        out["mlflow_client_s_per_run"] = (time.perf_counter() - t0) / 4
        out["mlflow_client_points_per_s"] = tracker.points / (time.perf_counter() - t0)
    pts = out["full_points"] - out["no_points_points"]
    out["per_run_s"] = out["no_points_s"] / out["runs"]
    out["per_point_us"] = 1e6 * (out["full_s"] - out["no_points_s"]) / pts
    out["points_per_s"] = out["full_points"] / out["full_s"]   # all in: runs, tags, params, artifacts too
    for label in (*CEILING_SETTINGS, "commits"):
        out[f"ceiling_{label}_points_per_s"] = out["ceiling_points"] / out[f"ceiling_{label}_s"]
    return out


# ---------------------------------------------------------------- other stores: a server, PostgreSQL
# the client calls of MlflowStore._client_run, timed apart (log_batch split by what it carries)
PHASES = ("create_run", "log_batch_params", "log_batch_metrics", "bulk_insert", "log_inputs", "log_text",
          "set_terminated")


class _ClientTimer:
    """Seconds and calls of each client call of one ``MlflowStore``, timed by wrapping them on the instance.

    bpresearch's code runs unchanged: the tracker's own MLflow client (and its bulk insert)
    are wrapped, so what is left of a total is the tracker's own Python (building
    ``Metric`` objects, fitting params).
    """

    def __init__(self, tracker):
        self.secs, self.calls = dict.fromkeys(PHASES, 0.0), dict.fromkeys(PHASES, 0)
        self.requests: list[tuple[int, float]] = []   # (points, seconds) of each metrics log_batch
        self.bulk_points = 0
        self.in_bulk, self.db_cursor_s = False, 0.0
        self._wrap_client(tracker.client)
        self._listen_db(tracker.client)
        self._wrap_bulk(tracker)

    def _timed(self, fn, phase_of):
        def wrapper(*args, **kwargs):
            phase = phase_of(args, kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.secs[phase] += time.perf_counter() - t0
                self.calls[phase] += 1
                if phase == "log_batch_metrics":
                    self.requests.append((len(kwargs.get("metrics") or ()), time.perf_counter() - t0))
        return wrapper

    def _wrap_client(self, c):
        for name in ("create_run", "log_inputs", "log_text", "set_terminated"):
            setattr(c, name, self._timed(getattr(c, name), lambda a, k, n=name: n))
        c.log_batch = self._timed(c.log_batch,
                                  lambda a, k: "log_batch_metrics" if k.get("metrics") else "log_batch_params")

    def _listen_db(self, c):
        """On a SQL store: the database's own share of the bulk insert (cursor executions inside it)."""
        store = getattr(getattr(c, "_tracking_client", None), "store", None)
        if getattr(store, "engine", None) is None:
            return
        from sqlalchemy import event

        def before(conn, cursor, statement, parameters, context, executemany):
            conn.info["bench_t0"] = time.perf_counter()

        def after(conn, cursor, statement, parameters, context, executemany):
            if self.in_bulk:
                self.db_cursor_s += time.perf_counter() - conn.info.pop("bench_t0")
        event.listen(store.engine, "before_cursor_execute", before)
        event.listen(store.engine, "after_cursor_execute", after)

    def _wrap_bulk(self, tracker):
        bulk = tracker._insert_new_metrics

        def insert(run_id, metrics):   # counts only the inserts that happened (False: not a SQL store)
            t0 = time.perf_counter()
            self.in_bulk = True
            try:
                ok = bulk(run_id, metrics)
            finally:
                self.in_bulk = False
            if ok:
                self.secs["bulk_insert"] += time.perf_counter() - t0
                self.calls["bulk_insert"] += 1
                self.bulk_points += len(metrics)
            return ok
        tracker._insert_new_metrics = insert

    def figures(self, runs: int, points: int, total: float) -> dict:
        """What limits the path: seconds per phase, per request and per point."""
        secs = self.secs
        out = {"runs": runs, "points": points, "seconds": total, "points_per_s": points / total,
               "per_run_s": total / runs, "phases_s": secs, "calls": self.calls,
               "other_s": total - sum(secs.values())}
        if self.requests:
            n, t = np.array(self.requests, dtype=float).T
            out["points_per_request"] = float(n.mean())
            out["s_per_metrics_request"] = float(t.mean())
            if len(set(n)) > 1:   # full (1,000) and last requests differ in size: a line through them
                slope, fixed = np.polyfit(n, t, 1)
                out["request_fixed_ms"] = 1000 * float(fixed)
                out["request_us_per_point"] = 1e6 * float(slope)
        if self.bulk_points:
            out["bulk_points_per_s"] = self.bulk_points / secs["bulk_insert"]
            out["bulk_db_s"] = self.db_cursor_s   # in the driver and the database (executemany of the rows)
        out["per_run_calls_s"] = (secs["create_run"] + secs["log_batch_params"] + secs["log_inputs"]
                                  + secs["log_text"] + secs["set_terminated"])   # everything but the metrics
        out["metrics_s"] = secs["log_batch_metrics"] + secs["bulk_insert"]
        return out


def _timed_client_path(uri: str, exp: expmod.Experiment, recs: list, copies: int) -> dict:
    """``Store.log_runs`` of ``recs``, ``copies`` times, into ``uri``; seconds and calls of each client call."""
    tracker = open_store(uri)
    exp_id = tracker.experiment(exp.name, exp.description)
    parent = tracker.start_sweep(exp_id, "bench", {}, {}, {})
    timer = _ClientTimer(tracker)
    # Against a server set_terminated also GETs the run to print its link (MLflow's
    # _log_url): that request is timed as the harness pays it, the link itself hidden.
    p0, t0 = tracker.points, time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        for _ in range(copies):
            tracker.log_runs(exp_id, parent, recs, {"bpresearch.group": "bench"})
    total = time.perf_counter() - t0
    return timer.figures(len(recs) * copies, tracker.points - p0, total)


def other_stores(exp: expmod.Experiment, copies: int = 1, recs: list | None = None) -> dict:
    """``Store.log_runs`` into a tracking server and into PostgreSQL, on the same real records as ``write_path``.

    Neither goes through ``sqlstore``: both take MLflow's client path (``_client_run``), a
    server by REST (``log_batch`` of ≤ 1,000 points a request), PostgreSQL by SQLAlchemy
    (one bulk insert of a run's points, the other calls through MLflow's SQL store). Each
    client call is timed apart, so that what limits a path is measured, not guessed. A path
    that cannot run here is ``{"skipped": reason}``, never left out.
    """
    recs = recs if recs is not None else _group_records(exp)
    out = {}
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        try:
            with servers.mlflow_server(f"sqlite:///{tmp}/server.db", Path(tmp)) as base:
                out["server"] = _timed_client_path(base, exp, recs, copies)
        except (RuntimeError, OSError) as e:
            out["server"] = {"skipped": f"mlflow server did not run: {str(e).splitlines()[0]}"}
    why = servers.postgres_missing()
    if why:
        out["postgres"] = {"skipped": why}
    else:
        try:
            with servers.postgres_server() as pg:
                out["postgres"] = _timed_client_path(pg.database("bench"), exp, recs, copies)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            out["postgres"] = {"skipped": f"PostgreSQL did not run: {str(e).splitlines()[0]}"}
    return out
