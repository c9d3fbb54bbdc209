"""A real sweep into a real sqlite MLflow store, read back; resume; kill -9; concurrent stores."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from storeview import children  # noqa: E402

from bpresearch import keys
from bpresearch.cli import main
from bpresearch.keys import HASH_TAG, KIND_TAG
from bpresearch.run import records, sweep
from bpresearch.spec import experiment
from bpresearch.store import reads, sqlstore
from bpresearch.store.uri import sqlite_path

SMALL = ["--set", "train.steps=30", "--set", "train.eval_every=5", "--set", "sweep.seeds=2",
         "--set", "sweep.learning_rate=[0.03, 0.3, 3.0]", "--set", 'sweep.batch_size=[1, 8, "full"]']
BIN = Path(sys.executable).parent / "bpresearch"


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    import shutil
    root = Path(__file__).resolve().parents[2] / "experiments"
    shutil.copy(root / "linear.npz", tmp)
    shutil.copy(root / "linear-regression.toml", tmp)
    path, uri = tmp / "linear-regression.toml", f"sqlite:///{tmp}/mlflow.db"
    assert main(["sweep", str(path), "--tracking-uri", uri, *SMALL]) == 0
    overrides = [SMALL[i + 1] for i in range(0, len(SMALL), 2)]
    return experiment.load(path, overrides), uri, MlflowClient(uri)


def test_the_last_line_links_the_swept_experiments_run_table(swept, capsys):
    """A second sweep of a finished grid trains nothing and still says where to look: the
    run table of this experiment (its id, model-training mode)."""
    exp, uri, client = swept
    assert main(["sweep", str(exp.path), "--tracking-uri", uri, *SMALL]) == 0
    out = capsys.readouterr().out
    e = client.get_experiment_by_name("linear-regression")
    assert f"/#/experiments/{e.experiment_id}/runs?workflowType=machine_learning" in out


def test_every_configuration_is_one_finished_child_of_one_sweep(swept):
    exp, uri, client = swept
    e = client.get_experiment_by_name("linear-regression")
    assert e.tags["mlflow.note.content"] == "Gradient descent on least squares"
    kids = children(client, e.experiment_id)
    assert len(kids) == len(exp.runs) == 18
    assert all(k.info.status == "FINISHED" for k in kids)
    parents = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert {k.data.tags["mlflow.parentRunId"] for k in kids} == {parents[0].info.run_id}
    assert {k.data.tags[HASH_TAG] for k in kids} == {r.hash for r in exp.runs}
    p = parents[0].data
    assert p.metrics["grid_size"] == 18 and p.metrics["runs_logged"] == 18
    assert 0 < p.metrics["tracking_share"] < 1 and p.metrics["metric_points"] > 0
    arts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"experiment.toml", "resolved.toml"} <= arts


def test_params_tags_and_names(swept):
    exp, uri, client = swept
    e = client.get_experiment_by_name("linear-regression")
    by_hash = {k.data.tags[HASH_TAG]: k for k in children(client, e.experiment_id)}
    for run in exp.runs:
        k = by_hash[run.hash]
        assert k.info.run_name == run.name
        params = k.data.params
        for key in ("learning_rate", "batch_size", "seed", "optimizer", "model", "dataset",
                    "train.steps", "data.sha256", "optimizer.kind"):
            assert key in params, key
        assert float(params["learning_rate"]) == run.config["optimizer"]["learning_rate"]
        tags = k.data.tags
        for key in ("git.commit", "git.dirty", "version.python", "version.jax", "version.jaxlib",
                    "version.optax", "version.mlflow", "jax.backend", HASH_TAG):
            assert tags.get(key), key
    first = next(iter(by_hash.values()))
    assert "config.json" in {a.path for a in client.list_artifacts(first.info.run_id)}


def test_curves_are_complete_point_by_point(swept):
    """Every logged point equals the compiled program's value at that step (rerun here)."""
    exp, uri, client = swept
    e = client.get_experiment_by_name("linear-regression")
    by_hash = {k.data.tags[HASH_TAG]: k for k in children(client, e.experiment_id)}
    n_diverged = 0
    for runs in exp.groups().values():
        res = sweep.run_group(runs[0].config, [sweep.member_of(r.config) for r in runs], exp.dataset(runs[0].config))
        for rec in records.records(runs, res):
            k = by_hash[rec.run.hash]
            n_diverged += int(k.data.metrics["summary/diverged"])
            for key in ("train_loss", "grad_norm", "full_train_loss"):
                want = list(zip(*map(np.ndarray.tolist, rec.curves[key])))
                got = sorted((m.step, m.value) for m in client.get_metric_history(k.info.run_id, keys.stored_key(key)))
                assert got == want, (rec.run.name, key)
            assert len(rec.curves["full_train_loss"][0]) > 0
            for key, value in rec.summary.items():
                assert k.data.metrics[f"summary/{key}"] == pytest.approx(value, nan_ok=True), key
            if not k.data.metrics["summary/diverged"]:
                assert [m.step for m in client.get_metric_history(k.info.run_id, "curves/full_train_loss")] == \
                       list(res.eval_steps)
    assert n_diverged > 0, "lr = 3 should diverge with batch size 1: the truncation path is tested"


