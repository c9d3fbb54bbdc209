"""A model and loss of one's own train like the built-ins: vmapped groups equal their runs
alone, the sharpness goes through the user's ``apply``, an optax optimizer equals optax."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from bpresearch.core import diagnostics, optim
from bpresearch.run import sweep
from bpresearch.spec import experiment, workload

MODEL = '''
import jax, jax.numpy as jnp

def tiny(n_out, width=3):
    def init(key, x):
        k1, k2 = jax.random.split(key)
        return {"hidden": jax.random.normal(k1, (x.shape[1], width)), "out": jax.random.normal(k2, (width, n_out))}
    def apply(p, x):
        return jnp.tanh(x @ p["hidden"]) @ p["out"]
    return init, apply
'''
LOSS = '''
import jax.numpy as jnp

def quartic(out, y):
    return 0.5 * (out - y) ** 2 + 0.1 * (out - y) ** 4
'''
TOML = '''name = "tiny"
[data]
source = "teacher"
n_train = 12
n_features = 3
noise = 0.1
[model]
kind = "models.py:tiny"
width = 3
[loss]
kind = "losses.py:quartic"
[optimizer]
kind = "{optimizer}"
[train]
steps = 10
eval_every = 2
[diagnostics]
sharpness = true
noise_scale = true
every = 5
lanczos_iters = 16
[sweep]
learning_rate = [0.03, 0.1, 0.3]
batch_size = [{batch}]
seeds = 2
'''


def load(tmp_path, optimizer="sgd", batch=4):
    (tmp_path / "models.py").write_text(MODEL)
    (tmp_path / "losses.py").write_text(LOSS)
    path = tmp_path / "tiny.toml"
    path.write_text(TOML.format(optimizer=optimizer, batch=batch))
    return experiment.load(path)


@pytest.mark.parametrize("optimizer", ["sgd", "optax:adamw"])
def test_a_vmapped_group_of_a_user_model_equals_each_run_alone(tmp_path, optimizer):
    exp = load(tmp_path, optimizer)
    (runs,) = exp.groups().values()
    cfg, ds = runs[0].config, exp.dataset(runs[0].config)
    members = [sweep.member_of(r.config) for r in runs]
    group = sweep.run_group(cfg, members, ds)
    assert len({float(group.arrays["final_full_train_loss"][i]) for i in range(len(runs))}) == len(runs)
    one = sweep.compile_group(cfg, 1, ds)   # one program for a group of one, reused
    for i, m in enumerate(members):
        alone = sweep.run_group(cfg, [m], ds, compiled=one)
        for k in ("train_loss", "full_train_loss", "sharpness", "noise_scale"):
            np.testing.assert_allclose(group.arrays[k][i], alone.arrays[k][0], rtol=2e-5, atol=1e-6, err_msg=k)


def test_sharpness_of_a_user_model_is_the_dense_hessians_top_eigenvalue(tmp_path):
    exp = load(tmp_path, batch='"full"')
    run = exp.runs[0]
    cfg, ds = run.config, exp.dataset(run.config)
    result = sweep.run_group(cfg, [sweep.member_of(cfg)], ds)
    model, loss = workload.build_model(cfg, ds), workload.loss_fn(cfg)
    data = workload.to_device(cfg, ds)
    k_init, _ = jax.random.split(jax.random.key(cfg["train"]["seed"]))   # as core.train draws the init
    params = model.init(k_init)
    flat, unravel = ravel_pytree(params)
    f = lambda x: loss(model.apply(unravel(x), data.X_train), data.y_train)
    eigs = np.linalg.eigvalsh(np.asarray(jax.hessian(f)(flat), np.float64))
    assert len(flat) == 3 * 3 + 3   # the user's pytree, whatever its structure
    assert float(result.arrays["sharpness"][0][0]) == pytest.approx(eigs.max(), rel=1e-3)


def test_an_optax_optimizer_with_its_learning_rate_injected_equals_optax():
    params = {"w": jnp.array([1.0, -2.0, 0.5])}
    f = lambda p: jnp.sum(jnp.cos(p["w"]) * p["w"] ** 2)
    method = optim.optax_method(optax.adamw, {"weight_decay": 0.1, "b1": 0.8}, jnp.float32(0.05))
    tx = optax.adamw(0.05, weight_decay=0.1, b1=0.8)
    p1, s1 = params, method.init(params, f)
    p2, s2 = params, tx.init(params)
    for _ in range(5):
        p1, s1, _, _ = method.step(p1, s1, f, None)
        updates, s2 = tx.update(jax.grad(f)(p2), s2, p2)
        p2 = optax.apply_updates(p2, updates)
    np.testing.assert_allclose(p1["w"], p2["w"], rtol=1e-5)


def test_an_optax_optimizer_has_no_stability_constant():
    """Nothing guesses a stable step for an optimizer whose constant is not known."""
    assert np.isnan(diagnostics.stability_lr(4.0, "optax:adamw"))
    assert np.isnan(diagnostics.stability_lr(jnp.ones(3), "optax:sgd")).all()
