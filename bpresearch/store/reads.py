"""Analysis's door to the store: every read analysis makes of it, and the one write.

Analysis never imports mlflow nor reads MLflow's tables: it asks here, and gets plain
Python values back (``StoredRun``, tuples of curve points). The store a report reads is
``resolve_uri``'s; a report's files go back as artifacts of a sweep run (``attach_folder``). Runs come
from a sqlite store's tables, read only (``runs``), else from ``search_runs``, one page at a time. Curves are metric histories, which ``search_runs``
does not return: from a sqlite store they are read with one SQL query per 500 runs
straight from its ``metrics`` table through its run-id index, read only, and handed
over a chunk at a time (``metric_point_chunks``); any other store falls back to
``get_metric_history`` per run and metric, one request each and therefore slow for
hundreds of runs. Reading never creates, migrates or writes to a store.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from sys import intern

from bpresearch.keys import KIND_TAG, RUN, short_key, stored_names
from bpresearch.store.base import NOTE_TAG, PARENT_TAG
from bpresearch.store.mlflow_backend import client, pages
from bpresearch.store.retry import schema_mismatch
from bpresearch.store.uri import resolve_uri, sqlite_path
from bpresearch.store.views import cell_url, experiment_url

__all__ = ["POINT", "StoreError", "StoredExperiment", "StoredRun", "artifact_text", "attach_folder", "experiment",
           "experiment_names", "metric_point_chunks", "metric_points", "resolve_uri", "runs", "cell_url",
           "experiment_url"]

SQL_CHUNK = 500  # run ids per IN (...) list: far below sqlite's limit of bound variables
POINT = ("run_id", "key", "step", "value", "timestamp")  # the fields of a curve point, in order


class StoreError(LookupError):
    """The store or the experiment asked for does not exist; the message is one line."""


@dataclass(frozen=True)
class StoredRun:
    """One MLflow run as analysis sees it: info, and its params, last metric values and tags."""
    run_id: str
    name: str
    status: str          # RUNNING, FINISHED, FAILED, KILLED
    start_time: int      # milliseconds since the epoch
    parent_id: str | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True)
class StoredExperiment:
    experiment_id: str
    name: str
    description: str     # the MLflow UI's note


def _stored(r) -> StoredRun:
    """A run as analysis reads it: metrics under their short names (``keys.short_key``). Names and
    values are interned: thousands of runs share a few dozen names and mostly equal values."""
    metrics = {intern(short_key(k)): v for k, v in r.data.metrics.items()}
    params = {intern(k): _intern(v) for k, v in r.data.params.items()}
    tags = {intern(k): _intern(v) for k, v in r.data.tags.items()}
    return StoredRun(r.info.run_id, r.info.run_name, r.info.status, r.info.start_time,
                     r.data.tags.get(PARENT_TAG), params, metrics, tags)


def _intern(v):
    return intern(v) if type(v) is str else v


def _existing_client(uri: str):
    """A client on a store that exists; a sqlite file that does not is a ``StoreError``, never created,
    and so is a store at a schema revision the installed MLflow does not expect (``retry.schema_mismatch``)."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise StoreError(f"no MLflow store at {uri} (run `make sweep` first)")
    try:
        return client(uri)
    except Exception as e:
        line = schema_mismatch(e)
        if line is None:
            raise
        raise StoreError(f"{uri}: {line}") from e


def experiment_names(uri: str, finished_only: bool = True) -> list[str]:
    """Names of the store's experiments with at least one FINISHED child run (else any bpresearch run).

    Raises:
        StoreError: no store at ``uri`` (a sqlite file that does not exist).
    """
    c = _existing_client(uri)
    query = f"tags.{KIND_TAG} = '{RUN}' and attributes.status = 'FINISHED'" if finished_only else \
        f"tags.{KIND_TAG} != ''"
    return sorted(exp.name for exp in c.search_experiments()
                  if len(c.search_runs([exp.experiment_id], filter_string=query, max_results=1)))


