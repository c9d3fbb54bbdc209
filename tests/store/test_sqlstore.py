"""The bulk path (bpresearch.store.sqlstore) writes what MLflow's own client writes, read back through MLflow."""

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from bpresearch.keys import HASH_TAG, KIND_TAG, stored_key, stored_summary
from bpresearch.spec import experiment
from bpresearch.store import sqlstore
from bpresearch.store.mlflow_backend import MlflowStore
from bpresearch.store.record import RunRecord
from bpresearch.store.sqlite_backend import SqliteStore
from bpresearch.store.tracking import open_store

KEYS = ("train_loss", "grad_norm", "full_train_loss")


def _records(linear_example, n=3):
    runs = experiment.load(linear_example).runs[:n]
    out = []
    for i, run in enumerate(runs):
        steps = np.arange(0, 1200 + 100 * i)
        vals = np.sin(steps * (i + 1.0)) * (i + 1)
        vals[7] = np.inf      # log_batch stores ±inf as ±max float, NaN as 0 with is_nan
        vals[8] = -np.inf
        vals[9] = np.nan
        curves = {"train_loss": (steps, vals), "grad_norm": (steps[::3], np.cos(steps[::3] * 1.0)),
                  # the latest point of this curve is NaN, the largest value of its step decides nothing
                  "full_train_loss": (np.array([0, 10, 20]), np.array([1.0, 0.5, np.nan]))}
        summary = {"final": 0.5 + i, "big": float("inf"), "nan": float("nan"), "diverged": 0.0}
        out.append(RunRecord(run, {"p": str(i), "learning_rate": str(run.config["optimizer"]["learning_rate"])},
                             curves, summary, {"config.json": f'{{"i": {i}}}'}))
    return out


def _log(tmp_path, recs, bulk, replaces=None):
    t = open_store(f"sqlite:///{tmp_path}/{bulk}.db", bulk=bulk)
    e = t.experiment("x", "d")
    parent = t.start_sweep(e, "s", {}, {}, {})
    return t, e, t.log_runs(e, parent, recs, {"bpresearch.group": "g1"}, replaces)


def test_bulk_runs_read_back_like_client_runs(tmp_path, linear_example):
    recs = _records(linear_example)
    (ta, ea, ia), (tb, eb, ib) = _log(tmp_path, recs, True), _log(tmp_path, recs, False)
    assert ta.points == tb.points == sum(len(s) for r in recs for s, _ in r.curves.values()) + 4 * len(recs)
    for rec, a, b in zip(recs, ia, ib):
        ra, rb = ta.client.get_run(a), tb.client.get_run(b)
        for f in ("status", "run_name", "lifecycle_stage", "user_id", "experiment_id"):
            assert getattr(ra.info, f) == getattr(rb.info, f), f
        assert ra.info.status == "FINISHED" and ra.info.end_time >= ra.info.start_time
        assert ra.info.artifact_uri.endswith(f"/{a}/artifacts") and rb.info.artifact_uri.endswith(f"/{b}/artifacts")
        strip = lambda tags: {k: v for k, v in tags.items() if k != "mlflow.parentRunId"}  # noqa: E731
        assert strip(ra.data.tags) == strip(rb.data.tags)
        assert ra.data.params == rb.data.params
        assert str(ra.data.metrics) == str(rb.data.metrics)  # latest_metrics, NaN and inf included
        for k in (*map(stored_key, KEYS), *map(stored_summary, ("final", "big", "nan"))):
            ha = [(m.step, m.value, m.timestamp > 0) for m in ta.client.get_metric_history(a, k)]
            hb = [(m.step, m.value, m.timestamp > 0) for m in tb.client.get_metric_history(b, k)]
            assert ha and str(sorted(ha)) == str(sorted(hb)), k
        for t, i in ((ta, a), (tb, b)):
            (tmp_path / i).mkdir()
            assert Path(t.client.download_artifacts(i, "config.json", str(tmp_path / i))).read_text() == \
                rec.artifacts["config.json"]
        assert [f.path for f in ta.client.list_artifacts(a)] == [f.path for f in tb.client.list_artifacts(b)]
    # MLflow's searches see them: by tag, by status, by metric, nested under the parent
    for t, e in ((ta, ea), (tb, eb)):
        found = t.client.search_runs([e], f"tags.`{KIND_TAG}` = 'run' and attributes.status = 'FINISHED' "
                                          "and metrics.`summary/final` >= 1.5")
        assert sorted(r.data.tags[HASH_TAG] for r in found) == sorted(r.run.hash for r in recs[1:])


