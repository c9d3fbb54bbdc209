"""The report streams its curves: read from the store once, held one group at a time, compactly.

One real store, two experiments alike but for how many values of a swept ``data.seed`` (a
facet: one group per value) they have: 2 and 8 groups of the same size. The report of the
second reads four times the points, and must hold no more of them at once than the first.
"""

import argparse

import numpy as np
import pandas as pd
import pytest

from analysis import curvestore, load
from analysis.report import main as report_main
from bpresearch import keys as R
from bpresearch.cli import main as cli_main

pytestmark = pytest.mark.slow  # two small sweeps (10 compiled groups) and their reports

TINY = """\
name = "{name}"

[data]
source = "teacher"
n_train = 16
n_features = 2

[model]
kind = "neuron"

[train]
steps = 12
eval_every = 1
targets = [0.05]

[sweep]
learning_rate = [0.1, 0.3]
batch_size = ["full"]
seeds = 1
"data.seed" = {seeds}
"""

GROUPS = {"few-groups": 2, "many-groups": 8}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("streams")
    uri = f"sqlite:///{tmp}/mlflow.db"
    for name, n in GROUPS.items():
        path = tmp / f"{name}.toml"
        path.write_text(TINY.format(name=name, seeds=list(range(n))))
        assert cli_main(["sweep", str(path), "--tracking-uri", uri]) == 0
    return uri, tmp


@pytest.fixture(scope="module")
def reported(store, tmp_path_factory):
    """Each experiment's report, with what its spill counted and how often the store's curves were read."""
    uri, _ = store
    out = {}
    mp = pytest.MonkeyPatch()
    spills, chunk_reads = [], []
    real_spill, real_chunks = curvestore.spill, curvestore.store.metric_point_chunks

    def counting_chunks(*args, **kwargs):
        chunk_reads.append(1)
        yield from real_chunks(*args, **kwargs)

    mp.setattr(curvestore, "spill", lambda *a, **k: spills.append(real_spill(*a, **k)) or spills[-1])
    mp.setattr(curvestore.store, "metric_point_chunks", counting_chunks)
    try:
        for name in GROUPS:
            spills.clear()
            chunk_reads.clear()
            folder = tmp_path_factory.mktemp(name)
            args = argparse.Namespace(experiments=[name], tracking_uri=uri, out=str(folder), variant=None)
            assert report_main(args) == 0
            assert len(spills) == 1
            out[name] = (spills[0], len(chunk_reads), folder)
    finally:
        mp.undo()
    return out


def test_curves_are_read_from_the_store_once_per_report(reported):
    for name, (spill, reads, _) in reported.items():
        assert reads == 1 and spill.reads == 1, name


def test_points_held_at_once_do_not_grow_with_the_number_of_groups(reported):
    few, many = reported["few-groups"][0], reported["many-groups"][0]
    assert many.points >= 4 * few.points > 0
    assert many.peak_held < 1.5 * few.peak_held
    # at most one group's points at a time, and every group was read
    for spill, groups in ((few, 2), (many, 8)):
        assert len(spill.sizes) == groups
        assert spill.peak_held == spill.largest <= spill.points / groups * 1.01


def test_the_spill_folder_is_removed_after_the_report(reported):
    for spill, _, _ in reported.values():
        assert not spill.folder.exists()


def test_a_spilled_group_is_the_store_s_points_bit_for_bit(store, tmp_path):
    uri, _ = store
    data = load.load_experiment(uri, "many-groups")
    keys = R.CURVE_KEYS + R.DIAGNOSTIC_KEYS
    whole = load.load_curves(uri, data.runs["run_id"], keys)
    parts = [g["run_id"].tolist() for _, g in data.runs.groupby("params.data.seed")]
    spill = curvestore.spill(uri, parts, keys, tmp_path / "spill")
    assert spill.points == len(whole)
    for ids in parts + [parts[0] + parts[3]]:   # a whole group, and runs of two groups
        got = spill.frame(ids)
        want = whole[whole["run_id"].isin(ids)].reset_index(drop=True)
        assert spill.count(ids) == len(want) > 0
        assert got["run_id"].astype(str).tolist() == want["run_id"].astype(str).tolist()
        assert got["key"].astype(str).tolist() == want["key"].astype(str).tolist()
        assert np.array_equal(got["step"].to_numpy(), want["step"].to_numpy())
        assert got["value"].to_numpy().tobytes() == want["value"].to_numpy().tobytes()


def test_curves_are_held_in_a_compact_frame(store):
    uri, _ = store
    data = load.load_experiment(uri, "many-groups")
    c = load.load_curves(uri, data.runs["run_id"], R.CURVE_KEYS)
    assert isinstance(c["run_id"].dtype, pd.CategoricalDtype) and isinstance(c["key"].dtype, pd.CategoricalDtype)
    assert c["step"].dtype == np.int32 and c["value"].dtype == np.float64
    assert c.memory_usage(deep=True).sum() / len(c) < 20   # text ids and keys: about 75 bytes a point
    order = c.assign(run_id=c["run_id"].astype(str), key=c["key"].astype(str))
    assert order.equals(order.sort_values(["run_id", "key", "step"]))


def test_runs_read_from_sqlite_tables_equal_mlflow_s_search(store):
    """Read straight from the tables (a few KB a run), the runs are MLflow's search's, in its order."""
    from bpresearch.store import reads

    uri, _ = store
    for name in GROUPS:
        exp = reads.experiment(uri, name)
        direct, searched = reads.runs(uri, exp.experiment_id, sql=True), reads.runs(uri, exp.experiment_id, sql=False)
        assert [r.run_id for r in direct] == [r.run_id for r in searched] and len(direct) == GROUPS[name] * 2 + 1
        for a, b in zip(direct, searched):
            assert (a.name, a.status, a.start_time, a.parent_id) == (b.name, b.status, b.start_time, b.parent_id)
            assert list(a.params.items()) == list(b.params.items()) and list(a.tags.items()) == list(b.tags.items())
            assert list(a.metrics) == list(b.metrics)
            assert np.array_equal(list(a.metrics.values()), list(b.metrics.values()), equal_nan=True)
