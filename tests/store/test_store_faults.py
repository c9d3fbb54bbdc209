"""Nothing computed is lost: a tracking server killed mid-sweep, a store that fills, two sweeps at once.

Real parts only: a real ``mlflow server`` started here on 127.0.0.1 and killed with SIGKILL
by its PID; a real sqlite store whose file may not grow any more (RLIMIT_FSIZE set on the
running sweep: the disk is "full" for it, which works even as root, where a read-only
folder would not stop writes); real sweeps in subprocesses.
"""

import os
import re
import resource
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from storeview import free_port  # noqa: E402

from bpresearch import keys
from bpresearch.cli import main
from bpresearch.keys import HASH_TAG, KIND_TAG
from bpresearch.run import records, sweep
from bpresearch.spec import experiment
from bpresearch.store.mlflow_backend import client as tracking_client
from bpresearch.store.retry import is_transient

BIN = Path(sys.executable).parent
SETS = ["--set", "train.steps=40", "--set", "sweep.seeds=1", "--set", "sweep.learning_rate=[0.01, 0.1]",
        "--set", "sweep.batch_size=[1, 2, 3, 4]"]
GRID = 8


def finished_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid where t.key = ? "
                             "and t.value = 'run' and r.status = 'FINISHED'", (KIND_TAG,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def start_server(tmp: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    p = subprocess.Popen([str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{tmp}/server.db",
                          "--artifacts-destination", str(tmp / "server-artifacts"), "--host", "127.0.0.1",
                          "--port", str(port), "--workers", "1"], env=env, cwd=tmp, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=open(tmp / f"server-{port}.log", "a"))
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
            return p
        except OSError:
            assert p.poll() is None, (tmp / f"server-{port}.log").read_text()[-2000:]
            time.sleep(0.3)
    kill_server(p)
    raise AssertionError("mlflow server did not start")


def kill_server(p: subprocess.Popen):
    """SIGKILL the server: its PID leads a process group that holds the uvicorn worker too."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait()


def sweep_env(**extra) -> dict:
    # A killed server refuses or resets connections at once: the request timeout is only an upper
    # bound for a slow (loaded) server, which must not fail the sweep before the kill.
    env = {**os.environ, "BPRESEARCH_STORE_RETRY_S": "3", "MLFLOW_HTTP_REQUEST_TIMEOUT": "120", **extra}
    if "BPRESEARCH_SPOOL" not in extra:
        env.pop("BPRESEARCH_SPOOL", None)  # the default: beside the sqlite store
    return env


def expected_records(path: Path):
    """Every run's records from an uninterrupted computation of the same groups (in process)."""
    exp = experiment.load(path, [SETS[i + 1] for i in range(0, len(SETS), 2)])
    out = {}
    for runs in exp.groups().values():
        cfg = runs[0].config
        res = sweep.run_group(cfg, [sweep.member_of(r.config) for r in runs], exp.dataset(cfg), cfg["train"]["chunk"])
        out.update({rec.run.hash: rec for rec in records.records(runs, res)})
    return exp, out


def assert_complete_and_exact(uri: str, path: Path):
    """Every configuration FINISHED exactly once, nothing left RUNNING, curves equal point for point."""
    client = MlflowClient(uri)
    e = client.get_experiment_by_name("linear-regression")
    kids = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'run'", max_results=1000)
    done = [k for k in kids if k.info.status == "FINISHED"]
    hashes = [k.data.tags[HASH_TAG] for k in done]
    exp, want = expected_records(path)
    assert sorted(hashes) == sorted(want), "every configuration exactly once"
    assert not [k for k in kids if k.info.status == "RUNNING"]
    for k in done:
        rec = want[k.data.tags[HASH_TAG]]
        for key in ("train_loss", "full_train_loss"):
            got = sorted((m.step, m.value) for m in client.get_metric_history(k.info.run_id, keys.stored_key(key)))
            steps, values = rec.curves[key]
            assert got == list(zip(steps.tolist(), values.tolist())), (rec.run.name, key)
        assert k.data.metrics[keys.stored_summary("diverged")] == rec.summary["diverged"]
    return client, e


@pytest.mark.slow
def test_server_killed_mid_sweep_loses_nothing(linear_example, tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    server = start_server(tmp_path, port)
    try:
        proc = subprocess.Popen([str(BIN / "bpresearch"), "sweep", str(linear_example), "--tracking-uri", uri, *SETS],
                                env=sweep_env(BPRESEARCH_SPOOL=str(tmp_path / "spool")), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 180
        while finished_count(tmp_path / "server.db") == 0 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        kill_server(server)
        t_kill = time.monotonic()
        out, err = proc.communicate(timeout=180)
        kill_to_exit = time.monotonic() - t_kill
        written = finished_count(tmp_path / "server.db")
        print(f"kill to exit: {kill_to_exit:.1f} s (retry budget 3 s); {written} of {GRID} runs written")

        assert proc.returncode == 3, err
        errors = [line for line in err.splitlines() if line.startswith("bpresearch: error:")]
        assert len(errors) == 1 and "the MLflow store failed" in errors[0], err
        assert "Traceback" not in err
        spooled = sorted((tmp_path / "spool").rglob("*.npz"))
        assert spooled, "the trained groups the server never got are in the spool"
        assert re.search(rf"{len(spooled)} trained chunk\(s\) are saved in .*run the same command again", errors[0])
        assert 0 < written < GRID

        server = start_server(tmp_path, port)
        rerun = subprocess.run([str(BIN / "bpresearch"), "sweep", str(linear_example), "--tracking-uri", uri, *SETS],
                               env=sweep_env(BPRESEARCH_SPOOL=str(tmp_path / "spool")), capture_output=True,
                               text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        assert rerun.stderr.count("saved in the spool by an earlier sweep") == len(spooled)
        assert "not retrained" in rerun.stderr
        assert not list((tmp_path / "spool").rglob("*.npz")), "written, then deleted"
    finally:
        kill_server(server)
    client, e = assert_complete_and_exact(f"sqlite:///{tmp_path}/server.db", linear_example)  # the same store
    last = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'",
                              order_by=["attributes.start_time DESC"])[0]
    spooled_runs = GRID - written - int(last.data.params["runs_to_do"])
    assert spooled_runs > 0, "some runs came from the spool, not from training"
    assert last.data.metrics["runs_logged"] == GRID - written


@pytest.mark.slow
def test_sqlite_store_that_fills_mid_sweep_loses_nothing(linear_example, tmp_path):
    """The disk fills while a sweep runs: it has opened its parent run and trained, but cannot
    write its groups. Where it fills is set by sizes, not by time: an earlier sweep of one group
    (its parent run, two runs, its close) measures what a sweep adds to the store; the sweep
    under test may grow the store by half that, from its start on: enough for its parent run
    (a few pages), not for a group of runs (a single group is most of that growth)."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    tracking_client(uri)  # the store exists (and is migrated) before anything is measured
    created = db.stat().st_size
    assert main(["sweep", str(linear_example), "--tracking-uri", uri, *SETS[:-1], "sweep.batch_size=[1]"]) == 0
    before = finished_count(db)
    limit = db.stat().st_size + (db.stat().st_size - created) // 2

    def full_disk():  # in the sweep's process, before it runs: no file of it may grow past `limit`
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run([str(BIN / "bpresearch"), "sweep", str(linear_example), "--tracking-uri", uri, *SETS],
                          env=sweep_env(), capture_output=True, text=True, timeout=600, preexec_fn=full_disk)
    err = proc.stderr
    assert proc.returncode == 3, err
    errors = [line for line in err.splitlines() if line.startswith("bpresearch: error:")]
    assert len(errors) == 1 and re.search(r"disk I/O error|full", errors[0]) and "Traceback" not in err, err
    assert re.search(r"writing \d+ run\(s\)", errors[0]), "it failed writing trained runs, after its parent run"
    spool = tmp_path / ".bpresearch-spool"  # the default: beside the sqlite store
    spooled = sorted(spool.rglob("*.npz"))
    assert spooled and re.search(rf"{len(spooled)} trained chunk\(s\) are saved in ", errors[0]), err

    written = finished_count(db)
    assert before == 2 and before <= written < GRID
    assert main(["sync", "--tracking-uri", uri]) == 0  # the saved groups, without a sweep
    assert not list(spool.rglob("*.npz"))
    synced = finished_count(db) - written
    assert synced > 0
    assert main(["sweep", str(linear_example), "--tracking-uri", uri, *SETS]) == 0  # trains the rest
    client, e = assert_complete_and_exact(uri, linear_example)
    parents = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'",
                                 order_by=["attributes.start_time DESC"])
    rest = GRID - written - synced  # what was never trained: the last sweep trained exactly that
    names = [p.info.run_name.split()[0] for p in parents]
    if rest:
        assert int(parents[0].data.params["runs_to_do"]) == rest and names == ["sweep", "sync", "sweep", "sweep"]
    else:
        assert names == ["sync", "sweep", "sweep"]


@pytest.mark.slow
def test_two_sweeps_of_one_experiment_log_each_configuration_once(linear_example, tmp_path):
    """Two sweeps started while a third holds the experiment: both wait; then each run is logged once.

    Both start at once into a new store, so they also race to create the experiment."""
    from bpresearch.store import lease

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    logs = [tmp_path / f"sweep{i}.log" for i in range(2)]
    # stands for a sweep in progress (the same flock a sweep takes), held until both say they wait
    with lease.file_lock(tmp_path / ".bpresearch-spool" / "linear-regression" / ".lock", "test", sys.stderr):
        procs = [subprocess.Popen([str(BIN / "bpresearch"), "sweep", str(linear_example), "--tracking-uri", uri,
                                   *SETS], env=sweep_env(), stdout=subprocess.DEVNULL, stderr=open(log, "w"))
                 for log in logs]
        deadline = time.time() + 600   # an upper bound only: the loop ends when both wait
        while not all("waiting" in log.read_text() for log in logs) and time.time() < deadline:
            assert all(p.poll() is None for p in procs), [log.read_text() for log in logs]
            time.sleep(0.2)
    for p in procs:
        p.wait(timeout=600)
    errs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert all("is being swept by pid" in e and "waiting" in e for e in errs), errs
    assert sum("nothing to do" in e for e in errs) == 1, "the second found everything finished"
    assert_complete_and_exact(uri, linear_example)


def test_unreachable_server_fails_before_training(linear_example, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BPRESEARCH_STORE_RETRY_S", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # as the CLI sets them; restored after
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    monkeypatch.setenv("BPRESEARCH_SPOOL", str(tmp_path / "spool"))
    t0 = time.monotonic()
    rc = main(["sweep", str(linear_example), "--tracking-uri", f"http://127.0.0.1:{free_port()}", *SETS])
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    assert rc == 3 and err.count("\n") == 1 and "connecting to the MLflow store" in err, err
    assert "still failing after" in err and elapsed < 60
    assert not (tmp_path / "spool").exists(), "nothing was trained"


def test_which_store_errors_are_transient():
    import requests
    import sqlalchemy.exc
    from mlflow.exceptions import MlflowException, RestException

    def wrapped(inner):
        try:
            try:
                raise inner
            except Exception as e:
                raise MlflowException(str(e), error_code="TEMPORARILY_UNAVAILABLE") from e
        except MlflowException as e:
            return e

    locked = sqlalchemy.exc.OperationalError("insert", {}, sqlite3.OperationalError("database is locked"))
    full = sqlalchemy.exc.OperationalError("insert", {}, sqlite3.OperationalError("database or disk is full"))
    assert is_transient(wrapped(locked)) and is_transient(locked)
    assert not is_transient(wrapped(full)) and not is_transient(full)
    assert not is_transient(sqlite3.OperationalError("attempt to write a readonly database"))
    assert is_transient(wrapped(requests.exceptions.ConnectionError("Connection refused")))
    assert is_transient(MlflowException("API request to http://x/api failed with error code 503 != 200. Body: ''"))
    assert not is_transient(MlflowException("API request to http://x/api failed with error code 404 != 200."))
    assert not is_transient(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}))
    assert is_transient(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}))
    assert not is_transient(ValueError("a bug, not the store"))


def test_servers_bind_to_localhost_unless_told_otherwise():
    """`make ui` and `make server`, the servers the project starts: 127.0.0.1 unless a host is given."""
    root = Path(__file__).resolve().parents[2]

    def command(target, *args):
        out = subprocess.run(["make", "-n", "-s", target, *args], cwd=root, capture_output=True, text=True,
                             check=True).stdout
        assert "mlflow server" in out
        return " ".join(out.replace("\\\n", " ").split()) + " "

    for target, var in (("ui", "UI_HOST"), ("server", "SERVER_HOST")):
        assert re.search(r"--host 127\.0\.0\.1 ", command(target)), target
        assert re.search(r"--host 0\.0\.0\.0 ", command(target, f"{var}=0.0.0.0")), target


@pytest.mark.slow
def test_refining_sweep_writes_the_spool_and_never_retrains_it(linear_example, tmp_path):
    """A refining sweep that loses its store mid-way: the rerun writes the spooled groups and plans
    its rounds with them, so no configuration gets a second FINISHED run."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    sets = [*SETS, "--set", "sweep.refine={ target = 0.06, max_rounds = 2 }"]
    proc = subprocess.Popen([str(BIN / "bpresearch"), "sweep", str(linear_example), "--tracking-uri", uri, *sets],
                            env=sweep_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while finished_count(db) == 0 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is None:
        size = db.stat().st_size
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (size, size))  # the disk is full for this sweep
    out, err = proc.communicate(timeout=180)
    assert proc.returncode in (0, 3), err
    assert main(["sweep", str(linear_example), "--tracking-uri", uri, *sets]) == 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        hashes = [h for (h,) in c.execute(
            "select t.value from runs r join tags t on t.run_uuid = r.run_uuid where t.key = ? "
            "and r.status = 'FINISHED'", (HASH_TAG,))]
    assert hashes and len(hashes) == len(set(hashes)), "a configuration was logged twice"
    assert not list((tmp_path / ".bpresearch-spool").rglob("*.npz"))


@pytest.mark.parametrize("bulk", [True, False], ids=["direct-sqlite", "mlflow-client"])
def test_sweeps_opening_a_new_experiment_at_once_both_go_on(tmp_path, bulk):
    """Two sweeps started at once into a new store both open the experiment (one creates it,
    the other finds it) and set its tags and lease, never failing on the store's unique keys.
    Each round starts both writers at one barrier, on a fresh experiment."""
    import threading

    from bpresearch.store.base import (
        KIND_EXPERIMENT_TAG,
        LEASE_TAG,
        NOTE_TAG,
        TRAINING_KIND,
    )
    from bpresearch.store.tracking import open_store

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # one client each, as two processes have; bulk=False: MLflow's client, as for a server store
    trackers = [open_store(uri, bulk=bulk) for _ in range(2)]
    for i in range(10):
        start = threading.Barrier(2, timeout=300)
        ids, errors = [None, None], []

        def sweep_opens(k, i=i, start=start, ids=ids, errors=errors):
            try:
                start.wait()
                ids[k] = trackers[k].experiment(f"exp{i}", "desc")
                start.wait()
                trackers[k].set_lease(ids[k], f"lease{k}")
            except Exception as e:  # noqa: BLE001 - reported below
                start.abort()
                errors.append(repr(e))

        threads = [threading.Thread(target=sweep_opens, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        assert ids[0] == ids[1]
        tags = trackers[0].client.get_experiment(ids[0]).tags
        assert tags[NOTE_TAG] == "desc" and tags[KIND_EXPERIMENT_TAG] == TRAINING_KIND
        assert tags[LEASE_TAG] in ("lease0", "lease1")
