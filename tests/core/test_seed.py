"""The seed's worked example: docs/seed.md's numbers, the text report, and agreement with jax."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpresearch.core.seed import (
    format_seed_example,
    seed_example,
    seed_loss_hessian,
    symmetric_eigenvalues,
)

# --- the seed's worked example (docs/seed.md §4-5) ---------------------------------------


def test_seed_forward_backward_matches_seed_md():
    r = seed_example()
    nodes = r["nodes"]
    assert nodes["q"]["value"] == pytest.approx(3.0, abs=1e-12)
    assert nodes["f"]["value"] == pytest.approx(-12.0, abs=1e-12)
    grads = {k: nodes[k]["grad"] for k in "xyzqf"}
    assert grads == pytest.approx({"x": -4.0, "y": -4.0, "z": 3.0, "q": -4.0, "f": 1.0}, abs=1e-12)
    assert {k: nodes[k]["value"] for k in "xyz"} == {"x": -2.0, "y": 5.0, "z": -4.0}


def test_seed_loss_and_update_match_seed_md():
    r = seed_example()
    assert r["loss"] == pytest.approx(2.0, abs=1e-12)
    assert r["loss_grads"] == pytest.approx({"x": 8.0, "y": 8.0, "z": -6.0}, abs=1e-12)
    assert r["updated"] == pytest.approx({"x": -2.8, "y": 4.2, "z": -3.4}, abs=1e-12)
    assert (r["lr"], r["target"]) == (0.1, -10.0)
    # history[1] is the same single update, seen from the loop
    assert {k: r["history"][1][k] for k in "xyz"} == pytest.approx(r["updated"], abs=1e-12)


def test_seed_result_is_plain_floats():
    r = seed_example(steps=3)
    assert set(r) == {"nodes", "loss", "loss_grads", "updated", "lr", "target", "history"}
    assert [h["step"] for h in r["history"]] == [0, 1, 2, 3]
    floats = [r["loss"], r["lr"], r["target"], *r["loss_grads"].values(), *r["updated"].values()]
    floats += [v for n in r["nodes"].values() for v in n.values()]
    floats += [h[k] for h in r["history"] for k in ("x", "y", "z", "f", "loss")]
    assert all(type(v) is float for v in floats)


def test_seed_lr_0_1_jumps_instead_of_converging():
    losses = [h["loss"] for h in seed_example(lr=0.1, steps=10)["history"]]
    assert len(losses) == 11
    assert losses[0] == pytest.approx(2.0)
    assert losses[1] == pytest.approx(13.7, abs=0.05)  # docs/seed.md §5: f = −4.76, loss 13.7
    assert losses[2] == pytest.approx(55.3, abs=0.05)
    assert losses[1] > losses[0] and losses[2] > losses[1]
    assert sum(b > a for a, b in zip(losses, losses[1:])) >= 3  # it keeps jumping


def test_seed_small_lr_decreases_monotonically():
    losses = [h["loss"] for h in seed_example(lr=0.01, steps=10)["history"]]
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert seed_example(lr=0.01, steps=3000)["history"][-1]["loss"] < 1e-12


def test_seed_divergence_stops_history_without_raising():
    history = seed_example(lr=1.0, steps=50)["history"]
    assert len(history) < 51
    assert history[-1]["loss"] == math.inf
    assert all(math.isfinite(h["loss"]) for h in history[:-1])


def test_seed_steps_zero_and_negative():
    r = seed_example(steps=0)
    assert len(r["history"]) == 1 and r["history"][0]["loss"] == pytest.approx(2.0)
    assert r["updated"] == pytest.approx({"x": -2.8, "y": 4.2, "z": -3.4})
    with pytest.raises(ValueError):
        seed_example(steps=-1)


def test_format_mentions_nodes_and_nonconvergence():
    text = format_seed_example(seed_example(lr=0.1, steps=10))
    for node, expression in [("x", "input"), ("q", "x+y"), ("f", "q*z")]:
        assert any(line.split()[:2] == [node, expression] for line in text.splitlines())
    assert "13.7" in text and "55.3" in text
    last = text.splitlines()[-1]
    assert "0.1" in last and "NOT converge" in last
    assert "43.4" in last  # the Hessian's top eigenvalue, computed not hard-coded


def test_format_small_lr_and_single_step():
    assert format_seed_example(seed_example(lr=0.01, steps=3000)).splitlines()[-1].startswith("η = 0.01 converged")
    assert "NOT" in format_seed_example(seed_example(lr=0.01, steps=10)).splitlines()[-1]
    one = format_seed_example(seed_example())
    assert "-2.8" in one and "4.2" in one and "-3.4" in one and "converge" not in one


def test_format_overflow():
    last = format_seed_example(seed_example(lr=1.0, steps=50)).splitlines()[-1]
    assert "overflowed" in last and "NOT converge" in last


# --- against JAX ----------------------------------------------------------------------


def _seed_f(x, y, z):
    return (x + y) * z


def _seed_loss(x, y, z, target=-10.0):
    return 0.5 * (_seed_f(x, y, z) - target) ** 2


def test_seed_matches_jax_grad():
    r = seed_example()
    args = (-2.0, 5.0, -4.0)
    assert jax.grad(_seed_f, argnums=(0, 1, 2))(*args) == pytest.approx(
        tuple(r["nodes"][k]["grad"] for k in "xyz"), rel=1e-6
    )
    assert jax.grad(_seed_loss, argnums=(0, 1, 2))(*args) == pytest.approx(
        tuple(r["loss_grads"][k] for k in "xyz"), rel=1e-6
    )


@pytest.mark.parametrize("point", [(-2.0, 5.0, -4.0, -10.0), (0.3, -1.2, 2.5, 1.0), (1.0, 1.0, 0.0, 3.0)])
def test_seed_hessian_matches_jax(point):
    *xyz, target = point
    H = np.array(seed_loss_hessian(*xyz, target))
    H_jax = np.array(jax.hessian(lambda v: _seed_loss(v[0], v[1], v[2], target))(jnp.array(xyz)))
    np.testing.assert_allclose(H, H_jax, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(symmetric_eigenvalues(H.tolist()), np.linalg.eigvalsh(H)[::-1], rtol=1e-9, atol=1e-9)


def test_seed_hessian_top_eigenvalue_is_seed_md_value():
    top = symmetric_eigenvalues(seed_loss_hessian(-2.0, 5.0, -4.0, -10.0))[0]
    assert top == pytest.approx(43.4, abs=0.05)
    assert 2 / top == pytest.approx(0.046, abs=5e-4)


def test_symmetric_eigenvalues_diagonal_and_repeated():
    assert symmetric_eigenvalues([[1.0, 0, 0], [0, 3.0, 0], [0, 0, 2.0]]) == [3.0, 2.0, 1.0]
    ones = [[1.0] * 3 for _ in range(3)]  # eigenvalues 3, 0, 0
    assert symmetric_eigenvalues(ones) == pytest.approx([3.0, 0.0, 0.0], abs=1e-12)
