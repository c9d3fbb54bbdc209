"""A team's tracking server: sweep, resume, list and report against a real ``mlflow server``
(sqlite behind it, and PostgreSQL where a server can be started here) give what the
embedded store gives; on a ``postgresql://`` URI the bulk metric insert takes its SQL path.
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from storeview import mlflow_server, postgres_missing, postgres_server, snapshot

from bpresearch.cli import main
from bpresearch.keys import stored_key, stored_summary
from bpresearch.spec import experiment
from bpresearch.store.record import RunRecord
from bpresearch.store.tracking import open_store
from bpresearch.store.uri import sqlite_path

ROOT = Path(__file__).resolve().parents[2]
SETS = ["train.steps=30", "train.eval_every=5", "sweep.seeds=1", 'sweep.batch_size=[4, "full"]']
FIRST = [*SETS, "sweep.learning_rate=[0.03]"]          # 2 of the 4 runs: then kill nothing, resume
FULL = [*SETS, "sweep.learning_rate=[0.03, 0.3]"]


def _args(sets):
    return [a for s in sets for a in ("--set", s)]


def scenario(uri: str, folder: Path, capsys) -> dict:
    """Sweep half, resume the rest, sweep again (nothing to do), list, report: what each gives."""
    path = folder / "linear-regression.toml"
    shutil.copy(ROOT / "experiments" / "linear.npz", folder)
    shutil.copy(ROOT / "experiments" / "linear-regression.toml", path)
    capsys.readouterr()
    assert main(["sweep", str(path), "--tracking-uri", uri, *_args(FIRST)]) == 0
    assert main(["sweep", str(path), "--tracking-uri", uri, *_args(FULL)]) == 0
    assert "resuming: 2 of 4 runs already finished, 2 to go" in capsys.readouterr().err
    assert main(["sweep", str(path), "--tracking-uri", uri, *_args(FULL)]) == 0
    assert "nothing to do" in capsys.readouterr().err
    assert main(["list", "--tracking-uri", uri]) == 0
    listed = capsys.readouterr().out
    assert main(["report", "linear-regression", "--tracking-uri", uri, "--out", str(folder / "reports")]) == 0
    report = (folder / "reports" / "linear-regression" / "report.md").read_text()
    report = re.sub(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d(:\d\d)?", "WHEN", report.replace(uri, "STORE").replace(str(folder), "FOLDER"))
    report = re.sub(r"\bsweep \d\d-\d\d \d\d:\d\d:\d\d\b", "sweep WHEN", report)   # sweep runs' names
    report = re.sub(r"\b[0-9a-f]{32}\b", "RUN_ID", report)
    return {"runs": snapshot(uri, "linear-regression"), "list": listed, "report": report}


def _equal(got: dict, want: dict):
    assert len(got["runs"]) == 4 and set(got["runs"]) == set(want["runs"])
    for h in want["runs"]:
        assert got["runs"][h] == want["runs"][h], want["runs"][h][0]
    assert got["list"] == want["list"]
    assert got["report"] == want["report"]


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL database for this module's tests, or the reason there is none.

    One server and one database: MLflow's schema migration takes tens of seconds on PostgreSQL.
    """
    reason = postgres_missing()
    if reason:
        yield None, reason
        return
    with postgres_server() as pg:
        yield pg.database("mlflow"), None


@pytest.mark.slow
def test_tracking_server_equals_the_embedded_store(tmp_path, capsys, postgres):
    """``mlflow server`` over PostgreSQL where one can be started here, else over sqlite."""
    (tmp_path / "e").mkdir()
    want = scenario(f"sqlite:///{tmp_path}/e/mlflow.db", tmp_path / "e", capsys)
    assert "linear-regression" in want["list"] and "4" in want["list"]
    pg_uri, reason = postgres
    if reason:
        print(f"PostgreSQL: {reason}; the server runs over sqlite")
    (tmp_path / "s").mkdir()
    with mlflow_server(pg_uri or f"sqlite:///{tmp_path}/s/server.db", tmp_path / "s") as url:
        got = scenario(url, tmp_path / "s", capsys)
    _equal(got, want)


def _record(linear_example):
    run = experiment.load(linear_example).runs[0]
    steps = np.arange(1500)
    vals = np.sin(steps * 0.3)
    vals[5], vals[6], vals[7] = np.inf, -np.inf, np.nan
    curves = {"train_loss": (steps, vals), "full_train_loss": (np.array([0, 10, 20]), np.array([1.0, 0.5, np.nan]))}
    return RunRecord(run, {"p": "1"}, curves, {"final": 0.5, "big": float("inf"), "nan": float("nan")},
                     {"config.json": "{}"})


@pytest.mark.slow
def test_bulk_metric_insert_on_postgresql(linear_example, postgres):
    uri, reason = postgres
    if reason:
        pytest.skip(f"PostgreSQL: {reason}")
    rec = _record(linear_example)
    ids = {}
    for bulk in (True, False):
        t = open_store(uri, bulk=bulk)
        store = t.client._tracking_client.store
        # The store-specific choice: not the sqlite file path, but MLflow's SQL store (its engine)
        assert sqlite_path(uri) is None and store.engine.dialect.name == "postgresql"
        assert hasattr(store, "sanitize_metric_value")
        e = t.experiment(f"x{bulk}", "d")
        ids[bulk] = (t, t.log_run(e, t.start_sweep(e, "s", {}, {}, {}), rec, {}))
    (ta, a), (tb, b) = ids[True], ids[False]
    names = [*map(stored_key, ("train_loss", "full_train_loss")), *map(stored_summary, ("final", "big", "nan"))]
    for k in names:   # as the store names them (curves/…, summary/…)
        ha = sorted((m.step, m.value) for m in ta.client.get_metric_history(a, k))
        hb = sorted((m.step, m.value) for m in tb.client.get_metric_history(b, k))
        assert ha and str(ha) == str(hb), k
    assert str(ta.client.get_run(a).data.metrics) == str(tb.client.get_run(b).data.metrics)
    assert len(ta.client.get_metric_history(a, stored_key("train_loss"))) == 1500
    # ... and the fast path is the one that runs: on a run without metrics it inserts them
    run_id = ta.client.create_run(ta.experiment("xTrue", "d")).info.run_id
    from mlflow.entities import Metric

    assert ta._insert_new_metrics(run_id, [Metric("m", 1.0, 0, 0)]) is True
    assert [m.value for m in ta.client.get_metric_history(run_id, "m")] == [1.0]