def experiment(uri: str, name: str) -> StoredExperiment:
    """The experiment called ``name``.

    Raises:
        StoreError: no store at ``uri``, or no such experiment in it.
    """
    exp = _existing_client(uri).get_experiment_by_name(name)
    if exp is None:
        raise StoreError(f"no experiment {name!r} in {uri}")
    return StoredExperiment(exp.experiment_id, exp.name, exp.tags.get(NOTE_TAG, ""))


def runs(uri: str, experiment_id: str, sql: bool | None = None) -> list[StoredRun]:
    """Every run of one experiment (sweeps and child runs, any status; not deleted runs), in
    MLflow's search order (latest start first).

    ``sql``: read a sqlite store's tables directly, read only, ``SQL_CHUNK`` runs a query (None:
    whenever the store is sqlite): MLflow's client builds tens of KB of objects a run; its
    search is read a page at a time otherwise.
    """
    db = sqlite_path(uri)
    if sql is None:
        sql = db is not None and db.exists()
    if sql:
        return _runs_sqlite(db, experiment_id)
    return [_stored(r) for page in pages(client(uri), [experiment_id]) for r in page]


RUN_TABLES = (("params", "value"), ("tags", "value"), ("latest_metrics", "CASE WHEN is_nan THEN NULL ELSE value END"))


def _runs_sqlite(db, experiment_id: str) -> list[StoredRun]:
    """``runs`` from a sqlite store's ``runs``, ``params``, ``tags`` and ``latest_metrics`` tables (as
    MLflow's search reads them: active runs, ordered by start time descending, then run id)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        head = con.execute("SELECT run_uuid, name, status, start_time FROM runs WHERE experiment_id = ? AND "
                           "lifecycle_stage = 'active' ORDER BY start_time DESC, run_uuid",
                           (int(experiment_id),)).fetchall()
        ids = [r[0] for r in head]
        found = {t: {i: {} for i in ids} for t, _ in RUN_TABLES}
        for i in range(0, len(ids), SQL_CHUNK):
            chunk = ids[i:i + SQL_CHUNK]
            for table, value in RUN_TABLES:
                into = found[table]
                for rid, key, v in con.execute(f"SELECT run_uuid, key, {value} FROM {table} WHERE run_uuid IN "
                                               f"({','.join('?' * len(chunk))}) ORDER BY run_uuid, rowid", chunk):
                    if table == "latest_metrics":
                        into[rid][intern(short_key(key))] = float("nan") if v is None else float(v)
                    else:
                        into[rid][intern(key)] = _intern(v)
    finally:
        con.close()
    out = []
    for rid, name, status, start in head:
        tags = found["tags"][rid]
        out.append(StoredRun(rid, name or tags.get(RUN_NAME_TAG), status, start, tags.get(PARENT_TAG),
                             found["params"][rid], found["latest_metrics"][rid], tags))
    return out


RUN_NAME_TAG = "mlflow.runName"


def artifact_text(uri: str, run_id: str, name: str) -> str | None:
    """The text of one artifact of a run, or None when it is missing or unreadable."""
    bar = os.environ.get(NO_BAR)
    os.environ[NO_BAR] = "false"   # MLflow's download progress bar would print to stderr for every file
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = client(uri).download_artifacts(run_id, name, tmp)
            with open(path, encoding="utf-8") as fh:
                return fh.read()
    except Exception:  # noqa: BLE001 - a missing artifact is reported as "not available", never fatal
        return None
    finally:
        if bar is None:
            os.environ.pop(NO_BAR, None)
        else:
            os.environ[NO_BAR] = bar


NO_BAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"


def attach_folder(uri: str, run_id: str, folder: Path, artifact_path: str):
    """Copy every file of ``folder`` into ``run_id``'s artifacts under ``artifact_path``."""
    client(uri).log_artifacts(run_id, str(folder), artifact_path)


RUN_INDEX = "index_metrics_run_uuid_key_step"   # MLflow's index of metrics by (run, key, step)


