"""The seed's pictures: parameter trajectories, steps_to_grad_tol, the ball on J(w).

The J(w) figure's iterates are checked against the histories MLflow holds (read with
MlflowClient, not through analysis), and ``steps_to_grad_tol`` against gradient descent
written in numpy (float64) on the same data.
"""

from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from analysis import load
from analysis import measures as M
from analysis import trajectories as T
from analysis.figures import seed as FS
from bpresearch import keys as R
from bpresearch.cli import main as cli_main
from bpresearch.core import train
from bpresearch.run import sweep
from bpresearch.spec import config, experiment, workload
from bpresearch.spec.landscape import loss_surface

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
ONE, TWO = EXPERIMENTS / "seed-neuron.toml", EXPERIMENTS / "seed-neuron-two-weights.toml"


def numpy_gd(X, y, lr, steps, tol, limit):
    """Full-batch gradient descent on ½·mean((Xw − y)²) from w = 0, in float64.

    Returns the iterates (steps + 1, d), the gradient norms at them, the first step with
    norm < tol (−1: never) and the divergence step (−1: none; loss > limit freezes the run).
    """
    X, y = X.astype(np.float64), y.astype(np.float64)
    w = np.zeros(X.shape[1])
    path, norms, div = [], [], -1
    for k in range(steps + 1):
        r = X @ w - y
        g = X.T @ r / len(y)
        path.append(w.copy())
        norms.append(np.linalg.norm(g))
        if div < 0 and 0.5 * np.mean(r ** 2) > limit:
            div = k
        if div < 0 and k < steps:
            w = w - lr * g
    norms = np.array(norms)
    ok = (norms < tol) & ((np.arange(steps + 1) <= div) | (div < 0))
    return np.array(path), norms, int(np.argmax(ok)) if ok.any() else -1, div


def run_experiment(path, overrides=()):
    exp = experiment.load(path, list(overrides))
    runs = next(iter(exp.groups().values()))
    cfg = runs[0].config
    res = sweep.run_group(cfg, [sweep.member_of(r.config) for r in runs], exp.dataset(cfg))
    return exp, runs, res


@pytest.mark.parametrize("path", [ONE, TWO])
def test_steps_to_grad_tol_and_trajectories_match_numpy_gradient_descent(path):
    exp, runs, res = run_experiment(path)
    ds = exp.dataset(runs[0].config)
    t = runs[0].config["train"]
    names = train.param_names(workload.build_model(runs[0].config, ds))
    assert names == (["w"] if ds.X_train.shape[1] == 1 else ["w[0]", "w[1]"])
    L0 = 0.5 * np.mean(ds.y_train.astype(np.float64) ** 2)
    checked = 0
    for i, run in enumerate(runs):
        lr = run.config["optimizer"]["learning_rate"]
        path_np, norms, first, div = numpy_gd(ds.X_train, ds.y_train, lr, t["steps"], t["grad_tol"],
                                              t["divergence_factor"] * max(L0, 1.0))
        assert int(res.arrays["diverged_step"][i]) == div
        got = np.stack([res.arrays[f"{train.TRAJECTORY}{n}"][i] for n in names], axis=1)
        end = div if div >= 0 else t["steps"]
        np.testing.assert_allclose(got[:end + 1], path_np[:end + 1], rtol=2e-4, atol=2e-5)
        if np.any(np.abs(norms[:end + 1] / t["grad_tol"] - 1) < 1e-3):
            continue  # float32 cannot decide a crossing this close to the tolerance
        assert int(res.arrays["steps_to_grad_tol"][i]) == first, lr
        checked += 1
    assert checked >= len(runs) - 1
    steps = res.arrays["steps_to_grad_tol"]
    assert (steps >= 0).any() and (steps == -1).any()  # some reached, some censored (too slow or diverged)


