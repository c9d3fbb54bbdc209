"""MLflow at the edge, writing side: with ``tracking_read`` the only modules that import mlflow.

Store: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded
``sqlite:///mlflow.db`` in the working folder. A new sqlite store is created under an
exclusive file lock: two processes running MLflow's schema migration at once crash it.

Finished child runs go into a sqlite store with a local artifact folder (the default)
through ``sqlstore``: a group's runs, their tags, params and every metric point in one
transaction of one ``executemany`` per table, FINISHED when it commits; a sweep killed
midway leaves none of an uncommitted transaction's runs. Elsewhere (a server, another
SQL database, ``Tracker(bulk=False)``) a child run is created RUNNING through MLflow's
client, gets its params and tags, its metrics (one bulk insert on SQL stores, else
``log_batch`` of ≤ 1,000 points a call) and artifacts, and only then is marked FINISHED.
Either way resume skips FINISHED runs only.

The names written (metric keys, params, the ``KIND_TAG`` and ``HASH_TAG`` tags) are
defined in ``results``; the reads analysis needs are in ``tracking_read``.
"""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from bpresearch.keys import DIVERGED, FINAL_LOSS, HASH_TAG, KIND_TAG, safe_name, short_key, stored_key, stored_summary
from bpresearch.store import sqlstore
from bpresearch.store.record import RunRecord

DEFAULT_URI = "sqlite:///mlflow.db"
BATCH = 1000                        # MLflow's limit of metrics per log_batch call
PAGE = 5000                         # runs per search_runs page (MLflow allows up to 50,000)
PARENT_TAG = "mlflow.parentRunId"   # MLflow's own tags: the UI nests child runs and shows the note
NOTE_TAG = "mlflow.note.content"
LEASE_TAG = "bpresearch.lease"      # experiment tag: who sweeps it now (lease.py)
# The UI opens an experiment on its run table (not the GenAI overview) in model-training
# mode: the experiment's kind says so, and the link below asks for that mode.
KIND_EXPERIMENT_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"
DEFAULT_UI = "http://127.0.0.1:5000"


