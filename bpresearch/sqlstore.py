"""Finished runs written straight into MLflow's sqlite schema, many runs per transaction.

MLflow's own path costs one transaction (and its fsyncs) per call and one ORM object
per metric point: create_run, log_batch of params, log_batch of metrics per 1,000
points, set_terminated. Here a whole group of finished runs goes into the store in one
transaction of one prepared ``executemany`` per table (runs, tags, params, metrics,
latest_metrics), with rows built from numpy arrays. The schema is MLflow's, untouched:
the UI and every MLflow client read these runs like any other (tests/test_sweep.py
compares them with ``log_batch`` point by point, ``latest_metrics`` included).

Connection settings (this connection only; the store's file format, journal mode and
durability are what MLflow's own connections use):

- ``journal_mode`` is left as the store has it (MLflow's default rollback journal). WAL
  would be persistent, changes how every other reader opens the file (and does not work
  on network file systems); for one large transaction it is not faster.
- ``synchronous`` is left at sqlite's default (FULL): a commit is durable and atomic
  against an application crash, an OS crash and a power loss alike. With one transaction
  per group it costs a few fsyncs per group, nothing per point.
- ``cache_size`` is raised to 256 MiB (an upper bound, allocated only as pages are
  touched). With sqlite's default 2 MiB a large transaction spills dirty index pages to
  disk before it commits, and each spill syncs the journal first; a cache that holds the
  transaction's pages removes the spills. Memory only: it cannot change what is written.
- ``busy_timeout`` 60 s: wait for another writer (a second sweep, MLflow's own calls)
  instead of failing.
- ``foreign_keys`` stays off (sqlite's default; MLflow turns it on in its sessions): every
  row refers to a run inserted in the same transaction, into an experiment that exists.

A transaction is all or nothing: a sweep killed while writing leaves none of that
transaction's runs, and resume trains them again. The runs are inserted FINISHED, since
they are complete when the transaction commits; nothing here needs mlflow.
"""

from __future__ import annotations

import sqlite3
import sys
import uuid
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path

import numpy as np

CACHE_KIB = 256 * 1024
BUSY_MS = 60_000
MAX_POINTS = 200_000   # points per transaction at most: another writer waits ≤ about 2 s
FLOAT_MAX = sys.float_info.max   # MLflow stores ±inf as ±max float, NaN as 0 with is_nan = 1


@dataclass
class NewRun:
    """One finished run, ready to insert."""
    run_id: str
    name: str
    experiment_id: int
    artifact_uri: str
    time_ms: int                        # start and end time
    tags: dict[str, str]
    params: dict[str, str]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]   # key -> (steps, values)
    summary: dict[str, float]           # logged at step 0
    start_ms: int | None = None         # start time when it differs from ``time_ms`` (the end)
    dataset: dict | None = None         # a dataset input: name, digest, source_type, source, profile


CONTEXT_TAG, CONTEXT = "mlflow.data.context", "train"   # what the UI shows beside a dataset


def new_run_id() -> str:
    return uuid.uuid4().hex  # as MLflow's SqlAlchemyStore.create_run


def connect(path: str | Path) -> sqlite3.Connection:
    """A connection for bulk loads (the settings above); transactions are explicit."""
    con = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    con.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    con.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
    return con