def test_second_sweep_logs_nothing_new(swept, capsys):
    exp, uri, client = swept
    e = client.get_experiment_by_name("linear-regression")
    before = len(client.search_runs([e.experiment_id]))
    capsys.readouterr()
    assert main(["sweep", str(exp.path), "--tracking-uri", uri, *SMALL]) == 0
    out = capsys.readouterr()
    assert "nothing to do" in out.err
    assert len(client.search_runs([e.experiment_id])) == before
    # the summary table reports the store's diverged runs of the grid, not 0 new ones
    diverged = sum(int(k.data.metrics["summary/diverged"]) for k in children(client, e.experiment_id))
    row = next(line for line in out.out.splitlines() if line.startswith("linear-regression"))
    assert row.split()[1:4] == ["18", "0", str(diverged)] and diverged > 0


def test_dry_run_says_how_many_are_already_finished(swept, capsys):
    exp, uri, client = swept
    capsys.readouterr()
    more = [*SMALL[:-1], 'sweep.batch_size=[1, 8, "full", 4]']   # 6 more runs than the store has
    assert main(["sweep", str(exp.path), "--tracking-uri", uri, *more, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "already finished in the store: 18 of 24; a sweep would train 6" in out
    assert "24 runs in all, 18 already finished" in out


def test_what_the_ui_shows_is_logged(swept):
    """Experiment kind, dataset input, source, training times, applicable params, metric sections."""
    exp, uri, client = swept
    e = client.get_experiment_by_name("linear-regression")
    assert e.tags["mlflow.experimentKind"] == "custom_model_development"
    parent = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'")[0]
    kids = [client.get_run(k.info.run_id) for k in children(client, e.experiment_id)]
    spans = set()
    for k in kids:
        (inp,) = k.inputs.dataset_inputs
        assert inp.dataset.name == "linear.npz" and inp.dataset.digest == k.data.params["data.sha256"][:8]
        assert json.loads(inp.dataset.source)["uri"].startswith("linear.npz")
        assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": "train"}
        tags = k.data.tags
        assert tags["mlflow.source.name"] == str(exp.path) and tags["mlflow.source.type"] == "LOCAL"
        if tags["git.commit"] != "unknown":
            assert tags["mlflow.source.git.commit"] == tags["git.commit"]
        for key in ("model.start", "model.hidden", "data.n_train", "data.target", "optimizer.momentum",
                    "optimizer.b1", "data.target_column", "model.init_scale"):
            assert key not in k.data.params, key
        assert parent.info.start_time <= k.info.start_time <= k.info.end_time <= parent.info.end_time
        spans.add((k.info.start_time, k.info.end_time))
        assert {m.split("/")[0] for m in k.data.metrics} == {"curves", "diagnostics", "summary"}
    assert len(spans) == len(exp.groups()), "a run's times are those of its group's compiled call"
    names = [k.info.run_name for k in kids]
    assert len(set(names)) == len(names) and max(map(len, names)) <= 20   # the run table's width


def _count(db: Path, status: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid "
                             "where t.key = ? and t.value = 'run' and r.status = ?", (KIND_TAG, status)).fetchone()[0]
    except sqlite3.OperationalError:  # store not created yet
        return 0


@pytest.mark.slow
def test_resume_after_kill_9_completes_exactly_the_rest(linear_example, tmp_path):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    sets = ["--set", "train.steps=40", "--set", "sweep.seeds=1", "--set", "sweep.learning_rate=[0.01, 0.1]",
            "--set", "sweep.batch_size=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]"]
    grid = 24
    proc = subprocess.Popen([str(BIN), "sweep", str(linear_example), "--tracking-uri", uri, *sets],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _count(db, "FINISHED") == 0 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = _count(db, "FINISHED")
    assert 0 < done_at_kill < grid, f"the kill did not land midway ({done_at_kill} of {grid})"

    client = MlflowClient(uri)
    e = client.get_experiment_by_name("linear-regression")
    for k in children(client, e.experiment_id, "FINISHED"):  # FINISHED means complete
        assert len(client.get_metric_history(k.info.run_id, "curves/train_loss")) == 40
        assert "summary/final_full_train_loss" in k.data.metrics

    assert main(["sweep", str(linear_example), "--tracking-uri", uri, *sets]) == 0
    finished = children(client, e.experiment_id, "FINISHED")
    hashes = [k.data.tags[HASH_TAG] for k in finished]
    assert len(hashes) == grid and len(set(hashes)) == grid
    exp = experiment.load(linear_example, [sets[i + 1] for i in range(0, len(sets), 2)])
    assert set(hashes) == {r.hash for r in exp.runs}
    resumed = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'",
                                 order_by=["attributes.start_time DESC"])[0]
    assert resumed.data.metrics["runs_logged"] == grid - done_at_kill
    assert not children(client, e.experiment_id, "RUNNING"), "stale runs are marked KILLED once replaced"


@pytest.mark.slow
def test_two_sweeps_create_a_new_store_at_once(tmp_path):
    root = Path(__file__).resolve().parents[2] / "experiments"
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    procs = [subprocess.Popen([str(BIN), "sweep", str(root / name), "--tracking-uri", uri, "--set", "train.steps=5"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("seed-graph.toml", "neuron-random-vs-gd.toml")]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    client = MlflowClient(uri)
    assert {e.name for e in client.search_experiments()} >= {"seed-graph", "neuron-random-vs-gd"}


def test_bulk_metric_insert_equals_log_batch(tmp_path, linear_example):
    """The fast path writes exactly what MLflow's own log_batch writes: history and latest values."""
    from bpresearch.store.record import RunRecord
    from bpresearch.store.tracking import open_store

    steps = np.arange(1500)
    curves = {k: (steps, np.sin(steps * (j + 1.0))) for j, k in enumerate(["train_loss", "grad_norm"])}
    summary = {"final": 0.5, "big": float("inf"), "nan": float("nan"), "diverged": 0.0}
    exp = experiment.load(linear_example)
    rec = RunRecord(exp.runs[0], {"p": "1"}, curves, summary,
                    dataset=records.dataset_input(exp.runs[0].config, exp.dataset(exp.runs[0].config)),
                    times=(1_700_000_000_000, 1_700_000_004_250))
    ids = {}
    for bulk in (True, False):
        t = open_store(f"sqlite:///{tmp_path}/{bulk}.db", bulk=bulk)
        e = t.experiment("x", "d")
        ids[bulk] = (t, t.log_run(e, t.start_sweep(e, "s", {}, {}, {}), rec, {}))
    (ta, a), (tb, b) = ids[True], ids[False]
    names = [keys.stored_key(k) for k in ("train_loss", "grad_norm")]
    names += [keys.stored_summary(k) for k in ("final", "big", "nan", "diverged")]
    for k in names:
        ha = sorted((m.step, m.value) for m in ta.client.get_metric_history(a, k))
        hb = sorted((m.step, m.value) for m in tb.client.get_metric_history(b, k))
        assert ha and str(ha) == str(hb), k
    assert str(ta.client.get_run(a).data.metrics) == str(tb.client.get_run(b).data.metrics)
    ra, rb = ta.client.get_run(a), tb.client.get_run(b)
    assert (ra.info.start_time, ra.info.end_time) == (rb.info.start_time, rb.info.end_time) == rec.times

    def inputs(run):
        return [(i.dataset.name, i.dataset.digest, i.dataset.source_type, i.dataset.source, i.dataset.profile,
                 [(t.key, t.value) for t in i.tags]) for i in run.inputs.dataset_inputs]
    assert inputs(ra) == inputs(rb) and inputs(ra)[0][:2] == ("linear.npz", rec.dataset["digest"])


def test_a_group_is_written_chunk_by_chunk_while_it_trains(linear_example, tmp_path, monkeypatch, capsys):
    """Two groups of 6 runs in chunks of 2: each chunk reaches the store before the next chunk of its
    group trains (one writer call per chunk), and the store holds ``run_group``'s curves bit for bit."""
    from chunkwrites import ChunkWrites

    from bpresearch.run import executors

    sets = ["train.steps=30", "train.eval_every=5", "train.chunk=2", "sweep.seeds=2",
            "sweep.learning_rate=[0.03, 0.3, 3.0]", "sweep.batch_size=[1, 8]"]
    watch = ChunkWrites(monkeypatch, executors)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["sweep", str(linear_example), "--tracking-uri", uri, *[a for s in sets for a in ("--set", s)]]) == 0
    assert "trained 12/12, logged 12/12, 2/2 groups trained" in capsys.readouterr().err

    exp = experiment.load(linear_example, sets)
    want = []
    for runs in exp.groups().values():
        for start in range(0, len(runs), 2):
            want += [("trained", start, 2), ("written", [r.hash for r in runs[start:start + 2]])]
    assert watch.events == want

    client = MlflowClient(uri)
    e = client.get_experiment_by_name("linear-regression")
    by_hash = {k.data.tags[HASH_TAG]: k for k in children(client, e.experiment_id)}
    assert len(by_hash) == 12 and all(k.info.status == "FINISHED" for k in by_hash.values())
    for runs in exp.groups().values():
        cfg = runs[0].config
        res = sweep.run_group(cfg, [sweep.member_of(r.config) for r in runs], exp.dataset(cfg), 2)
        for rec in records.records(runs, res):
            k = by_hash[rec.run.hash]
            for key, (steps, values) in rec.curves.items():
                got = sorted((m.step, m.value) for m in client.get_metric_history(k.info.run_id, keys.stored_key(key)))
                assert got == list(zip(steps.tolist(), values.tolist())), (rec.run.name, key)
            assert {key: k.data.metrics[keys.stored_summary(key)] for key in rec.summary} == \
                pytest.approx(rec.summary, nan_ok=True)


# ---------------------------------------------------------------- what keeps a big store fast (bench/scale.py times it)
def _stat_tables(db) -> set[str]:
    con = sqlite3.connect(db)
    try:
        return {t for (t,) in con.execute("SELECT tbl FROM sqlite_stat1")}
    finally:
        con.close()


def test_a_finished_sweep_leaves_the_store_analysed(swept):
    """The planner's statistics cover the tables MLflow's searches and histories read."""
    uri = swept[1]
    assert {"metrics", "latest_metrics", "runs", "tags"} <= _stat_tables(sqlite_path(uri))


def _plan(db, query: str, n_runs: int) -> str:
    con = sqlite3.connect(db)
    try:
        rows = con.execute(f"EXPLAIN QUERY PLAN {query}", ["x"] * n_runs + ["curves/full_train_loss"]).fetchall()
    finally:
        con.close()
    return " ".join(r[-1] for r in rows)


def test_the_curve_query_reads_through_the_run_index(swept, tmp_path):
    """Without statistics sqlite plans the curve query through the primary key (every point of
    a key in the store, for every chunk); the harness's query names the run-id index."""
    uri = swept[1]
    db = tmp_path / "copy.db"
    shutil.copy(sqlite_path(uri), db)
    con = sqlite3.connect(db)
    con.execute("DROP TABLE sqlite_stat1")   # a store no sweep of this version has analysed
    con.commit()
    con.close()
    assert reads.RUN_INDEX in _plan(db, reads.points_query(3, 1), 3)
    assert reads.RUN_INDEX not in _plan(db, reads.points_query(3, 1, run_index=False), 3)   # the planner's guess


def test_list_counts_without_reading_runs(swept, monkeypatch, capsys):
    """`list` asks one count per store (and a note per experiment), whatever the number of runs:
    no statement reads a run, a metric or a param."""
    uri = swept[1]
    statements = []
    connect = sqlstore.connect

    def traced(path):
        con = connect(path)
        con.set_trace_callback(statements.append)
        return con

    monkeypatch.setattr(sqlstore, "connect", traced)
    assert main(["list", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "linear-regression" in out and " 18 " in out   # 3 learning rates × 3 batch sizes × 2 seeds
    reads_ = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert reads_ and len(reads_) <= 2   # the counts, then the experiment's note
    assert not any(t in s for s in reads_ for t in ("FROM metrics", "FROM params", "FROM latest_metrics"))


def test_curves_read_chunk_by_chunk_equal_the_points(swept, monkeypatch):
    """Chunked reading (a few runs a chunk here) gives every point, each run's in one chunk."""
    uri = swept[1]
    from analysis import load

    exp = reads.experiment(uri, "linear-regression")
    ids = [r.run_id for r in reads.runs(uri, exp.experiment_id) if r.parent_id]
    whole = load.load_curves(uri, ids)
    monkeypatch.setattr(reads, "SQL_CHUNK", 7)
    chunks = list(reads.metric_point_chunks(uri, sorted(ids), ["full_train_loss"]))
    assert len(chunks) == 3   # 18 runs, 7 a chunk
    assert all(not ({r for r, *_ in a} & {r for r, *_ in b}) for a in chunks for b in chunks if a is not b)
    assert load.load_curves(uri, ids).equals(whole)
    assert len(whole) == len(reads.metric_points(uri, ids, load.R.CURVE_KEYS))


def test_counts_and_params_in_sql_equal_mlflows(swept):
    """The sqlite store's counts and child params (read in SQL) are what MLflow's searches give."""
    from bpresearch.store.tracking import open_store

    uri = swept[1]
    direct, client = open_store(uri), open_store(uri, bulk=False)
    assert direct.experiments() == client.experiments()
    assert [(i, n, sorted(map(sorted, (p.items() for p in ps)))) for i, n, ps in direct._child_params()] == \
        [(i, n, sorted(map(sorted, (p.items() for p in ps)))) for i, n, ps in client._child_params()]
