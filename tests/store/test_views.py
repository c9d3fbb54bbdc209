"""The MLflow UI's saved view of an experiment (store/views.py): its columns, sort and charts,
the tag as MLflow's UI reads it, and ``bpresearch sync`` writing it into an older store."""

import json
from urllib.parse import parse_qs, urlsplit

import pytest
from mlflow.tracking import MlflowClient

from bpresearch.cli import main
from bpresearch.keys import HASH_TAG, KIND_TAG, RUN
from bpresearch.store.tracking import open_store, runs_url, ui_links
from bpresearch.store.views import (
    VIEW_KEY,
    VIEW_NAME,
    VIEW_TAG,
    cell_url,
    columns,
    compare_url,
    experiment_url,
    facet_columns,
    first_seed,
    run_url,
    ui_state,
    varying_params,
    view_tags,
)


def test_each_swept_setting_is_one_column_under_its_short_name():
    """learning rate, batch size and seed are swept under their long names and logged under
    both: each shows once, short; "full" among the batch sizes adds train.full_batch, no column."""
    facets = ["optimizer.learning_rate", "train.batch_size", "train.seed", "train.full_batch",
              "optimizer.kind", "model.activation"]
    assert columns(facets) == [
        "params.`learning_rate`", "params.`batch_size`", "params.`seed`", "params.`optimizer`",
        "params.`model.activation`", "metrics.`summary/steps_to_target`", "metrics.`summary/diverged`"]
    assert facet_columns(["optimizer.kind", "optimizer.kind", "train.steps"]) == ["optimizer", "steps"]
    assert columns() == columns(["optimizer.learning_rate", "train.batch_size", "train.seed"])


def test_the_facets_of_a_stored_experiment_are_the_params_that_vary():
    runs = [{"learning_rate": str(lr), "optimizer.learning_rate": str(lr), "optimizer.kind": kind,
             "train.steps": "30", "train.seed": "0"} for lr in (0.1, 0.3) for kind in ("sgd", "adam")]
    # random search: no learning rate, a setting of its own (one value: no facet)
    runs.append({"optimizer.kind": "random_search", "optimizer.search_scale": "0.5", "train.steps": "30",
                 "train.seed": "0"})
    assert varying_params(runs) == ["optimizer.kind", "optimizer.learning_rate"]
    assert varying_params(runs[:1]) == []


def test_the_tag_is_a_saved_view_as_mlflows_ui_reads_it():
    """The envelope the UI checks (a string name, a number createdAt, a string state) around
    the state: child runs, sorted by steps to the first target ascending, curves log-scaled
    first, runs grouped by batch size, the summaries collapsed, every run in the charts."""
    (key, value), = view_tags(["optimizer.kind"]).items()
    assert key == f"mlflow.sharedViewState.{VIEW_KEY}" == VIEW_TAG
    env = json.loads(value)
    assert isinstance(env["name"], str) and env["name"] == VIEW_NAME
    assert isinstance(env["createdAt"], int) and isinstance(env["state"], str)
    state = json.loads(env["state"])
    assert state == ui_state(["optimizer.kind"])
    assert state["searchFilter"] == f"tags.`{KIND_TAG}` = '{RUN}'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`summary/steps_to_target`", True)
    assert state["selectedColumns"] == state["columnOrder"] == columns(["optimizer.kind"])
    assert set(state["columnWidths"]) == set(state["selectedColumns"])
    charts, sections = state["compareRunCharts"], state["compareRunSections"]
    assert [c["metricKey"] for c in charts[:3]] == ["curves/full_train_loss", "curves/test_loss", "curves/train_loss"]
    assert all(c["type"] == "LINE" and c["scaleType"] == "log" for c in charts[:3])
    assert [s["name"] for s in sections] == ["curves", "diagnostics", "summary"]
    assert [s["display"] for s in sections] == [True, True, False]
    by_id = {s["uuid"]: s["name"] for s in sections}
    assert all(by_id[c["metricSectionId"]] == c["metricKey"].split("/")[0] for c in charts)
    assert state["groupBy"]["groupByKeys"] == [{"mode": "param", "groupByData": "batch_size"}]
    assert state["runsHiddenMode"] == "SHOW_ALL"
    assert len(value) < 20000  # MLflow's limit on an experiment tag


