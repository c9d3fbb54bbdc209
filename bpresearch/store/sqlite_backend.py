"""The store written directly: an existing sqlite store with the schema ``sqlstore`` writes.

A group's finished runs, their tags, params and every metric point go in as one
transaction of one ``executemany`` per table, FINISHED when it commits; a sweep killed
midway leaves none of an uncommitted transaction's runs. Experiments, the parent run and
its artifacts are written here too, so a sweep into an existing store never imports
MLflow (importing it and checking the schema costs about 2.5 s).

What is not written here goes through MLflow's client (``mlflow_backend.MlflowStore``,
made on first use): a deleted experiment (MLflow refuses its tags and says so), an
experiment whose artifacts are not a local folder, the lease tag, the list of experiments.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager

from bpresearch.keys import HASH_TAG, KIND_TAG, RUN, SWEEP
from bpresearch.store import sqlstore
from bpresearch.store.base import (
    NOTE_TAG,
    RUN_NAME_TAG,
    Child,
    Store,
    child_tags,
    experiment_tags,
    fit_param,
    stored_metrics,
)
from bpresearch.store.mlflow_backend import MlflowStore
from bpresearch.store.record import RunRecord
from bpresearch.store.uri import (
    is_local,
    local_path,
    new_artifact_location,
    sqlite_path,
)


def _artifact_uri(location: str, run_id: str) -> str:
    """A new run's artifact URI in its experiment's ``location`` (as MLflow's ``append_to_uri_path``)."""
    return f"{location.rstrip('/')}/{run_id}/artifacts"


def _write_texts(folder, texts: dict[str, str]):
    for fname, text in texts.items():
        (folder / fname).parent.mkdir(parents=True, exist_ok=True)
        (folder / fname).write_text(text)


class SqliteStore(Store):
    """A sqlite store at one of ``sqlstore.SCHEMA_REVISIONS`` (``sqlstore.writable``), written without MLflow.

    Args:
        uri: a ``sqlite:///`` tracking URI.
        mlflow: MLflow's client path on the same store, if one is made already (else on first use).
    """

    param_limit = sqlstore.PARAM_LIMIT

    def __init__(self, uri: str, mlflow: MlflowStore | None = None):
        super().__init__(uri)
        self.path = sqlite_path(uri)
        self._mlflow = mlflow
        self._sqlite = None              # sqlstore's connection, opened on first use
        self._lock = threading.Lock()    # the connection is shared by the main and writer threads

    @property
    def mlflow(self) -> MlflowStore:
        """MLflow's client path on this store, for what is not written here (made on first use)."""
        if self._mlflow is None:
            self._mlflow = MlflowStore(self.uri)
        return self._mlflow

    @property
    def client(self):
        """MLflow's client on this store (tests and tools read through it)."""
        return self.mlflow.client

    @contextmanager
    def _con(self):
        with self._lock:
            if self._sqlite is None:
                self._sqlite = sqlstore.connect(self.path)
            yield self._sqlite

    # ---------------------------------------------------------------- experiments
    def find_experiment(self, name: str) -> str | None:
        with self._con() as con:
            found = sqlstore.find_experiment(con, name)
        return None if found is None else str(found[0])

    def experiment(self, name: str, description: str) -> str:
        tags = experiment_tags(description)
        with self._con() as con:
            found = sqlstore.find_experiment(con, name)
            if found is None:
                try:
                    exp_id = sqlstore.create_experiment(con, name, new_artifact_location(self.uri, name))
                    found = (exp_id, None, "active")
                except sqlite3.IntegrityError:  # created meanwhile by another process
                    found = sqlstore.find_experiment(con, name)
            if found is not None and found[2] == "active":
                sqlstore.set_experiment_tags(con, found[0], tags)
                return str(found[0])
        return self.mlflow.experiment(name, description)   # a deleted experiment: MLflow says why not

    def experiments(self) -> list[tuple[str, str, int, int]]:
        """Counted in SQL (``sqlstore.experiment_counts``): no run is read."""
        with self._con() as con:
            counts = sqlstore.experiment_counts(con, KIND_TAG, RUN, SWEEP)
            return [(name, sqlstore.experiment_tag(con, exp_id, NOTE_TAG) or "", kids, sweeps)
                    for exp_id, name, kids, sweeps in counts if kids or sweeps]

    def _child_params(self):
        with self._con() as con:
            return list(sqlstore.child_params(con, KIND_TAG, RUN))

    def set_experiment_tags(self, exp_id: str, tags: dict[str, str]):
        with self._con() as con:
            sqlstore.set_experiment_tags(con, int(exp_id), tags)

    def lease(self, exp_id: str) -> str:
        return self.mlflow.lease(exp_id)

    def set_lease(self, exp_id: str, value: str):
        self.mlflow.set_lease(exp_id, value)

    def _artifact_location(self, exp_id: str) -> str:
        with self._con() as con:
            return sqlstore.artifact_location(con, int(exp_id))

    def _children(self, exp_id: str) -> list[Child]:
        with self._con() as con:
            return sqlstore.child_runs(con, int(exp_id), KIND_TAG, RUN, HASH_TAG)

    def param_values(self, exp_id: str, key: str) -> set[str]:
        with self._con() as con:
            return sqlstore.param_values(con, int(exp_id), KIND_TAG, RUN, key)

    # ---------------------------------------------------------------- writes
    def _start_sweep(self, exp_id: str, name: str, params: dict, tags: dict) -> str:
        location = self._location(exp_id)
        if not is_local(location):
            return self.mlflow._start_sweep(exp_id, name, params, tags)
        run_id = sqlstore.new_run_id()
        with self._con() as con:
            sqlstore.create_run(con, run_id, name, int(exp_id), _artifact_uri(location, run_id), tags,
                                {k: fit_param(run_id, k, v, self.param_limit) for k, v in params.items()})
        return run_id

    def end_sweep(self, run_id: str, summary: dict, status: str = "FINISHED"):
        """The parent run's summary and status, then fresh query statistics (``sqlstore.analyze``):
        MLflow's UI and searches plan their queries by them."""
        with self._con() as con:
            sqlstore.log_values(con, run_id, summary)
            sqlstore.terminate(con, [run_id], status)
            sqlstore.analyze(con)

    def _log_text(self, run_id: str, text: str, fname: str):
        with self._con() as con:
            uri = sqlstore.artifact_uri(con, run_id)
        if not is_local(uri):
            self.mlflow._log_text(run_id, text, fname)
            return
        _write_texts(local_path(uri), {fname: text})

    def _log_runs(self, exp_id: str, parent_id: str, records: list[RunRecord], tags: dict,
                  replaces: dict[str, list[str]]) -> tuple[list[str], int]:
        location = self._location(exp_id)
        if not is_local(location):
            return self.mlflow._log_runs(exp_id, parent_id, records, tags, replaces)
        now = int(time.time() * 1000)
        runs = [self._new_run(exp_id, location, parent_id, rec, tags, now) for rec in records]
        stale = {run.run_id: replaces.get(rec.run.hash, ()) for rec, run in zip(records, runs)}
        points = 0
        for part in sqlstore.transactions(runs):  # a stale copy is killed with its replacement
            with self._con() as con:
                points += sqlstore.insert(con, part, [(old, now) for r in part for old in stale[r.run_id]])
        return [r.run_id for r in runs], points

    def _new_run(self, exp_id: str, location: str, parent_id: str, rec: RunRecord, tags: dict,
                 now: int) -> sqlstore.NewRun:
        """One child run ready to insert, its artifacts written first (the commit makes the run visible)."""
        run_id = sqlstore.new_run_id()
        uri = _artifact_uri(location, run_id)
        _write_texts(local_path(uri), rec.artifacts)
        curves, summary = stored_metrics(rec)
        start, end = rec.times or (now, now)
        return sqlstore.NewRun(
            run_id, rec.run.name, int(exp_id), uri, end,
            {**child_tags(parent_id, rec, tags), RUN_NAME_TAG: rec.run.name},
            {k: fit_param(run_id, k, v, self.param_limit) for k, v in rec.params.items()}, curves, summary,
            start_ms=start, dataset=rec.dataset)

    def mark_killed(self, run_ids):
        with self._con() as con:
            sqlstore.terminate(con, list(run_ids), "KILLED")
