"""Hashes are a contract: a store swept by an earlier release resumes with nothing to train.

``data/store-4a2693c.db.xz`` is a real sqlite MLflow store written by the release at commit
4a2693c (``data/make_old_store.py`` says how): every shipped experiment's runs with the params
and config-hash tags that release logged, no curves. Its hashes still covered the loss targets;
today's do not (``spec.experiment.config_hash``), and ``run.resume`` finds the old ones.
"""

import io
import lzma
import shutil
from pathlib import Path

import pytest

from bpresearch.run import runner
from bpresearch.spec import experiment

DATA = Path(__file__).parent / "data"
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
SHIPPED = sorted(p.name for p in EXPERIMENTS.glob("*.toml"))


@pytest.fixture(scope="module")
def old_store(tmp_path_factory):
    db = tmp_path_factory.mktemp("old") / "mlflow.db"
    with lzma.open(DATA / "store-4a2693c.db.xz") as src, open(db, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return f"sqlite:///{db}"


def dry_run(uri: str, name: str, overrides=()) -> str:
    out = io.StringIO()
    runner.dry_run([experiment.load(EXPERIMENTS / name, list(overrides))], uri, out)
    return out.getvalue()


@pytest.mark.parametrize("name", SHIPPED)
def test_a_store_of_an_earlier_release_resumes_with_nothing_to_train(old_store, name):
    text = dry_run(old_store, name)
    n = len(experiment.load(EXPERIMENTS / name).runs)
    assert f"already finished in the store: {n} of {n}; a sweep would train 0" in text
    assert "new target" not in text


def test_an_earlier_store_asked_a_new_target_trains_nothing(old_store):
    text = dry_run(old_store, "linear-regression.toml", ["train.targets=[0.06, 0.03]"])
    assert "a sweep would train 0" in text
    assert "new target(s) 0.03" in text and "--targets 0.06,0.03" in text
    # the old form with the targets the store was swept with (its runs' train.targets) finds every run
    assert "a sweep would train 0" in dry_run(old_store, "digits-mlp.toml", ["train.targets=[0.5, 0.2, 0.1, 0.05]"])


def test_a_refine_target_the_runs_were_not_swept_with_is_one_line():
    """Refining needs the in-program count of each refine target: runs that lack it are not
    retrained (targets are not in the hash), so the sweep says what to do instead."""
    from bpresearch import keys
    from bpresearch.run.resume import Stored
    from bpresearch.spec.config import ExperimentError

    exp = experiment.load(EXPERIMENTS / "digits-mlp.toml")
    counted = {keys.reached_key(t): 0.0 for t in (0.5, 0.2)}   # swept with [0.5, 0.2]; 0.1 added since
    stored = Stored({r.hash: counted for r in exp.runs}, targets=[(0.5, 0.2)])
    with pytest.raises(ExperimentError, match=r"digits-mlp.toml: \[sweep\] refine target: loss 0.1 was not a "
                                              r"\[train\] target .* swept with \(0.5, 0.2\)"):
        runner.check_refine_targets(exp, stored)
    runner.check_refine_targets(exp, Stored({r.hash: {**counted, keys.reached_key(0.1): 1.0} for r in exp.runs}))
