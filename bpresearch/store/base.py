"""The ``Store`` interface: what a sweep writes to an MLflow store and reads back to resume.

Two backends implement it (``tracking.open_store`` picks one from the URI):
``sqlite_backend.SqliteStore`` writes an existing sqlite store directly through
``sqlstore``, without importing MLflow; ``mlflow_backend.MlflowStore`` goes through
MLflow's client (a server, another SQL database, a store MLflow must create or migrate,
``bulk=False``). Both write the same rows (tests compare them).

The timing of writes (``seconds``, the sweep's tracking share) and the count of metric
points (``points``) are kept here, once for both: each backend implements the underscored
steps (``_start_sweep``, ``_log_text``, ``_log_runs``) and the public methods time them.
"""

from __future__ import annotations

import sys
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager

from bpresearch.keys import (
    DIVERGED,
    HASH_TAG,
    KIND_TAG,
    RUN,
    SWEEP,
    short_key,
    stored_key,
    stored_summary,
)
from bpresearch.store.lease import TAG as LEASE_TAG  # noqa: F401 - the experiment tag of who sweeps it now
from bpresearch.store.record import RunRecord
from bpresearch.store.views import first_seed, varying_params, view_tags

# MLflow's own tags: the UI nests child runs under PARENT_TAG and shows NOTE_TAG as the note.
PARENT_TAG = "mlflow.parentRunId"
NOTE_TAG = "mlflow.note.content"
RUN_NAME_TAG = "mlflow.runName"
# The experiment's kind: model training. MLflow 3.17's UI takes its mode from the link's
# workflowType (or the browser's last choice) instead; the tag keeps the kind on record.
KIND_EXPERIMENT_TAG, TRAINING_KIND = "mlflow.experimentKind", "custom_model_development"

Child = tuple[str, str, str, dict[str, float]]   # (run id, status, config hash, latest metrics)


def experiment_tags(description: str) -> dict[str, str]:
    """The tags every experiment a sweep opens gets: its note, and model-training mode."""
    return {NOTE_TAG: description, KIND_EXPERIMENT_TAG: TRAINING_KIND}


def sweep_tags(tags: dict) -> dict[str, str]:
    return {KIND_TAG: SWEEP, **tags}


def child_tags(parent_id: str, record: RunRecord, tags: dict) -> dict[str, str]:
    return {PARENT_TAG: parent_id, KIND_TAG: RUN, HASH_TAG: record.run.hash, **tags}


def stored_metrics(record: RunRecord) -> tuple[dict, dict]:
    """(curves, summary) of a child run under their names in the store."""
    return ({stored_key(k): v for k, v in record.curves.items()},
            {stored_summary(k): v for k, v in record.summary.items()})


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


