"""The declarations (one ``Key`` per setting) and the typed config read from them."""

import dataclasses
from pathlib import Path

import pytest

from bpresearch.spec import config, experiment, schema, workload
from bpresearch.spec.checks import Invalid
from bpresearch.spec.resolve import applicable, applicable_keys, complete, normalize

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENTS = ROOT / "experiments"
SHIPPED = sorted(EXPERIMENTS.glob("*.toml"))


def _keys():
    return [(s, n, k) for s in schema.SECTIONS for n, k in schema.declared(s).items()]


@pytest.mark.parametrize("section,name,k", _keys(), ids=[f"{s or 'top'}.{n}" for s, n, _ in _keys()])
def test_every_key_is_declared_whole(section, name, k):
    assert k.why.strip(), "every default says why"
    sel = schema.selector(section)
    if k.applies:
        assert sel is not None, "applies names choices of the section's selector"
        choices = schema.SCHEMA[section][sel].check
        for c in k.applies:
            choices(c)   # a typo in applies would silently drop the key from params
    if k.grid:
        assert k.default is None and k.derive is None
        return
    if k.derive is not None or k.omit_unset or (section, name) == ("", "name"):
        assert k.default is None
    else:
        k.check(k.default)   # a default passes its own check
    if k.idle is not None:
        assert k.applies and k.check(k.idle) == k.idle


def test_a_default_that_fails_its_check_raises():
    with pytest.raises(Invalid):
        schema.SCHEMA["train"]["steps"].check(0)


def test_the_documented_table_lists_every_key():
    doc = (ROOT / "docs" / "experiments.md").read_text()
    table = doc.split("| section | key | default | meaning |")[1].split("\n\n")[0]
    missing = [f"{s}.{n}" for s, keys in schema.SCHEMA.items() for n in keys if f"`{n}`" not in table]
    assert not missing


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_the_typed_config_mirrors_the_hashed_dict(path):
    exp = experiment.load(path)
    for run in exp.runs:
        spec = run.spec
        for section in schema.CONFIG_SECTIONS:
            typed = dataclasses.asdict(getattr(spec, section))
            given = {k: tuple(v) if isinstance(v, list) else v for k, v in run.config[section].items()}
            assert {k: v for k, v in typed.items() if k in given} == given
            assert all(typed[k] is None for k in typed.keys() - given.keys())  # omitted: unset
        assert spec.name == exp.name and spec.swept == run.config["swept"]
        # what is logged (the settings that apply), completed, reads back to the same typed config
        assert schema.spec_of(complete(applicable(run.config))) == spec


def test_the_typed_config_is_read_only(linear_example):
    run = experiment.load(linear_example).runs[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        run.spec.optimizer.learning_rate = 1.0
    assert run.spec.optimizer.learning_rate == run.config["optimizer"]["learning_rate"] == 0.01
    assert run.spec.data.sha256 == run.config["data"]["sha256"]


def test_workload_reads_the_dict_and_the_typed_form_alike():
    exp = experiment.load(EXPERIMENTS / "digits-mlp.toml")
    for runs in exp.groups().values():
        run = runs[0]
        assert workload.train_spec(run.spec) == workload.train_spec(run.config)
        assert workload.method_fn(run.spec).keywords == workload.method_fn(run.config).keywords
        ds = exp.dataset(run.config)
        assert workload.n_outputs(run.spec, ds) == workload.n_outputs(run.config, ds) == 10


def _resolved(overrides):
    return experiment.load(EXPERIMENTS / "seed-neuron.toml", overrides).runs[0].config


def test_what_applies_follows_the_choices():
    c = _resolved(['data.source="teacher"', 'model.kind="mlp"', 'optimizer.kind="adam"'])
    keys = applicable_keys(c)
    assert ("model", "hidden") in keys and ("model", "start") not in keys and ("model", "bias") not in keys
    assert ("data", "n_train") in keys and ("data", "split_seed") not in keys
    assert ("optimizer", "b1") in keys and ("optimizer", "momentum") not in keys
    assert ("optimizer", "learning_rate") in keys and ("train", "seed") in keys
    assert ("model", "init_scale") not in keys and ("diagnostics", "every") not in keys
    c = _resolved(['model.init="normal"', "diagnostics.noise_scale=true"])
    keys = applicable_keys(c)
    assert ("model", "init_scale") in keys and ("diagnostics", "every") in keys
    assert ("diagnostics", "lanczos_iters") not in keys


def test_a_setting_its_optimizer_ignores_gets_one_value():
    c = _resolved(['optimizer.kind="adam"', "optimizer.momentum=0.5"])
    assert c["optimizer"]["momentum"] == 0.0
    c = _resolved(['optimizer.kind="momentum"', "optimizer.momentum=0.5"])
    assert normalize(c)["optimizer"]["momentum"] == 0.5


def test_defaults_that_follow_other_settings(tmp_path):
    path = tmp_path / "e.toml"
    path.write_text('name = "t"\n[train]\nsteps = 2\n[sweep]\n"data.source" = ["digits", "teacher"]\n'
                    '"model.kind" = ["mlp", "neuron"]\n')
    assert config.read(path).config["model"]["init"] is None   # before the sweep: it follows model.kind
    follows = {(r.spec.data.source, r.spec.model.kind): (r.spec.data.test_fraction, r.spec.loss.kind,
                                                         r.spec.model.activation, r.spec.model.init)
               for r in experiment.load(path).runs}
    assert follows == {("digits", "mlp"): (0.2, "cross_entropy", "relu", "glorot"),
                       ("digits", "neuron"): (0.2, "cross_entropy", "identity", "zeros"),
                       ("teacher", "mlp"): (0.0, "half_mse", "relu", "glorot"),
                       ("teacher", "neuron"): (0.0, "half_mse", "identity", "zeros")}
    assert all("grad_tol" not in r.config["train"] for r in experiment.load(path).runs), \
        "unset, it is left out: older files keep their hash"
