"""``learning_rate = "auto"`` and ``batch_size = "auto"``: a first grid placed by the diagnostics.

Gradient descent on a quadratic whose Hessian has top eigenvalue λ_max is stable only
while η < c(β)/λ_max, with c = 2 for plain GD and 2(1 + β) for heavy-ball momentum
(``core.optim``, ``core.diagnostics.stability_lr``). ``"auto"`` measures λ_max of the full
training loss at initialisation (Lanczos on Hessian-vector products, at every seed's
initial parameters, on the first ``MAX_EXAMPLES`` training examples) and places the grid
just below the smallest bound over seeds and swept configurations: ``POINTS`` learning
rates ``SPACING`` apart, the largest ``1/√SPACING`` of the bound. A refining sweep then
tunes it per batch size (``run.refine`` extends past either edge).

On networks the bound at initialisation is a place to start, not a ceiling: full-batch GD
often trains past it at the edge of stability (Cohen et al. 2021), which the refinement
finds by extending upwards. Optimizers without such a bound (Adam, random search, optax
code of one's own) have nowhere to place the grid: ``"auto"`` is refused for them.

The placed learning rates are rounded to 3 significant digits, so a repeated measurement
that differs in its last float bits names the same grid, hashes and store runs. They are
concrete before any config is hashed: a run's hash is that of the same rates written out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from bpresearch.core import diagnostics, optim
from bpresearch.core.data import Dataset
from bpresearch.spec import usercode, workload

AUTO = "auto"
POINTS = 8            # learning rates in the placed grid: 2^7 = 128× from the top to the bottom
SPACING = 2.0         # ratio of neighbours: as the refinement's extension steps
MAX_EXAMPLES = 4096   # the batch λ_max is measured on: enough for the full loss's curvature, bounded cost
ITERS = 20            # Lanczos steps (core.diagnostics.sharpness: < 0.1% on small problems)
DIGITS = 3            # significant digits of the placed learning rates


@dataclass(frozen=True)
class Placement:
    """Where ``"auto"`` placed the grid, and what it measured (logged as the sweep's ``auto.json``)."""
    sharpness: float                 # λ_max at initialisation: the largest over seeds and configurations
    factor: float                    # c(β) of that configuration's optimizer
    bound: float                     # c/λ_max, the smallest over seeds and configurations
    learning_rates: tuple[float, ...]
    sharpness_per_seed: tuple[float, ...]   # of the configuration that set the bound
    seeds: int
    examples: int                    # examples of the batch λ_max was measured on
    iters: int
    optimizer: str
    momentum: float

    def record(self) -> dict:
        """The placement as plain data (JSON): what the report reads."""
        d = asdict(self)
        return {**d, "learning_rates": list(self.learning_rates), "sharpness_per_seed": list(self.sharpness_per_seed),
                "points": POINTS, "spacing": SPACING}


def round_sig(x: float, digits: int = DIGITS) -> float:
    return float(f"{x:.{digits}g}")


def grid_below(bound: float, points: int = POINTS, spacing: float = SPACING) -> list[float]:
    """``points`` learning rates ``spacing`` apart, ascending, the largest bound/√spacing (3 digits).

    Args:
        bound: the stability bound c/λ_max (> 0, finite).
    Returns:
        The grid, every value below ``bound``.
    """
    top = bound / spacing ** 0.5
    return [round_sig(top / spacing ** k) for k in reversed(range(points))]


def batch_sizes(n_train: int) -> list:
    """Powers of two from 1 below ``n_train``, then ``"full"``: the batch sizes of ``batch_size = "auto"``."""
    out, b = [], 1
    while b < n_train:
        out.append(b)
        b *= 2
    return out + ["full"]


@partial(jax.jit, static_argnames=("model", "loss_fn", "iters"))
def _sharpness_at_init(model, loss_fn, X, y, seeds, iters):
    """λ_max of the loss on (X, y) at each seed's initial parameters, drawn as ``core.train.start`` draws them."""
    def one(seed):
        k_init, _ = jax.random.split(jax.random.key(seed))
        params = model.init(k_init)
        return diagnostics.sharpness(lambda p: loss_fn(model.apply(p, X), y), params,
                                     jax.random.fold_in(k_init, 1), iters)
    return jax.lax.map(one, seeds)


def sharpness_at_init(config: dict, dataset: Dataset, seeds, iters: int = ITERS) -> np.ndarray:
    """λ_max of the training loss at initialisation for each seed (first ``MAX_EXAMPLES`` examples)."""
    data = workload.to_device(config, dataset)
    n = min(MAX_EXAMPLES, data.X_train.shape[0])
    lam = _sharpness_at_init(workload.build_model(config, dataset), workload.loss_fn(config),
                             data.X_train[:n], data.y_train[:n], jnp.asarray(list(seeds), jnp.int32), iters)
    return np.asarray(lam, float)


def no_bound(kind: str) -> str | None:
    """Why ``kind`` has no stability bound to place a grid under (None when it has one)."""
    if kind == "random_search":
        return "random_search has no learning rate to place"
    if usercode.is_user(kind) or optim.optimizer(kind).stable_numerator is None:
        return (f"{kind} has no stability bound c/λ_max to place the grid under (only sgd and momentum do); "
                "give the learning rates as a list or a range")
    return None


def stability_bound(sharpness: float, kind: str, momentum: float = 0.0) -> tuple[float, float]:
    """(c(β), c(β)/λ_max) of optimizer ``kind``: 2/λ_max for sgd, 2(1 + β)/λ_max for momentum (``no_bound`` first)."""
    factor = float(optim.optimizer(kind).stable_numerator(momentum))
    return factor, (factor / sharpness if sharpness > 0 else np.inf)


def place(configs: list[tuple[dict, Dataset]], seeds) -> Placement:
    """The grid under the smallest stability bound over ``configs`` (each at every seed).

    Args:
        configs: (resolved config, its data) for each distinct combination of the swept keys
            other than learning rate, batch size and seed; their optimizers have a bound
            (``no_bound``).
        seeds: the seeds whose initial parameters are measured.
    Returns:
        The ``Placement``.
    """
    curv: dict[str, np.ndarray] = {}   # the same model, loss and data at the same seeds: measured once
    best = None
    for c, ds in configs:
        key = repr((c["data"], c["model"], c["loss"]))
        if key not in curv:
            curv[key] = sharpness_at_init(c, ds, seeds)
        lam = curv[key]
        o = c["optimizer"]
        momentum = float(o.get("momentum") or 0.0)
        factor, bound = stability_bound(float(np.max(lam)), o["kind"], momentum)
        if best is None or bound < best[0]:
            n = min(MAX_EXAMPLES, ds.X_train.shape[0])
            best = (bound, float(np.max(lam)), factor, lam, n, o["kind"], momentum)
    bound, lam_max, factor, lam, n, kind, momentum = best
    if not np.isfinite(bound) or bound <= 0:
        raise ValueError(f"the sharpness at initialisation is {lam_max:g}: no positive curvature to place "
                         "a grid under; give the learning rates as a list or a range")
    return Placement(lam_max, factor, bound, tuple(grid_below(bound)), tuple(float(x) for x in lam),
                     len(lam), n, ITERS, kind, momentum)
