"""A model, loss or optax optimizer of one's own, named in the experiment file.

A model file in a temporary folder sweeps, resumes, trains again when edited; its kwargs
are swept and logged; every broken contract is one line and exit 2 before anything trains.
"""

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from storeview import children

from bpresearch.cli import main
from bpresearch.keys import KIND_TAG
from bpresearch.spec import config, experiment

MODEL = '''
import jax, jax.numpy as jnp

def two_layer(n_out, width=3):
    def init(key, x):
        k1, k2 = jax.random.split(key)
        return {"w1": jax.random.normal(k1, (x.shape[1], width)) / 2, "w2": jax.random.normal(k2, (width, n_out)) / 2}
    def apply(p, x):
        return jnp.tanh(x @ p["w1"]) @ p["w2"]
    return init, apply

def not_a_pair(n_out):
    return 3

def wrong_shape(n_out):
    return (lambda key, x: {"w": jnp.zeros((x.shape[1],))}), (lambda p, x: (x @ p["w"])[:, None, None])
'''
LOSS = '''
import jax.numpy as jnp

def absolute(out, y):
    return jnp.abs(out - y)

def summed(out, y):
    return jnp.sum(jnp.abs(out - y))
'''
TOML = '''name = "mine"
[data]
source = "teacher"
n_train = 16
n_features = 3
[model]
kind = "models.py:two_layer"
{model}
[loss]
kind = "{loss}"
[optimizer]
kind = "{optimizer}"
{optimizer_keys}
[train]
steps = 12
eval_every = 4
[sweep]
learning_rate = [0.05, 0.2]
batch_size = [4, "full"]
seeds = 2
{sweep}
'''


def write(folder: Path, model="width = 3", loss="losses.py:absolute", optimizer="sgd", optimizer_keys="",
          sweep="", model_file=MODEL) -> Path:
    """An experiment and its code in ``folder``; the experiment file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "models.py").write_text(model_file)
    (folder / "losses.py").write_text(LOSS)
    path = folder / "mine.toml"
    path.write_text(TOML.format(model=model, loss=loss, optimizer=optimizer, optimizer_keys=optimizer_keys,
                                sweep=sweep))
    return path


def new_runs(out: str) -> int:
    """The ``new`` column of the sweep's summary line for the experiment ``mine``."""
    return int(re.search(r"^mine\s+\d+\s+(\d+)\s", out, re.MULTILINE).group(1))


def test_a_model_file_sweeps_resumes_and_trains_again_when_edited(tmp_path, capsys):
    path = write(tmp_path / "exp", sweep='"model.width" = [2, 3]')
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["sweep", str(path), "--tracking-uri", uri]) == 0
    assert new_runs(capsys.readouterr().out) == 16
    assert main(["sweep", str(path), "--tracking-uri", uri]) == 0   # unchanged: resumes, nothing to train
    assert new_runs(capsys.readouterr().out) == 0
    client = MlflowClient(uri)
    e = client.get_experiment_by_name("mine")
    kids = children(client, e.experiment_id)
    assert len(kids) == 16
    assert {k.data.params["model.width"] for k in kids} == {"2", "3"}
    assert {k.data.params["model.kind"] for k in kids} == {"models.py:two_layer"}
    sweeps = client.search_runs([e.experiment_id], filter_string=f"tags.`{KIND_TAG}` = 'sweep'")
    assert len(sweeps) == 1   # the second sweep had nothing to do
    logged = {a.path for a in client.list_artifacts(sweeps[0].info.run_id, "code")}
    assert logged == {"code/models.py", "code/losses.py"}
    (tmp_path / "exp" / "models.py").write_text(MODEL + "\n# edited\n")
    assert main(["sweep", str(path), "--tracking-uri", uri]) == 0
    assert new_runs(capsys.readouterr().out) == 16
    assert len(children(client, e.experiment_id)) == 32


def test_the_file_content_enters_the_hash_and_nothing_else_does(tmp_path):
    """The same file in another folder gives the same hashes; one more byte changes every one."""
    a = experiment.load(write(tmp_path / "a"))
    b = experiment.load(write(tmp_path / "b"))
    c = experiment.load(write(tmp_path / "c", model_file=MODEL + " "))
    assert [r.hash for r in a.runs] == [r.hash for r in b.runs]
    assert not {r.hash for r in a.runs} & {r.hash for r in c.runs}


