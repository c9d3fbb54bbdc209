"""Finished runs written straight into MLflow's sqlite schema, many runs per transaction.

MLflow's own path costs one transaction (and its fsyncs) per call and one ORM object
per metric point: create_run, log_batch of params, log_batch of metrics per 1,000
points, set_terminated. Here a whole group of finished runs goes into the store in one
transaction of one prepared ``executemany`` per table (runs, tags, params, metrics,
latest_metrics), with rows built from numpy arrays. The schema is MLflow's, untouched:
the UI and every MLflow client read these runs like any other (tests/run/test_sweep.py
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

The rest of what a sweep does to an existing store (its experiment and experiment tags,
the parent run, reading which runs are finished, marking stale copies KILLED) is here
too, as MLflow's own ``SqlAlchemyStore`` writes it: importing MLflow and checking its
schema costs about 2.5 s, more than most sweeps spend on tracking. These statements are
written for the schemas in ``SCHEMA_REVISIONS`` (MLflow 3.17's and 3.18's); ``writable``
says whether a store has the one the installed MLflow expects, and ``why_not_direct`` why
not. When not (a new store, an older one MLflow must migrate, an MLflow release not listed),
``tracking.open_store`` goes through MLflow. A store at a revision the installed MLflow has
never heard of (a later MLflow upgraded it) is refused at once (``check_not_newer``).
"""

from __future__ import annotations

import functools
import importlib.util
import re
import secrets
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass
from itertools import chain, repeat
from pathlib import Path

import numpy as np

# The schemas these statements write: MLflow's alembic head → the release whose head it is.
# 3.18's migrations (e7d1f4b2a9c6 skill registry tables; 8b6ad64cb8f5 columns of `issues` and
# a table `issue_categories`; f4a9b2c7d1e6 MCP version collations, on MySQL and SQL Server
# only) touch none of the tables written here; tests compare with the installed client.
SCHEMA_REVISIONS = {"dc11669786a5": "3.17", "f4a9b2c7d1e6": "3.18"}
PARAM_LIMIT = 6000   # MLflow's MAX_PARAM_VAL_LENGTH at every one of SCHEMA_REVISIONS (tests compare)
CACHE_KIB = 256 * 1024
BUSY_MS = 60_000
ANALYSIS_LIMIT = 50_000   # rows ANALYZE reads per index: its cost stays flat as the store grows
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
    """A run id as MLflow's (32 hex digits), ordered by time: milliseconds, then 80 random bits.

    Two indexes of ``metrics`` (and those of runs, tags, params) are keyed on the run id.
    MLflow's random ``uuid4`` puts each new run's points at a random place in them, so a
    transaction dirties (and journals) pages all over an index that outgrows the cache, and
    the write rate falls as the store grows; ids that grow with time append at the end.
    """
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


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


def analyze(con: sqlite3.Connection):
    """Refresh the query planner's statistics (``sqlite_stat1``), as a sweep or a sync ends.

    Without them sqlite guesses that every index is as selective as any other and plans
    MLflow's own queries (a sorted search, a run's metric history) through the ``key``
    index of ``metrics``, which holds every point of the store for one key: each query
    then reads the whole store. ``analysis_limit`` samples each index instead of reading
    it whole (sqlite's advice for ``PRAGMA optimize``), so the cost does not grow with
    the store; the sample still tells a run id (hundreds of rows) from a key (the store).
    """
    con.execute(f"PRAGMA analysis_limit = {ANALYSIS_LIMIT}")
    con.execute("ANALYZE")


