"""MLflow → tidy pandas frames: one row per run, one row per curve point.

Reads any MLflow store. Runs come from ``MlflowClient.search_runs`` (one query a page).
Curves are metric histories, which ``search_runs`` does not return: from a sqlite store
they are read with one SQL query per 500 runs straight from its ``metrics`` table (read
only); any other store falls back to ``get_metric_history`` per run and metric, which is
one request each and therefore slow for hundreds of runs.
"""

from __future__ import annotations

import io
import sqlite3
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bpresearch.tracking import HASH_TAG, KIND_TAG, client, sqlite_path

CURVE_KEYS = ("train_loss", "grad_norm", "full_train_loss", "test_loss")
SQL_CHUNK = 500  # run ids per IN (...) list: far below sqlite's limit of bound variables


class StoreError(LookupError):
    """The store or the experiment asked for does not exist; the message is one line."""


@dataclass
class ExperimentData:
    """What the store holds about one experiment.

    ``runs`` are the FINISHED child runs of the study (see ``select_study``), typed;
    ``unfinished`` counts the child runs that are not FINISHED by status (ignored);
    ``left_out`` counts FINISHED runs from sweeps with other settings, which are not analysed.
    """
    name: str
    experiment_id: str
    description: str
    uri: str
    runs: pd.DataFrame
    sweeps: pd.DataFrame
    unfinished: dict[str, int] = field(default_factory=dict)
    left_out: int = 0
    left_out_keys: list[str] = field(default_factory=list)
    resolved_toml: str | None = None
    resolved: dict | None = None

    @property
    def latest_sweep(self) -> pd.Series | None:
        """The parent run of the most recent sweep, or None."""
        if self.sweeps.empty:
            return None
        return self.sweeps.sort_values("start_time").iloc[-1]


