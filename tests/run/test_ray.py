"""Sweeps on a local Ray instance: the same runs as the local executor, also when an actor dies.

Ray starts once for this module (``ray.init(num_cpus=2, include_dashboard=False)``), its
session folder and the ``~/.ray`` it writes inside the test's temporary folder.
"""

import os
import signal

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")

from storeview import local_linear_sweep, short_tmp, snapshot  # noqa: E402

from bpresearch.cli import main  # noqa: E402
from bpresearch.run.ray_executor import RayExecutor  # noqa: E402
from bpresearch.run.runner import run_experiment  # noqa: E402
from bpresearch.spec import experiment  # noqa: E402
from bpresearch.store.tracking import open_store  # noqa: E402

# 6 compiled groups (one per batch size) of 4 runs each, different sizes of work, in chunks of 2.
SETS = ["train.steps=40", "train.eval_every=5", "train.chunk=2", "sweep.seeds=2", "sweep.learning_rate=[0.03, 0.3]",
        "sweep.batch_size=[1, 2, 3, 4, 8, \"full\"]"]
ARGS = [a for s in SETS for a in ("--set", s)]


@pytest.fixture(scope="module")
def ray_instance():
    with short_tmp("ray") as tmp:
        yield from _ray_instance(tmp)


def _ray_instance(tmp):
    home = os.environ.get("HOME")
    os.environ["HOME"] = str(tmp)  # Ray writes ~/.ray (its auth token)
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(tmp / "r"), _node_ip_address="127.0.0.1",
             log_to_driver=False, logging_level="ERROR")
    try:
        yield tmp
    finally:
        ray.shutdown()
        if home is not None:
            os.environ["HOME"] = home


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    return local_linear_sweep(tmp_path_factory.mktemp("local"), ARGS)


@pytest.mark.slow
def test_ray_sweep_equals_local_sweep(ray_instance, local_sweep, tmp_path, capsys):
    path, local = local_sweep
    uri = f"sqlite:///{tmp_path}/ray.db"
    assert main(["sweep", str(path), "--tracking-uri", uri, "--executor", "ray", *ARGS]) == 0
    assert "Ray: 2 actors" in capsys.readouterr().err
    got = snapshot(uri, "linear-regression")
    assert len(got) == 24 and set(got) == set(local)
    for h in local:
        assert got[h] == local[h], local[h][0]
    from mlflow.tracking import MlflowClient
    run = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("linear-regression").experiment_id],
                                        filter_string="tags.`bpresearch.kind` = 'run'", max_results=1)[0]
    assert run.data.tags["bpresearch.executor"] == "ray" and run.data.tags["jax.backend"] == "cpu"


class KillAfterFirst:
    """The real Ray executor; once the first chunk has come back, SIGKILL one busy actor."""

    def __init__(self, executor):
        self.executor, self.name = executor, executor.name
        self.killed_pid, self.groups_left = None, None
        self.parts = []   # (job, first member, members) of each part that came back

    def run(self, jobs, on_runs=None):
        for k, done in enumerate(self.executor.run(jobs, on_runs)):
            if k == 0:
                self.killed_pid, self.groups_left = self.executor.pids[0], len(jobs) - 1
                os.kill(self.killed_pid, signal.SIGKILL)
            self.parts.append((done.index, done.start, done.result.size))
            yield done


@pytest.mark.slow
def test_a_killed_actor_costs_time_not_runs(ray_instance, local_sweep, tmp_path):
    path, local = local_sweep
    uri = f"sqlite:///{tmp_path}/kill.db"
    executor = RayExecutor(actors=2)
    try:
        killer = KillAfterFirst(executor)
        exp = experiment.load(path, SETS)
        summary = run_experiment(exp, open_store(uri), path.read_text(), SETS, executor=killer)
        restarted = ray.get(executor.actors[0].about.remote())["pid"]
    finally:
        executor.close()
    assert killer.groups_left >= 2, "both actors were busy when one was killed"
    # chunk by chunk: each group's runs came back in parts of one chunk (2 runs), each run once
    assert max(size for *_, size in killer.parts) == 2 and len(killer.parts) == 12
    assert sorted((i, s) for i, s, _ in killer.parts) == [(i, s) for i in range(6) for s in (0, 2)]
    assert restarted != killer.killed_pid, "the killed actor was restarted"
    assert summary.logged == 24
    got = snapshot(uri, "linear-regression")  # one child run per configuration, checked inside
    assert set(got) == set(local)
    assert all(status == "FINISHED" for _, status, *_ in got.values())
    assert got == local
