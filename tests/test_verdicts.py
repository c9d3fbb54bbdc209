"""One verdict for all callers: the refiner, the sweep's console summary and the report agree.

``bpresearch.verdicts`` decides what counts as reached, the median over seeds, the best
learning rate and whether it is resolved; here its rules one by one, then random outcome
tables pushed through the three callers (``run.rounds.schedule`` as a resumed sweep plans
it, ``runner.refine_lines`` as the console prints it, ``analysis.measures`` and
``analysis.refinement`` as the report reads the store).
"""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analysis import measures as M
from analysis import refinement
from bpresearch import keys as R
from bpresearch import verdicts as V
from bpresearch.run import rounds, runner
from bpresearch.run.refine import Outcome, decide
from bpresearch.run.resume import Stored
from bpresearch.spec import experiment
from bpresearch.spec.refine import Settings, parse_settings

INF = math.inf


# ---------------------------------------------------------------- the rules
def test_outcomes():
    assert V.outcome(10, False, 0.1, 0.5) == V.REACHED
    assert V.outcome(10, False, 0.7, 0.5) == V.LOST and V.counts(V.LOST)
    assert V.outcome(10, False, math.nan, 0.5) == V.REACHED         # unknown final loss: no evidence it was lost
    assert V.outcome(10, True, math.nan, 0.5) == V.DIVERGED_AFTER and not V.counts(V.DIVERGED_AFTER)
    assert V.outcome(None, True, math.nan, 0.5) == V.DIVERGED
    assert V.outcome(math.nan, False, 0.7, 0.5) == V.outcome(-1, False, 0.7, 0.5) == V.NOT_REACHED
    assert V.run_steps(10, False, 0.7, 0.5) == 10 and V.run_steps(10, True) == INF


def test_upper_median_is_an_observed_step_and_finite_only_with_a_majority():
    assert V.median([30, 10, 20]) == 20
    assert V.median([10, 20, 30, 40]) == 30                          # not 25
    assert V.median([10, 20, INF, INF]) == INF and V.median([10, 20, 30, INF]) == 30
    assert V.median([]) == INF
    padded = np.array([[10, 20, 30, 40], [10, 20, np.nan, np.nan], [INF, 5, 7, np.nan], [np.nan] * 4])
    assert list(V.medians(padded)) == [30, 20, 7, INF]


def test_ties_take_the_middle_of_the_longest_flat_bottom():
    assert V.best([9, 8, 8, 8, 9]) == 2
    assert V.best([9, 8, 8, 9]) == 1                                  # of two middles the lower
    assert V.best([8, 9, 8, 8, 9]) == 2                               # the longer run wins
    assert V.best([8, 9, 8, 9]) == 0                                  # equally long: smaller learning rates
    assert V.best([INF, INF]) is None and V.best([]) is None


def test_bracket_and_resolution():
    lrs = [0.1, 0.2, 0.4]
    assert V.bracket(lrs, [3, 2, 3], 2.0) == V.Bracket(1, 0, 2, "", 2.0, True)
    assert not V.bracket(lrs, [3, 2, 3], 1.5).resolved
    assert V.bracket(lrs, [1, 2, 3], 4.0).edge == "smallest" and not V.bracket(lrs, [1, 2, 3], 4.0).resolved
    assert V.bracket(lrs, [3, 2, 1]).edge == "largest" and V.bracket([0.1], [5]).edge == "only"
    assert V.bracket(lrs, [3, 2, 3]).resolved                         # resolution ∞: inside the range (tuned)
    assert V.within(1.0, 1.41421, 2 ** 0.5)                           # 6-digit rounding is within
    assert V.uniform_count(0.004, 8.0, 2.0) == 12 and V.uniform_count(1.0, 16.0, 2 ** 0.25) == 17


