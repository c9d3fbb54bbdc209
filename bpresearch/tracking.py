"""MLflow at the edge, writing side: with ``tracking_read`` the only modules that import mlflow.

Store: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded
``sqlite:///mlflow.db`` in the working folder. A new sqlite store is created under an
exclusive file lock: two processes running MLflow's schema migration at once crash it.

A child run is created RUNNING, gets its params and tags, its metrics and its artifacts,
and only then is marked FINISHED. A sweep killed midway therefore leaves its unfinished
runs RUNNING, and resume skips FINISHED ones only. Metrics of a new run go into a SQL
store in one bulk insert (``_insert_new_metrics``, the default); other stores, and
``Tracker(bulk=False)``, use ``log_batch`` (≤ 1,000 points a call).

The names written (metric keys, params, the ``KIND_TAG`` and ``HASH_TAG`` tags) are
defined in ``results``; the reads analysis needs are in ``tracking_read``.
"""

from __future__ import annotations

import fcntl
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .results import HASH_TAG, KIND_TAG, RunRecord

DEFAULT_URI = "sqlite:///mlflow.db"
BATCH = 1000                        # MLflow's limit of metrics per log_batch call
PAGE = 5000                         # runs per search_runs page (MLflow allows up to 50,000)
PARENT_TAG = "mlflow.parentRunId"   # MLflow's own tags: the UI nests child runs and shows the note
NOTE_TAG = "mlflow.note.content"


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
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)
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


class Tracker:
    """Writes experiments, sweeps and runs to one MLflow store."""

    def __init__(self, uri: str | None = None, bulk: bool = True):
        from mlflow.entities import Metric, Param

        self._Metric, self._Param = Metric, Param
        self.uri = resolve_uri(uri)
        self.client = client(self.uri)
        self.param_limit = param_value_limit()
        self.seconds = 0.0        # time spent writing, for the tracking share
        self.points = 0           # metric points written
        self.bulk = bulk          # bulk-insert the metrics of new runs on SQL stores

    # ---------------------------------------------------------------- experiments
    def experiment(self, name: str, description: str) -> str:
        """The experiment's id, created if new; its description is the UI's note."""
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = None
            db = sqlite_path(self.uri)
            if db is not None:  # keep artifacts beside the store, not in the caller's folder
                location = (db.resolve().parent / "mlartifacts" / re.sub(r"[^\w.-]", "_", name)).as_uri()
            exp_id = self.client.create_experiment(name, artifact_location=location)
        else:
            exp_id = exp.experiment_id
        self.client.set_experiment_tag(exp_id, NOTE_TAG, description)
        return exp_id

    def runs_by_hash(self, exp_id: str) -> tuple[set[str], dict[str, list[str]]]:
        """(hashes with a FINISHED child run, hash -> ids of unfinished child runs)."""
        finished, unfinished = set(), {}
        for r in search_all(self.client, [exp_id], f"tags.{KIND_TAG} = 'run'"):
            h = r.data.tags.get(HASH_TAG)
            if r.info.status == "FINISHED":
                finished.add(h)
            else:
                unfinished.setdefault(h, []).append(r.info.run_id)
        return finished, unfinished

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

    def _write(self, run_id: str, params: dict, metrics: list, summary: dict, fresh: bool = False):
        """Params and metrics of one run; ``fresh``: the run has no metrics yet (bulk path)."""
        now = int(time.time() * 1000)
        P = [self._Param(k, fit_param(run_id, k, v, self.param_limit)) for k, v in params.items()]
        for i in range(0, len(P), 100):  # MLflow's limit of params per log_batch call
            self.client.log_batch(run_id, params=P[i:i + 100], synchronous=True)
        M = [self._Metric(k, v, now, s) for k, v, s in metrics]
        M += [self._Metric(k, v, now, 0) for k, v in summary.items()]
        if M and not (fresh and self.bulk and self._insert_new_metrics(run_id, M)):
            for i in range(0, len(M), BATCH):
                self.client.log_batch(run_id, metrics=M[i:i + BATCH], synchronous=True)
        self.points += len(M)

    def start_sweep(self, exp_id: str, name: str, params: dict, tags: dict, artifacts: dict) -> str:
        t0 = time.perf_counter()
        run = self.client.create_run(exp_id, run_name=name, tags={KIND_TAG: "sweep", **tags})
        self._write(run.info.run_id, params, [], {})
        for fname, text in artifacts.items():
            self.client.log_text(run.info.run_id, text, fname)
        self.seconds += time.perf_counter() - t0
        return run.info.run_id

    def end_sweep(self, run_id: str, summary: dict, status: str = "FINISHED"):
        self._write(run_id, {}, [], summary)
        self.client.set_terminated(run_id, status)

    def log_run(self, exp_id: str, parent_id: str, record: RunRecord, tags: dict,
                replaces: list[str] = ()) -> str:
        """Write one child run completely, then mark it FINISHED; stale copies become KILLED."""
        t0 = time.perf_counter()
        run = self.client.create_run(exp_id, run_name=record.run.name, tags={
            PARENT_TAG: parent_id, KIND_TAG: "run", HASH_TAG: record.run.hash, **tags})
        run_id = run.info.run_id
        self._write(run_id, record.params, record.metrics, record.summary, fresh=True)
        for fname, text in record.artifacts.items():
            self.client.log_text(run_id, text, fname)
        self.client.set_terminated(run_id, "FINISHED")
        for old in replaces:
            self.client.set_terminated(old, "KILLED")
        self.seconds += time.perf_counter() - t0
        return run_id

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
