"""The tools people use instead: Ray Tune and Optuna on the bench's grid, each with its MLflow integration.

Each peer is written the way its documentation shows, and trains with the careful user's
compiled function (``naive.make_scan``: one jitted ``lax.scan`` per run, the learning rate
and seed as arguments, one compilation per batch size and process), so that what is
compared is the tools, not a worse training loop. Each logs the same thing into its own
fresh sqlite store: the params ``learning_rate``, ``batch_size`` and ``seed`` and the
full-training-loss curve at every evaluation (``eval_every``), which is what the answer is
read from (``bench.answer``).

- ``ray_tune``: ``tune.Tuner`` over ``tune.grid_search`` of the three, default resources
  (one CPU per trial), ``MLflowLoggerCallback``; the trainable ``tune.report``s each
  evaluation (the callback logs every numeric key of every report, one ``log_metric`` each,
  from the driver).
- ``optuna``: ``GridSampler`` over the same grid, ``optuna_integration.MLflowCallback``
  and its ``track_in_mlflow``; the objective logs its curve with one ``log_batch`` (the
  careful way) and returns the final loss.
- ``optuna_per_point``: the same, the curve logged with ``mlflow.log_metric`` per
  evaluation, as the documentation's examples do.

The packages are the ``bench`` extra (``pip install -e '.[bench]'``); ``missing`` says which is absent.
"""

from __future__ import annotations

import importlib.util
import logging
import statistics
import sys
import tempfile
import time
import warnings
from typing import Callable

import jax
import numpy as np

from bpresearch import keys as R
from bpresearch.core import train
from bpresearch.spec import experiment as expmod
from bpresearch.spec import workload

from . import answer, measure, naive

PEERS = ("ray_tune", "optuna", "optuna_per_point")
EXTRA = ("optuna", "optuna_integration", "ray.tune")   # the bench extra's modules


def missing() -> str | None:
    """The first module of the ``bench`` extra that cannot be imported here (None: all can)."""
    for name in EXTRA:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ModuleNotFoundError:
            return name
    return None


def space(exp: expmod.Experiment) -> dict[str, list]:
    """The grid of ``exp`` as a search space: its learning rates, batch sizes and seeds."""
    cs = [r.config for r in exp.runs]
    return {R.LEARNING_RATE: sorted({c["optimizer"]["learning_rate"] for c in cs}),
            R.BATCH_SIZE: sorted({c["train"]["batch_size"] for c in cs}),
            R.SEED: sorted({c["train"]["seed"] for c in cs})}


def templates(exp: expmod.Experiment) -> dict[int, dict]:
    """One resolved config per batch size (what the compiled function is built from)."""
    out = {}
    for r in exp.runs:
        out.setdefault(r.config["train"]["batch_size"], r.config)
    return out


class Trainer:
    """The careful user's training, one compiled program per batch size (made on first use)."""

    def __init__(self, configs: dict[int, dict], datasets: dict[int, object]):
        self.configs, self.datasets = configs, datasets
        self.programs: dict[int, tuple[Callable, object]] = {}

    def curve(self, batch_size: int, lr: float, seed: int) -> tuple[list[int], list[float]]:
        """One run: its evaluated steps and full training losses there (the last one the final loss)."""
        c = self.configs[batch_size]
        if batch_size not in self.programs:
            ds = self.datasets[batch_size]
            self.programs[batch_size] = (naive.make_scan(c, ds), workload.to_device(c, ds))
        run, d = self.programs[batch_size]
        f, _, _, _, final, _ = jax.device_get(run(np.int32(seed), np.float32(lr), d.X_train, d.y_train,
                                                  d.X_test, d.y_test))
        t = c["train"]
        return ([int(s) for s in train.eval_steps(t["steps"], min(t["eval_every"], t["steps"]))],
                [*map(float, f), float(final)])


def trainer(exp: expmod.Experiment) -> Trainer:
    cs = templates(exp)
    return Trainer(cs, {bs: exp.dataset(c) for bs, c in cs.items()})