def sanitize(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, is_nan) as MLflow stores them: NaN → 0 with is_nan = 1, ±inf → ±max float."""
    values = np.asarray(values, np.float64)
    is_nan = np.isnan(values)
    return np.nan_to_num(values, nan=0.0, posinf=FLOAT_MAX, neginf=-FLOAT_MAX), is_nan


def metric_rows(run: NewRun) -> tuple[list, list]:
    """(metrics rows, latest_metrics rows) of one run, both in column order
    (key, value, timestamp, run_uuid, step, is_nan).

    MLflow's latest value of a key is its point with the largest (step, timestamp, value);
    all points of a run share one timestamp here, so: largest step, then largest value.
    """
    rows, latest = [], []
    curves = dict(run.curves)
    for k, v in run.summary.items():
        curves[k] = (np.zeros(1, np.int64), np.array([v], np.float64))
    ts, rid = run.time_ms, run.run_id
    for key, (steps, values) in curves.items():
        if not len(steps):
            continue
        values, is_nan = sanitize(values)
        steps = np.asarray(steps, np.int64)
        rows.append(zip(repeat(key), values.tolist(), repeat(ts), repeat(rid), steps.tolist(),
                        is_nan.astype(np.int64).tolist()))
        j = np.lexsort((values, steps))[-1]
        latest.append((key, float(values[j]), ts, rid, int(steps[j]), int(is_nan[j])))
    return rows, latest


def insert(con: sqlite3.Connection, runs: list[NewRun], kill: list[tuple[str, int]] = ()) -> int:
    """Insert ``runs`` (and mark ``kill``'s (run id, end time) KILLED) in one transaction; returns points."""
    con.execute("BEGIN IMMEDIATE")
    try:
        con.executemany(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
            "start_time, end_time, deleted_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
            "VALUES (?, ?, 'UNKNOWN', '', '', 'unknown', 'FINISHED', ?, ?, NULL, '', 'active', ?, ?)",
            [(r.run_id, r.name, r.time_ms if r.start_ms is None else r.start_ms, r.time_ms, r.artifact_uri,
              r.experiment_id) for r in runs])
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                        [(k, v, r.run_id) for r in runs for k, v in r.tags.items()])
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                        [(k, v, r.run_id) for r in runs for k, v in r.params.items()])
        rows, latest = [], []
        for r in runs:
            curves, last = metric_rows(r)
            rows += curves
            latest += last
        # OR IGNORE: a point identical to one already there is dropped, as log_batch does
        points = con.executemany("INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                                 "VALUES (?, ?, ?, ?, ?, ?)", chain.from_iterable(rows)).rowcount
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (?, ?, ?, ?, ?, ?)", latest)
        _insert_inputs(con, [r for r in runs if r.dataset])
        con.executemany("UPDATE runs SET status = 'KILLED', end_time = ? WHERE run_uuid = ?",
                        [(t, rid) for rid, t in kill])
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:  # sqlite itself rolls back after some errors (a full disk, an I/O error)
            con.execute("ROLLBACK")
        raise
    return points


def _insert_inputs(con: sqlite3.Connection, runs: list[NewRun]):
    """Each run's dataset input, as ``MlflowClient.log_inputs`` writes it: the data set once
    per experiment (keyed by name and digest), then an input row and its context tag per run."""
    uuids = {}
    for r in runs:
        d = r.dataset
        key = (r.experiment_id, d["name"], d["digest"])
        if key not in uuids:
            con.execute("INSERT OR IGNORE INTO datasets (dataset_uuid, experiment_id, name, digest, dataset_source_type, "
                        "dataset_source, dataset_schema, dataset_profile) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (uuid.uuid4().hex, *key, d["source_type"], d["source"], d.get("schema"), d.get("profile")))
            uuids[key] = con.execute("SELECT dataset_uuid FROM datasets WHERE experiment_id = ? AND name = ? "
                                     "AND digest = ?", key).fetchone()[0]
    inputs = [(uuid.uuid4().hex, uuids[(r.experiment_id, r.dataset["name"], r.dataset["digest"])], r.run_id) for r in runs]
    con.executemany("INSERT INTO inputs (input_uuid, source_type, source_id, destination_type, destination_id, step) "
                    "VALUES (?, 'DATASET', ?, 'RUN', ?, 0)", inputs)
    con.executemany("INSERT INTO input_tags (input_uuid, name, value) VALUES (?, ?, ?)",
                    [(i, CONTEXT_TAG, CONTEXT) for i, _, _ in inputs])


def transactions(runs: list[NewRun], max_points: int = MAX_POINTS) -> list[list[NewRun]]:
    """``runs`` cut into consecutive transactions of at most ``max_points`` points (≥ 1 run each)."""
    out, size = [[]], 0
    for r in runs:
        n = sum(len(s) for s, _ in r.curves.values()) + len(r.summary)
        if out[-1] and size + n > max_points:
            out.append([])
            size = 0
        out[-1].append(r)
        size += n
    return [t for t in out if t]
