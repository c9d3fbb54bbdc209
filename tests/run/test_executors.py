"""The executor options of ``bpresearch sweep``: bad combinations and a missing Ray are one line, exit 2."""

import subprocess
import sys
from pathlib import Path

from bpresearch.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXP = str(ROOT / "experiments" / "seed-graph.toml")


def test_executor_options_need_the_ray_executor(capsys, tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    assert main(["sweep", EXP, "--tracking-uri", uri, "--address", "auto"]) == 2
    assert main(["sweep", EXP, "--tracking-uri", uri, "--executor", "ray", "--actors", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["bpresearch: error: --address and --actors go with --executor ray",
                   "bpresearch: error: --actors: must be ≥ 1, not 0"]
    assert not (tmp_path / "m.db").exists()


def test_without_ray_the_ray_executor_says_how_to_install_it(tmp_path):
    # A Python where `import ray` fails, as it does where the extra is not installed.
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    proc = subprocess.run([sys.executable, "-m", "bpresearch.cli", "sweep", EXP, "--executor", "ray",
                           "--tracking-uri", f"sqlite:///{tmp_path}/m.db", "--set", "train.steps=3"],
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path), "HOME": str(tmp_path)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "bpresearch: error: --executor ray needs Ray, an optional extra: pip install -e '.[ray]'"]
    assert not (tmp_path / "m.db").exists()


def test_the_first_groups_compile_side_by_side_and_each_once(monkeypatch):
    """With two compilations in flight, the second group's starts before the first's ends (on a
    2-core machine both cores compile at the start, rather than one waiting); with one, it starts
    only once the first is done. Every job is compiled once, and handed out in order."""
    import threading
    import time

    from bpresearch.run import executors

    def trace(ahead):
        events, lock = [], threading.Lock()

        def fake_compile(job):
            with lock:
                events.append(("start", job.config["i"]))
            time.sleep(0.2)
            with lock:
                events.append(("end", job.config["i"]))
            return f"program {job.config['i']}", 0.2

        monkeypatch.setattr(executors, "compile_job", fake_compile)
        jobs = [executors.Job({"i": i}, [], None, 1) for i in range(4)]
        got = [(i, compiled) for i, _, (compiled, _), _ in executors.compiled_in_turn(jobs, ahead=ahead)]
        assert got == [(i, f"program {i}") for i in range(4)]
        assert sorted(i for kind, i in events if kind == "start") == [0, 1, 2, 3]   # each once
        return events.index(("start", 1)) < events.index(("end", 0))

    assert trace(2)
    assert not trace(1)