def experiment_counts(con: sqlite3.Connection, kind_tag: str, run: str, sweep: str) -> list[tuple[int, str, int, int]]:
    """(experiment id, name, FINISHED runs tagged ``kind_tag = run``, runs tagged ``kind_tag = sweep``)
    of every active experiment: counted in SQL, no run read."""
    return con.execute(
        "SELECT e.experiment_id, e.name, "
        "COALESCE(SUM(t.value = ? AND r.status = 'FINISHED'), 0), COALESCE(SUM(t.value = ?), 0) "
        "FROM experiments e LEFT JOIN runs r ON r.experiment_id = e.experiment_id AND r.lifecycle_stage = 'active' "
        "LEFT JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ? "
        "WHERE e.lifecycle_stage = 'active' AND e.workspace = 'default' GROUP BY e.experiment_id "
        "ORDER BY e.creation_time DESC, e.experiment_id",   # as MLflow's search_experiments
        (run, sweep, kind_tag)).fetchall()


def child_params(con: sqlite3.Connection, kind_tag: str, run: str):
    """(experiment id, name, [params of each FINISHED run tagged ``kind_tag = run``]) of every active
    experiment with some: the params alone, read in SQL (MLflow's search would load every run in full)."""
    for exp_id, name in con.execute("SELECT experiment_id, name FROM experiments WHERE lifecycle_stage = 'active' "
                                    "AND workspace = 'default' ORDER BY creation_time DESC, experiment_id").fetchall():
        params: dict[str, dict[str, str]] = {}
        for rid, key, value in con.execute(
                "SELECT p.run_uuid, p.key, p.value FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = ? "
                "JOIN params p ON p.run_uuid = r.run_uuid WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active' "
                "AND r.status = 'FINISHED' AND t.value = ?", (kind_tag, exp_id, run)):
            params.setdefault(rid, {})[key] = value
        if params:
            yield str(exp_id), name, list(params.values())


def experiment_tag(con: sqlite3.Connection, experiment_id: int, key: str) -> str | None:
    row = con.execute("SELECT value FROM experiment_tags WHERE experiment_id = ? AND key = ?",
                      (experiment_id, key)).fetchone()
    return None if row is None else row[0]


# ------------------------------------------------------------------ the rest of a sweep's writes
@functools.cache
def _migrations() -> tuple[frozenset, frozenset]:
    """(every schema revision, every revision some other one follows) of the installed MLflow's
    migration scripts, read without importing it; both empty if MLflow or its scripts are not found."""
    spec = importlib.util.find_spec("mlflow")
    if spec is None or spec.origin is None:
        return frozenset(), frozenset()
    revisions, parents = set(), set()
    for f in (Path(spec.origin).parent / "store" / "db_migrations" / "versions").glob("*.py"):
        text = f.read_text()
        rev = re.search(r"^revision\s*=\s*[\"'](\w+)[\"']", text, re.M)
        down = re.search(r"^down_revision\s*=\s*(.+)$", text, re.M)
        if rev:
            revisions.add(rev.group(1))
        if down:
            parents.update(re.findall(r"[\"'](\w+)[\"']", down.group(1)))
    return frozenset(revisions), frozenset(parents)


def installed_head() -> str | None:
    """The schema revision the installed MLflow expects (its one alembic head); None if MLflow
    or its scripts are not found."""
    revisions, parents = _migrations()
    heads = revisions - parents
    return next(iter(heads)) if len(heads) == 1 else None


def known_revisions() -> frozenset[str]:
    """Every schema revision the installed MLflow can migrate from: one outside it is newer."""
    return _migrations()[0]


def store_revision(path: str | Path) -> str | None:
    """The schema revision of the sqlite store at ``path``; None if there is none or it cannot be read."""
    if not Path(path).is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT version_num FROM alembic_version").fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return rows[0][0] if len(rows) == 1 else None


def mlflow_version() -> str:
    """"MLflow 3.17.2": the installed MLflow, for messages (read without importing it)."""
    from importlib.metadata import PackageNotFoundError, version

    for dist in ("mlflow", "mlflow-skinny"):
        try:
            return f"MLflow {version(dist)}"
        except PackageNotFoundError:
            pass
    return "the installed MLflow"


