"""Numerical faults: a learning rate that overflows at the first step, a grid where every run
diverges, non-finite parameters at step 0, diagnostics (Lanczos, noise scale) at a non-finite
point. Runs are recorded as diverged with their step, nothing non-finite is ever written as a
value, diagnostics after the divergence are missing, the sweep goes on, and the report builds
and says what happened.
"""

import math
import sqlite3

import pytest
from mlflow.tracking import MlflowClient

from bpresearch import keys as R
from bpresearch.cli import main

ALL_DIVERGE = """\
name = "all-diverged"
[data]
source = "teacher"
n_train = 32
[model]
kind = "mlp"
hidden = [8]
[train]
steps = 20
eval_every = 2
targets = [0.1]
[diagnostics]
every = 4
sharpness = true
noise_scale = true
lanczos_iters = 5
[sweep]
learning_rate = [1e3, 1e30, 3e38]   # 1e30 and 3e38 overflow float32 arithmetic at the first step
batch_size = [4, "full"]
"""

NAN_AT_START = """\
name = "nan-at-start"
[data]
source = "teacher"
n_train = 32
[model]
kind = "mlp"
hidden = [8]
init = "normal"
init_scale = 1e30                   # the initial point itself has an infinite loss
[train]
steps = 10
eval_every = 2
[diagnostics]
every = 2
sharpness = true
lanczos_iters = 4
[sweep]
learning_rate = [0.1]
"""


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def faulty_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nf")
    files = []
    for name, text in (("all.toml", ALL_DIVERGE), ("nan.toml", NAN_AT_START)):
        (tmp / name).write_text(text)
        files.append(str(tmp / name))
    uri = f"sqlite:///{tmp}/mlflow.db"
    assert main(["sweep", *files, "--tracking-uri", uri]) == 0, "the sweep goes on through every fault"
    return tmp, uri


def children(client, name):
    e = client.get_experiment_by_name(name)
    return client.search_runs([e.experiment_id], filter_string=f"tags.`{R.KIND_TAG}` = 'run'")


def test_every_run_is_recorded_as_diverged_with_its_step(faulty_store):
    tmp, uri = faulty_store
    client = MlflowClient(uri)
    runs = children(client, "all-diverged")
    assert len(runs) == 6 and all(r.info.status == "FINISHED" for r in runs)
    for r in runs:
        m = {R.short_key(k): v for k, v in r.data.metrics.items()}  # the store's names: summary/…
        assert m[R.DIVERGED] == 1 and m[R.DIVERGED_STEP] == 1, r.info.run_name  # at the first update
        assert m["reached_target"] == 0 and "steps_to_target" not in m      # censored, not a number
    start = children(client, "nan-at-start")
    m = {R.short_key(k): v for k, v in start[0].data.metrics.items()} if len(start) == 1 else {}
    assert len(start) == 1 and m[R.DIVERGED_STEP] == 0
    assert R.FINAL_LOSS not in m and R.MIN_LOSS not in m


def test_nothing_non_finite_is_written(faulty_store):
    tmp, uri = faulty_store
    with sqlite3.connect(tmp / "mlflow.db") as c:
        values = [v for (v,) in c.execute("select value from metrics")]
        nan_rows = c.execute("select count(*) from metrics where is_nan").fetchone()[0]
        latest = [v for (v,) in c.execute("select value from latest_metrics")]
    assert values and all(math.isfinite(v) for v in values + latest) and nan_rows == 0


def test_diagnostics_after_divergence_are_missing(faulty_store):
    tmp, uri = faulty_store
    client = MlflowClient(uri)
    for r in children(client, "all-diverged"):
        overflowed = float(r.data.params["learning_rate"]) >= 1e30  # non-finite parameters at step 1
        for key in ("sharpness", "stability_lr", "gradient_noise_scale"):
            steps = [m.step for m in client.get_metric_history(r.info.run_id, R.stored_key(key))]
            assert steps[:1] == [0] and max(steps) <= r.data.metrics[R.stored_summary(R.DIVERGED_STEP)], (r.info.run_name, key, steps)
            if overflowed:
                assert steps == [0], (r.info.run_name, key, steps)  # NaN at step 1: missing, not written
    (nan_run,) = children(client, "nan-at-start")
    assert client.get_metric_history(nan_run.info.run_id, R.stored_key("sharpness")) == []  # NaN at step 0: not logged


def test_report_builds_and_says_what_happened(faulty_store, capsys):
    tmp, uri = faulty_store
    out = tmp / "reports"
    assert main(["report", "all-diverged", "nan-at-start", "--tracking-uri", uri, "--out", str(out)]) == 0
    md = (out / "all-diverged" / "report.md").read_text()
    assert "Every one of the 6 runs diverged" in md and "Traceback" not in md
    assert (out / "nan-at-start" / "index.html").exists()