def points_query(n_runs: int, n_keys: int, run_index: bool = True) -> str:
    """The curve query for ``n_runs`` run ids and ``n_keys`` keys.

    ``run_index``: read through ``RUN_INDEX``. A store without statistics (``sqlite_stat1``)
    leaves sqlite to guess, and it picks the primary key, whose first column is the metric's
    key: every chunk of runs then reads every point of the store under those keys (quadratic
    in the store's size). Named, the index reads only the chunk's runs.
    """
    return (f"SELECT run_uuid, key, step, value, timestamp FROM metrics"
            f"{f' INDEXED BY {RUN_INDEX}' if run_index else ''} "
            f"WHERE run_uuid IN ({','.join('?' * n_runs)}) AND key IN ({','.join('?' * n_keys)}) AND is_nan = 0")


def iter_points_sqlite(db, run_ids: list[str], keys: list[str]):
    """``_points_sqlite``'s rows, one chunk of ``SQL_CHUNK`` runs at a time (a list of tuples each)."""
    # Read only: a report must never write to (or migrate) the store it reads.
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        indexed = con.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?",
                              (RUN_INDEX,)).fetchone() is not None   # an older MLflow's store may lack it
        for i in range(0, len(run_ids), SQL_CHUNK):
            ids = run_ids[i:i + SQL_CHUNK]
            yield con.execute(points_query(len(ids), len(keys), indexed), [*ids, *keys]).fetchall()
    finally:
        con.close()


def _points_sqlite(db, run_ids: list[str], keys: list[str]) -> list[tuple]:
    return [row for rows in iter_points_sqlite(db, run_ids, keys) for row in rows]


def _points_client(uri: str, run_ids: list[str], keys: list[str]) -> list[tuple]:
    c = client(uri)

    def one(job):
        run_id, key = job
        return [(run_id, key, m.step, m.value, m.timestamp) for m in c.get_metric_history(run_id, key)]

    jobs = [(r, k) for r in run_ids for k in keys]
    with ThreadPoolExecutor(8) as pool:  # requests wait on I/O; threads overlap them
        return [row for part in pool.map(one, jobs) for row in part]


def metric_point_chunks(uri: str, run_ids, keys, sql: bool | None = None):
    """``metric_points``, a chunk of runs at a time: each chunk a list of ``POINT`` tuples holding
    every point of its runs (a run is never split between chunks), so a reader can reduce
    each chunk before the next one is read.

    Args: as ``metric_points``.
    """
    run_ids, keys = list(run_ids), list(keys)
    if not run_ids or not keys:
        return
    db = sqlite_path(uri)
    if sql is None:
        sql = db is not None
    names = list(dict.fromkeys(n for k in keys for n in stored_names(k)))
    if sql:
        chunks = iter_points_sqlite(db, run_ids, names)
    else:
        chunks = (_points_client(uri, run_ids[i:i + SQL_CHUNK], names) for i in range(0, len(run_ids), SQL_CHUNK))
    short = {n: short_key(n) for n in names}
    for rows in chunks:
        yield [(r, short[k], *rest) for r, k, *rest in rows]


def metric_points(uri: str, run_ids, keys, sql: bool | None = None) -> list[tuple]:
    """Every logged point of the metric histories ``keys`` of ``run_ids``.

    Args:
        uri: MLflow tracking URI.
        run_ids: the runs to read.
        keys: metric names as the code spells them (``full_train_loss``); read under their
            names in the store (``curves/full_train_loss``, or bare in older stores).
        sql: read MLflow's ``metrics`` table directly (None: whenever the store is sqlite);
            False asks the client API, which works on any store.

    Returns:
        ``(run_id, key, step, value, timestamp)`` tuples (``POINT``) with ``key`` as given,
        in no particular order; a point logged twice appears twice.
    """
    return [row for rows in metric_point_chunks(uri, run_ids, keys, sql) for row in rows]
