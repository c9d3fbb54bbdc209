"""MLflow at the edge: the only module that imports mlflow.

Store: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI``, else the embedded
``sqlite:///mlflow.db`` in the working folder. A new sqlite store is created under an
exclusive file lock: two processes running MLflow's schema migration at once crash it.

A child run is created RUNNING, gets its params, tags, metrics (``log_batch``, ≤ 1,000
points a call) and artifacts, and only then is marked FINISHED. A sweep killed midway
therefore leaves its unfinished runs RUNNING, and resume skips FINISHED ones only.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from .results import RunRecord

DEFAULT_URI = "sqlite:///mlflow.db"
HASH_TAG = "bpresearch.config_hash"
KIND_TAG = "bpresearch.kind"        # "sweep" (parent) or "run" (child)
BATCH = 1000                        # MLflow's limit of metrics per log_batch call


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


class Tracker:
    """Writes experiments, sweeps and runs to one MLflow store."""

    def __init__(self, uri: str | None = None, bulk: bool = True):
        from mlflow.entities import Metric, Param

        self._Metric, self._Param = Metric, Param
        self.uri = resolve_uri(uri)
        self.client = client(self.uri)
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
        self.client.set_experiment_tag(exp_id, "mlflow.note.content", description)
        return exp_id

    def runs_by_hash(self, exp_id: str) -> tuple[set[str], dict[str, list[str]]]:
        """(hashes with a FINISHED child run, hash -> ids of unfinished child runs)."""
        finished, unfinished = set(), {}
        token = None
        while True:
            page = self.client.search_runs([exp_id], filter_string=f"tags.{KIND_TAG} = 'run'",
                                           max_results=5000, page_token=token)
            for r in page:
                h = r.data.tags.get(HASH_TAG)
                if r.info.status == "FINISHED":
                    finished.add(h)
                else:
                    unfinished.setdefault(h, []).append(r.info.run_id)
            token = page.token
            if not token:
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
        P = [self._Param(k, v[:6000]) for k, v in params.items()]
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
            "mlflow.parentRunId": parent_id, KIND_TAG: "run", HASH_TAG: record.run.hash, **tags})
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
            runs = self.client.search_runs([exp.experiment_id], max_results=50000)
            kids = [r for r in runs if r.data.tags.get(KIND_TAG) == "run" and r.info.status == "FINISHED"]
            sweeps = [r for r in runs if r.data.tags.get(KIND_TAG) == "sweep"]
            if kids or sweeps:
                out.append((exp.name, exp.tags.get("mlflow.note.content", ""), len(kids), len(sweeps)))
        return out
