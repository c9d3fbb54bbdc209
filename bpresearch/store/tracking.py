"""The store a tracking URI names, chosen once: ``open_store``.

- an existing sqlite store with the schema ``sqlstore`` writes (``sqlstore.writable``):
  ``SqliteStore``, written directly without importing MLflow;
- a sqlite store MLflow has to create first: MLflow creates it (under a file lock), then
  ``SqliteStore`` writes it; one at a schema revision ``sqlstore`` does not know: MLflow
  writes it, and one line on stderr says why the direct path is off; one MLflow must
  migrate: it refuses it and says why; one at a revision newer than the installed MLflow
  knows: refused at once, in one line (``sqlstore.check_not_newer``);
- anything else (a server, another SQL database) and ``bulk=False``: ``MlflowStore``,
  through MLflow's client.

Both implement ``base.Store``; the names they write (metric keys, params, the ``KIND_TAG``
and ``HASH_TAG`` tags) are defined in ``keys``; the reads analysis needs are in ``reads``.
Also here: the resume check of a dry run (``stored_runs``) and the MLflow UI's links
(``runs_url``: each experiment's saved view, ``views``).
"""

from __future__ import annotations

import sys
from urllib.parse import quote

from bpresearch.keys import FINAL_LOSS, stored_summary
from bpresearch.store import sqlstore
from bpresearch.store.base import Store
from bpresearch.store.mlflow_backend import MlflowStore, client
from bpresearch.store.sqlite_backend import SqliteStore
from bpresearch.store.uri import resolve_uri, sqlite_path
from bpresearch.store.views import MODE, VIEW_TAG, experiment_url

DEFAULT_UI = "http://127.0.0.1:5000"


def open_store(uri: str | None = None, bulk: bool = True) -> Store:
    """The store at ``uri`` (None: ``uri.resolve_uri``), created if it does not exist.

    Args:
        uri: a tracking URI.
        bulk: write a sqlite store directly and bulk-insert metrics on other SQL stores;
            False goes through MLflow's client calls only (tests and benchmarks compare).
    """
    uri = resolve_uri(uri)
    db = sqlite_path(uri) if bulk else None
    if db is not None and sqlstore.writable(db):
        return SqliteStore(uri)
    if db is not None:
        sqlstore.check_not_newer(db)                # before MLflow takes seconds to refuse it
    mlflow = MlflowStore(uri, bulk, client(uri))   # creates or migrates a sqlite store
    if db is None:
        return mlflow
    why = sqlstore.why_not_direct(db)
    if why is None:
        return SqliteStore(uri, mlflow)             # a store MLflow has just created
    print(f"bpresearch: tracking through MLflow's client, not the direct path: {why}", file=sys.stderr)
    return mlflow


def check_not_newer(uri: str | None = None):
    """Raise ``sqlstore.NewerSchema`` when ``uri`` is a sqlite store at a schema revision newer
    than the installed MLflow knows; imports neither MLflow nor JAX, creates nothing."""
    db = sqlite_path(resolve_uri(uri))
    if db is not None:
        sqlstore.check_not_newer(db)


def stored_runs(uri: str, experiment: str, param: str) -> tuple[set[str], set[str], set[str]]:
    """(config hashes of an experiment's FINISHED child runs, those that diverged, the distinct
    values of their ``param``); all empty when the store or the experiment does not exist (a dry
    run creates nothing)."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return set(), set(), set()
    store = open_store(uri)
    exp_id = store.find_experiment(experiment)
    if exp_id is None:
        return set(), set(), set()
    finished, _, diverged = store.runs_by_hash(exp_id)
    return finished, diverged, store.param_values(exp_id, param)


def runs_url(base: str, experiment_id: str, view: bool = True) -> str:
    """The experiment's run table in the MLflow UI, in model-training mode.

    ``view``: the experiment's saved view (``views``, written by the sweep and by ``bpresearch
    sync``): its answer's columns, fastest run first, the loss curves log-scaled and grouped
    by batch size. The link carries no sort of its own, or the UI would ignore the view.
    Without it (a store swept before views): every child run listed flat, best final loss
    first (the UI nests child runs only when sorted by start time).
    """
    if view:
        return experiment_url(base, experiment_id)
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{MODE}"
    order = quote(f"metrics.`{stored_summary(FINAL_LOSS)}`", safe="")
    return f"{url}&orderByKey={order}&orderByAsc=true"


def ui_links(uri: str, base: str = DEFAULT_UI) -> list[tuple[str, str]]:
    """(experiment name, ``runs_url``) for every experiment of the store; none if it does not exist.
    An experiment without bpresearch's view (``bpresearch sync`` writes it) gets the link without."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        return []
    return [(e.name, runs_url(base, e.experiment_id, VIEW_TAG in e.tags)) for e in client(uri).search_experiments()
            if e.name != "Default"]