# ---------------------------------------------------------------- Optuna
def curve_logger(per_point: bool) -> Callable[[list[int], list[float]], None]:
    """Logs a curve into the active MLflow run: one ``log_batch`` (the careful way), or ``log_metric`` per point."""
    import mlflow
    from mlflow.entities import Metric

    def log(steps, values):
        if per_point:
            for s, v in zip(steps, values):
                mlflow.log_metric(R.FULL_TRAIN_LOSS, v, step=s)
        else:
            now = int(time.time() * 1000)
            mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id,
                                            metrics=[Metric(R.FULL_TRAIN_LOSS, v, now, s) for s, v in zip(steps, values)])
    return log


def optuna_study(uri: str, name: str, sampler, objective: Callable, n_trials: int | None = None, callbacks=()):
    """``study.optimize(objective)`` with ``MLflowCallback`` into ``uri`` and the objective
    wrapped in its ``track_in_mlflow`` (each trial one MLflow run of the experiment ``name``)."""
    import optuna
    from optuna_integration.mlflow import MLflowCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():   # MLflowCallback is deprecated since 4.9; track_in_mlflow is experimental
        warnings.simplefilter("ignore")
        mlflc = MLflowCallback(tracking_uri=uri, metric_name="value")
        study = optuna.create_study(study_name=name, sampler=sampler)
        study.optimize(mlflc.track_in_mlflow()(objective), n_trials=n_trials, callbacks=[mlflc, *callbacks])
    return study


def optuna_grid(uri: str, exp: expmod.Experiment, per_point: bool) -> None:
    """Optuna's ``GridSampler`` over ``exp``'s grid: one trial per configuration, its final loss the value."""
    import optuna

    t, grid, log = trainer(exp), space(exp), curve_logger(per_point)

    def objective(trial):
        steps, values = t.curve(*(trial.suggest_categorical(k, grid[k])
                                  for k in (R.BATCH_SIZE, R.LEARNING_RATE, R.SEED)))
        log(steps, values)
        return values[-1]

    optuna_study(uri, exp.name, optuna.samplers.GridSampler(grid, seed=0), objective)


# ---------------------------------------------------------------- Ray Tune
_WORKER: dict[str, Trainer] = {}   # a worker process's compiled programs, kept across its trials


def ray_trainable(config: dict, configs: dict, datasets: dict):
    """One trial: train, then ``tune.report`` each evaluation (its loss and training step)."""
    from ray import tune

    t = _WORKER.setdefault("trainer", Trainer(configs, datasets))
    steps, values = t.curve(config[R.BATCH_SIZE], config[R.LEARNING_RATE], config[R.SEED])
    for s, v in zip(steps, values):
        tune.report({R.FULL_TRAIN_LOSS: v, answer.STEP: s})


def start_ray(ray, tries: int = 3):
    """A local instance on loopback, quiet, without the dashboard (as bpresearch's Ray executor starts
    one). On a loaded machine its raylet may miss Ray's fixed 30 s to register: tried again."""
    for i in range(tries):
        try:
            ray.init(include_dashboard=False, log_to_driver=False, logging_level="ERROR", _node_ip_address="127.0.0.1")
            return
        except Exception as e:   # Ray raises a bare Exception for it
            ray.shutdown()
            if "timed out during startup" not in str(e) or i == tries - 1:
                raise
            _log(f"Ray did not start ({e}); trying again")


def ray_grid(uri: str, exp: expmod.Experiment) -> None:
    """Ray Tune's ``grid_search`` over ``exp``'s grid with ``MLflowLoggerCallback``, default resources."""
    import ray
    from ray import tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    t = trainer(exp)
    grid = {k: tune.grid_search(v) for k, v in space(exp).items()}
    owns = not ray.is_initialized()
    if owns:
        start_ray(ray)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
            tuner = tune.Tuner(
                tune.with_parameters(ray_trainable, configs=t.configs, datasets=t.datasets),
                param_space=grid,
                run_config=tune.RunConfig(storage_path=tmp, verbose=0, name=exp.name,
                                          callbacks=[MLflowLoggerCallback(tracking_uri=uri,
                                                                          experiment_name=exp.name)]))
            results = tuner.fit()
            if results.errors:
                raise RuntimeError(f"Ray Tune: {len(results.errors)} trial(s) failed: {results.errors[0]}")
    finally:
        if owns:
            ray.shutdown()


