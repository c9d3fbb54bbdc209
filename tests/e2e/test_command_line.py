"""The command line as a person meets it: make targets, --version, --help, pipes."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = ROOT / "Makefile"
BIN = Path(sys.executable).parent / "bpresearch"


def _store(folder: Path):
    (folder / "mlflow.db").write_text("x")
    (folder / "mlflow.db.lock").write_text("")
    (folder / "mlartifacts" / "exp").mkdir(parents=True)
    (folder / "reports").mkdir()


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_clean_keeps_the_store_and_clean_store_deletes_it(tmp_path):
    _store(tmp_path)
    plan = subprocess.run(["make", "-n", "-f", str(MAKEFILE), "clean"], cwd=tmp_path, capture_output=True, text=True)
    assert plan.returncode == 0
    commands = [line for line in plan.stdout.splitlines() if line.startswith("rm ")]
    assert commands and all("mlflow.db" not in c and "mlartifacts" not in c for c in commands)
    assert any(".venv" in c and "reports" in c for c in commands)

    out = subprocess.run(["make", "-s", "-f", str(MAKEFILE), "clean-store"], cwd=tmp_path,
                         capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "Deleted the MLflow store" in out.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlartifacts").exists()
    assert (tmp_path / "reports").exists(), "clean-store deletes the store only"


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_clean_store_refuses_a_remote_store(tmp_path):
    _store(tmp_path)
    out = subprocess.run(["make", "-s", "-f", str(MAKEFILE), "clean-store"], cwd=tmp_path, capture_output=True,
                         text=True, env={"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": "http://127.0.0.1:5000"})
    assert out.returncode != 0 and "only a local sqlite store" in out.stdout
    assert (tmp_path / "mlflow.db").exists()


def test_version_and_help_read_as_plain_text():
    out = subprocess.run([str(BIN), "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().startswith("bpresearch ") and out.stdout.strip()[11:][0].isdigit()
    helptext = subprocess.run([str(BIN), "--help"], capture_output=True, text=True).stdout
    assert "``" not in helptext and "`" not in helptext
    assert "learning rates" in helptext and "--version" in helptext


def test_a_closed_pipe_ends_quietly():
    """`bpresearch seed-example --json | head -1`: no BrokenPipeError traceback."""
    proc = subprocess.Popen([str(BIN), "seed-example", "--json", "--steps", "3000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()                      # what `head -1` does once it has its line
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert first.strip() == b"{"
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


def test_eta_is_unknown_until_both_rates_are_measured():
    from bpresearch.run.progress import eta

    assert eta(30, 0, 0, 0.0, 0.0) is None          # nothing trained yet
    assert eta(30, 30, 0, 16.0, 0.0) is None        # all trained, nothing logged: no honest guess
    assert eta(30, 30, 6, 16.0, 22.0) == pytest.approx(24 * 22.0 / 6)   # logging is what is left
    assert eta(30, 10, 5, 10.0, 5.0) == pytest.approx(max(20 * 1.0, 25 * 1.0))
    assert eta(30, 30, 30, 16.0, 22.0) == 0.0


def test_progress_line_shows_trained_and_logged(capsys):
    import io

    from bpresearch.run.progress import Progress

    buf = io.StringIO()
    bar = Progress(30, "digits-mlp", buf)
    bar.update(30, 6, "group 5/5", force=True)
    line = buf.getvalue()
    assert "trained 30/30, logged 6/30" in line and "ETA ?" in line


def _finished(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return c.execute("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid where "
                             "t.key = 'bpresearch.kind' and t.value = 'run' and r.status = 'FINISHED'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def _hear_ctrl_c():
    """In the child: SIGINT back to its default, so that Python turns it into KeyboardInterrupt.
    A test run started in the background of a non-interactive shell inherits SIGINT ignored,
    and Python then leaves it ignored: the sweep would never see the Ctrl-C these tests send."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_ctrl_c_stops_marks_and_says_how_to_resume(linear_example, tmp_path):
    import signal
    import time

    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    sets = ["--set", "train.steps=40", "--set", "sweep.seeds=1", "--set", "sweep.learning_rate=[0.01, 0.1]",
            "--set", "sweep.batch_size=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]"]
    proc = subprocess.Popen([str(BIN), "sweep", str(linear_example), "--tracking-uri", uri, *sets],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_hear_ctrl_c)
    deadline = time.monotonic() + 120
    while _finished(db) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: linear-regression:" in err and "Traceback" not in err
    resume = err.split("Resume (finished runs are skipped): ", 1)[1].strip()
    assert str(linear_example) in resume and f"--tracking-uri {uri}" in resume and "sweep.batch_size=" in resume
    client = MlflowClient(uri)
    e = client.get_experiment_by_name("linear-regression")
    runs = client.search_runs([e.experiment_id])
    assert {r.info.status for r in runs if r.data.tags.get("bpresearch.kind") == "sweep"} == {"KILLED"}
    assert all(r.info.status != "RUNNING" for r in runs), "nothing is left RUNNING"
    done = _finished(db)
    assert 0 < done < 24, f"the interrupt did not land midway ({done} of 24)"

    # the printed command resumes: it trains exactly the rest
    again = subprocess.run(resume, shell=True, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming: {done} of 24 runs already finished, {24 - done} to go" in again.stderr
    assert _finished(db) == 24


@pytest.mark.slow
def test_ctrl_c_during_a_long_compiled_call_exits_without_waiting_for_it(tmp_path):
    """The second group (full batch, tens of seconds in one compiled call) is training when
    Ctrl-C comes: the sweep stops within seconds, not when the call would have returned,
    and leaves the first group's run FINISHED and nothing RUNNING. (JAX's wait raises the
    KeyboardInterrupt at once; an interpreter exit would then wait ≈ 30 s for the call, so
    the command leaves with ``os._exit``: without it this test waited 48 s.)"""
    import os
    import signal
    import threading
    import time

    from mlflow.tracking import MlflowClient

    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    exp = tmp_path / "long.toml"
    exp.write_text('name = "long"\n[data]\nsource = "digits"\n[model]\nkind = "mlp"\nhidden = [64, 32]\n'
                   '[train]\nsteps = 40000\neval_every = 1000\n'
                   '[sweep]\nlearning_rate = [0.1]\nbatch_size = [1, "full"]\nseeds = 1\n')
    env = {**os.environ, "JAX_LOG_COMPILES": "1", "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax")}
    proc = subprocess.Popen([str(BIN), "sweep", str(exp), "--tracking-uri", uri],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_hear_ctrl_c)
    err_lines: list[str] = []
    reader = threading.Thread(target=lambda: err_lines.extend(proc.stderr), daemon=True)
    reader.start()
    compiled = lambda: sum("Finished XLA compilation of jit(run)" in x for x in err_lines)  # noqa: E731
    deadline = time.monotonic() + 300
    # both groups compiled and the first one's run written: the full-batch call is under way
    while (compiled() < 2 or _finished(db) == 0) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the sweep ended before the full-batch group: make it longer"
    time.sleep(1.0)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    waited = time.monotonic() - t0
    reader.join(timeout=10)
    err = "".join(err_lines)
    assert proc.returncode == 130, err[-2000:]
    assert "Resume (finished runs are skipped)" in err and "Traceback" not in err
    # the call itself takes far longer (40,000 full-batch steps: ≥ 20 s on 2 cores)
    assert waited < 10, f"Ctrl-C waited {waited:.1f}s for the compiled call"
    runs = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("long").experiment_id])
    assert all(r.info.status != "RUNNING" for r in runs)
    assert _finished(db) == 1