def test_stale_copies_are_killed_with_their_replacement(tmp_path, linear_example):
    recs = _records(linear_example, 2)
    t = open_store(f"sqlite:///{tmp_path}/m.db")
    e = t.experiment("x", "d")
    parent = t.start_sweep(e, "s", {}, {}, {})
    stale = t.client.create_run(e, tags={KIND_TAG: "run", HASH_TAG: recs[0].run.hash}).info.run_id
    new = t.log_runs(e, parent, recs, {}, {recs[0].run.hash: [stale]})
    assert t.client.get_run(stale).info.status == "KILLED"
    assert [t.client.get_run(i).info.status for i in new] == ["FINISHED", "FINISHED"]


def test_runs_are_cut_into_transactions_and_each_is_atomic(tmp_path, linear_example, monkeypatch):
    recs = _records(linear_example, 3)
    sizes = [sum(len(s) for s, _ in r.curves.values()) + len(r.summary) for r in recs]
    runs = [sqlstore.NewRun(sqlstore.new_run_id(), "r", 0, "file:///x", 1, {}, {}, r.curves, r.summary) for r in recs]
    assert [len(p) for p in sqlstore.transactions(runs, sizes[0] + sizes[1])] == [2, 1]
    assert [len(p) for p in sqlstore.transactions(runs, 1)] == [1, 1, 1]
    # a failing transaction leaves nothing of itself behind
    t, e, ids = _log(tmp_path, recs[:1], True)
    runs[1].run_id = ids[0]  # a run id that exists: the runs insert fails
    runs[1].experiment_id = runs[0].experiment_id = int(e)
    con = sqlstore.connect(tmp_path / "True.db")
    with pytest.raises(sqlite3.IntegrityError):
        sqlstore.insert(con, runs[:2])
    assert con.execute("SELECT count(*) FROM runs WHERE run_uuid = ?", (runs[0].run_id,)).fetchone() == (0,)
    assert con.execute("SELECT count(*) FROM metrics WHERE run_uuid = ?", (runs[0].run_id,)).fetchone() == (0,)
    assert not con.in_transaction


def test_sanitize_matches_mlflow():
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    x = np.array([1.5, -0.0, np.inf, -np.inf, np.nan, 3e38], np.float32)
    values, is_nan = sqlstore.sanitize(x)
    want = [SqlAlchemyStore.sanitize_metric_value(None, float(v)) for v in x]
    assert [(bool(n), v) for n, v in zip(is_nan, values.tolist())] == [(bool(n), float(v)) for n, v in want]


def _sweep(tmp_path, name, bulk, recs):
    """A whole sweep's store calls: experiment, parent with params/tags/artifacts, runs, a
    stale copy killed, a text artifact, the end; direct (bulk) or through MLflow's client."""
    open_store(f"sqlite:///{tmp_path}/{name}.db")   # an existing store, as every sweep after the first finds
    t = open_store(f"sqlite:///{tmp_path}/{name}.db", bulk=bulk)
    e = t.experiment("exp", "what it studies")
    assert t.experiment("exp", "what it studies, edited") == e   # found again, note updated
    parent = t.start_sweep(e, "sweep 1", {"file": "a.toml", "long": "x" * 7000}, {"mlflow.source.name": "a.toml"},
                           {"experiment.toml": "a = 1\n"})
    ids = t.log_runs(e, parent, recs, {"bpresearch.group": "g"})
    t.mark_killed(ids[-1:])
    t.log_text(parent, '{"r": 1}', "refine.json")
    t.end_sweep(parent, {"wall_time_s": 1.5, "inf": float("inf"), "nan": float("nan")}, "FINISHED")
    return t, e, parent, ids


