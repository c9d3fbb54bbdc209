"""Experiment files: the documented example works as written; bad files fail in one line."""

from pathlib import Path

import numpy as np
import pytest

from bpresearch.cli import main
from bpresearch.spec import config, experiment

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"

MINIMAL = '''name = "t"
[data]
source = "teacher"
n_train = 32
[model]
kind = "neuron"
[train]
steps = 10
[sweep]
learning_rate = [0.1]
batch_size = [4, "full"]
'''


def test_issue_example_works_as_written(linear_example):
    exp = experiment.load(linear_example)
    assert exp.name == "linear-regression" and exp.description == "Gradient descent on least squares"
    lrs = exp.axes["optimizer.learning_rate"]
    np.testing.assert_allclose(lrs, np.geomspace(0.01, 1.0, 9), rtol=1e-5)
    assert isinstance(lrs[0], float)
    assert len(exp.runs) == 9 * 4 * 3
    groups = exp.groups()
    assert len(groups) == 4  # one compiled program per batch size
    assert sorted(r.config["train"]["batch_size"] for r in exp.runs)[-1] == 256  # "full" = 256 rows
    assert all(r.config["train"]["full_batch"] == (r.config["train"]["batch_size"] == 256) for r in exp.runs)
    assert len({r.hash for r in exp.runs}) == len(exp.runs)
    assert exp.runs[0].name == "lr=0.01 bs=1 s0"


def test_shipped_experiments_load():
    for path in sorted(EXPERIMENTS.glob("*.toml")):
        exp = experiment.load(path)
        assert exp.runs, path


def test_overrides_and_hashes(linear_example):
    a = experiment.load(linear_example)
    b = experiment.load(linear_example, ["train.steps=50", "sweep.seeds=1", 'optimizer.kind="momentum"'])
    assert len(b.runs) == 9 * 4 and b.runs[0].config["train"]["steps"] == 50
    assert b.runs[0].config["optimizer"]["kind"] == "momentum"
    assert b.runs[0].config["optimizer"]["momentum"] == 0.9
    assert not {r.hash for r in a.runs} & {r.hash for r in b.runs}
    c = experiment.load(linear_example, ["optimizer.kind=adam"])  # bare strings work too
    assert c.runs[0].config["optimizer"]["kind"] == "adam"
    # same file, same hashes: resume depends on it
    assert [r.hash for r in experiment.load(linear_example).runs] == [r.hash for r in a.runs]


def test_data_file_content_is_part_of_the_hash(linear_example):
    before = {r.hash for r in experiment.load(linear_example).runs}
    d = np.load(linear_example.parent / "linear.npz")
    np.savez(linear_example.parent / "linear.npz", X=d["X"], y=d["y"] + 1)
    assert not before & {r.hash for r in experiment.load(linear_example).runs}


def test_swept_optimizer_random_search_has_one_learning_rate():
    exp = experiment.load(EXPERIMENTS / "neuron-random-vs-gd.toml")
    rs = [r for r in exp.runs if r.config["optimizer"]["kind"] == "random_search"]
    gd = [r for r in exp.runs if r.config["optimizer"]["kind"] == "sgd"]
    assert len(rs) == 8 and len(gd) == 3 * 8
    assert rs[0].name == "random_search s0" and gd[0].name == "sgd lr=1 s0"


def test_to_toml_round_trips(linear_example):
    import tomllib
    exp = experiment.load(linear_example)
    doc = tomllib.loads(config.to_toml(exp))
    assert doc["train"]["steps"] == 300 and doc["model"]["init"] == "zeros"
    again = linear_example.parent / "resolved.toml"
    again.write_text(config.to_toml(exp))
    assert [r.hash for r in experiment.load(again).runs] == [r.hash for r in exp.runs]


