"""Sweeps on a Ray cluster of two nodes on this machine: a node lost mid-sweep, workers that
cannot import bpresearch on their own, a store that fails under a Ray sweep.

The cluster is Ray's own test cluster (``ray.cluster_utils.Cluster``): a head node and a
worker node, one CPU (one actor) each, every node a raylet, object store and workers of its
own. Its session folders, ``~/.ray`` and Ray's address file stay in the module's temporary
folder (``HOME`` and ``RAY_TMPDIR``). It listens on loopback only: Ray turns a loopback
address into the machine's own IP unless told that this is not a multi-machine cluster
(``ray_constants.ENABLE_RAY_CLUSTER``, env ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``).

Each node's workers start with a ``sitecustomize`` that hides the project from their
Python (its folder on ``sys.path`` and its editable-install finder), and with their own
compilation cache folder: the sweep ships the package in the actors' ``runtime_env``.
"""

import os
import re
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install -e '.[ray]'")

from ray._private import ray_constants  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402
from storeview import local_linear_sweep, short_tmp, snapshot  # noqa: E402

from bpresearch.cli import main  # noqa: E402
from bpresearch.keys import KIND_TAG  # noqa: E402
from bpresearch.store.mlflow_backend import client as tracking_client  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# 5 compiled groups (one per batch size) of 6 runs each, in chunks of 2: each group streams back in 3 parts.
SETS = ["train.steps=30", "train.eval_every=5", "train.chunk=2", "sweep.seeds=3", "sweep.learning_rate=[0.03, 0.3]",
        "sweep.batch_size=[1, 2, 3, 4, \"full\"]"]
ARGS = [a for s in SETS for a in ("--set", s)]
GRID = 30

HIDE = """\
# Workers of this test cluster: the project's package is not importable from here on.
import os, sys
sys.meta_path[:] = [f for f in sys.meta_path if "bpresearch" not in repr(getattr(f, "MAPPING", ""))
                    and "__editable__" not in getattr(f, "__module__", "")]
sys.path[:] = [p for p in sys.path if not os.path.isdir(os.path.join(p or os.getcwd(), "bpresearch"))]
"""


def node_env(tmp: Path, i: int) -> dict:
    return {"PYTHONPATH": str(tmp / "hide"), "BPRESEARCH_CACHE": str(tmp / f"node{i}"),
            "JAX_COMPILATION_CACHE_DIR": "", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}


@pytest.fixture(scope="module")
def cluster():
    with short_tmp("ray") as tmp:
        yield from _cluster(tmp)


def _cluster(tmp):
    (tmp / "ray").mkdir()
    (tmp / "hide").mkdir()
    (tmp / "hide" / "sitecustomize.py").write_text(HIDE)
    mp = pytest.MonkeyPatch()
    mp.setenv("HOME", str(tmp))          # Ray writes ~/.ray (its auth token)
    mp.setenv("RAY_TMPDIR", str(tmp))    # and its address file in $RAY_TMPDIR/ray
    mp.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)
    c = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=1, temp_dir=str(tmp / "ray"), node_ip_address="127.0.0.1", include_dashboard=False,
        env_vars=node_env(tmp, 0)))
    worker = c.add_node(num_cpus=1, node_ip_address="127.0.0.1", env_vars=node_env(tmp, 1))
    try:
        yield c, worker, tmp
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
        mp.undo()


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    return local_linear_sweep(tmp_path_factory.mktemp("local"), ARGS)