def reference_best(score):
    """The tie rule written out: the middle (lower) of the first longest run of adjacent minima."""
    finite = [k for k, v in enumerate(score) if v < INF]
    if not finite:
        return -1
    low = min(score)
    runs, cur = [], []
    for k, v in enumerate(score):
        if v == low:
            cur.append(k)
        elif cur:
            runs.append(cur)
            cur = []
    runs.append(cur)
    run = max((r for r in runs if r), key=len)
    return run[(len(run) - 1) // 2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.sampled_from([5.0, 10.0, 15.0, INF]), min_size=1, max_size=9), min_size=1, max_size=6))
def test_the_array_forms_agree_with_the_rules(rows):
    width = max(len(r) for r in rows)
    padded = np.array([r + [np.nan] * (width - len(r)) for r in rows])    # seeds of one cell per row
    assert list(V.medians(padded)) == [V.median(r) for r in rows]
    scores = np.array([r + [INF] * (width - len(r)) for r in rows])       # scores of one group per row
    assert list(V.best_rows(scores)) == [reference_best(list(r)) for r in scores]


def test_the_refiner_counts_a_run_that_lost_the_target_at_its_first_crossing():
    lost = [Outcome(0.2, s, 20, False, 0.7, 0.5) for s in range(3)]       # crossed, ended above: counts
    blew = [Outcome(0.4, s, 10, True, math.nan, 0.5) for s in range(3)]   # crossed, diverged: does not
    slow = [Outcome(0.1, s, 40, False, 0.1, 0.5) for s in range(3)]
    d = decide(slow + lost + blew, 2.0)
    assert d.best == 0.2 and d.best_steps == 20 and d.above == (0.4, INF) and d.resolved


def test_one_parser_for_the_refine_table():
    assert R.refine_table({}, [0.5, 0.1]) == {"targets": [0.5], "resolution": 2 ** 0.25, "max_rounds": 6,
                                                 "per_round": None}
    assert R.refine_table({"target": 0.1, "per_round": 3}, [0.5, 0.1])["targets"] == [0.1]
    assert parse_settings({"target": [0.5, 0.1]}, [0.5, 0.1]) == Settings((0.5, 0.1))
    # the report reads a stored resolved config the same way, defaults included
    resolved = {"train": {"targets": [0.5, 0.1]}, "sweep": {"refine": {"max_rounds": 2}}}
    assert refinement.settings(resolved) == {"targets": [0.5], "resolution": 2 ** 0.25, "max_rounds": 2}


# ---------------------------------------------------------------- three callers, one answer
TARGETS = (0.5, 0.1)
TOML = """\
name = "verdicts"
[data]
source = "file"
path = "d.npz"
[model]
kind = "neuron"
bias = false
[train]
steps = 100
targets = [0.5, 0.1]
[sweep]
learning_rate = [0.1]
batch_size = [8]
seeds = {seeds}
"""


@pytest.fixture(scope="module", params=[3, 4])
def templates(request, tmp_path_factory):
    """One run per seed (3 or 4 seeds: odd and even medians) to derive any learning rate from."""
    tmp = tmp_path_factory.mktemp(f"verdicts{request.param}")
    rng = np.random.default_rng(0)
    np.savez(tmp / "d.npz", X=rng.normal(size=(32, 3)).astype(np.float32), y=rng.normal(size=32).astype(np.float32))
    (tmp / "v.toml").write_text(TOML.format(seeds=request.param))
    return experiment.load(tmp / "v.toml").runs


# one run: diverged, final loss, steps to each target (None: never crossed); few step values, so ties are common
RUN = st.tuples(st.booleans(), st.sampled_from([0.05, 0.3, 0.7, math.nan]),
                st.lists(st.sampled_from([None, 5, 10, 15, 20]), min_size=2, max_size=2))
TABLES = st.integers(1, 7).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from([0.01, 0.02, 0.05, 0.07, 0.1, 0.2, 0.3, 0.5]), min_size=n, max_size=n, unique=True),
    st.lists(RUN, min_size=n * 4, max_size=n * 4), st.sampled_from([1.5, 2.0, 3.0])))


def summary_of(diverged, final, steps) -> dict:
    out = {R.DIVERGED: float(diverged)}
    if not math.isnan(final):
        out[R.FINAL_LOSS] = final
    out.update({R.steps_key(t): float(s) for t, s in zip(TARGETS, steps) if s is not None})
    return out


def report_runs(runs, summaries) -> pd.DataFrame:
    """The runs frame ``analysis.load`` builds from the store."""
    rows = []
    for r in runs:
        m = summaries[r.hash]
        rows.append({"run_id": r.hash, "optimizer": "sgd", "batch_size": 8, "seed": r.config["train"]["seed"],
                     "learning_rate": float(R.param_text(r.config["optimizer"]["learning_rate"])),
                     "steps": 100, "diverged": m[R.DIVERGED] > 0.5,
                     **{f"metrics.{k}": v for k, v in m.items()}})
    return pd.DataFrame(rows)


@settings(max_examples=150, deadline=None)
@given(TABLES)
def test_refiner_console_and_report_name_the_same_best(templates, table):
    lrs, outcomes, resolution = table
    runs = [experiment.with_learning_rate(t, lr) for lr in lrs for t in templates]
    summaries = {r.hash: summary_of(*o) for r, o in zip(runs, outcomes)}
    refine = Settings(TARGETS, resolution, max_rounds=0)

    plan = rounds.schedule(runs, Stored(summaries), refine, 3)   # a resumed sweep: everything stored
    with pytest.raises(StopIteration) as done:
        next(plan)
    (group,) = done.value.value.groups
    saved = group.as_dict(refine)                          # refine.json
    (line,) = runner.refine_lines([saved])                 # the console

    frame = report_runs(runs, summaries)
    cell = M.cells(M.steps_to_target_logged(frame, list(TARGETS)))
    for t in TARGETS:
        d = group.decisions[t]
        best = M.best_learning_rate(cell, t).iloc[0]
        br = refinement.bracket(cell, M.best_learning_rate(cell, t), t, resolution).iloc[0]
        assert saved["targets"][f"{t:g}"]["best_learning_rate"] == d.best
        if d.best is None:
            assert not best["reached"] and not br["resolved"]
            assert f"loss {t:g}: not reached" in line
            continue
        assert best["reached"] and best["learning_rate"] == d.best and best["steps"] == d.best_steps
        assert f"loss {t:g}: lr {d.best:.4g} → {d.best_steps:g} steps" in line
        assert bool(br["resolved"]) == d.resolved == saved["targets"][f"{t:g}"]["resolved"]
        assert bool(best["tuned"]) == (d.below is not None and d.above is not None)
        for side, nb in (("below", d.below), ("above", d.above)):
            assert (np.isnan(br[f"lr_{side}"]) if nb is None else
                    (br[f"lr_{side}"], br[f"steps_{side}"]) == (nb[0], nb[1]))
