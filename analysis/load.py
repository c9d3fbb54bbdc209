"""The store → tidy pandas frames: one row per run, one row per curve point.

Reads any MLflow store, through ``bpresearch.tracking_read`` (the only door to MLflow;
it says how runs and curves are read). The names of params, metrics and tags come from
``bpresearch.results``, the naming contract the sweep writes by.
"""

from __future__ import annotations

import io
import tomllib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bpresearch import results as R
from bpresearch import tracking_read as store
from bpresearch.tracking_read import StoreError, experiment_names  # noqa: F401 - part of this module's API


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


def runs_frame(stored: list[store.StoredRun]) -> pd.DataFrame:
    """One row per run: ``params.*``, ``metrics.*`` (last values), ``tags.*`` and info.

    Typed convenience columns are added where the params exist: ``learning_rate`` (float),
    ``batch_size`` (int; the full set is its size), ``seed`` (int), ``full_batch`` (bool),
    ``optimizer``, ``steps`` (int), ``diverged`` (bool), ``diverged_step`` (int).

    Args:
        stored: runs as ``tracking_read.runs`` returns them.

    Returns:
        The frame, sorted by learning rate, batch size and seed where those exist.
    """
    rows = []
    for r in stored:
        row = {"run_id": r.run_id, "run_name": r.name, "status": r.status,
               "start_time": pd.to_datetime(r.start_time, unit="ms", utc=True),
               "kind": r.tags.get(R.KIND_TAG), "parent_id": r.parent_id, "config_hash": r.tags.get(R.HASH_TAG)}
        row.update({f"params.{k}": v for k, v in r.params.items()})
        row.update({f"metrics.{k}": v for k, v in r.metrics.items()})
        row.update({f"tags.{k}": v for k, v in r.tags.items()})
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    typed = {R.LEARNING_RATE: float, R.BATCH_SIZE: int, R.SEED: int, R.STEPS: int}
    for name, kind in typed.items():
        if f"params.{name}" in df:
            df[name] = pd.to_numeric(df[f"params.{name}"], errors="coerce").astype(kind if kind is float else "Int64")
    if f"params.{R.OPTIMIZER}" in df:
        df["optimizer"] = df[f"params.{R.OPTIMIZER}"]
    if "params.train.full_batch" in df:
        df["full_batch"] = df["params.train.full_batch"] == R.param_text(True)
    if f"metrics.{R.DIVERGED}" in df:
        df["diverged"] = df[f"metrics.{R.DIVERGED}"].fillna(0) > 0.5
        df["diverged_step"] = df[f"metrics.{R.DIVERGED_STEP}"].fillna(-1).astype(int)
    order = [c for c in ("optimizer", "batch_size", "learning_rate", "seed") if c in df]
    return df.sort_values(order).reset_index(drop=True) if order else df


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
    swept = R.swept_params(resolved.get("sweep", {}))
    keep = pd.Series(True, index=runs.index)
    differs = []
    for section, values in resolved.items():
        if not isinstance(values, dict) or section == "sweep":
            continue
        for key, v in values.items():
            param = R.param_key(section, key)
            col = f"params.{param}"
            if param in swept or col not in runs:
                continue
            same = runs[col] == R.param_text(v)
            # Only a key on which the runs disagree among themselves marks a mix of sweeps;
            # one value everywhere that differs from resolved.toml is a matter of spelling
            # (sgd's momentum is logged as 0.0 while the file's default says 0.9).
            if runs[col].nunique() > 1 and same.any():
                differs.append(param)
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
    exp = store.experiment(uri, name)
    df = runs_frame(store.runs(uri, exp.experiment_id))
    if df.empty:
        df = pd.DataFrame(columns=["run_id", "run_name", "status", "kind", "start_time"])
    kids = df[df["kind"] == R.RUN]
    finished = kids[kids["status"] == "FINISHED"].reset_index(drop=True)
    unfinished = kids[kids["status"] != "FINISHED"]["status"].value_counts().to_dict()
    sweeps = df[df["kind"] == R.SWEEP].reset_index(drop=True)
    text, resolved = None, None
    if not sweeps.empty:
        latest = sweeps.sort_values("start_time").iloc[-1]
        text = store.artifact_text(uri, latest["run_id"], "resolved.toml")
        if text is not None:
            try:
                resolved = tomllib.loads(text)
            except tomllib.TOMLDecodeError:
                resolved = None
    study, left_out, keys = select_study(finished, resolved)
    return ExperimentData(name, exp.experiment_id, exp.description, uri, study,
                          sweeps, {str(k): int(v) for k, v in unfinished.items()}, left_out, keys, text, resolved)


def load_curves(uri: str, run_ids, keys=R.CURVE_KEYS, sql: bool | None = None) -> pd.DataFrame:
    """Metric histories of many runs as one tidy frame.

    Args:
        uri: MLflow tracking URI.
        run_ids: the runs to read.
        keys: the metric names to read (default: the four loss/gradient curves).
        sql: how to read them (``tracking_read.metric_points``; None: the fastest way).

    Returns:
        Columns ``run_id, key, step, value``, one row per point, sorted by run, key and
        step; a point logged twice keeps its latest value; non-finite values are dropped.
    """
    points = store.metric_points(uri, run_ids, keys, sql=sql)
    if not points:
        return pd.DataFrame({"run_id": pd.Series(dtype=str), "key": pd.Series(dtype=str),
                             "step": pd.Series(dtype=int), "value": pd.Series(dtype=float)})
    df = pd.DataFrame(points, columns=list(store.POINT))
    df = df[np.isfinite(df["value"].astype(float))]
    df = (df.sort_values(["run_id", "key", "step", "timestamp"])
            .drop_duplicates(["run_id", "key", "step"], keep="last")
            .drop(columns="timestamp").reset_index(drop=True))
    df["step"] = df["step"].astype(int)
    df["value"] = df["value"].astype(float)
    return df


def run_config(uri: str, run_id: str) -> dict | None:
    """A run's resolved config (its ``config.json`` artifact), or None when it has none."""
    import json

    text = store.artifact_text(uri, run_id, "config.json")
    return json.loads(text) if text else None


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