# ---------------------------------------------------------------- measured
RUNNERS = {"ray_tune": ray_grid,
           "optuna": lambda uri, exp: optuna_grid(uri, exp, per_point=False),
           "optuna_per_point": lambda uri, exp: optuna_grid(uri, exp, per_point=True)}


def measure_peer(name: str, exp: expmod.Experiment, targets) -> dict:
    """One peer on ``exp``'s grid into a fresh store: wall seconds, configurations, points, its answer."""
    for lib in ("alembic", "mlflow", "optuna", "ray"):
        logging.getLogger(lib).setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        uri = measure._store(tmp)
        t0 = time.perf_counter()
        RUNNERS[name](uri, exp)
        wall = time.perf_counter() - t0
        runs = answer.curves(uri, exp.name)
        return {"wall_s": wall, "configs": len(runs), "points": answer.points(uri),
                "answer": answer.best(runs, targets)}


TARGETS = (0.5, 0.2, 0.1)   # the answer's targets: digits-mlp's (experiments/digits-mlp.toml)


def _log(msg: str):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def section(overrides: list[str], repeats: int, which=PEERS) -> dict:
    """bench.json's ``peers``: the harness and each peer on the grid, interleaved, ``repeats`` times.

    For each peer: median ``wall_s`` (and its samples), ``configs``, ``points``, ``same_answer``
    (its best learning rate and steps in every cell of ``TARGETS`` equal the harness's) and
    ``over_harness`` (its median ÷ the harness's, measured in the same repeats). ``which``: the peers to run.
    """
    exp = expmod.load(measure.GRID, overrides)
    samples: dict[str, list[dict]] = {m: [] for m in ("harness", *which)}
    order = list(samples)
    for rep in range(repeats):
        for m in order[rep % len(order):] + order[:rep % len(order)]:
            _log(f"peers, repeat {rep + 1}/{repeats}: {m} on {len(exp.runs)} configurations …")
            samples[m].append(harness_on_grid(exp, overrides) if m == "harness" else measure_peer(m, exp, TARGETS))
            _log(f"  {m}: {samples[m][-1]['wall_s']:.1f}s, {samples[m][-1]['points']:,} points")
    h = samples["harness"]
    reference = h[0]["answer"]
    out = {"targets": list(TARGETS), "configurations": len(exp.runs), "overrides": overrides,
           "harness_wall_s": statistics.median(s["wall_s"] for s in h), "harness_samples_s": [s["wall_s"] for s in h],
           "harness_points": h[0]["points"], "harness_answer": reference}
    for m in which:
        ss = samples[m]
        wall = statistics.median(s["wall_s"] for s in ss)
        same = all(answer.same(s["answer"], reference) for s in ss)
        out[m] = {"wall_s": wall, "samples_s": [s["wall_s"] for s in ss], "configs": ss[0]["configs"],
                  "points": ss[0]["points"], "same_answer": same, "harness_wall_s": out["harness_wall_s"],
                  "over_harness": wall / out["harness_wall_s"], **({} if same else {"answer": ss[0]["answer"]})}
    return out


def harness_on_grid(exp: expmod.Experiment, overrides: list[str]) -> dict:
    """``bpresearch sweep`` on the grid into a fresh store: wall seconds, points, its answer."""
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as tmp:
        h = answer.harness(tmp, measure.GRID, overrides)
        runs = answer.curves(h["uri"], exp.name)
        return {"wall_s": h["wall_s"], "configs": len(runs), "points": answer.points(h["uri"]),
                "answer": answer.best(runs, TARGETS)}
