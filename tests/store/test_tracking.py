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
