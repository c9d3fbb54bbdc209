"""The store through MLflow's client: a server, another SQL database, a new sqlite store, ``bulk=False``.

A child run is created RUNNING, gets its params and tags, its metrics (one bulk insert on
SQL stores, else ``log_batch`` of ≤ 1,000 points a call), its dataset input and artifacts,
and only then is marked FINISHED; resume skips FINISHED runs only. MLflow is imported
inside the functions that use it: importing this module costs nothing.

A new sqlite store is created under an exclusive file lock: two processes running MLflow's
schema migration at once crash it.
"""

from __future__ import annotations

import fcntl
import time
from contextlib import contextmanager

from bpresearch.keys import HASH_TAG, KIND_TAG, RUN, SWEEP
from bpresearch.store import sqlstore
from bpresearch.store.base import (
    LEASE_TAG,
    NOTE_TAG,
    Child,
    Store,
    child_tags,
    experiment_tags,
    fit_param,
    stored_metrics,
)
from bpresearch.store.record import RunRecord
from bpresearch.store.uri import new_artifact_location, resolve_uri, sqlite_path

BATCH = 1000     # MLflow's limit of metrics per log_batch call
PARAMS = 100     # MLflow's limit of params per log_batch call
PAGE = 5000      # runs per search_runs page (MLflow allows up to 50,000)


@contextmanager
def _store_lock(uri: str):
    """An exclusive lock beside a sqlite store (``<db>.lock``) while MLflow opens it; none elsewhere."""
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


def pages(c, exp_ids: list[str], filter_string: str = ""):
    """The runs of ``exp_ids`` matching ``filter_string``, one ``search_runs`` page at a time."""
    token = None
    while True:
        page = c.search_runs(exp_ids, filter_string=filter_string, max_results=PAGE, page_token=token)
        yield page
        token = page.token
        if not token:
            return


def search_all(c, exp_ids: list[str], filter_string: str = "") -> list:
    """Every run of ``exp_ids`` matching ``filter_string``."""
    return [r for page in pages(c, exp_ids, filter_string) for r in page]


def count_runs(c, exp_ids: list[str], filter_string: str) -> int:
    """How many runs of ``exp_ids`` match ``filter_string``: MLflow's API has no count, so its
    pages are counted and dropped (memory: one page, never every run)."""
    return sum(len(page) for page in pages(c, exp_ids, filter_string))


def param_value_limit() -> int:
    """MLflow's limit on the length of a param value (6,000 characters in MLflow 3)."""
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    return MAX_PARAM_VAL_LENGTH


