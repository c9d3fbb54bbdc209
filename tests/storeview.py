"""What a store holds for one experiment, in a form two stores can be compared by (tests only)."""

import contextlib
import shutil
import tempfile
from pathlib import Path

from mlflow.tracking import MlflowClient

from bpresearch.keys import HASH_TAG, KIND_TAG


def children(client, exp_id, status=None):
    runs = client.search_runs([exp_id], filter_string=f"tags.`{KIND_TAG}` = 'run'", max_results=10000)
    return [r for r in runs if status is None or r.info.status == status]


def snapshot(uri: str, name: str) -> dict:
    """config hash -> (run name, status, params, summary metrics, every metric's history).

    Asserts on the way that each hash has exactly one child run, so a duplicate never hides.
    """
    client = MlflowClient(uri)
    e = client.get_experiment_by_name(name)
    out = {}
    for r in children(client, e.experiment_id):
        h = r.data.tags[HASH_TAG]
        assert h not in out, f"{r.info.run_name}: two child runs for one configuration"
        curves = {k: sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id, k))
                  for k in r.data.metrics}
        out[h] = (r.info.run_name, r.info.status, r.data.params, str(sorted(r.data.metrics.items())), str(curves))
    return out


# ---------------------------------------------------------------- servers the tests start
from bench.servers import free_port, mlflow_server, postgres_missing, postgres_server  # noqa: E402,F401


@contextlib.contextmanager
def short_tmp(prefix: str):
    """A temporary folder with a short path, removed afterwards: Ray's sockets live under its
    temp folder and a Unix socket path may not exceed 107 bytes, which pytest's own temporary
    folders (deeper still under pytest-xdist) can pass."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def local_linear_sweep(tmp: Path, args: list[str]):
    """linear-regression swept with the local executor into ``tmp`` (its file and data copied
    there): the experiment file's path and the store's ``snapshot``, to compare other executors with."""
    from bpresearch.cli import main

    root = Path(__file__).resolve().parent.parent
    shutil.copy(root / "experiments" / "linear.npz", tmp)
    shutil.copy(root / "experiments" / "linear-regression.toml", tmp)
    path, uri = tmp / "linear-regression.toml", f"sqlite:///{tmp}/local.db"
    assert main(["sweep", str(path), "--tracking-uri", uri, *args]) == 0
    return path, snapshot(uri, "linear-regression")
