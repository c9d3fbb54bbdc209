"""Time to the answer: how long each way takes to find the best learning rate per batch size.

A fixed grid measures time per configuration; a researcher wants the answer. The question
(bench/question.toml): the best learning rate of the digits MLP at batch sizes 32 and 256,
to a resolution of 2^(1/4) ≈ 1.19, for full training loss 0.1, over 0.025 … 6.4. Answered by

- ``dense_grid``: the harness on a uniform log grid at that spacing (33 learning rates):
  the reference every other answer is judged against;
- ``bpresearch_refine``: the harness's refining sweep, from a coarse grid ×4 apart that
  brackets the optimum loosely (the file as it is);
- ``bpresearch_auto``: the same refinement from the grid ``learning_rate = "auto"`` places
  below the stability bound measured at initialisation (where this checkout reads it);
- ``optuna_tpe``: Optuna's TPE sampler per batch size, the learning rate on a log scale over
  the same range, each trial every seed (its value the median steps to the target), with
  ``MLflowCallback`` and each run's curve logged by ``log_batch`` (the careful peer). It is
  stopped as soon as its best trial is as good as the reference (below), which no user
  could know: a generous budget. Each repeat gives it another sampler seed.

Each way writes into its own fresh store. ``resolved``: at every batch size its best learning
rate lies within the resolution of the reference's and needs no more steps (``answer.near``). Another way of the harness to the
same answer is one more entry of ``HARNESS_WAYS``: the file's ``--set`` overrides.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from bpresearch.spec import experiment as expmod

from . import answer, measure, peers

QUESTION = measure.ROOT / "bench" / "question.toml"
RESOLUTION = 2 ** 0.25
LR_RANGE = (0.025, 6.4)
DENSE = [f"sweep.learning_rate={{min = {LR_RANGE[0]}, max = {LR_RANGE[1]}, num = 33}}"]
MAX_TRIALS = 60   # Optuna's budget of trials per batch size: past it, unresolved

# the harness's ways to the answer: name -> --set overrides of QUESTION
HARNESS_WAYS = {"dense_grid": DENSE, "bpresearch_refine": []}
AUTO = ['sweep.learning_rate="auto"']   # the first grid placed by the diagnostics, then refined


def ways(extra: list[str]) -> dict[str, list[str]]:
    """``HARNESS_WAYS`` and ``bpresearch_auto`` (the first grid placed by the diagnostics)."""
    return {**HARNESS_WAYS, "bpresearch_auto": AUTO}


def harness_way(overrides: list[str], extra: list[str]) -> dict:
    """``bpresearch sweep QUESTION`` with ``overrides`` into a fresh store: wall seconds,
    configurations trained, and its answer (``bench.answer.best`` at the resolution)."""
    exp = expmod.load(QUESTION, extra + overrides)
    target = exp.runs[0].config["train"]["targets"][0]
    with tempfile.TemporaryDirectory(prefix="bench-answer-") as tmp:
        h = answer.harness(tmp, QUESTION, extra + overrides)
        runs = answer.curves(h["uri"], exp.name)
        return {"wall_s": h["wall_s"], "configs": len(runs), "answer": answer.best(runs, [target], RESOLUTION)}


def objective_steps(trainer: peers.Trainer, log, batch_size: int, lr: float, seeds, target: float) -> float:
    """One learning rate at one batch size, every seed: the upper median of steps to ``target``.

    A configuration that does not reach counts as twice the budget, so that the sampler sees
    "slower than anything that reached" (Optuna needs a finite value). Each seed is a nested
    MLflow run with its curve, as a sweep logs it.
    """
    import mlflow

    mlflow.log_params({answer.R.BATCH_SIZE: batch_size})
    counted = []
    for seed in seeds:
        steps, values = trainer.curve(batch_size, lr, seed)
        with mlflow.start_run(run_name=f"lr={lr:.4g} bs={batch_size} s{seed}", nested=True):
            mlflow.log_params({answer.R.LEARNING_RATE: lr, answer.R.BATCH_SIZE: batch_size, answer.R.SEED: seed})
            log(steps, values)
        counted.append(answer.run_steps(np.array([steps, values], float), target))
    score = answer.verdicts.median(counted)
    return score if np.isfinite(score) else 2.0 * steps[-1]


class StopNear:
    """Optuna callback: stops the study once its best trial is as good as ``ref`` (``answer.near``)."""

    def __init__(self, ref: dict | None):
        self.ref, self.stopped = ref, False

    def __call__(self, study, trial):
        best = {"learning_rate": study.best_trial.params[answer.R.LEARNING_RATE], "steps": study.best_value}
        if self.ref is not None and answer.near({"cell": best}, {"cell": self.ref}, RESOLUTION)["cell"]:
            self.stopped = True
            study.stop()


def optuna_tpe(reference: dict[str, dict], extra: list[str], seed: int = 0, uri: str | None = None) -> dict:
    """Optuna's TPE (sampler seed ``seed``) per batch size until its best is within the resolution
    of ``reference``, or ``MAX_TRIALS``, into the store at ``uri`` (None: a fresh one in a
    temporary folder). ``wall_s``: from the first trial's start to the last one's end (imports,
    the trainer and the store before it are not counted)."""
    import optuna

    exp = expmod.load(QUESTION, extra)
    target = exp.runs[0].config["train"]["targets"][0]
    seeds = peers.space(exp)[answer.R.SEED]
    trainer = peers.trainer(exp)
    log = peers.curve_logger(per_point=False)
    out, configs = {}, 0
    with tempfile.TemporaryDirectory(prefix="bench-tpe-") as tmp:
        uri = uri or measure._store(tmp)
        t0 = time.perf_counter()
        for bs in sorted(trainer.configs):
            stop = StopNear(reference.get(f"bs={bs} t={target:g}"))

            def objective(trial, bs=bs):
                lr = trial.suggest_float(answer.R.LEARNING_RATE, *LR_RANGE, log=True)
                return objective_steps(trainer, log, bs, lr, seeds, target)

            study = peers.optuna_study(uri, exp.name, optuna.samplers.TPESampler(seed=seed), objective,
                                       n_trials=MAX_TRIALS, callbacks=[stop])
            configs += len(study.trials) * len(seeds)
            out[f"bs={bs} t={target:g}"] = {"learning_rate": study.best_trial.params[answer.R.LEARNING_RATE],
                                            "steps": study.best_value, "trials": len(study.trials),
                                            "resolved": stop.stopped}
        wall = time.perf_counter() - t0
    return {"wall_s": wall, "configs": configs, "answer": out}


def optuna_tpe_process(reference: dict[str, dict], extra: list[str], seed: int = 0) -> dict:
    """``optuna_tpe`` as a process of its own (``python -m bench.tpe``), timed as the harness's
    ways are (``answer.harness``): from the process's start to its end, its imports of JAX,
    Optuna and MLflow and its first connection to the store included; the store is a copy of an
    empty one made before the clock starts, as the harness's is. ``wall_s``: that time;
    ``in_process_s``: ``optuna_tpe``'s own ``wall_s`` (its trials alone)."""
    with tempfile.TemporaryDirectory(prefix="bench-tpe-") as tmp:
        uri = measure._store(tmp)
        ref, res = os.path.join(tmp, "reference.json"), os.path.join(tmp, "result.json")
        with open(ref, "w") as f:
            json.dump(reference, f)
        cmd = [sys.executable, "-m", "bench.tpe", uri, str(seed), ref, res, *extra]
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "JAX_COMPILATION_CACHE_DIR")}
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=measure.ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(res) as f:
            out = json.load(f)
    return {**out, "wall_s": wall, "in_process_s": out["wall_s"]}