def runs_url(base: str, experiment_id: str) -> str:
    """The experiment's run table in the MLflow UI: model-training mode, every child run
    listed flat (the UI nests child runs only when sorted by start time), best final loss first."""
    from urllib.parse import quote

    order = quote(f"metrics.`{stored_summary(FINAL_LOSS)}`", safe="")
    return (f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&orderByKey={order}&orderByAsc=true")


def ui_links(uri: str, base: str = DEFAULT_UI) -> list[tuple[str, str]]:
    """(experiment name, ``runs_url``) for every experiment of the store; none if it does not exist."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return []
    return [(e.name, runs_url(base, e.experiment_id)) for e in client(uri).search_experiments()
            if e.name != "Default"]


def resolve_uri(uri: str | None = None) -> str:
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def sqlite_path(uri: str) -> Path | None:
    m = re.match(r"sqlite:///(.+)", uri)
    return Path(m.group(1)) if m else None


@contextmanager
def _store_lock(uri: str):
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def client(uri: str | None = None):
    """An ``MlflowClient`` on ``uri``, creating (and migrating) a sqlite store safely."""
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)
    # A failing database is reported once, in one line, by the caller (retry.py); MLflow
    # would also log each failure with its traceback.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    uri = resolve_uri(uri)
    with _store_lock(uri):
        c = MlflowClient(tracking_uri=uri)
        c.search_experiments(max_results=1)  # forces store creation / migration under the lock
    return c


def search_all(c, exp_ids: list[str], filter_string: str = "") -> list:
    """Every run of ``exp_ids`` matching ``filter_string``, one ``search_runs`` page at a time."""
    out, token = [], None
    while True:
        page = c.search_runs(exp_ids, filter_string=filter_string, max_results=PAGE, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def param_value_limit() -> int:
    """MLflow's limit on the length of a param value (6,000 characters in MLflow 3)."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    return MAX_PARAM_VAL_LENGTH


def fit_param(run_id: str, key: str, value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, saying so on stderr: MLflow refuses longer values.

    The run's artifacts (``config.json``, a sweep's ``resolved.toml``) keep the full value.
    """
    if len(value) <= limit:
        return value
    print(f"bpresearch: warning: param {key!r} of run {run_id} is {len(value):,} characters, over MLflow's "
          f"limit of {limit:,}; it is stored cut to {limit:,} (the run's config artifact has it in full)",
          file=sys.stderr)
    return value[:limit]


def attach_folder(uri: str, run_id: str, folder: Path, artifact_path: str):
    """Copy every file of ``folder`` into ``run_id``'s artifacts under ``artifact_path``."""
    client(uri).log_artifacts(run_id, str(folder), artifact_path)


def _stored_metrics(record: RunRecord) -> tuple[dict, dict]:
    """(curves, summary) of a child run under their names in the store."""
    return ({stored_key(k): v for k, v in record.curves.items()},
            {stored_summary(k): v for k, v in record.summary.items()})


def finished_hashes(uri: str, experiment: str) -> set[str]:
    """Config hashes of an experiment's FINISHED child runs; empty when the store or the
    experiment does not exist (a dry run creates nothing)."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return set()
    tracker = Tracker(uri)
    exp_id = tracker.find_experiment(experiment)
    return set() if exp_id is None else tracker.runs_by_hash(exp_id)[0]


def _local_path(uri: str) -> Path:
    """The folder of a ``file:`` artifact URI (as MLflow's ``local_file_uri_to_path``)."""
    return Path(url2pathname(urlparse(uri).path))


class Tracker:
    """Writes experiments, sweeps and runs to one MLflow store.

    An existing sqlite store with the schema ``sqlstore`` writes (``sqlstore.writable``) is
    written directly, without importing MLflow ("direct"); anything else, and
    ``bulk=False``, goes through MLflow's client. Both write the same rows (tests compare).
    """

    def __init__(self, uri: str | None = None, bulk: bool = True):
        self.uri = resolve_uri(uri)
        self.bulk = bulk          # bulk-insert the metrics of new runs on SQL stores
        db = sqlite_path(self.uri)
        self.direct = bulk and db is not None and sqlstore.writable(db)
        self._client = None if self.direct else client(self.uri)   # creates or migrates a sqlite store
        if not self.direct and bulk and db is not None:
            self.direct = sqlstore.writable(db)   # a store MLflow has just created
        self.param_limit = sqlstore.PARAM_LIMIT if self.direct else param_value_limit()
        self.seconds = 0.0        # time spent writing, for the tracking share
        self.points = 0           # metric points written
        self._sqlite = None       # sqlstore's connection, opened on first use
        self._lock = threading.Lock()   # the connection is shared by the main and writer threads
        self._locations = {}      # experiment id -> artifact location

    @property
    def client(self):
        """MLflow's client, created on first use (a direct tracker may never need it)."""
        if self._client is None:
            self._client = client(self.uri)
        return self._client

    @contextmanager
    def _con(self):
        with self._lock:
            if self._sqlite is None:
                self._sqlite = sqlstore.connect(sqlite_path(self.uri))
            yield self._sqlite

    def find_experiment(self, name: str) -> str | None:
        """The id of the experiment called ``name`` (deleted ones too), or None."""
        if self.direct:
            with self._con() as con:
                found = sqlstore.find_experiment(con, name)
            return None if found is None else str(found[0])
        exp = self.client.get_experiment_by_name(name)
        return None if exp is None else exp.experiment_id

    # ---------------------------------------------------------------- experiments
    def experiment(self, name: str, description: str) -> str:
        """The experiment's id, created if new; its description is the UI's note."""
        tags = {NOTE_TAG: description, KIND_EXPERIMENT_TAG: TRAINING_KIND}
        if self.direct:
            with self._con() as con:
                found = sqlstore.find_experiment(con, name)
                if found is None:
                    try:
                        exp_id = sqlstore.create_experiment(con, name, self._new_location(name))
                    except sqlite3.IntegrityError:  # created meanwhile by another process
                        found = sqlstore.find_experiment(con, name)
                if found is None or found[2] == "active":
                    exp_id = exp_id if found is None else found[0]
                    sqlstore.set_experiment_tags(con, exp_id, tags)
                    return str(exp_id)
            # a deleted experiment: MLflow refuses its tags, and says so
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = None if sqlite_path(self.uri) is None else self._new_location(name)
            try:
                exp_id = self.client.create_experiment(name, artifact_location=location)
            except MlflowException:
                # two sweeps started at once: the other one created it since we looked
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp is not None:
            exp_id = exp.experiment_id
        have = exp.tags if exp is not None else {}
        for k, v in tags.items():
            if have.get(k) != v:
                self._set_experiment_tag(exp_id, k, v)
        return exp_id

    def _new_location(self, name: str) -> str:
        """A sqlite store's artifacts stay beside it, not in the caller's folder."""
        return (sqlite_path(self.uri).resolve().parent / "mlartifacts" / safe_name(name)).as_uri()

    def _set_experiment_tag(self, exp_id: str, key: str, value: str):
        """``set_experiment_tag`` that two processes may call at once on a new tag.

        MLflow's SQL store (a server's too) looks for the tag, then inserts it: of two first
        writes at once the second fails on the unique key. The tag exists then, and writing
        it again updates it (the last write wins, as for any tag).
        """
        from mlflow.exceptions import MlflowException

        try:
            self.client.set_experiment_tag(exp_id, key, value)
        except MlflowException:
            if key not in self.client.get_experiment(exp_id).tags:
                raise
            self.client.set_experiment_tag(exp_id, key, value)

    def runs_by_hash(self, exp_id: str) -> tuple[set[str], dict[str, list[str]], set[str]]:
        """(hashes with a FINISHED child run, hash -> ids of unfinished child runs,
        hashes whose FINISHED run diverged)."""
        finished, unfinished, diverged = set(), {}, set()
        for run_id, status, h, m in self._children(exp_id):
            if status == "FINISHED":
                finished.add(h)
                if m.get(stored_summary(DIVERGED), m.get(DIVERGED, 0.0)) > 0.5:
                    diverged.add(h)
            else:
                unfinished.setdefault(h, []).append(run_id)
        return finished, unfinished, diverged

    def _children(self, exp_id: str) -> list[tuple[str, str, str, dict[str, float]]]:
        """(run id, status, config hash, latest metrics) of every active child run."""
        if self.direct:
            with self._con() as con:
                return sqlstore.child_runs(con, int(exp_id), KIND_TAG, "run", HASH_TAG)
        return [(r.info.run_id, r.info.status, r.data.tags.get(HASH_TAG), r.data.metrics)
                for r in search_all(self.client, [exp_id], f"tags.{KIND_TAG} = 'run'")]

    def finished_summaries(self, exp_id: str) -> dict[str, dict[str, float]]:
        """config hash -> summary metrics (latest values) of each FINISHED child run (for refinement)."""
        return {h: {short_key(k): v for k, v in m.items()} for _, status, h, m in self._children(exp_id)
                if status == "FINISHED"}

    def log_text(self, run_id: str, text: str, fname: str):
        """A text artifact on a run (the parent's refine.json)."""
        t0 = time.perf_counter()
        if self.direct:
            with self._con() as con:
                folder = _local_path(sqlstore.artifact_uri(con, run_id))
            (folder / fname).parent.mkdir(parents=True, exist_ok=True)
            (folder / fname).write_text(text)
        else:
            self.client.log_text(run_id, text, fname)
        self.seconds += time.perf_counter() - t0

    # ---------------------------------------------------------------- runs
    def _insert_new_metrics(self, run_id: str, metrics: list) -> bool:
        """All metric rows of a run that has none yet, in one bulk insert; False if not a SQL store.

        ``log_batch`` builds one ORM object per point (≈ 100–150 µs a point here); a single
        ``executemany`` writes the same rows about 5× faster. It reaches into MLflow's SQL
        store (pinned in constraints.txt; tests compare it with ``log_batch``), and is only
        right for a run without metrics: ``latest_metrics`` is inserted, not merged.
        """
        store = getattr(getattr(self.client, "_tracking_client", None), "store", None)
        engine = getattr(store, "engine", None)
        if engine is None or not hasattr(store, "sanitize_metric_value"):
            return False
        from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric

        rows, latest = [], {}
        for m in metrics:
            is_nan, value = store.sanitize_metric_value(m.value)
            row = {"run_uuid": run_id, "key": m.key, "value": value, "timestamp": m.timestamp,
                   "step": m.step, "is_nan": is_nan}
            rows.append(row)
            old = latest.get(m.key)  # MLflow's "latest": the largest (step, timestamp, value)
            if old is None or (row["step"], row["timestamp"], row["value"]) > (old["step"], old["timestamp"], old["value"]):
                latest[m.key] = row
        with engine.begin() as conn:
            conn.execute(SqlMetric.__table__.insert(), rows)
            conn.execute(SqlLatestMetric.__table__.insert(), list(latest.values()))
        return True

    def _write(self, run_id: str, params: dict, curves: dict, summary: dict, fresh: bool = False):
        """Params and metrics of one run; ``fresh``: the run has no metrics yet (bulk path)."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        P = [Param(k, fit_param(run_id, k, v, self.param_limit)) for k, v in params.items()]
        for i in range(0, len(P), 100):  # MLflow's limit of params per log_batch call
            self.client.log_batch(run_id, params=P[i:i + 100], synchronous=True)
        M = [Metric(k, v, now, s) for k, (steps, values) in dict(curves or {}).items()
             for s, v in zip(steps.tolist(), values.tolist())]
        M += [Metric(k, v, now, 0) for k, v in summary.items()]
        if M and not (fresh and self.bulk and self._insert_new_metrics(run_id, M)):
            for i in range(0, len(M), BATCH):
                self.client.log_batch(run_id, metrics=M[i:i + BATCH], synchronous=True)
        self.points += len(M)

    def start_sweep(self, exp_id: str, name: str, params: dict, tags: dict, artifacts: dict) -> str:
        t0 = time.perf_counter()
        if self.direct and self._location(exp_id).startswith("file:"):
            run_id = sqlstore.new_run_id()
            uri = f"{self._location(exp_id).rstrip('/')}/{run_id}/artifacts"   # as MLflow's append_to_uri_path
            with self._con() as con:
                sqlstore.create_run(con, run_id, name, int(exp_id), uri, {KIND_TAG: "sweep", **tags},
                                    {k: fit_param(run_id, k, v, self.param_limit) for k, v in params.items()})
        else:
            run_id = self.client.create_run(exp_id, run_name=name, tags={KIND_TAG: "sweep", **tags}).info.run_id
            self._write(run_id, params, {}, {})
        self.seconds += time.perf_counter() - t0
        for fname, text in artifacts.items():
            self.log_text(run_id, text, fname)
        return run_id

    def end_sweep(self, run_id: str, summary: dict, status: str = "FINISHED"):
        if self.direct:
            with self._con() as con:
                sqlstore.log_values(con, run_id, summary)
                sqlstore.terminate(con, [run_id], status)
            return
        self._write(run_id, {}, {}, summary)
        self.client.set_terminated(run_id, status)

    def log_run(self, exp_id: str, parent_id: str, record: RunRecord, tags: dict,
                replaces: list[str] = ()) -> str:
        """Write one child run completely, then mark it FINISHED; stale copies become KILLED.

        The run starts and ends at ``record.times`` (when it trained, so the UI's duration is
        the training time, not the time it took to write it); its metrics go in under their
        names in the store (``results.stored_key``/``stored_summary``: curves first in the UI)
        and its data set as a dataset input (``record.dataset``).
        """
        return self.log_runs(exp_id, parent_id, [record], tags, {record.run.hash: list(replaces)})[0]

    def log_runs(self, exp_id: str, parent_id: str, records: list[RunRecord], tags: dict,
                 replaces: dict[str, list[str]] | None = None) -> list[str]:
        """Write finished child runs completely; their stale copies (``replaces``: hash -> run ids) become KILLED.

        On a sqlite store with a local artifact folder (the default) the runs go in by
        ``sqlstore``: many runs per transaction, FINISHED when it commits. Elsewhere each run
        goes through MLflow's client: created RUNNING, written, then marked FINISHED.
        """
        t0 = time.perf_counter()
        replaces = replaces or {}
        location = self._location(exp_id)
        db = sqlite_path(self.uri)
        if self.direct and location.startswith("file:"):
            ids = self._bulk_runs(exp_id, location, db, parent_id, records, tags, replaces)
        else:
            ids = [self._client_run(exp_id, parent_id, rec, tags, replaces.get(rec.run.hash, ())) for rec in records]
        self.seconds += time.perf_counter() - t0
        return ids

    def _location(self, exp_id: str) -> str:
        if exp_id not in self._locations:
            if self.direct:
                with self._con() as con:
                    self._locations[exp_id] = con.execute("SELECT artifact_location FROM experiments WHERE "
                                                          "experiment_id = ?", (int(exp_id),)).fetchone()[0]
            else:
                self._locations[exp_id] = self.client.get_experiment(exp_id).artifact_location
        return self._locations[exp_id]

    def _child_tags(self, parent_id: str, record: RunRecord, tags: dict) -> dict:
        return {PARENT_TAG: parent_id, KIND_TAG: "run", HASH_TAG: record.run.hash, **tags}

    def _bulk_runs(self, exp_id, location, db, parent_id, records, tags, replaces) -> list[str]:
        now = int(time.time() * 1000)
        runs = []
        for rec in records:
            run_id = sqlstore.new_run_id()
            uri = f"{location.rstrip('/')}/{run_id}/artifacts"   # as MLflow's append_to_uri_path
            folder = _local_path(uri)  # artifacts first: the commit makes the run visible
            for fname, text in rec.artifacts.items():
                (folder / fname).parent.mkdir(parents=True, exist_ok=True)
                (folder / fname).write_text(text)
            curves, summary = _stored_metrics(rec)
            start, end = rec.times or (now, now)
            runs.append(sqlstore.NewRun(
                run_id, rec.run.name, int(exp_id), uri, end,
                {**self._child_tags(parent_id, rec, tags), "mlflow.runName": rec.run.name},
                {k: fit_param(run_id, k, v, self.param_limit) for k, v in rec.params.items()}, curves, summary,
                start_ms=start, dataset=rec.dataset))
        stale = {run.run_id: replaces.get(rec.run.hash, ()) for rec, run in zip(records, runs)}
        for part in sqlstore.transactions(runs):  # a stale copy is killed with its replacement
            with self._con() as con:
                self.points += sqlstore.insert(con, part, [(old, now) for r in part for old in stale[r.run_id]])
        return [r.run_id for r in runs]

    def _client_run(self, exp_id, parent_id, record: RunRecord, tags: dict, replaces) -> str:
        start, end = record.times or (None, None)
        run = self.client.create_run(exp_id, run_name=record.run.name, start_time=start,
                                     tags=self._child_tags(parent_id, record, tags))
        run_id = run.info.run_id
        self._write(run_id, record.params, *_stored_metrics(record), fresh=True)
        if record.dataset:  # the UI's Dataset column: name (digest), context "train"
            from mlflow.entities import Dataset, DatasetInput, InputTag

            self.client.log_inputs(run_id, [DatasetInput(Dataset(**record.dataset),
                                                         [InputTag(sqlstore.CONTEXT_TAG, sqlstore.CONTEXT)])])
        for fname, text in record.artifacts.items():
            self.client.log_text(run_id, text, fname)
        self.client.set_terminated(run_id, "FINISHED", end_time=end)
        for old in replaces:
            self.client.set_terminated(old, "KILLED")
        return run_id

    # ---------------------------------------------------------------- reliability (spool, lease)
    def mark_killed(self, run_ids):
        if self.direct:
            with self._con() as con:
                sqlstore.terminate(con, list(run_ids), "KILLED")
            return
        for run_id in run_ids:
            self.client.set_terminated(run_id, "KILLED")

    def lease(self, exp_id: str) -> str:
        """The experiment's ``bpresearch.store.lease`` tag ("" when free)."""
        return self.client.get_experiment(exp_id).tags.get(LEASE_TAG, "")

    def set_lease(self, exp_id: str, value: str):
        self._set_experiment_tag(exp_id, LEASE_TAG, value)

    def experiments(self) -> list[tuple[str, str, int, int]]:
        """(name, description, finished child runs, sweeps) for every experiment."""
        out = []
        for exp in self.client.search_experiments():
            runs = search_all(self.client, [exp.experiment_id])
            kids = [r for r in runs if r.data.tags.get(KIND_TAG) == "run" and r.info.status == "FINISHED"]
            sweeps = [r for r in runs if r.data.tags.get(KIND_TAG) == "sweep"]
            if kids or sweeps:
                out.append((exp.name, exp.tags.get(NOTE_TAG, ""), len(kids), len(sweeps)))
        return out


_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED",
                    "ABORTED"}


def is_transient(exc: BaseException) -> bool:
    """A store error worth retrying: server unreachable, reset or 5xx; a sqlite store busy or locked.

    A database error decides by its own message (``database is locked`` is transient; a full
    disk or a read-only database is not), whatever MLflow wrapped it in.
    """
    chain, e = [], exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")   # not imported: no sqlalchemy error to look for
    database = (sqlite3.OperationalError,) + ((sqlalchemy_exc.OperationalError,) if sqlalchemy_exc else ())
    for e in chain:
        if isinstance(e, database):
            text = str(e).lower()
            return "locked" in text or "busy" in text
    import requests
    from mlflow.exceptions import MlflowException

    for e in chain:
        if isinstance(e, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, ConnectionError,
                          TimeoutError)):
            return True
    for e in chain:
        if isinstance(e, MlflowException):
            code = re.search(r"failed with error code (\d+)", str(e.message))
            if code:  # a non-JSON HTTP error answer
                return int(code.group(1)) >= 500 or int(code.group(1)) == 429
            if str(e.message).startswith("API request to") and "failed with" in str(e.message):
                return True  # connection-level failure (refused, reset, timed out, too many 5xx)
            return e.error_code in _TRANSIENT_CODES
    return False