def test_an_optax_sweep_runs_with_its_keyword_arguments_logged(tmp_path):
    path = write(tmp_path / "exp", optimizer="optax:adamw", optimizer_keys="weight_decay = 0.01\nb1 = 0.8")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    assert main(["sweep", str(path), "--tracking-uri", uri, "--set", "optimizer.eps=1e-6"]) == 0
    client = MlflowClient(uri)
    kids = children(client, client.get_experiment_by_name("mine").experiment_id)
    assert len(kids) == 8
    p = kids[0].data.params
    assert (p["optimizer.kind"], p["optimizer.weight_decay"], p["optimizer.b1"], p["optimizer.eps"]) == \
        ("optax:adamw", "0.01", "0.8", "1e-06")
    assert all(k.info.status == "FINISHED" for k in kids)


def test_built_in_kinds_still_refuse_unknown_keys(tmp_path):
    path = write(tmp_path / "exp")
    text = path.read_text().replace('kind = "models.py:two_layer"', 'kind = "mlp"')
    path.write_text(text)
    with pytest.raises(config.ExperimentError, match=r"\[model\] width: unknown key"):
        experiment.load(path)


BROKEN = {
    "missing file": (dict(loss="nolosses.py:absolute"), r"\[loss\] kind: nolosses.py: no such file"),
    "missing name": (dict(loss="losses.py:nothing"), r"\[loss\] kind: losses.py defines no function 'nothing'"),
    "outside the folder": (dict(loss="../losses.py:absolute"), r"\[loss\] kind: \.\./losses.py: outside"),
    "unknown argument": (dict(model="depth = 2"), r"\[model\] kind: .*unexpected keyword argument 'depth'"),
    "loss not per example": (dict(loss="losses.py:summed"), r"\[loss\] kind: .*expected one loss per example"),
    "unknown optax name": (dict(optimizer="optax:adamz"), r"\[optimizer\] kind: optax has no optimizer 'adamz'"),
    "unknown optax argument": (dict(optimizer="optax:adamw", optimizer_keys="decay = 0.1"),
                               r"\[optimizer\] kind: optax:adamw: .*'decay'"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_each_broken_contract_is_one_line_and_exit_2(tmp_path, capsys, case):
    kw, pattern = BROKEN[case]
    path = write(tmp_path / "exp" / "inner", **kw)
    (tmp_path / "exp" / "losses.py").write_text(LOSS)   # outside the experiment's folder: never read
    assert main(["sweep", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"bpresearch: error: {path}: "), err
    assert re.search(pattern, err), err
    assert not (tmp_path / "mlflow.db").exists()   # nothing was logged


@pytest.mark.parametrize("factory, pattern", [("not_a_pair", r"returned int, not a pair \(init, apply\)"),
                                              ("wrong_shape", r"outputs of shape \(4, 1, 1\).*expected \(4, 1\)")])
def test_a_factory_breaking_the_contract_is_one_line(tmp_path, factory, pattern):
    path = write(tmp_path / "exp", model="")
    path.write_text(path.read_text().replace("models.py:two_layer", f"models.py:{factory}"))
    with pytest.raises(config.ExperimentError) as e:
        experiment.load(path)
    assert len(str(e.value).splitlines()) == 1
    assert re.search(r"\[model\] kind: models.py:" + factory + ": .*" + pattern, str(e.value)), str(e.value)


def test_set_reaches_a_user_sections_arguments_and_still_catches_typos(tmp_path):
    path = write(tmp_path / "exp")
    exp = experiment.load(path, ["model.width=5"])
    assert {r.spec.model.options["width"] for r in exp.runs} == {5}
    with pytest.raises(config.ExperimentError, match="trian"):
        experiment.load(path, ["trian.steps=5"])


def test_the_ray_executor_refuses_user_code_in_one_line(tmp_path, capsys):
    path = write(tmp_path)
    db = tmp_path / "s.db"
    assert main(["sweep", str(path), "--executor", "ray", "--tracking-uri", f"sqlite:///{db}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--executor local" in err[0] and "models.py" in err[0], err
    assert not db.exists()   # refused before anything was logged
