"""Run experiment files end to end: plan → compiled groups → records → MLflow.

An executor (``executors``) trains the groups: by default on this process's devices, the
next group compiling on a thread while the current one trains (XLA releases the GIL while it
compiles and computes); or on Ray actors. Planning, resume by config hash, the parent run
and the single writer thread, which logs each finished group while the next ones train, stay
here whatever the executor. The parent run's ``compile_time_s`` is the time the main thread
waited for compilation (local executor), or the workers' compile time (Ray).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass

from . import config, results, sweep
from . import experiment as expmod
from .executors import Job, LocalExecutor
from .progress import Progress
from .provenance import provenance


@dataclass
class SweepSummary:
    name: str
    grid: int
    skipped: int
    logged: int
    groups: int
    wall_s: float = 0.0
    compile_s: float = 0.0
    train_s: float = 0.0
    tracking_s: float = 0.0
    tracking_wait_s: float = 0.0
    points: int = 0
    diverged: int = 0
    parent_id: str | None = None


def describe(exp: expmod.Experiment) -> str:
    """What a dry run prints: grid size and the compiled groups."""
    groups = exp.groups()
    lines = [f"{exp.path}: experiment {exp.name!r}: {len(exp.runs)} runs in {len(groups)} compiled group(s)"]
    for runs in groups.values():
        c = runs[0].config
        lrs = sorted({r.config["optimizer"]["learning_rate"] for r in runs})
        seeds = sorted({r.config["train"]["seed"] for r in runs})
        bs = "full" if c["train"]["full_batch"] else c["train"]["batch_size"]
        lines.append(f"  {c['model']['kind']} · {c['optimizer']['kind']} · bs={bs} · {c['train']['steps']} steps: "
                     f"{len(runs)} runs ({len(lrs)} learning rates × {len(seeds)} seeds)")
    return "\n".join(lines)


def run_experiment(exp: expmod.Experiment, tracker, source_text: str, overrides=(), out=None,
                   executor=None) -> SweepSummary:
    """Train and log every configuration of ``exp`` that has no FINISHED run yet.

    ``executor``: where the groups train (``executors.LocalExecutor`` by default, or a
    ``RayExecutor``); the caller closes it.
    """
    out = out or sys.stderr
    executor = executor or LocalExecutor()
    t_start = time.perf_counter()
    seconds0, points0 = tracker.seconds, tracker.points
    exp_id = tracker.experiment(exp.name, exp.description)
    finished, unfinished = tracker.runs_by_hash(exp_id)
    todo = [r for r in exp.runs if r.hash not in finished]
    groups = {}
    for run in todo:
        groups.setdefault(expmod.group_key(run.config), []).append(run)
    summary = SweepSummary(exp.name, len(exp.runs), len(exp.runs) - len(todo), 0, len(groups))
    if not todo:
        print(f"{exp.name}: all {len(exp.runs)} runs already finished; nothing to do.", file=out)
        return summary
    if summary.skipped:
        print(f"{exp.name}: resuming: {summary.skipped} of {len(exp.runs)} runs already finished, "
              f"{len(todo)} to go.", file=out)

    tags = provenance(str(exp.path.parent))
    parent = tracker.start_sweep(
        exp_id, f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')}",
        params={"file": str(exp.path), "grid_size": str(len(exp.runs)), "runs_to_do": str(len(todo)),
                "groups": str(len(groups)), "overrides": " ".join(overrides) or "none",
                "executor": executor.name},
        tags=tags, artifacts={"experiment.toml": source_text, "resolved.toml": config.to_toml(exp)})
    summary.parent_id = parent

    bar = Progress(len(todo), exp.name, out)
    state = {"trained": 0, "logged": 0, "group": 0}
    work: queue.Queue = queue.Queue(maxsize=2)   # bounded: host memory stays bounded too
    failure: list[BaseException] = []

    def detail():
        return f"runs ({state['group']}/{len(groups)} groups trained, {state['logged']} runs logged)"

    def writer():
        while (item := work.get()) is not None:
            if failure:
                continue
            records, where = item
            try:
                # one group, one call: on sqlite a few transactions for all its runs (tracking.log_runs)
                tracker.log_runs(exp_id, parent, records,
                                 {**tags, **where, "bpresearch.group": expmod.group_key(records[0].run.config)},
                                 {rec.run.hash: unfinished[rec.run.hash] for rec in records if rec.run.hash in unfinished})
                state["logged"] += len(records)
                summary.diverged += sum(int(rec.summary["diverged"]) for rec in records)
            except BaseException as e:  # surfaced on the main thread
                failure.append(e)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    status = "FAILED"
    try:
        group_list = list(groups.values())
        jobs = [Job(runs[0].config, [sweep.member_of(r.config) for r in runs], exp.dataset(runs[0].config),
                    runs[0].config["train"]["chunk"]) for runs in group_list]

        def on_runs(trained):
            state["trained"] = trained
            bar.update(trained, detail())

        for done in executor.run(jobs, on_runs):
            state["group"] += 1
            summary.compile_s += done.compile_s
            summary.train_s += done.result.run_s
            work.put((results.records(group_list[done.index], done.result), done.tags))
            if failure:
                raise failure[0]
        t_wait = time.perf_counter()
        work.put(None)
        while thread.is_alive():
            thread.join(timeout=0.5)
            bar.update(state["trained"], detail())
        summary.tracking_wait_s = time.perf_counter() - t_wait
        if failure:
            raise failure[0]
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if thread.is_alive():
            work.put(None)
        bar.update(state["trained"], detail(), force=True)
        bar.close()
        summary.logged = state["logged"]
        summary.wall_s = time.perf_counter() - t_start
        summary.tracking_s = tracker.seconds - seconds0
        summary.points = tracker.points - points0
        tracker.end_sweep(parent, {
            "grid_size": len(exp.runs), "runs_logged": summary.logged, "runs_skipped": summary.skipped,
            "runs_diverged": summary.diverged, "wall_time_s": summary.wall_s, "compile_time_s": summary.compile_s,
            "train_time_s": summary.train_s, "tracking_time_s": summary.tracking_s,
            "tracking_wait_s": summary.tracking_wait_s,
            "tracking_share": summary.tracking_s / summary.wall_s if summary.wall_s else 0.0,
            "metric_points": summary.points}, status)
    return summary