def test_a_direct_sweep_writes_what_mlflows_client_writes(tmp_path, linear_example, capsys):
    from mlflow.tracking import MlflowClient

    recs = _records(linear_example)
    (ta, ea, pa, ia), (tb, eb, pb, ib) = _sweep(tmp_path, "direct", True, recs), _sweep(tmp_path, "client", False, recs)
    assert isinstance(ta, SqliteStore) and isinstance(tb, MlflowStore)
    assert ta._mlflow is None, "the direct sweep never needed MLflow's client"
    ca, cb = MlflowClient(ta.uri), MlflowClient(tb.uri)
    xa, xb = ca.get_experiment(ea), cb.get_experiment(eb)
    assert (xa.name, xa.lifecycle_stage, xa.tags) == (xb.name, xb.lifecycle_stage, xb.tags)
    assert xa.tags["mlflow.note.content"] == "what it studies, edited"
    assert xa.artifact_location.endswith("/mlartifacts/exp") and xb.artifact_location.endswith("/mlartifacts/exp")
    ra, rb = ca.get_run(pa), cb.get_run(pb)
    for f in ("status", "run_name", "lifecycle_stage", "user_id", "experiment_id"):
        assert getattr(ra.info, f) == getattr(rb.info, f), f
    assert ra.info.artifact_uri == f"{xa.artifact_location}/{pa}/artifacts"
    assert ra.info.end_time >= ra.info.start_time > 0
    assert ra.data.tags == rb.data.tags and ra.data.params == rb.data.params
    assert len(ra.data.params["long"]) == sqlstore.PARAM_LIMIT
    assert str(ra.data.metrics) == str(rb.data.metrics)
    assert sorted(f.path for f in ca.list_artifacts(pa)) == sorted(f.path for f in cb.list_artifacts(pb)) == \
        ["experiment.toml", "refine.json"]
    assert [ca.get_run(i).info.status for i in ia] == [cb.get_run(i).info.status for i in ib] == \
        ["FINISHED", "FINISHED", "KILLED"]
    # reading back: the same answers from the direct reads and from MLflow's searches
    client_view = open_store(ta.uri, bulk=False)
    assert ta.runs_by_hash(ea) == client_view.runs_by_hash(ea)
    assert str(ta.finished_summaries(ea)) == str(client_view.finished_summaries(ea))
    assert ta.find_experiment("exp") == ea and ta.find_experiment("none") is None


def test_direct_writes_need_the_schema_they_were_written_for(tmp_path):
    """The revision and param limit these statements assume are the installed MLflow's; a store
    at another revision goes through MLflow (which refuses an unmigrated store and says why)."""
    from mlflow.store.db.utils import _get_latest_schema_revision
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    head = sqlstore.installed_head()
    assert head == _get_latest_schema_revision() in sqlstore.SCHEMA_REVISIONS
    assert sqlstore.PARAM_LIMIT == MAX_PARAM_VAL_LENGTH
    db = tmp_path / "m.db"
    assert not sqlstore.writable(db) and isinstance(open_store(f"sqlite:///{db}"), SqliteStore)   # created by MLflow, then direct
    assert sqlstore.writable(db)
    old = tmp_path / "old.db"   # another file: MLflow keeps one store object per uri in a process
    old.write_bytes(db.read_bytes())
    with sqlite3.connect(old) as con:
        con.execute("UPDATE alembic_version SET version_num = ?", (min(sqlstore.known_revisions() - {head}),))
    assert not sqlstore.writable(old)
    with pytest.raises(Exception, match="out-of-date database schema"):   # an older one: MLflow refuses it
        open_store(f"sqlite:///{old}")
    with sqlite3.connect(old) as con:
        con.execute("UPDATE alembic_version SET version_num = 'abc'")
    with pytest.raises(sqlstore.NewerSchema, match="revision abc, written by a later MLflow"):
        open_store(f"sqlite:///{old}")   # one no installed script names: refused before MLflow


def test_a_sweep_into_an_existing_store_imports_neither_mlflow_nor_pandas(tmp_path, linear_example):
    import subprocess
    import sys

    uri = f"sqlite:///{tmp_path}/m.db"
    open_store(uri)   # the store exists (MLflow created it)
    code = ("import sys; from bpresearch.cli import main; "
            f"rc = main(['sweep', {str(linear_example)!r}, '--tracking-uri', {uri!r}, '--set', 'train.steps=5', "
            "'--set', 'sweep.seeds=1']); "
            "print(rc, sorted(m for m in ('mlflow', 'pandas', 'sklearn', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.split("\n")[-2] == "0 []", out.stdout[-500:] + out.stderr[-2000:]
    assert len(open_store(uri, bulk=False).runs_by_hash(open_store(uri).find_experiment("linear-regression"))[0]) > 0