def test_minibatch_steps_to_grad_tol_uses_the_full_gradient_at_evaluated_steps():
    exp, runs, res = run_experiment(ONE, ["sweep.batch_size=[4]", "train.eval_every=5", "sweep.seeds=[3]",
                                          "sweep.learning_rate=[0.1, 0.3]"])
    ds = exp.dataset(runs[0].config)
    X, y = ds.X_train.astype(np.float64), ds.y_train.astype(np.float64)
    ev = res.eval_steps
    assert not res.arrays["diverged"].any()
    for i, run in enumerate(runs):
        w = res.arrays["trajectory/w"][i][ev]  # the logged path at the evaluated steps
        norms = np.abs(X[:, 0] @ (X[:, 0][:, None] * w[None, :] - y[:, None]) / len(y))
        below = norms < run.config["train"]["grad_tol"]
        assert int(res.arrays["steps_to_grad_tol"][i]) == (int(ev[np.argmax(below)]) if below.any() else -1)


def test_grad_tol_unset_leaves_the_config_and_its_hash_alone(tmp_path):
    exp = experiment.load(EXPERIMENTS / "seed-graph.toml")
    assert "grad_tol" not in exp.runs[0].config["train"] and "grad_tol" not in config.to_toml(exp)
    with_tol = experiment.load(EXPERIMENTS / "seed-graph.toml", ["train.grad_tol=0.001"])
    assert with_tol.runs[0].config["train"]["grad_tol"] == 0.001
    assert with_tol.runs[0].hash != exp.runs[0].hash
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[train]\ngrad_tol = -1\n')
    with pytest.raises(config.ExperimentError, match=r"bad.toml: \[train\] grad_tol: must be > 0"):
        experiment.load(bad)


def test_large_models_log_no_trajectory():
    exp = experiment.load(EXPERIMENTS / "neuron-random-vs-gd.toml")  # four weights
    ds = exp.dataset(exp.runs[0].config)
    assert len(train.param_names(workload.build_model(exp.runs[0].config, ds))) > train.TRACK_PARAMS_MAX
    _, _, res = run_experiment(EXPERIMENTS / "neuron-random-vs-gd.toml",
                               ["train.steps=3", "sweep.seeds=1"])
    assert not any(k.startswith(train.TRAJECTORY) for k in res.arrays)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seedpics")
    uri = f"sqlite:///{tmp}/mlflow.db"
    assert cli_main(["sweep", str(ONE), str(TWO), "--tracking-uri", uri]) == 0
    out = tmp / "reports"
    assert cli_main(["report", "--tracking-uri", uri, "--out", str(out)]) == 0  # the CLI hands in J(w)
    return uri, out


def _figure(uri, name):
    data = load.load_experiment(uri, name)
    names = T.param_names(data.runs)
    curves = load.load_curves(uri, data.runs["run_id"], R.CURVE_KEYS + T.param_keys(data.runs))
    target = M.targets_of(data.runs)[0]
    table = M.steps_to_targets(data.runs, curves, [target]).table
    v = M.verdicts(table, M.oscillation(curves)).merge(data.runs[["run_id", "diverged_step"]], on="run_id")
    picks = T.pick_runs(v, target)
    J = loss_surface(load.run_config(uri, picks[0].run_id))
    track = T.paths(curves, names)
    fig = FS.ball_on_curve(track, picks, J, names[0]) if len(names) == 1 else \
        FS.contour_paths(track, picks, J, names)
    return data, names, picks, J, fig


