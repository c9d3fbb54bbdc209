"""bench's peers and answers: an Optuna peer on a tiny grid gives the harness's answer, read back
from its own store by the one rule; the comparison of answers sees a different best or step count."""

import math

import numpy as np
import pytest

from bench import answer, measure, peers
from bpresearch import cli
from bpresearch.spec import experiment as expmod

TINY = ["train.steps=60", "train.eval_every=10", "sweep.learning_rate=[0.03, 0.3, 1.0]", "sweep.batch_size=[64]",
        "sweep.seeds=1"]
TARGETS = (1.0, 0.5)


def test_answer_of_curves_follows_the_verdicts():
    # steps to 0.5: lr 0.1 → 30, 0.2 → 20 (both seeds), 0.4 → 20 and never (upper median: never)
    def run(cross):
        steps = np.arange(0, 60, 10)
        return np.array([steps, np.where(steps >= cross, 0.4, 0.9)], float)
    runs = {(8, 0.1, 0): run(30), (8, 0.1, 1): run(30), (8, 0.2, 0): run(20), (8, 0.2, 1): run(20),
            (8, 0.4, 0): run(20), (8, 0.4, 1): run(math.inf)}
    got = answer.best(runs, [0.5], resolution=2.0)["bs=8 t=0.5"]
    assert (got["learning_rate"], got["steps"], got["resolved"]) == (0.2, 20.0, True)
    assert answer.best(runs, [0.5], resolution=1.5)["bs=8 t=0.5"]["resolved"] is False


def test_same_and_near():
    a = {"bs=8 t=0.5": {"learning_rate": 0.2, "steps": 20.0}, "bs=8 t=0.1": {"learning_rate": None, "steps": math.inf}}
    assert answer.same(a, {k: dict(v) for k, v in a.items()})
    assert not answer.same(a, {**a, "bs=8 t=0.5": {"learning_rate": 0.2, "steps": 30.0}})
    assert not answer.same(a, {**a, "bs=8 t=0.5": {"learning_rate": 0.3, "steps": 20.0}})
    assert not answer.same(a, {**a, "bs=8 t=0.1": {"learning_rate": 0.3, "steps": 90.0}})
    assert not answer.same(a, {"bs=8 t=0.5": a["bs=8 t=0.5"]})
    # near: within the resolution of the reference's best, and as few steps
    assert answer.near({"bs=8 t=0.5": {"learning_rate": 0.23, "steps": 20.0}}, a, 1.19) == \
        {"bs=8 t=0.5": True, "bs=8 t=0.1": False}
    assert answer.near({"bs=8 t=0.5": {"learning_rate": 0.17, "steps": 10.0}}, a, 1.19)["bs=8 t=0.5"]
    assert not answer.near({"bs=8 t=0.5": {"learning_rate": 0.25, "steps": 20.0}}, a, 1.19)["bs=8 t=0.5"]
    assert not answer.near({"bs=8 t=0.5": {"learning_rate": 0.23, "steps": 30.0}}, a, 1.19)["bs=8 t=0.5"]


@pytest.mark.slow
def test_optuna_peer_gives_the_harness_answer(tmp_path):
    pytest.importorskip("optuna")
    pytest.importorskip("optuna_integration")
    exp = expmod.load(measure.GRID, TINY)
    (tmp_path / "h").mkdir(), (tmp_path / "o").mkdir()
    harness_uri, peer_uri = measure._store(str(tmp_path / "h")), measure._store(str(tmp_path / "o"))  # empty stores
    assert cli.main(["sweep", str(measure.GRID), "--tracking-uri", harness_uri, *sum((["--set", o] for o in TINY), [])]) == 0
    peers.optuna_grid(peer_uri, exp, per_point=False)
    ours, theirs = answer.curves(harness_uri, exp.name), answer.curves(peer_uri, exp.name)
    assert ours.keys() == theirs.keys() == {(64, lr, 0) for lr in (0.03, 0.3, 1.0)}
    for k in ours:   # the same evaluated steps; losses as a vmapped program and a single run round them
        np.testing.assert_array_equal(ours[k][0], theirs[k][0])
        np.testing.assert_allclose(ours[k][1], theirs[k][1], rtol=1e-4)
    found = answer.best(theirs, TARGETS)
    assert answer.same(found, answer.best(ours, TARGETS))
    assert found["bs=64 t=0.5"]["learning_rate"] is not None   # the tiny grid answers something
    assert answer.points(peer_uri) >= 3 * len(ours[(64, 0.3, 0)][0])


@pytest.mark.slow
def test_tpe_timed_as_a_process_is_the_same_search(tmp_path):
    """``optuna_tpe_process`` runs the very search ``optuna_tpe`` runs in this process (same
    trials, same answer), timed from its process's start: its ``wall_s`` holds the trials
    (``in_process_s``) and the imports before them. The reference is TPE's own first suggestion,
    so that the oracle stops each study after one trial."""
    optuna = pytest.importorskip("optuna")
    pytest.importorskip("optuna_integration")
    from bench import time_to_answer as tta

    tiny = ["sweep.batch_size=[256]", "sweep.seeds=1", "train.steps=40"]
    first = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=3)).ask()
    lr = first.suggest_float(answer.R.LEARNING_RATE, *tta.LR_RANGE, log=True)
    reference = {"bs=256 t=0.1": {"learning_rate": lr, "steps": math.inf}}
    alone = tta.optuna_tpe_process(reference, tiny, seed=3)
    here = tta.optuna_tpe(reference, tiny, seed=3)
    assert alone["answer"] == here["answer"]
    assert alone["answer"]["bs=256 t=0.1"]["trials"] == 1 and alone["configs"] == here["configs"] == 1
    assert alone["answer"]["bs=256 t=0.1"]["learning_rate"] == lr
    assert 0 < alone["in_process_s"] < alone["wall_s"]