BAD = [
    ("unknown-section", MINIMAL + "[foo]\nx = 1\n", "foo", "unknown section"),
    ("typo-section", MINIMAL + "[trian]\nx = 1\n", "trian", "did you mean 'train'?"),
    ("unknown-key", MINIMAL.replace("steps = 10", "steps = 10\nstepz = 3"), "[train] stepz", "unknown key"),
    ("wrong-type", MINIMAL.replace("steps = 10", 'steps = "ten"'), "[train] steps", "integer"),
    ("steps-zero", MINIMAL.replace("steps = 10", "steps = 0"), "[train] steps", "≥ 1"),
    ("lr-negative", MINIMAL.replace("[0.1]", "[0.1, -1.0]"), "[sweep] learning_rate", "> 0"),
    ("lr-zero", MINIMAL.replace("[0.1]", "[0]"), "[sweep] learning_rate", "> 0"),
    ("empty-range", MINIMAL.replace("[0.1]", "{ min = 1.0, max = 0.1, num = 3 }"), "[sweep] learning_rate", "empty range"),
    ("batch-too-large", MINIMAL.replace('[4, "full"]', "[4, 33]"), "[sweep] batch_size", "larger than the training set"),
    ("bad-batch", MINIMAL.replace('[4, "full"]', '["half"]'), "[sweep] batch_size", "integer"),
    ("bad-choice", MINIMAL.replace('kind = "neuron"', 'kind = "cnn"'), "[model] kind", "must be one of"),
    ("unknown-swept", MINIMAL + '"model.depth" = [1, 2]\n', "[sweep] model.depth", "unknown swept key"),
    ("missing-name", MINIMAL.replace('name = "t"', ""), "name", "missing"),
    ("invalid-toml", MINIMAL.replace("steps = 10", "steps = = 10"), "invalid TOML", "line"),
    ("missing-data", MINIMAL.replace('source = "teacher"', 'source = "file"\npath = "nope.npz"'),
     "[data] path", "no such file"),
    ("bad-data", MINIMAL.replace('source = "teacher"', 'source = "file"\npath = "bad.csv"'),
     "[data] path", "non-numeric"),
    ("ce-on-floats", MINIMAL.replace('[model]', '[loss]\nkind = "cross_entropy"\n[model]'),
     "[loss] kind", "integer class labels"),
]


@pytest.mark.parametrize("name,text,key,problem", BAD, ids=[b[0] for b in BAD])
def test_bad_experiment_files_fail_in_one_line_and_log_nothing(tmp_path, capsys, name, text, key, problem):
    (tmp_path / "bad.csv").write_text("a,y\n1,2\nabc,3\n")
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    db = tmp_path / "mlflow.db"
    code = main(["sweep", str(path), "--tracking-uri", f"sqlite:///{db}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "\n" not in err and "Traceback" not in err
    assert str(path) in err and key in err and problem in err, err
    assert not db.exists(), "nothing may be logged for a bad file"


def test_bad_override_names_the_override(tmp_path, capsys):
    path = tmp_path / "ok.toml"
    path.write_text(MINIMAL)
    assert main(["sweep", str(path), "--set", "train.stepz=5", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "--set train.stepz=5: unknown key 'stepz' in [train] (did you mean 'steps'?)" in err
    assert str(path) not in err, "a typo on the command line is not the file's"
    assert main(["sweep", str(path), "--set", "trian.steps=50", "--dry-run"]) == 2
    assert "--set trian.steps=50: unknown section 'trian' (did you mean 'train'?)" in capsys.readouterr().err
    assert main(["sweep", str(path), "--set", "sweep.learnig_rate=[1]", "--dry-run"]) == 2
    assert "(did you mean 'learning_rate'?)" in capsys.readouterr().err
    assert main(["sweep", str(path), "--set", "nonsense.x=1", "--dry-run"]) == 2
    assert "unknown section 'nonsense' (expected one of: data, model" in capsys.readouterr().err
    assert main(["sweep", str(path), "--set", "train.steps", "--dry-run"]) == 2
    assert "--set train.steps" in capsys.readouterr().err


def test_dry_run_prints_grid_and_trains_nothing(linear_example, capsys, tmp_path):
    assert main(["sweep", str(linear_example), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "108 runs in 4 compiled group(s)" in out and "nothing trained" in out
    assert not (tmp_path / "mlflow.db").exists()


def test_missing_experiment_file(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("doc", ["README.md", "docs/experiments.md"])
def test_documented_example_is_valid(doc, tmp_path):
    text = (Path(__file__).resolve().parents[2] / doc).read_text()
    block = text.split("```toml\n")[1].split("```")[0]
    (tmp_path / "linear.npz").write_bytes((EXPERIMENTS / "linear.npz").read_bytes())
    (tmp_path / "example.toml").write_text(block)
    exp = experiment.load(tmp_path / "example.toml")
    assert (len(exp.runs), len(exp.groups())) == (108, 4)   # as the text says