@pytest.mark.slow
@pytest.mark.parametrize("name", ["seed-neuron", "seed-neuron-two-weights"])
def test_ball_on_the_curve_draws_the_logged_iterates(swept, name):
    uri, _ = swept
    data, names, picks, J, fig = _figure(uri, name)
    client = MlflowClient(uri)
    runs = {r: {R.short_key(k): v for k, v in client.get_run(r).data.metrics.items()}   # summary/… → short names
            for r in data.runs["run_id"]}
    lr = dict(zip(data.runs["run_id"], data.runs["learning_rate"]))
    # The learning rates come from the sweep's results, read here straight from the summaries.
    reached = {r: m["steps_to_target"] for r, m in runs.items() if m["reached_target"] == 1}
    assert [p.role for p in picks] == [T.SLOW, T.FAST, T.WILD]
    assert picks[0].run_id == max(reached, key=lambda r: (reached[r], -lr[r]))
    assert picks[1].run_id == min(reached, key=lambda r: (reached[r], lr[r]))
    assert picks[2].run_id == min((r for r, m in runs.items() if m["diverged"] == 1), key=lr.get)
    lines = {ln.get_gid(): ln for ax in fig.axes for ln in ax.lines if ln.get_gid()}
    assert set(lines) == {p.run_id for p in picks}
    for p in picks:
        hist = {n: client.get_metric_history(p.run_id, R.param_metric(n)) for n in names}
        steps = [m.step for m in hist[names[0]]]
        logged = np.array([[m.value for m in sorted(hist[n], key=lambda m: m.step)] for n in names]).T
        assert sorted(steps) == list(range(len(steps)))  # every step, 0 … the last
        line = lines[p.run_id]
        drawn = np.column_stack([line.get_xdata()] if len(names) == 1 else [line.get_xdata(), line.get_ydata()])
        assert 2 <= len(drawn) <= len(logged)
        np.testing.assert_array_equal(drawn, logged[:len(drawn)])  # the logged iterates, in order
        if p.role != T.WILD:
            assert len(drawn) == len(logged)
        else:
            assert len(drawn) < len(logged)  # the diverging run leaves the plot
        # the ball sits on the curve: J at the logged w is the logged full training loss
        full = {m.step: m.value for m in client.get_metric_history(p.run_id, R.stored_key(R.FULL_TRAIN_LOSS))}
        k = np.arange(len(drawn))
        np.testing.assert_allclose(J(drawn), [full[s] for s in k], rtol=1e-4, atol=1e-7)
        if len(names) == 1:
            np.testing.assert_allclose(line.get_ydata(), J(drawn), rtol=1e-6)
    # the logged steps_to_grad_tol against numpy gradient descent on the same problem
    exp = experiment.load(ONE if name == "seed-neuron" else TWO)
    ds = exp.dataset(exp.runs[0].config)
    t = exp.runs[0].config["train"]
    L0 = 0.5 * np.mean(ds.y_train.astype(np.float64) ** 2)
    for r, m in runs.items():
        _, norms, first, div = numpy_gd(ds.X_train, ds.y_train, lr[r], t["steps"], t["grad_tol"],
                                        t["divergence_factor"] * max(L0, 1.0))
        assert m["reached_grad_tol"] == float(first >= 0)
        assert m.get("steps_to_grad_tol", -1) == first


@pytest.mark.slow
def test_neuron_reports_say_what_too_small_and_small_gradient_mean(swept):
    _, out = swept
    one = (out / "seed-neuron" / "report.md").read_text()
    for phrase in ["Too small takes very long: the smallest learning rate, η = 0.02, had not arrived at loss 0.0001 "
                   "within the 100-step budget", "the best, η = 0.535, took 3 steps",
                   "Gradient small enough (train.grad_tol = 0.01, docs/seed.md §3)",
                   "from the logged param/w histories: too small, η = 0.0346 (slowest to reach loss 0.0001: 90 steps); "
                   "well chosen, η = 0.535 (fastest to reach loss 0.0001: 3 steps); too large, η = 1.6 (diverged at "
                   "step 10)", "](ball_on_curve.png)", "Steps to |∇J| < 0.01 and to loss < 0.0001"]:
        assert phrase in one, phrase
    two = (out / "seed-neuron-two-weights" / "report.md").read_text()
    assert "A small gradient is not yet the minimum" in two and "contours of J(w[0], w[1])" in two