class MlflowStore(Store):
    """A store written and read through MLflow's client.

    Args:
        uri: the tracking URI (resolved).
        bulk: bulk-insert the metrics of new runs on SQL stores (``_insert_new_metrics``);
            False writes everything through ``log_batch``, as MLflow's own clients do.
        mlflow_client: an ``MlflowClient`` on ``uri`` already made (``client``), else made on first use.
    """

    def __init__(self, uri: str, bulk: bool = True, mlflow_client=None):
        super().__init__(uri)
        self.bulk = bulk
        self._client = mlflow_client
        self.param_limit = param_value_limit()
        self._scanned: dict[str, list[dict]] = {}   # exp id -> FINISHED children's params, last search

    @property
    def client(self):
        """MLflow's client (``client``), created on first use."""
        if self._client is None:
            self._client = client(self.uri)
        return self._client

    # ---------------------------------------------------------------- experiments
    def find_experiment(self, name: str) -> str | None:
        exp = self.client.get_experiment_by_name(name)
        return None if exp is None else exp.experiment_id

    def experiment(self, name: str, description: str) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            try:
                exp_id = self.client.create_experiment(name, artifact_location=new_artifact_location(self.uri, name))
            except MlflowException:
                # two sweeps started at once: the other one created it since we looked
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp is not None:
            exp_id = exp.experiment_id
        have = exp.tags if exp is not None else {}
        for k, v in experiment_tags(description).items():
            if have.get(k) != v:
                self._set_experiment_tag(exp_id, k, v)
        return exp_id

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

    def experiments(self) -> list[tuple[str, str, int, int]]:
        """Counted by filtered searches, a page at a time (``count_runs``); a sqlite store counts in SQL."""
        out = []
        for exp in self.client.search_experiments():
            kids = count_runs(self.client, [exp.experiment_id], f"tags.{KIND_TAG} = '{RUN}' and attributes.status = 'FINISHED'")
            sweeps = count_runs(self.client, [exp.experiment_id], f"tags.{KIND_TAG} = '{SWEEP}'")
            if kids or sweeps:
                out.append((exp.name, exp.tags.get(NOTE_TAG, ""), kids, sweeps))
        return out

    def _child_params(self):
        for exp in self.client.search_experiments():
            runs = search_all(self.client, [exp.experiment_id], f"tags.{KIND_TAG} = '{RUN}' and attributes.status = 'FINISHED'")
            if runs:
                yield exp.experiment_id, exp.name, [r.data.params for r in runs]

    def set_experiment_tags(self, exp_id: str, tags: dict[str, str]):
        for k, v in tags.items():
            self._set_experiment_tag(exp_id, k, v)

    def lease(self, exp_id: str) -> str:
        return self.client.get_experiment(exp_id).tags.get(LEASE_TAG, "")

    def set_lease(self, exp_id: str, value: str):
        self._set_experiment_tag(exp_id, LEASE_TAG, value)

    def _artifact_location(self, exp_id: str) -> str:
        return self.client.get_experiment(exp_id).artifact_location

    def _children(self, exp_id: str) -> list[Child]:
        runs = search_all(self.client, [exp_id], f"tags.{KIND_TAG} = '{RUN}'")
        # the same search's params answer the ``param_values`` that follows it (resume reads
        # both): a store behind a server is not searched run by run twice
        self._scanned[exp_id] = [r.data.params for r in runs if r.info.status == "FINISHED"]
        return [(r.info.run_id, r.info.status, r.data.tags.get(HASH_TAG), r.data.metrics) for r in runs]

    def param_values(self, exp_id: str, key: str) -> set[str]:
        params = self._scanned.pop(exp_id, None)
        if params is None:
            params = [r.data.params for r in search_all(
                self.client, [exp_id], f"tags.{KIND_TAG} = '{RUN}' and attributes.status = 'FINISHED'")]
        return {p[key] for p in params if key in p}

    # ---------------------------------------------------------------- writes
    def _start_sweep(self, exp_id: str, name: str, params: dict, tags: dict) -> str:
        run_id = self.client.create_run(exp_id, run_name=name, tags=tags).info.run_id
        self._write(run_id, params, {}, {})
        return run_id

    def end_sweep(self, run_id: str, summary: dict, status: str = "FINISHED"):
        self._write(run_id, {}, {}, summary)
        self.client.set_terminated(run_id, status)

    def _log_text(self, run_id: str, text: str, fname: str):
        self.client.log_text(run_id, text, fname)

    def _log_runs(self, exp_id: str, parent_id: str, records: list[RunRecord], tags: dict,
                  replaces: dict[str, list[str]]) -> tuple[list[str], int]:
        done = [self._client_run(exp_id, parent_id, rec, tags, replaces.get(rec.run.hash, ())) for rec in records]
        return [run_id for run_id, _ in done], sum(points for _, points in done)

    def _client_run(self, exp_id: str, parent_id: str, record: RunRecord, tags: dict, replaces) -> tuple[str, int]:
        """One child run: created RUNNING, written, then FINISHED; (its id, points written)."""
        start, end = record.times or (None, None)
        run = self.client.create_run(exp_id, run_name=record.run.name, start_time=start,
                                     tags=child_tags(parent_id, record, tags))
        run_id = run.info.run_id
        points = self._write(run_id, record.params, *stored_metrics(record), fresh=True)
        if record.dataset:  # the UI's Dataset column: name (digest), context "train"
            from mlflow.entities import Dataset, DatasetInput, InputTag

            self.client.log_inputs(run_id, [DatasetInput(Dataset(**record.dataset),
                                                         [InputTag(sqlstore.CONTEXT_TAG, sqlstore.CONTEXT)])])
        for fname, text in record.artifacts.items():
            self.client.log_text(run_id, text, fname)
        self.client.set_terminated(run_id, "FINISHED", end_time=end)
        for old in replaces:
            self.client.set_terminated(old, "KILLED")
        return run_id, points

    def _write(self, run_id: str, params: dict, curves: dict, summary: dict, fresh: bool = False) -> int:
        """Params and metrics of one run; ``fresh``: the run has no metrics yet (bulk path). Points written."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        P = [Param(k, fit_param(run_id, k, v, self.param_limit)) for k, v in params.items()]
        for i in range(0, len(P), PARAMS):
            self.client.log_batch(run_id, params=P[i:i + PARAMS], synchronous=True)
        M = [Metric(k, v, now, s) for k, (steps, values) in dict(curves or {}).items()
             for s, v in zip(steps.tolist(), values.tolist())]
        M += [Metric(k, v, now, 0) for k, v in summary.items()]
        if M and not (fresh and self.bulk and self._insert_new_metrics(run_id, M)):
            for i in range(0, len(M), BATCH):
                self.client.log_batch(run_id, metrics=M[i:i + BATCH], synchronous=True)
        return len(M)

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

    def mark_killed(self, run_ids):
        for run_id in run_ids:
            self.client.set_terminated(run_id, "KILLED")