def why_not_direct(path: str | Path) -> str | None:
    """Why the sqlite store at ``path`` cannot be written directly, in a few words; None when
    it can: it has the schema the installed MLflow expects, one of ``SCHEMA_REVISIONS``."""
    head = installed_head()
    if head is None:
        return "the installed MLflow's schema revision could not be read (no single head in its migration scripts)"
    if head not in SCHEMA_REVISIONS:
        known = ", ".join(f"{r} (MLflow {v})" for r, v in SCHEMA_REVISIONS.items())
        return (f"store schema {head} ({mlflow_version()}'s) is not one the direct path knows ({known}); "
                f"a later bpresearch may know it")
    found = store_revision(path)
    if found != head:
        return f"the store's schema revision is {found}, not {head} that {mlflow_version()} expects"
    return None


def writable(path: str | Path) -> bool:
    """True when the sqlite store at ``path`` can be written directly (``why_not_direct``); False
    sends every call through MLflow (which creates or migrates the store, or says why it cannot)."""
    return why_not_direct(path) is None


class NewerSchema(RuntimeError):
    """A store at a schema revision the installed MLflow does not know: a later MLflow upgraded it."""


def newer_schema(found: str, expected: str | None) -> str:
    """One line for a store at ``found``, a revision the installed MLflow (expecting ``expected``)
    does not know: which revision, which MLflow wrote it where this module knows, what to do."""
    release = SCHEMA_REVISIONS.get(found)
    by, fix = ((f"written by MLflow {release}", f"pip install 'mlflow>={release}'") if release else
               ("written by a later MLflow", "pip install -U mlflow"))
    return (f"the store is at schema revision {found}, {by}, newer than {mlflow_version()} knows "
            f"(it expects {expected or 'another'}): update bpresearch and MLflow ({fix}), "
            f"or use another store (--tracking-uri)")


def check_not_newer(path: str | Path):
    """Raise ``NewerSchema`` when the sqlite store at ``path`` is at a revision no installed
    migration script names, without importing MLflow (MLflow would take seconds to refuse it)."""
    found, revisions = store_revision(path), known_revisions()
    if found is not None and revisions and found not in revisions:
        raise NewerSchema(newer_schema(found, installed_head()))


def now_ms() -> int:
    return int(time.time() * 1000)


def find_experiment(con: sqlite3.Connection, name: str) -> tuple[int, str, str] | None:
    """(id, artifact location, lifecycle stage) of the experiment called ``name``, or None."""
    return con.execute("SELECT experiment_id, artifact_location, lifecycle_stage FROM experiments "
                       "WHERE name = ? AND workspace = 'default'", (name,)).fetchone()


def create_experiment(con: sqlite3.Connection, name: str, location: str) -> int:
    """A new active experiment (as ``create_experiment`` with an artifact location); its id."""
    t = now_ms()
    with _transaction(con):
        return con.execute("INSERT INTO experiments (name, artifact_location, lifecycle_stage, creation_time, "
                           "last_update_time) VALUES (?, ?, 'active', ?, ?)", (name, location, t, t)).lastrowid


def set_experiment_tags(con: sqlite3.Connection, experiment_id: int, tags: dict[str, str]):
    with _transaction(con):
        con.executemany("INSERT INTO experiment_tags (key, value, experiment_id) VALUES (?, ?, ?) "
                        "ON CONFLICT (key, experiment_id) DO UPDATE SET value = excluded.value",
                        [(k, v, experiment_id) for k, v in tags.items()])


def child_runs(con: sqlite3.Connection, experiment_id: int, kind_tag: str, kind: str, hash_tag: str):
    """(run id, status, config hash, {metric: latest value}) of the experiment's active runs
    tagged ``kind_tag = kind``, as ``search_runs`` reads them (a NaN metric is NaN)."""
    rows = con.execute(
        "SELECT r.run_uuid, r.status, h.value FROM runs r JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = ? "
        "LEFT JOIN tags h ON h.run_uuid = r.run_uuid AND h.key = ? "
        "WHERE r.experiment_id = ? AND r.lifecycle_stage = 'active' AND k.value = ? "
        "ORDER BY r.start_time DESC, r.run_uuid",   # search_runs' order, whatever plan the statistics choose
        (kind_tag, hash_tag, experiment_id, kind)).fetchall()
    metrics: dict[str, dict[str, float]] = {r[0]: {} for r in rows}
    for rid, key, value, is_nan in con.execute(
            "SELECT m.run_uuid, m.key, m.value, m.is_nan FROM latest_metrics m JOIN runs r ON r.run_uuid = m.run_uuid "
            "WHERE r.experiment_id = ?", (experiment_id,)):
        if rid in metrics:
            metrics[rid][key] = float("nan") if is_nan else value
    return [(rid, status, h, metrics[rid]) for rid, status, h in rows]


