"""A refining sweep end to end: real training, a real sqlite MLflow store, exact step counts."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from oracles import loss_curves, problem

from bpresearch.cli import main
from bpresearch.keys import HASH_TAG, KIND_TAG, REFINE_ARTIFACT, ROUND_TAG
from bpresearch.run import runner
from bpresearch.spec import experiment
from bpresearch.store.tracking import open_store

BIN = Path(sys.executable).parent / "bpresearch"
RESOLUTION = 1.19
X_TRAIN = problem()[0]

# Least squares with Hessian eigenvalues 1 … 0.01 (test_refine.problem): full-batch gradient
# descent from w = 0, so steps-to-target is exact in float64 (test_refine.loss_curves).
TOML = """\
name = "ls-refine"
[data]
source = "file"
path = "ls.npz"
[model]
kind = "neuron"
bias = false
[train]
steps = 400
eval_every = 5
log_dense = 20
targets = [{target}]
[sweep]
learning_rate = {{ min = 0.1, max = 0.4, num = 3, scale = "log" }}   # entirely below the optimum (≈ 1.9)
batch_size = [8, "full"]
seeds = 2
refine = {{ target = {target}, resolution = {resolution}, max_rounds = {rounds}{extra} }}
"""


def write(tmp_path, rounds=8, extra="", name="ls.toml"):
    X, y = problem()
    np.savez(tmp_path / "ls.npz", X=X.astype(np.float32), y=y.astype(np.float32))
    X, y = X.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64)  # what is trained
    path = tmp_path / name
    _, l_star = loss_curves(X, y, [0.0], steps=0)
    l0 = 0.5 * np.mean(y ** 2)
    target = float(f"{l_star + 1e-5 * (l0 - l_star):.6g}")
    path.write_text(TOML.format(target=target, resolution=RESOLUTION, rounds=rounds, extra=extra))
    return path, X, y, target


def exact_full_batch_minimum(X, y, target):
    lrs = np.geomspace(1.0, 2.02, 1500)
    curves, _ = loss_curves(X, y, lrs, steps=400)
    t = np.array([np.argmax(c < target) if (c < target).any() else np.inf for c in curves], float)
    i = int(np.argmin(t))
    assert 0 < i < len(lrs) - 1
    return t[i], lrs[i]


class CompileCounter:
    """XLA compilations (and persistent-cache loads) in this process, by function name:
    JAX's backend-compile event. A group's program is the jitted ``run`` (train.make_run)."""

    def __init__(self):
        self.names = []
        self.on = False
        jax.monitoring.register_event_duration_secs_listener(self)

    def __call__(self, event, duration, **kw):
        if self.on and event == "/jax/core/compile/backend_compile_duration":
            self.names.append(kw.get("fun_name"))

    @property
    def count(self):
        return self.names.count("jit(run)")


COUNTER = CompileCounter()


@pytest.fixture(scope="module")
def refined(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refine")
    path, X, y, target = write(tmp)
    uri = f"sqlite:///{tmp}/mlflow.db"
    exp = experiment.load(path)
    COUNTER.names, COUNTER.on = [], True
    try:
        summary = runner.run_experiment(exp, open_store(uri), path.read_text())
    finally:
        COUNTER.on = False
    return path, uri, exp, summary, (COUNTER.count, COUNTER.names), (X, y, target)


def test_rounds_reuse_the_compiled_program(refined):
    path, uri, exp, summary, compiles, _ = refined
    assert summary.groups == 2
    rounds = [g["rounds"] for g in summary.refined]
    assert min(rounds) >= 2, rounds             # several rounds in every group …
    count, names = compiles
    assert count == summary.groups, names        # … and one compilation per group, not per round


def test_refined_optimum_matches_the_exact_minimum(refined):
    path, uri, exp, summary, _, (X, y, target) = refined
    t_min, lr_min = exact_full_batch_minimum(X, y, target)
    full = next(g for g in summary.refined if g["group"] == "bs=full")
    d = full["targets"][f"{target:g}"]
    assert full["resolved"] and d["resolved"]
    below, best, above = d["below"]["learning_rate"], d["best_learning_rate"], d["above"]["learning_rate"]
    assert below < best < above and best / below <= RESOLUTION * 1.0001 and above / best <= RESOLUTION * 1.0001
    # float32 training against float64 maths: within the resolution, plus one evaluation interval
    assert t_min <= d["best_steps"] <= RESOLUTION * t_min + 5, (d, t_min, lr_min)
    assert d["below"]["steps"] is None or d["below"]["steps"] >= d["best_steps"]
    # the initial grid (0.02 … 0.08) lies entirely below the optimum: refining moved far past it
    assert best > 0.4 * RESOLUTION ** 2


def test_every_added_configuration_is_a_tagged_child_run(refined):
    path, uri, exp, summary, _, _ = refined
    client = MlflowClient(uri)
    e = client.get_experiment_by_name("ls-refine")
    kids = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'run'", max_results=1000)
    assert all(k.info.status == "FINISHED" for k in kids)
    by_round = {}
    for k in kids:
        by_round.setdefault(int(k.data.tags[ROUND_TAG]), []).append(k)
    assert len(by_round[0]) == len(exp.runs) == 12
    added = sum(g["added"] * g["seeds"] for g in summary.refined)
    assert len(kids) == 12 + added and max(by_round) == max(g["rounds"] for g in summary.refined)
    # existing configurations keep their hashes; an added one hashes as if it had been in the grid
    plain = experiment.load(path, ["sweep.refine={target = %r}" % exp.refine.targets[0]])
    assert {r.hash for r in plain.runs} == {k.data.tags[HASH_TAG] for k in by_round[0]}
    k = by_round[1][0]
    lr, bs = float(k.data.params["learning_rate"]), k.data.params["train.batch_size"]
    seed = int(k.data.params["seed"])
    bs = '"full"' if bs == str(len(X_TRAIN)) else bs   # the whole training set
    alone = experiment.load(path, [f"sweep.learning_rate=[{lr!r}]", f"sweep.seeds=[{seed}]",
                                   f"sweep.batch_size=[{bs}]"])
    assert alone.runs[0].hash == k.data.tags[HASH_TAG]
    parent = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'")[0]
    m = parent.data.metrics
    assert m["refine_groups"] == 2 and m["refine_rounds"] == max(g["rounds"] for g in summary.refined)
    assert m["refine_configurations_added"] == added and m["refine_groups_resolved"] >= 1
    saved = json.loads(Path(client.download_artifacts(parent.info.run_id, REFINE_ARTIFACT)).read_text())
    assert saved == summary.refined


def test_a_finished_refinement_does_nothing_again(refined, capsys):
    path, uri, exp, summary, _, _ = refined
    client = MlflowClient(uri)
    e = client.get_experiment_by_name("ls-refine")
    before = len(client.search_runs([e.experiment_id], max_results=1000))
    assert main(["sweep", str(path), "--tracking-uri", uri]) == 0
    assert "refinement is complete" in capsys.readouterr().err
    assert len(client.search_runs([e.experiment_id], max_results=1000)) == before


@pytest.mark.parametrize("value, problem", [
    ("3", "refine: must be a table"),
    ("{ resolution = 1.0 }", "refine.resolution: must be > 1"),
    ("{ max_rounds = -1 }", "refine.max_rounds: must be ≥ 0"),
    ("{ target = 0.123 }", "refine.target: 0.123 is not one of [train] targets"),
    ("{ rounds = 3 }", "refine.rounds: unknown key"),
])
def test_bad_refine_settings_are_one_line_errors(tmp_path, capsys, value, problem):
    path = tmp_path / "bad.toml"
    path.write_text(TOML.format(target=1.0, resolution=1.19, rounds=2, extra=""))
    assert main(["sweep", str(path), "--set", f"sweep.refine={value}", "--tracking-uri",
                 f"sqlite:///{tmp_path}/m.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"[sweep] {problem}" in err and str(path) in err
    assert not (tmp_path / "m.db").exists()


def _finished_refined(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid where "
                             "t.key = 'bpresearch.round' and t.value != '0' and r.status = 'FINISHED'").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_a_refining_sweep_writes_each_chunk_while_the_next_trains(tmp_path, monkeypatch):
    """per_round = 1: chunks of 2 (one learning rate × 2 seeds), the initial grid of 3 learning rates in
    3 chunks a group; every chunk, of the grid and of the round, is in the store before the next trains."""
    from chunkwrites import ChunkWrites

    from bpresearch.run import executors

    path, *_ = write(tmp_path, rounds=1, extra=", per_round = 1")
    watch = ChunkWrites(monkeypatch, executors)   # rounds train through executors.train_chunks too
    summary = runner.run_experiment(experiment.load(path), open_store(f"sqlite:///{tmp_path}/m.db"), path.read_text())
    trained = [e for e in watch.events if e[0] == "trained"]
    assert watch.alternate(), watch.events
    assert [e[2] for e in trained] == [2] * len(trained) and len(trained) > 3 * summary.groups
    assert sum(e[2] for e in trained) == summary.logged == summary.trained


@pytest.mark.slow
def test_a_killed_refinement_resumes_to_the_same_optimum(tmp_path):
    # one learning rate per round: many rounds, so the kill lands inside the refinement
    path, *_ = write(tmp_path, rounds=8, extra=", per_round = 1")
    path.write_text(path.read_text().replace('batch_size = [8, "full"]', 'batch_size = ["full"]'))
    ref_uri = f"sqlite:///{tmp_path}/ref.db"
    assert main(["sweep", str(path), "--tracking-uri", ref_uri]) == 0
    db = tmp_path / "killed.db"
    proc = subprocess.Popen([str(BIN), "sweep", str(path), "--tracking-uri", f"sqlite:///{db}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while _finished_refined(db) == 0 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    def state(uri):
        c = MlflowClient(uri)
        e = c.get_experiment_by_name("ls-refine")
        kids = c.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'run'", max_results=1000)
        return c, e, {k.data.tags[HASH_TAG]: k for k in kids if k.info.status == "FINISHED"}

    _, _, ref = state(ref_uri)
    _, _, at_kill = state(f"sqlite:///{db}")
    refined_ref = sum(k.data.tags[ROUND_TAG] != "0" for k in ref.values())
    refined_at_kill = sum(k.data.tags[ROUND_TAG] != "0" for k in at_kill.values())
    assert 0 < refined_at_kill < refined_ref, f"the kill did not land mid-refinement ({refined_at_kill})"
    assert set(at_kill) < set(ref)

    assert main(["sweep", str(path), "--tracking-uri", f"sqlite:///{db}"]) == 0
    c, e, resumed = state(f"sqlite:///{db}")
    assert set(resumed) == set(ref)      # the same configurations, hence the same rounds
    for h, k in resumed.items():         # … with the same outcomes, and the same round tags
        assert k.data.tags[ROUND_TAG] == ref[h].data.tags[ROUND_TAG]
        assert k.data.metrics.get("summary/steps_to_target") == ref[h].data.metrics.get("summary/steps_to_target")
    last = c.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'",
                         order_by=["attributes.start_time DESC"])[0]
    c_ref = MlflowClient(ref_uri)
    e_ref = c_ref.get_experiment_by_name("ls-refine")
    first = c_ref.search_runs([e_ref.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'")[0]
    got = json.loads(Path(c.download_artifacts(last.info.run_id, REFINE_ARTIFACT)).read_text())
    want = json.loads(Path(c_ref.download_artifacts(first.info.run_id, REFINE_ARTIFACT)).read_text())
    assert got == want


def test_report_shows_the_refined_optimum_its_bracket_and_its_cost(refined, tmp_path):
    import argparse

    from analysis.report import main as report_main

    path, uri, exp, summary, _, (X, y, target) = refined
    assert report_main(argparse.Namespace(experiments=["ls-refine"], tracking_uri=uri, out=str(tmp_path))) == 0
    md = (tmp_path / "ls-refine" / "report.md").read_text()
    assert "Refined optimum per batch size and its bracket" in md
    full = next(g for g in summary.refined if g["group"] == "bs=full")
    d = full["targets"][f"{target:g}"]
    # the table's full-batch row: the refined best, both neighbours with their steps, resolved
    row = next(line for line in md.splitlines() if line.startswith("| full (") and f"{d['below']['learning_rate']:.3g}:" in line)
    assert f"{d['best_learning_rate']:.3g}" in row and f"{d['above']['learning_rate']:.3g}:" in row and "| yes |" in row
    # configurations spent against a uniform grid at the same spacing over the same range
    assert f"| {full['configurations']} | {full['uniform_grid']} |" in row
    bs8 = next(g for g in summary.refined if g["group"] == "bs=8")
    assert bs8["resolved"] is False and "1 of 2 batch sizes resolved" in md and "Not resolved" in md