def _search_all(c, exp_ids: list[str]) -> list:
    out, token = [], None
    while True:
        page = c.search_runs(exp_ids, max_results=5000, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def runs_frame(mlflow_runs: list) -> pd.DataFrame:
    """One row per MLflow run: ``params.*``, ``metrics.*`` (last values), ``tags.*`` and info.

    Typed convenience columns are added where the params exist: ``learning_rate`` (float),
    ``batch_size`` (int; the full set is its size), ``seed`` (int), ``full_batch`` (bool),
    ``optimizer``, ``steps`` (int), ``diverged`` (bool), ``diverged_step`` (int).

    Args:
        mlflow_runs: ``mlflow.entities.Run`` objects.

    Returns:
        The frame, sorted by learning rate, batch size and seed where those exist.
    """
    rows = []
    for r in mlflow_runs:
        row = {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status,
               "start_time": pd.to_datetime(r.info.start_time, unit="ms", utc=True),
               "kind": r.data.tags.get(KIND_TAG), "parent_id": r.data.tags.get("mlflow.parentRunId"),
               "config_hash": r.data.tags.get(HASH_TAG)}
        row.update({f"params.{k}": v for k, v in r.data.params.items()})
        row.update({f"metrics.{k}": v for k, v in r.data.metrics.items()})
        row.update({f"tags.{k}": v for k, v in r.data.tags.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    typed = {"learning_rate": float, "batch_size": int, "seed": int, "steps": int}
    for name, kind in typed.items():
        if f"params.{name}" in df:
            df[name] = pd.to_numeric(df[f"params.{name}"], errors="coerce").astype(kind if kind is float else "Int64")
    if "params.optimizer" in df:
        df["optimizer"] = df["params.optimizer"]
    if "params.train.full_batch" in df:
        df["full_batch"] = df["params.train.full_batch"] == "True"
    if "metrics.diverged" in df:
        df["diverged"] = df["metrics.diverged"].fillna(0) > 0.5
        df["diverged_step"] = df["metrics.diverged_step"].fillna(-1).astype(int)
    order = [c for c in ("optimizer", "batch_size", "learning_rate", "seed") if c in df]
    return df.sort_values(order).reset_index(drop=True) if order else df


def experiment_names(uri: str, finished_only: bool = True) -> list[str]:
    """Names of the store's experiments with at least one FINISHED child run (else any run).

    Args:
        uri: MLflow tracking URI.
        finished_only: False lists every experiment that holds any bpresearch run.

    Raises:
        StoreError: no store at ``uri`` (a sqlite file that does not exist).
    """
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise StoreError(f"no MLflow store at {uri} (run `make sweep` first)")
    c = client(uri)
    names = []
    for exp in c.search_experiments():
        query = f"tags.{KIND_TAG} = 'run' and attributes.status = 'FINISHED'" if finished_only else \
            f"tags.{KIND_TAG} != ''"
        page = c.search_runs([exp.experiment_id], filter_string=query, max_results=1)
        if len(page):
            names.append(exp.name)
    return sorted(names)


def _sweep_text(c, run_id: str, name: str) -> str | None:
    import tempfile

    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = c.download_artifacts(run_id, name, tmp)
            with open(path, encoding="utf-8") as fh:
                return fh.read()
    except Exception:  # a missing artifact is reported as "not available", never fatal
        return None


def _param_text(v) -> str:
    """A resolved-config value as ``bpresearch.results.flat_params`` writes it."""
    import json
    return json.dumps(v) if isinstance(v, (list, dict)) else str(v)


def select_study(runs: pd.DataFrame, resolved: dict | None) -> tuple[pd.DataFrame, int, list[str]]:
    """Keep the runs whose fixed settings match the latest sweep's resolved config.

    One MLflow experiment can hold runs of several sweeps of the same file made with
    different ``--set`` overrides (say ``train.steps=50`` and then the default); mixing
    them would compare budgets that differ. Keys swept by the latest sweep may vary.

    Args:
        runs: FINISHED child runs (``runs_frame``).
        resolved: the parsed ``resolved.toml`` of the latest sweep, or None (keep all).

    Returns:
        (kept runs, number left out, the ``section.key`` params on which they differed).
    """
    if resolved is None or runs.empty:
        return runs, 0, []
    from bpresearch.experiment import SWEPT_INTO

    swept = {SWEPT_INTO.get(k, k) for k in resolved.get("sweep", {})}
    if "train.batch_size" in swept:
        swept.add("train.full_batch")
    keep = pd.Series(True, index=runs.index)
    differs = []
    for section, values in resolved.items():
        if not isinstance(values, dict) or section == "sweep":
            continue
        for key, v in values.items():
            col = f"params.{section}.{key}"
            if f"{section}.{key}" in swept or col not in runs:
                continue
            same = runs[col] == _param_text(v)
            # Only a key on which the runs disagree among themselves marks a mix of sweeps;
            # one value everywhere that differs from resolved.toml is a matter of spelling
            # (sgd's momentum is logged as 0.0 while the file's default says 0.9).
            if runs[col].nunique() > 1 and same.any():
                differs.append(f"{section}.{key}")
                keep &= same
    return runs[keep].reset_index(drop=True), int((~keep).sum()), differs


def load_experiment(uri: str, name: str) -> ExperimentData:
    """Read one experiment: its finished child runs, sweeps and latest resolved config.

    Args:
        uri: MLflow tracking URI.
        name: experiment name (the experiment file's ``name``).

    Returns:
        An ``ExperimentData``; ``runs`` may be empty (the report then says so).

    Raises:
        StoreError: the experiment does not exist in the store.
    """
    c = client(uri)
    exp = c.get_experiment_by_name(name)
    if exp is None:
        raise StoreError(f"no experiment {name!r} in {uri}")
    df = runs_frame(_search_all(c, [exp.experiment_id]))
    if df.empty:
        df = pd.DataFrame(columns=["run_id", "run_name", "status", "kind", "start_time"])
    kids = df[df["kind"] == "run"]
    finished = kids[kids["status"] == "FINISHED"].reset_index(drop=True)
    unfinished = kids[kids["status"] != "FINISHED"]["status"].value_counts().to_dict()
    sweeps = df[df["kind"] == "sweep"].reset_index(drop=True)
    text, resolved = None, None
    if not sweeps.empty:
        latest = sweeps.sort_values("start_time").iloc[-1]
        text = _sweep_text(c, latest["run_id"], "resolved.toml")
        if text is not None:
            try:
                resolved = tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                resolved = None
    study, left_out, keys = select_study(finished, resolved)
    return ExperimentData(name, exp.experiment_id, exp.tags.get("mlflow.note.content", ""), uri, study,
                          sweeps, {str(k): int(v) for k, v in unfinished.items()}, left_out, keys, text, resolved)


def _curves_sqlite(db, run_ids: list[str], keys) -> pd.DataFrame:
    # Read only: a report must never write to (or migrate) the store it reads.
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        frames = []
        kq = ",".join("?" * len(keys))
        for i in range(0, len(run_ids), SQL_CHUNK):
            ids = run_ids[i:i + SQL_CHUNK]
            q = (f"SELECT run_uuid AS run_id, key, step, value, timestamp FROM metrics "
                 f"WHERE run_uuid IN ({','.join('?' * len(ids))}) AND key IN ({kq}) AND is_nan = 0")
            frames.append(pd.read_sql_query(q, con, params=[*ids, *keys]))
    finally:
        con.close()
    return pd.concat(frames, ignore_index=True)


def _curves_client(uri: str, run_ids: list[str], keys) -> pd.DataFrame:
    c = client(uri)

    def one(job):
        run_id, key = job
        return [(run_id, key, m.step, m.value, m.timestamp) for m in c.get_metric_history(run_id, key)]

    jobs = [(r, k) for r in run_ids for k in keys]
    with ThreadPoolExecutor(8) as pool:  # requests wait on I/O; threads overlap them
        rows = [row for part in pool.map(one, jobs) for row in part]
    return pd.DataFrame(rows, columns=["run_id", "key", "step", "value", "timestamp"])


def load_curves(uri: str, run_ids, keys=CURVE_KEYS) -> pd.DataFrame:
    """Metric histories of many runs as one tidy frame.

    Args:
        uri: MLflow tracking URI.
        run_ids: the runs to read.
        keys: the metric names to read (default: the four loss/gradient curves).

    Returns:
        Columns ``run_id, key, step, value``, one row per point, sorted by run, key and
        step; a point logged twice keeps its latest value; non-finite values are dropped.
    """
    run_ids, keys = list(run_ids), list(keys)
    if not run_ids or not keys:
        return pd.DataFrame({"run_id": pd.Series(dtype=str), "key": pd.Series(dtype=str),
                             "step": pd.Series(dtype=int), "value": pd.Series(dtype=float)})
    db = sqlite_path(uri)
    df = _curves_sqlite(db, run_ids, keys) if db is not None else _curves_client(uri, run_ids, keys)
    df = df[np.isfinite(df["value"].astype(float))]
    df = (df.sort_values(["run_id", "key", "step", "timestamp"])
            .drop_duplicates(["run_id", "key", "step"], keep="last")
            .drop(columns="timestamp").reset_index(drop=True))
    df["step"] = df["step"].astype(int)
    df["value"] = df["value"].astype(float)
    return df


def resolved_config_text(data: ExperimentData) -> str:
    """The latest sweep's resolved config, else one rebuilt from a run's ``section.key`` params."""
    if data.resolved_toml:
        return data.resolved_toml
    if data.runs.empty:
        return ""
    row = data.runs.iloc[0]
    buf = io.StringIO()
    buf.write("# rebuilt from the params of one run (no resolved.toml artifact found)\n")
    for col in sorted(c for c in data.runs.columns if c.startswith("params.") and c.count(".") == 2):
        buf.write(f"{col[len('params.'):]} = {row[col]}\n")
    return buf.getvalue()