def finished_on(db: Path, node_id: str | None = None) -> int:
    """FINISHED child runs in the sqlite store (those tagged with ``node_id`` only, if given)."""
    if not db.exists():
        return 0
    q = ("select count(*) from runs r join tags t on t.run_uuid = r.run_uuid where t.key = ? and t.value = 'run' "
         "and r.status = 'FINISHED'")
    args = [KIND_TAG]
    if node_id:
        q += " and exists (select 1 from tags n where n.run_uuid = r.run_uuid and n.key = 'ray.node_id' and n.value = ?)"
        args.append(node_id)
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(q, args).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_a_node_lost_mid_sweep_costs_time_not_runs(cluster, local_sweep, tmp_path, capsys):
    c, worker, tmp = cluster
    path, local = local_sweep
    db = tmp_path / "ray.db"
    # The worker node's Python cannot import bpresearch on its own.
    probe = subprocess.run([sys.executable, "-c", "import bpresearch"], env={**os.environ, **node_env(tmp, 1)},
                           cwd=tmp, capture_output=True, text=True)
    assert probe.returncode == 1 and "No module named 'bpresearch'" in probe.stderr
    killed = {}

    def kill_worker_node():  # once runs trained on the worker node are in the store
        deadline = time.time() + 120
        while time.time() < deadline and not finished_on(db, worker.node_id):
            time.sleep(0.05)
        killed["t"], killed["runs"] = time.time(), finished_on(db)
        c.remove_node(worker, allow_graceful=False)

    killer = threading.Thread(target=kill_worker_node)
    killer.start()
    try:
        code = main(["sweep", str(path), "--tracking-uri", f"sqlite:///{db}", "--executor", "ray",
                     "--address", c.address, *ARGS])
    finally:
        killer.join()
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert "Ray: 2 actors" in err
    lost = [line for line in err.splitlines() if line.startswith("Ray: node")]
    assert lost and all(f"({worker.node_id[:8]}) lost; retrying group" in line for line in lost), err
    assert killed["runs"] < GRID, "the node was lost mid-sweep"
    got = snapshot(f"sqlite:///{db}", "linear-regression")  # one child run per configuration, checked inside
    assert set(got) == set(local) and all(status == "FINISHED" for _, status, *_ in got.values())
    assert got == local
    # Each node compiled into its own cache folder (never the driver's).
    for i in (0, 1):
        assert list((tmp / f"node{i}" / "jax").iterdir()), f"node {i} has its own compilation cache"


@pytest.mark.slow
def test_a_store_failure_under_ray_spools_and_a_rerun_writes_without_retraining(cluster, local_sweep, tmp_path, capsys):
    """As ``test_sqlite_store_that_fills_mid_sweep_loses_nothing``, the groups trained on the cluster."""
    c, _, tmp = cluster
    path, local = local_sweep
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    tracking_client(uri)  # the store exists (and is migrated) before anything is measured
    created = db.stat().st_size
    one = ["--set", "sweep.batch_size=[1]"]
    assert main(["sweep", str(path), "--tracking-uri", uri, *ARGS, *one]) == 0   # a sweep of one group: its size
    limit = db.stat().st_size + (db.stat().st_size - created) // 2

    def full_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "BPRESEARCH_STORE_RETRY_S": "3", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("BPRESEARCH_SPOOL", None)
    proc = subprocess.run([str(BIN / "bpresearch"), "sweep", str(path), "--tracking-uri", uri, "--executor", "ray",
                           "--address", c.address, *ARGS], env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=full_disk)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    spooled = sorted((tmp_path / ".bpresearch-spool").rglob("*.npz"))
    assert spooled and re.search(rf"{len(spooled)} trained chunk\(s\) are saved in ", proc.stderr), proc.stderr
    written = finished_on(db)
    assert written < GRID
    capsys.readouterr()
    assert main(["sweep", str(path), "--tracking-uri", uri, "--executor", "ray", "--address", c.address, *ARGS]) == 0
    err = capsys.readouterr().err
    saved = [int(n) for n in re.findall(r"wrote (\d+) run\(s\) saved in the spool by an earlier sweep \([^)]*\); "
                                        r"not retrained", err)]
    assert len(saved) == len(spooled), err
    assert not list((tmp_path / ".bpresearch-spool").rglob("*.npz"))
    got = snapshot(uri, "linear-regression")   # run names aside: the first sweep's group had one batch size
    assert set(got) == set(local) and {h: v[1:] for h, v in got.items()} == {h: v[1:] for h, v in local.items()}
    from mlflow.tracking import MlflowClient
    client = MlflowClient(uri)
    e = client.get_experiment_by_name("linear-regression")
    last = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'",
                              order_by=["attributes.start_time DESC"], max_results=1)[0]
    assert int(last.data.params["runs_to_do"]) == GRID - written - sum(saved), "the spooled runs were not retrained"


def test_the_job_environment_ships_the_package_and_pins_what_workers_import(tmp_path, capsys):
    from importlib import metadata

    import bpresearch
    from bpresearch.run.ray_executor import WORKER_DEPS, runtime_env

    env = runtime_env(pip=True)
    assert env["py_modules"] == [str(Path(bpresearch.__file__).parent)]
    assert env["pip"]["packages"] == [f"{n}=={metadata.version(n)}" for n in WORKER_DEPS]
    assert "pip" not in runtime_env()
    assert main(["sweep", str(ROOT / "experiments" / "seed-graph.toml"), "--tracking-uri",
                 f"sqlite:///{tmp_path}/m.db", "--ray-pip"]) == 2
    assert capsys.readouterr().err.strip() == "bpresearch: error: --ray-pip goes with --executor ray"
