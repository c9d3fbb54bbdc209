"""``learning_rate = "auto"`` and ``batch_size = "auto"``: the grid placed under the stability bound.

Least squares on a linear neuron has the constant Hessian XᵀX/N, so its λ_max, and the
bound c(β)/λ_max the grid is placed under, are known in closed form.
"""

import numpy as np
import pytest

from bpresearch.spec import auto
from bpresearch.spec import experiment as expmod
from bpresearch.spec.config import ExperimentError

SCALES = np.array([2.0, 1.0, 0.5])   # column scales: XᵀX/N = diag(4, 1, 0.25), so λ_max = 4


def write(tmp_path, sweep: str, optimizer: str = 'kind = "sgd"', n: int = 100):
    """An experiment on X with orthogonal columns scaled by ``SCALES`` (N = ``n``)."""
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(n, 3)))
    X = q * np.sqrt(n) * SCALES            # (n, 3), XᵀX/N = diag(SCALES²)
    np.savez(tmp_path / "quad.npz", X=X, y=X @ np.array([1.0, -1.0, 0.5]))
    path = tmp_path / "quad.toml"
    path.write_text(f"""name = "quad"
[data]
source = "file"
path = "quad.npz"
[model]
kind = "neuron"
activation = "identity"
bias = false
[loss]
kind = "half_mse"
[optimizer]
{optimizer}
[train]
steps = 10
targets = [0.01]
[sweep]
{sweep}
""")
    return path


def test_the_grid_lies_below_the_closed_form_bound(tmp_path):
    exp = expmod.load(write(tmp_path, 'learning_rate = "auto"\nseeds = 2'))
    p = exp.placement
    assert p.sharpness == pytest.approx(4.0, rel=1e-4)
    assert p.bound == pytest.approx(0.5, rel=1e-4) and p.factor == 2.0
    # the top point bound/√2, then ×½ each: 3 significant digits
    assert p.learning_rates == (0.00276, 0.00552, 0.011, 0.0221, 0.0442, 0.0884, 0.177, 0.354)
    assert exp.axes["optimizer.learning_rate"] == list(p.learning_rates)
    assert max(p.learning_rates) < p.bound
    assert exp.refine is not None and exp.refine.targets == (0.01,)   # "auto" places, then refines
    # hashed as the same rates written out: a resolved run is an ordinary run
    written = expmod.load(write(tmp_path, f"learning_rate = {list(p.learning_rates)}\nseeds = 2"))
    assert [r.hash for r in written.runs] == [r.hash for r in exp.runs]


def test_heavy_ball_momentum_widens_the_bound_by_one_plus_beta():
    assert auto.stability_bound(4.0, "sgd") == (2.0, 0.5)
    assert auto.stability_bound(4.0, "momentum", 0.5) == (3.0, 0.75)
    assert auto.no_bound("momentum") is None and "no stability bound" in auto.no_bound("adam")


def test_an_optimizer_without_a_bound_is_refused_in_one_line(tmp_path):
    with pytest.raises(ExperimentError, match=r'quad.toml: \[sweep\] learning_rate: "auto": adam has no stability bound'):
        expmod.load(write(tmp_path, 'learning_rate = "auto"', 'kind = "adam"'))


def test_batch_size_auto_takes_powers_of_two_up_to_the_full_batch(tmp_path):
    assert auto.batch_sizes(100) == [1, 2, 4, 8, 16, 32, 64, "full"]
    assert auto.batch_sizes(64) == [1, 2, 4, 8, 16, 32, "full"]
    assert auto.batch_sizes(1) == ["full"]
    exp = expmod.load(write(tmp_path, 'learning_rate = 0.1\nbatch_size = "auto"', n=100))
    assert exp.axes["train.batch_size"] == [1, 2, 4, 8, 16, 32, 64, "full"]
    assert sorted({r.config["train"]["batch_size"] for r in exp.runs}) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert exp.placement is None


def test_the_report_states_the_placement_the_sweep_logged(tmp_path):
    """Sweep → store → report: the placement reaches ``summary.json`` through the store, read
    only from the sweep whose ``placement`` param says so."""
    import json

    from bpresearch.cli import main

    path, uri = write(tmp_path, 'learning_rate = "auto"\nbatch_size = ["full"]\nseeds = 1'), f"sqlite:///{tmp_path}/s.db"
    assert main(["sweep", str(path), "--tracking-uri", uri]) == 0
    assert main(["report", "quad", "--tracking-uri", uri, "--out", str(tmp_path / "r")]) == 0
    placed = json.loads((tmp_path / "r" / "quad" / "summary.json").read_text())["variants"][0]["placement"]
    assert placed["sharpness"] == pytest.approx(4.0, rel=1e-4) and placed["bound"] == pytest.approx(0.5, rel=1e-4)
    assert "The refinement then tuned it per batch size." in (tmp_path / "r" / "quad" / "details.html").read_text()