class Store(ABC):
    """Writes experiments, sweeps and runs to one MLflow store, and reads what resume needs.

    Attributes:
        uri: the tracking URI.
        param_limit: the longest param value the store takes (longer ones are cut, ``fit_param``).
        seconds: time spent writing runs, sweeps and artifacts (the sweep's tracking share).
        points: metric points written by ``log_runs``.
    """

    param_limit: int

    def __init__(self, uri: str):
        self.uri = uri
        self.seconds = 0.0
        self.points = 0
        self._locations: dict[str, str] = {}   # experiment id -> artifact location

    # ---------------------------------------------------------------- experiments
    @abstractmethod
    def find_experiment(self, name: str) -> str | None:
        """The id of the experiment called ``name`` (deleted ones too), or None."""

    @abstractmethod
    def experiment(self, name: str, description: str) -> str:
        """The experiment's id, created if new; its description is the UI's note."""

    @abstractmethod
    def experiments(self) -> list[tuple[str, str, int, int]]:
        """(name, description, finished child runs, sweeps) of every experiment with bpresearch runs."""

    @abstractmethod
    def lease(self, exp_id: str) -> str:
        """The experiment's lease tag (``LEASE_TAG``; "" when free)."""

    @abstractmethod
    def set_lease(self, exp_id: str, value: str):
        """Write the experiment's lease tag; two processes may write it at once."""

    @abstractmethod
    def set_experiment_tags(self, exp_id: str, tags: dict[str, str]):
        """Write experiment tags (new ones added, existing ones replaced)."""

    def write_view(self, exp_id: str, facets=(), runs: int = 0, first_seed=None):
        """The experiment's saved view in the MLflow UI (``views``): what ``tracking.runs_url`` opens.

        Args:
            facets: the dotted config keys the grid sweeps (``Experiment.axes`` with more than one value).
            runs, first_seed: the child runs and the smallest seed where seeds vary; more runs
                than the UI's first page: the view shows the first seed (``views.search_filter``).
        """
        self.set_experiment_tags(exp_id, view_tags(facets, runs=runs, first_seed=first_seed))

    def write_views(self) -> list[str]:
        """The view of every experiment with child runs, its facets read from the runs' params
        (stores swept before views existed: ``bpresearch sync``); the names of the experiments."""
        done = []
        for exp_id, name, params in self._child_params():
            self.write_view(exp_id, varying_params(params), len(params), first_seed(params))
            done.append(name)
        return done

    @abstractmethod
    def _child_params(self):
        """(experiment id, name, the params of each FINISHED child run) of every active experiment with some."""

    @abstractmethod
    def _artifact_location(self, exp_id: str) -> str:
        """The experiment's artifact location, as the store has it."""

    def _location(self, exp_id: str) -> str:
        if exp_id not in self._locations:
            self._locations[exp_id] = self._artifact_location(exp_id)
        return self._locations[exp_id]

    # ---------------------------------------------------------------- what is there (resume)
    @abstractmethod
    def _children(self, exp_id: str) -> list[Child]:
        """(run id, status, config hash, latest metrics) of every active child run."""

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

    @abstractmethod
    def param_values(self, exp_id: str, key: str) -> set[str]:
        """The distinct values of param ``key`` among the experiment's FINISHED child runs."""

    def finished_summaries(self, exp_id: str) -> dict[str, dict[str, float]]:
        """config hash -> summary metrics (latest values) of each FINISHED child run (for refinement)."""
        return {h: {short_key(k): v for k, v in m.items()} for _, status, h, m in self._children(exp_id)
                if status == "FINISHED"}

    # ---------------------------------------------------------------- writes
    @contextmanager
    def _timed(self):
        """Adds the time of the block to ``seconds`` (not when it fails: a failed write is retried)."""
        t0 = time.perf_counter()
        yield
        self.seconds += time.perf_counter() - t0

    def start_sweep(self, exp_id: str, name: str, params: dict, tags: dict, artifacts: dict) -> str:
        """A RUNNING parent run with its params, tags (``KIND_TAG`` = sweep) and text artifacts; its id."""
        with self._timed():
            run_id = self._start_sweep(exp_id, name, params, sweep_tags(tags))
        for fname, text in artifacts.items():
            self.log_text(run_id, text, fname)
        return run_id

    @abstractmethod
    def _start_sweep(self, exp_id: str, name: str, params: dict, tags: dict) -> str:
        """Create the parent run with ``params`` and ``tags``; its id."""

    @abstractmethod
    def end_sweep(self, run_id: str, summary: dict, status: str = "FINISHED"):
        """The parent run's summary metrics, then its status."""

    def log_text(self, run_id: str, text: str, fname: str):
        """A text artifact on a run (the parent's refine.json)."""
        with self._timed():
            self._log_text(run_id, text, fname)

    @abstractmethod
    def _log_text(self, run_id: str, text: str, fname: str):
        """Write one text artifact."""

    def log_run(self, exp_id: str, parent_id: str, record: RunRecord, tags: dict,
                replaces: list[str] = ()) -> str:
        """Write one child run completely, then mark it FINISHED; stale copies become KILLED.

        The run starts and ends at ``record.times`` (when it trained, so the UI's duration is
        the training time, not the time it took to write it); its metrics go in under their
        names in the store (``keys.stored_key``/``stored_summary``: curves first in the UI)
        and its data set as a dataset input (``record.dataset``).
        """
        return self.log_runs(exp_id, parent_id, [record], tags, {record.run.hash: list(replaces)})[0]

    def log_runs(self, exp_id: str, parent_id: str, records: list[RunRecord], tags: dict,
                 replaces: dict[str, list[str]] | None = None) -> list[str]:
        """Write finished child runs completely; their stale copies (``replaces``: hash -> run ids)
        become KILLED. Their ids, in the order of ``records``."""
        with self._timed():
            ids, points = self._log_runs(exp_id, parent_id, records, tags, replaces or {})
        self.points += points
        return ids

    @abstractmethod
    def _log_runs(self, exp_id: str, parent_id: str, records: list[RunRecord], tags: dict,
                  replaces: dict[str, list[str]]) -> tuple[list[str], int]:
        """Write the runs; (their ids, metric points written)."""

    @abstractmethod
    def mark_killed(self, run_ids):
        """Mark runs KILLED (unfinished copies of runs finished since)."""
