"""The door to MLflow on a real sqlite store: pages of runs, long params, reads that never create a store."""

import pytest

from bpresearch import keys as R
from bpresearch.store import mlflow_backend, tracking
from bpresearch.store import reads as tracking_read


def test_search_reads_every_page(store, monkeypatch):
    t = tracking.open_store(store)
    exp_id = t.experiment("paged", "five runs, read two at a time")
    ids = {t.client.create_run(exp_id, tags={R.KIND_TAG: R.RUN}).info.run_id for _ in range(5)}
    monkeypatch.setattr(mlflow_backend, "PAGE", 2)
    assert {r.run_id for r in tracking_read.runs(store, exp_id)} == ids
    finished, unfinished, diverged = t.runs_by_hash(exp_id)
    assert not finished and not diverged and sum(len(v) for v in unfinished.values()) == 5
    assert tracking_read.experiment(store, "paged").description == "five runs, read two at a time"


def test_a_param_over_mlflows_limit_is_cut_and_said(store, capsys):
    t = tracking.open_store(store, bulk=False)   # MLflow's client path (MlflowStore._write)
    assert t.param_limit == 6000
    exp_id = t.experiment("long", "")
    run_id = t.client.create_run(exp_id).info.run_id
    t._write(run_id, {"data.path": "x" * 6001, "seed": "0"}, [], {})
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'data.path'" in err[0] and "6,001" in err[0] and "6,000" in err[0]
    params = tracking_read.runs(store, exp_id)[0].params
    assert params == {"data.path": "x" * 6000, "seed": "0"}


def test_reads_never_create_a_store(tmp_path):
    uri = f"sqlite:///{tmp_path}/none.db"
    for read in (lambda: tracking_read.experiment_names(uri), lambda: tracking_read.experiment(uri, "x")):
        with pytest.raises(tracking_read.StoreError, match="no MLflow store"):
            read()
    assert not (tmp_path / "none.db").exists()


def test_resume_reads_a_client_store_in_one_search(store, monkeypatch):
    """What a sweep reads before training (finished, unfinished, diverged runs and the target
    lists they were logged with) is one search of the experiment's runs through MLflow's
    client (a server's store), not one search per question."""
    from bpresearch.run import resume

    t = tracking.open_store(store, bulk=False)
    exp_id = t.experiment("resumed", "")
    for i, status in enumerate(("FINISHED", "FINISHED", "RUNNING")):
        run_id = t.client.create_run(exp_id, tags={R.KIND_TAG: R.RUN, R.HASH_TAG: f"h{i}"}).info.run_id
        t._write(run_id, {resume.TARGETS_PARAM: f"[0.{i + 1}]"}, [], {})
        if status == "FINISHED":
            t.client.set_terminated(run_id, status)
    searches = []
    real = mlflow_backend.search_all
    monkeypatch.setattr(mlflow_backend, "search_all", lambda *a, **k: searches.append(a[2]) or real(*a, **k))
    stored, unfinished = resume.read(t, exp_id)
    assert len(searches) == 1
    assert set(stored.finished) == {"h0", "h1"} and set(unfinished) == {"h2"}
    assert sorted(stored.targets) == [(0.1,), (0.2,)]
    assert t.param_values(exp_id, resume.TARGETS_PARAM) == {"[0.1]", "[0.2]"}   # asked alone: searched anew
    assert len(searches) == 2