def param_values(con: sqlite3.Connection, experiment_id: int, kind_tag: str, kind: str, key: str) -> set[str]:
    """The distinct values of param ``key`` among the experiment's active FINISHED runs tagged ``kind_tag = kind``."""
    return {v for (v,) in con.execute(
        "SELECT DISTINCT p.value FROM params p JOIN runs r ON r.run_uuid = p.run_uuid "
        "JOIN tags k ON k.run_uuid = r.run_uuid AND k.key = ? WHERE r.experiment_id = ? AND "
        "r.lifecycle_stage = 'active' AND r.status = 'FINISHED' AND k.value = ? AND p.key = ?",
        (kind_tag, experiment_id, kind, key))}


def create_run(con: sqlite3.Connection, run_id: str, name: str, experiment_id: int, artifact_uri: str,
               tags: dict[str, str], params: dict[str, str]):
    """A RUNNING run with its tags and params, as ``create_run`` then ``log_batch`` write it."""
    with _transaction(con):
        con.execute("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
                    "start_time, end_time, deleted_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
                    "VALUES (?, ?, 'UNKNOWN', '', '', 'unknown', 'RUNNING', ?, NULL, NULL, '', 'active', ?, ?)",
                    (run_id, name, now_ms(), artifact_uri, experiment_id))
        con.executemany("INSERT INTO tags (key, value, run_uuid) VALUES (?, ?, ?)",
                        [(k, v, run_id) for k, v in {**tags, "mlflow.runName": name}.items()])
        con.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                        [(k, v, run_id) for k, v in params.items()])


def log_values(con: sqlite3.Connection, run_id: str, values: dict[str, float]):
    """Metrics at step 0, now; ``latest_metrics`` keeps MLflow's largest (step, timestamp, value)."""
    t = now_ms()
    rows = []
    for key, v in values.items():
        (value,), (is_nan,) = sanitize(np.array([v], np.float64))
        rows.append((key, float(value), t, run_id, 0, int(is_nan)))
    with _transaction(con):
        con.executemany("INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (?, ?, ?, ?, ?, ?)", rows)
        con.executemany("INSERT INTO latest_metrics (key, value, timestamp, run_uuid, step, is_nan) "
                        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, "
                        "timestamp = excluded.timestamp, step = excluded.step, is_nan = excluded.is_nan "
                        "WHERE (excluded.step, excluded.timestamp, excluded.value) > "
                        "(latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)", rows)


def terminate(con: sqlite3.Connection, run_ids: list[str], status: str):
    """``set_terminated``: each run's status and end time (now)."""
    with _transaction(con):
        con.executemany("UPDATE runs SET status = ?, end_time = ? WHERE run_uuid = ?",
                        [(status, now_ms(), rid) for rid in run_ids])


def artifact_location(con: sqlite3.Connection, experiment_id: int) -> str:
    return con.execute("SELECT artifact_location FROM experiments WHERE experiment_id = ?",
                       (experiment_id,)).fetchone()[0]


def artifact_uri(con: sqlite3.Connection, run_id: str) -> str:
    return con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()[0]


class _transaction:
    """``with _transaction(con):`` one immediate transaction, rolled back on any error."""

    def __init__(self, con):
        self.con = con

    def __enter__(self):
        self.con.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, exc, tb):
        if kind is None:
            self.con.execute("COMMIT")
        elif self.con.in_transaction:
            self.con.execute("ROLLBACK")
        return False