def section(extra: list[str], repeats: int) -> dict:
    """bench.json's ``time_to_answer``: each way's median ``wall_s``, ``configs`` and ``resolved``.

    Each repeat gives TPE another sampler seed: how soon it lands near the optimum is luck,
    and the median over seeds says how much. ``configs``: the median over repeats (the
    harness's are the same every time); ``resolved``: in at least half of them (``resolved_share``).
    ``wall_s`` is every way's whole process, from its start to its end (``timed``); TPE's
    trials alone, after its imports and store, are ``in_process_s``.
    """
    harness_ways = ways(extra)
    samples: dict[str, list[dict]] = {m: [] for m in (*harness_ways, "optuna_tpe")}
    for rep in range(repeats):
        for name, overrides in harness_ways.items():
            peers._log(f"time to the answer, repeat {rep + 1}/{repeats}: {name} …")
            samples[name].append(harness_way(overrides, extra))
            peers._log(f"  {name}: {samples[name][-1]['wall_s']:.1f}s, {samples[name][-1]['configs']} configurations")
        peers._log(f"time to the answer, repeat {rep + 1}/{repeats}: optuna_tpe …")
        samples["optuna_tpe"].append(optuna_tpe_process(samples["dense_grid"][0]["answer"], extra, seed=rep))
        peers._log(f"  optuna_tpe: {samples['optuna_tpe'][-1]['wall_s']:.1f}s, "
                   f"{samples['optuna_tpe'][-1]['configs']} configurations")
    reference = samples["dense_grid"][0]["answer"]
    out = {"question": str(QUESTION.relative_to(measure.ROOT)), "overrides": extra, "resolution": RESOLUTION,
           "timed": "whole process: start, imports, store connection, trials or sweep, exit",
           "lr_range": list(LR_RANGE), "max_trials": MAX_TRIALS, "reference": reference}
    for name, ss in samples.items():
        resolved = [all(answer.near(s["answer"], reference, RESOLUTION).values()) for s in ss]
        out[name] = {"wall_s": statistics.median(s["wall_s"] for s in ss), "samples_s": [s["wall_s"] for s in ss],
                     "configs": statistics.median(s["configs"] for s in ss),
                     "configs_samples": [s["configs"] for s in ss],
                     "resolved": sum(resolved) / len(resolved) >= 0.5, "resolved_share": sum(resolved) / len(resolved),
                     "answer": ss[0]["answer"]}
        if all("in_process_s" in s for s in ss):
            out[name]["in_process_s"] = statistics.median(s["in_process_s"] for s in ss)
            out[name]["in_process_samples_s"] = [s["in_process_s"] for s in ss]
    dense = out["dense_grid"]["wall_s"]
    for name in samples:
        out[name]["over_dense_grid"] = out[name]["wall_s"] / dense
    return out