def test_the_link_opens_the_view_and_carries_no_sort_of_its_own():
    """The UI ignores a view when the link has search facets (orderByKey, searchFilter …)."""
    q = parse_qs(urlsplit(runs_url("http://h:5000/", "7")).fragment.split("?", 1)[1])
    assert q == {"workflowType": ["machine_learning"], "viewStateShareKey": [VIEW_KEY]}
    old = parse_qs(urlsplit(runs_url("http://h:5000", "7", view=False)).fragment.split("?", 1)[1])
    assert old["orderByKey"] == ["metrics.`summary/final_full_train_loss`"] and "viewStateShareKey" not in old


def _older_store(uri: str) -> tuple[MlflowClient, str]:
    """A store as a sweep wrote it before views: child runs with params, no view tag."""
    client = MlflowClient(uri)
    exp_id = client.create_experiment("older")
    parent = client.create_run(exp_id, run_name="sweep", tags={KIND_TAG: "sweep"}).info.run_id
    for i, (lr, kind) in enumerate([(0.1, "sgd"), (0.3, "sgd"), (0.1, "adam")]):
        run = client.create_run(exp_id, run_name=f"r{i}", tags={KIND_TAG: RUN, HASH_TAG: f"h{i}",
                                                               "mlflow.parentRunId": parent})
        for k, v in {"learning_rate": lr, "optimizer.learning_rate": lr, "optimizer.kind": kind,
                     "optimizer": kind, "batch_size": 8, "train.batch_size": 8}.items():
            client.log_param(run.info.run_id, k, str(v))
        client.log_metric(run.info.run_id, "summary/steps_to_target", 10.0 * (i + 1))
        client.set_terminated(run.info.run_id, "FINISHED")
    client.set_terminated(parent, "FINISHED")
    return client, exp_id


@pytest.mark.parametrize("bulk", [True, False], ids=["sqlite-direct", "mlflow-client"])
def test_sync_writes_the_view_into_an_older_store_without_retraining(tmp_path, bulk):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client, exp_id = _older_store(uri)
    assert dict(ui_links(uri, "http://h"))["older"] == runs_url("http://h", exp_id, view=False)
    runs_before = {r.info.run_id for r in client.search_runs([exp_id])}
    if bulk:
        assert main(["sync", "--tracking-uri", uri]) == 0
    else:
        assert open_store(uri, bulk=False).write_views() == ["older"]
    tags = client.get_experiment(exp_id).tags
    assert tags[VIEW_TAG] == view_tags(["optimizer.kind", "optimizer.learning_rate"])[VIEW_TAG]
    assert {r.info.run_id for r in client.search_runs([exp_id])} == runs_before   # nothing trained or logged
    assert dict(ui_links(uri, "http://h"))["older"] == runs_url("http://h", exp_id)


def test_more_runs_than_the_uis_first_page_show_one_seed_so_every_cell_is_on_it():
    """MLflow's UI fetches 100 runs at a time and charts only those: an experiment with more
    child runs and several seeds gets a view of its first seed (one run per cell); one seed or
    a page's worth of runs: every child run."""
    child = f"tags.`{KIND_TAG}` = '{RUN}'"
    assert ui_state([], runs=135, first_seed=0)["searchFilter"] == f"{child} AND params.`seed` = '0'"
    assert ui_state([], runs=100, first_seed=0)["searchFilter"] == child
    assert ui_state([], runs=400, first_seed=None)["searchFilter"] == child
    params = [{"seed": str(s), "learning_rate": str(lr)} for s in (3, 1, 2) for lr in range(40)]
    assert first_seed(params) == 1 and first_seed(params[:40]) is None


def test_links_into_the_ui_open_in_model_training_mode():
    """Every link bpresearch writes carries workflowType=machine_learning; the compare page reads
    its runs as the query's first key (MLflow parses "?runs")."""
    base = "http://h:5000/"
    for url in (experiment_url(base, "7"), run_url(base, "7", "abc"), compare_url(base, "7", ["a", "b"])):
        assert url.startswith("http://h:5000/#/") and "workflowType=machine_learning" in url
    assert run_url(base, "7", "abc").startswith("http://h:5000/#/experiments/7/runs/abc?")
    cmp = urlsplit(compare_url(base, "7", ["a", "b"])).fragment
    assert cmp.startswith("/compare-runs?runs=")
    q = parse_qs(cmp.split("?", 1)[1])
    assert json.loads(q["runs"][0]) == ["a", "b"] and json.loads(q["experiments"][0]) == ["7"]
    assert cell_url(base, "7", ["a"]) == run_url(base, "7", "a")
    assert cell_url(base, "7", ["a", "b"]) == compare_url(base, "7", ["a", "b"])
    assert experiment_url(base, "7") == runs_url(base, "7")
