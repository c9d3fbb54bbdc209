"""``bpresearch report`` with a misspelt experiment name suggests the known one it is likely meant to be."""

from types import SimpleNamespace

import pytest

from analysis import load, report
from bpresearch.keys import KIND_TAG, RUN
from bpresearch.store.mlflow_backend import client

KNOWN = ["digits-mlp", "linear-regression", "my-study"]


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    u = f"sqlite:///{tmp_path_factory.mktemp('names') / 'mlflow.db'}"
    c = client(u)
    for name in KNOWN:
        c.create_run(c.create_experiment(name), tags={KIND_TAG: RUN})
    return u


def run_report(uri, tmp_path, capsys, *names):
    rc = report.main(SimpleNamespace(experiments=list(names), tracking_uri=uri, out=str(tmp_path), variant=None))
    return rc, capsys.readouterr().err


def test_a_typo_gets_the_known_name(uri, tmp_path, capsys):
    rc, err = run_report(uri, tmp_path, capsys, "my-studdy")
    assert rc == 2 and err.count("\n") == 1, err
    assert "no experiment 'my-studdy'" in err and "(did you mean 'my-study'?)" in err
    assert "known: " + ", ".join(KNOWN) in err


def test_an_unrelated_name_gets_only_the_list(uri, tmp_path, capsys):
    rc, err = run_report(uri, tmp_path, capsys, "zzzz")
    assert rc == 2 and "did you mean" not in err and "known: digits-mlp" in err


def test_did_you_mean_names_each_typo():
    assert load.did_you_mean(["digits-mpl", "linear-regresion"], KNOWN) == \
        " (did you mean 'digits-mlp', 'linear-regression'?)"
    assert load.did_you_mean(["zzzz"], KNOWN) == ""
