"""Property-based fuzzing of everything a user types or hands in (hypothesis).

Experiment files (random keys, types, values and nesting; truncated TOML; unicode; huge
and tiny numbers), ``--set`` strings and data files (shapes, dtypes, NaN, inf, empty,
wrong arrays or columns, damaged archives). Every case ends either in a valid sweep
(dry-run exit 0, every compiled group traces) or in one line on stderr with exit code 2,
never a traceback, and an invalid case never creates a store or logs a run.

The examples are derandomized (the same on every run); a failure prints the example and a
``@reproduce_failure`` blob. ``BPRESEARCH_FUZZ_EXAMPLES=500`` runs more of them.
"""

from __future__ import annotations

import numpy as np
import pytest
from fuzzing import BASE, FUZZ, csv_files, npz_files, overrides, to_toml, toml_texts
from hypothesis import event, example, given
from hypothesis import strategies as st

from bpresearch.cli import main
from bpresearch.core import train
from bpresearch.run import sweep
from bpresearch.spec import experiment, workload


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """The exit code and stderr of ``bpresearch ARGS``; any exception fails the test (a traceback)."""
    capsys.readouterr()
    try:
        rc = main(args)
    except SystemExit as e:  # argparse
        rc = e.code
    _, err = capsys.readouterr()
    return rc, err


def assert_one_line_error(rc: int, err: str):
    assert rc == 2, (rc, err)
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpresearch: error: "), err


def trace_groups(exp: experiment.Experiment):
    """Lower every group's program for its members (what training would run), without training."""
    for runs in exp.groups().values():
        cfg = runs[0].config
        ds = exp.dataset(cfg)
        program = train.make_group_program(workload.build_run(cfg, ds))
        members = [sweep.member_of(r.config) for r in runs]
        lr = np.array([m.learning_rate for m in members], np.float32)
        mom = np.array([m.momentum for m in members], np.float32)
        seed = np.array([m.seed for m in members], np.int32)
        program.lower(workload.to_device(cfg, ds), lr, mom, seed)


def check(args: list[str], capsys, tmp_path):
    """Dry-run; a valid case must trace, an invalid one must fail in one line and log nothing."""
    db = tmp_path / "store" / "mlflow.db"
    rc, err = run_cli([*args, "--tracking-uri", f"sqlite:///{db}", "--dry-run"], capsys)
    if rc == 0:
        files = [a for a in args[1:] if not a.startswith("--set")]
        sets = [a.split("=", 1)[1] for a in args if a.startswith("--set=")]
        for f in files:
            trace_groups(experiment.load(f, sets))
        event("valid")
        return
    assert_one_line_error(rc, err)
    rc2, err2 = run_cli([*args, "--tracking-uri", f"sqlite:///{db}"], capsys)  # a real sweep: must not log
    assert_one_line_error(rc2, err2)
    assert not db.exists(), "an invalid experiment created a store"
    event("error: " + err.rsplit(": ", 1)[-1][:40])


def _npz(**arrays) -> bytes:
    import io
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@pytest.mark.slow
@FUZZ
@given(text=toml_texts())
@example(text=to_toml({**BASE, "data": {**BASE["data"], "\r": 0}}))          # a key with a line break
@example(text=to_toml({**BASE, "data": {**BASE["data"], "n_train": 2**31 - 1}}))  # 48 GiB of teacher data
@example(text=to_toml({**BASE, "sweep": {"seeds": [2**31]}}))                # beyond int32
@example(text=to_toml({**BASE, "train": {"steps": 10**30}}))
def test_fuzzed_experiment_files(text, tmp_path_factory, capsys):
    tmp = tmp_path_factory.mktemp("fz")
    path = tmp / "fuzz.toml"
    path.write_text(text, encoding="utf-8")
    check(["sweep", str(path)], capsys, tmp)


@pytest.mark.slow
@FUZZ
@given(sets=st.lists(overrides(), min_size=1, max_size=3))
@example(sets=["a\nb=1"])                                                   # a line break in the key
@example(sets=["sweep.seeds=[0, 2147483648]"])
def test_fuzzed_set_strings(sets, tmp_path_factory, capsys):
    tmp = tmp_path_factory.mktemp("fz")
    path = tmp / "base.toml"
    path.write_text(to_toml(BASE))
    check(["sweep", str(path), *(f"--set={s}" for s in sets)], capsys, tmp)


@pytest.mark.parametrize("arrays, problem", [
    ({"y": np.array([0, 1, 10**9, 1])}, "cross_entropy: y has label 1000000000"),    # 10⁹ outputs
    ({"X_test": np.ones((2, 2)), "y_test": np.array([0, -1])}, "labels ≥ 0 in y_test"),
])
def test_labels_found_by_fuzzing(arrays, problem, tmp_path, capsys):
    """Valid-looking label files that would train a model with 10⁹ outputs, or index class −1."""
    (tmp_path / "d.npz").write_bytes(_npz(**{"X": np.ones((4, 2)), "y": np.array([0, 1, 1, 0]), **arrays}))
    path = tmp_path / "e.toml"
    path.write_text('name = "fz"\n[data]\nsource = "file"\npath = "d.npz"\n[model]\nkind = "neuron"\n'
                    '[loss]\nkind = "cross_entropy"\n[train]\nsteps = 2\n')
    rc, err = run_cli(["sweep", str(path), "--dry-run"], capsys)
    assert_one_line_error(rc, err)
    assert problem in err


@pytest.mark.slow
@FUZZ
@given(raw=npz_files(), loss=st.sampled_from(["half_mse", "cross_entropy"]),
       test_fraction=st.sampled_from([0.0, 0.3, 0.99]))
def test_fuzzed_npz_files(raw, loss, test_fraction, tmp_path_factory, capsys):
    tmp = tmp_path_factory.mktemp("fz")
    (tmp / "d.npz").write_bytes(raw)
    path = tmp / "e.toml"
    path.write_text(f'name = "fz"\n[data]\nsource = "file"\npath = "d.npz"\ntest_fraction = {test_fraction}\n'
                    f'[model]\nkind = "neuron"\n[loss]\nkind = "{loss}"\n[train]\nsteps = 2\n')
    check(["sweep", str(path)], capsys, tmp)


@pytest.mark.slow
@FUZZ
@given(raw=csv_files(), loss=st.sampled_from(["half_mse", "cross_entropy"]))
def test_fuzzed_csv_files(raw, loss, tmp_path_factory, capsys):
    tmp = tmp_path_factory.mktemp("fz")
    (tmp / "d.csv").write_bytes(raw)
    path = tmp / "e.toml"
    path.write_text(f'name = "fz"\n[data]\nsource = "file"\npath = "d.csv"\n'
                    f'[model]\nkind = "neuron"\n[loss]\nkind = "{loss}"\n[train]\nsteps = 2\n')
    check(["sweep", str(path)], capsys, tmp)
