"""Run experiment files end to end: plan → compiled groups → records → MLflow.

An executor (``executors``) trains the groups: by default on this process's devices, the
next group compiling on a thread while the current one trains (XLA releases the GIL while it
compiles and computes); or on Ray actors. Planning, resume by config hash, the parent run
and the single writer thread stay here whatever the executor. The writer logs each chunk of
a group as soon as it is trained, while the next chunk (or group) trains, so that only the
last chunk's writes are left for the end. The parent run's ``compile_time_s`` is the time the main thread
waited for compilation (local executor), or the workers' compile time (Ray).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bpresearch import keys
from bpresearch.run import records, rounds, sweep
from bpresearch.run.executors import Job, LocalExecutor
from bpresearch.run.progress import Progress
from bpresearch.run.provenance import provenance
from bpresearch.spec import config
from bpresearch.spec import experiment as expmod
from bpresearch.store import retry
from bpresearch.store.delivery import Delivery


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
    diverged: int = 0           # diverged runs of this sweep
    diverged_before: int = 0    # diverged runs of the grid already in the store (skipped now)
    trained: int = 0
    parent_id: str | None = None
    experiment_id: str | None = None   # the experiment in the store (the UI link printed at the end)
    refined: list[dict] | None = None   # per refinement group (``RefineGroup.as_dict``), if refining


    @property
    def diverged_in_store(self) -> int:
        """Diverged runs of the whole grid in the store after this sweep."""
        return self.diverged_before + self.diverged


def source_tags(exp: expmod.Experiment) -> dict[str, str]:
    """MLflow's ``mlflow.source.*`` tags: the UI's *Source* column shows the experiment file,
    the run page its git commit."""
    tags = {"mlflow.source.name": str(exp.path), "mlflow.source.type": "LOCAL"}
    commit = provenance(str(exp.path.parent)).get("git.commit")
    if commit and commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


def describe(exp: expmod.Experiment, finished: set[str] | None = None) -> str:
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
    if exp.refine:
        r = exp.refine
        lines.append(f"  then refined per group for loss {', '.join(f'{t:g}' for t in r.targets)}: up to {r.max_rounds} "
                     f"round(s) until the best learning rate is inside and its neighbours within ×{r.resolution:.3g}")
    if finished is not None:
        done = sum(r.hash in finished for r in exp.runs)
        lines.append(f"  already finished in the store: {done} of {len(exp.runs)}; a sweep would train {len(exp.runs) - done}")
    return "\n".join(lines)


def refine_lines(groups: list[dict]) -> list[str]:
    """One line per refinement group: best learning rate and steps per target, rounds, added.

    ``groups`` are ``rounds.RefineGroup.as_dict`` records (``refine.json``): their best and
    resolved are ``bpresearch.verdicts``', the same the report names for each cell.
    """
    lines = []
    for g in groups:
        parts = []
        for t, d in g["targets"].items():
            if d["best_learning_rate"] is None:
                parts.append(f"loss {t}: not reached ({d['status']})")
            else:
                parts.append(f"loss {t}: lr {d['best_learning_rate']:.4g} → {d['best_steps']:g} steps"
                             f"{'' if d['resolved'] else ' (' + d['status'] + ', not resolved)'}")
        lines.append(f"  {g['group']}: {'; '.join(parts)}; {g['rounds']} round(s), "
                     f"+{g['added']} learning rates ({g['configurations']} configurations; "
                     f"a uniform grid at this spacing: {g['uniform_grid']})")
    return lines


def _plan(exp: expmod.Experiment, stored: dict[str, dict]):
    """A refining sweep's compiled groups with work: (runs, schedule, first batch, chunk size); and the
    reports of those already complete."""
    plans, reports = [], []
    for runs in exp.groups().values():
        max_chunk = runs[0].config["train"]["chunk"]
        # refinement rounds reuse this program
        size = rounds.chunk_size(exp.refine, runs, max_chunk)
        n_slots = rounds.slots(exp.refine, size, runs)
        gen = rounds.schedule(runs, stored, exp.refine, n_slots)
        try:
            first = next(gen)
        except StopIteration as stop:
            reports.append(stop.value)
            continue
        plans.append((runs, gen, first, size))
    return plans, reports


def run_experiment(exp: expmod.Experiment, tracker, source_text: str, overrides=(), out=None,
                   executor=None) -> SweepSummary:
    """Train and log every configuration of ``exp`` that has no FINISHED run yet.

    ``executor``: where the groups train (``executors.LocalExecutor`` by default, or a
    ``RayExecutor``); the caller closes it. With ``[sweep] refine`` each compiled group then
    runs refinement rounds (``rounds.schedule``) as more chunks of its one compiled program,
    in this process: each round needs the one before it.

    Groups an earlier sweep trained but could not write (the spool) are written first, not
    retrained. One sweep of an experiment per store at a time: a second one waits (lease.py).

    Raises:
        retry.StoreFailure: the store failed; every trained chunk not yet written is in the spool.
    """
    out = out or sys.stderr
    keep = Delivery(tracker, exp.name, exp.description, out)
    exp_id = keep.call(lambda: tracker.experiment(exp.name, exp.description), "opening the experiment")
    with keep.hold(exp_id):
        return _run_held(exp, tracker, keep, exp_id, source_text, overrides, out, executor or LocalExecutor())


def _run_held(exp, tracker, keep: Delivery, exp_id: str, source_text: str, overrides, out, executor) -> SweepSummary:
    t_start = time.perf_counter()
    seconds0, points0 = tracker.seconds, tracker.points
    finished, unfinished, diverged = keep.call(lambda: tracker.runs_by_hash(exp_id), "reading finished runs")
    strays = [i for h, ids in unfinished.items() if h in finished for i in ids]
    if strays:  # copies of finished runs left RUNNING by an interrupted write
        keep.call(lambda: tracker.mark_killed(strays), "closing unfinished copies of finished runs")
    saved = []
    for path, meta, recs in keep.saved():  # groups trained by an earlier sweep that could not write them
        recs = [r for r in recs if r.run.hash not in finished]
        if recs:
            saved.append((path, meta, recs))
        else:
            keep.spool.discard(path)  # written before the earlier sweep could delete the file
    in_spool = {r.run.hash for _, _, recs in saved for r in recs}
    plans, reports = [], []
    if exp.refine:
        if executor.name != "local":
            print(f"{exp.name}: [sweep] refine trains in this process, not on {executor.name} "
                  f"(each round needs the one before it).", file=out)
        stored = keep.call(lambda: tracker.finished_summaries(exp_id), "reading finished runs")
        # groups waiting in the spool are trained: plan with their summaries so that no round
        # trains them again (they are written first, below)
        stored.update({r.run.hash: r.summary for _, _, recs in saved for r in recs})
        plans, reports = _plan(exp, stored)
        todo = [r for _, _, first, _ in plans for r, _ in first]
        n_todo = sum(1 for _, _, first, _ in plans for _, rnd in first if rnd == 0)
        groups = {i: [r for r, _ in p[2]] for i, p in enumerate(plans)}
    else:
        todo = [r for r in exp.runs if r.hash not in finished and r.hash not in in_spool]
        n_todo = len(todo)
        groups = {}
        for run in todo:
            groups.setdefault(expmod.group_key(run.config), []).append(run)
    summary = SweepSummary(exp.name, len(exp.runs), len(exp.runs) - n_todo, 0, len(groups), experiment_id=exp_id)
    summary.diverged_before = sum(r.hash in diverged for r in exp.runs)
    if not todo and not saved:
        what = f"all {len(exp.runs)} runs already finished"
        if exp.refine:
            summary.refined = [g.as_dict(exp.refine) for rep in reports for g in rep.groups]
            what += f" and the refinement is complete ({sum(g['added'] for g in summary.refined)} learning rates added)"
        print(f"{exp.name}: {what}; nothing to do.", file=out)
        return summary
    if summary.skipped:
        print(f"{exp.name}: resuming: {summary.skipped} of {len(exp.runs)} runs already finished, "
              f"{len(todo)} to go{' in the next round (refinement may add more)' if n_todo == 0 else ''}.", file=out)

    tags = {**provenance(str(exp.path.parent)), **source_tags(exp)}
    parent = keep.call(lambda: tracker.start_sweep(
        exp_id, f"sweep {time.strftime('%m-%d %H:%M:%S')}",
        params={"file": str(exp.path), "grid_size": str(len(exp.runs)), "runs_to_do": str(len(todo)),
                "groups": str(len(groups)), "overrides": " ".join(overrides) or "none",
                "executor": executor.name},
        tags=tags, artifacts={"experiment.toml": source_text, "resolved.toml": config.to_toml(exp)}),
        "starting the sweep run")
    summary.parent_id = parent

    bar = Progress(len(todo), exp.name, out)   # its total grows with each refinement round
    state = {"trained": 0, "logged": 0, "group": 0}
    work: queue.Queue = queue.Queue(maxsize=2)   # bounded: host memory stays bounded too
    failure: list[BaseException] = []

    def detail():
        return f"{state['group']}/{len(groups)} groups trained"

    def count(rec):
        state["logged"] += 1
        summary.diverged += int(rec.summary["diverged"])

    def writer():
        # Each part the executor hands out (a chunk of a group trained here, a whole group from
        # Ray) goes into the spool first, then into the store (one part, one call: on sqlite a few
        # transactions for all its runs, Delivery.write → log_runs), while the next chunk trains.
        # After a store failure the parts still coming are only spooled.
        while (item := work.get()) is not None:
            records, where = item
            group_tags = {**tags, **where}
            try:
                path = keep.save(records, group_tags)
                if not failure:
                    keep.write(path, exp_id, parent, records, group_tags, unfinished, count)
            except BaseException as e:  # surfaced on the main thread
                failure.append(e)

    def raise_failure():
        raise failure[0]

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    status = "FAILED"
    try:
        for path, meta, recs in saved:  # written first, never retrained
            keep.write(path, exp_id, parent, recs, meta.get("tags") or tags, unfinished, count)
            print(f"{exp.name}: wrote {len(recs)} run(s) saved in the spool by an earlier sweep "
                  f"({path.name}); not retrained.", file=out, flush=True)
        if exp.refine:
            reports += _train_rounds(exp, plans, work, state, summary, bar, detail, failure)
        group_list = [] if exp.refine else list(groups.values())
        jobs = [Job(runs[0].config, [sweep.member_of(r.config) for r in runs], exp.dataset(runs[0].config),
                    runs[0].config["train"]["chunk"]) for runs in group_list]

        def on_runs(trained):
            state["trained"] = trained
            bar.update(trained, state["logged"], detail())

        inputs_of: dict[int, dict] = {}   # one dataset input (and digest) per data set
        for done in (executor.run(jobs, on_runs) if jobs else ()):
            state["group"] += int(done.last)
            summary.compile_s += done.compile_s
            summary.train_s += done.result.run_s
            end = int(time.time() * 1000)
            span = (end - int(round(done.result.run_s * 1000)), end)   # its compiled call(s)
            ds = jobs[done.index].dataset
            if id(ds) not in inputs_of:
                inputs_of[id(ds)] = records.dataset_input(jobs[done.index].config, ds)
            runs = group_list[done.index][done.start:done.start + done.result.size]   # a chunk, or the group
            recs = records.records(runs, done.result, inputs_of[id(ds)])
            for rec in recs:
                rec.times = span
            bar.logging_started()
            work.put((recs, done.tags))
            if failure:
                raise_failure()
        t_wait = time.perf_counter()
        work.put(None)
        while thread.is_alive():
            thread.join(timeout=0.5)
            bar.update(state["trained"], state["logged"], detail())
        summary.tracking_wait_s = time.perf_counter() - t_wait
        if failure:
            raise_failure()
        if exp.refine:
            summary.refined = [grp.as_dict(exp.refine) for rep in reports for grp in rep.groups]
            tracker.log_text(parent, json.dumps(summary.refined, indent=2), keys.REFINE_ARTIFACT)
            print(f"{exp.name}: learning-rate refinement (resolution {exp.refine.resolution:g}, "
                  f"at most {exp.refine.max_rounds} rounds):", file=out)
            for line in refine_lines(summary.refined):
                print(line, file=out)
        status = "FINISHED"
    except retry.StoreFailure as e:
        if keep.failed:
            raise
        if thread.is_alive():  # let the writer spool what is still queued, then say what is saved
            work.put(None)
            thread.join(timeout=120)
        raise keep.failure(e) from None
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        if thread.is_alive():
            work.put(None)
            if failure:  # the writer is only spooling what is still queued: let it finish
                thread.join(timeout=120)
        bar.update(state["trained"], state["logged"], detail(), force=True)
        bar.close()
        summary.logged = state["logged"]
        summary.trained = state["trained"]
        summary.wall_s = time.perf_counter() - t_start
        summary.tracking_s = tracker.seconds - seconds0
        summary.points = tracker.points - points0
        metrics = {
            "grid_size": len(exp.runs), "runs_logged": summary.logged, "runs_skipped": summary.skipped,
            "runs_diverged": summary.diverged, "wall_time_s": summary.wall_s, "compile_time_s": summary.compile_s,
            "train_time_s": summary.train_s, "tracking_time_s": summary.tracking_s,
            "tracking_wait_s": summary.tracking_wait_s,
            "tracking_share": summary.tracking_s / summary.wall_s if summary.wall_s else 0.0,
            "metric_points": summary.points, **_refine_metrics(summary.refined)}
        try:  # after a store failure: tried once, not retried
            keep.call(lambda: tracker.end_sweep(parent, metrics, status), "closing the sweep run")
        except retry.StoreFailure:
            if not keep.failed:
                raise
    return summary


def _train_rounds(exp, plans, work, state, summary, bar, detail, failure) -> list:
    """Each compiled group's initial grid, then its refinement rounds, as chunks of one program
    compiled for the group's chunk size (the next group compiles on a thread meanwhile); each
    chunk goes to the writer as soon as it is trained, and a round's summaries to the schedule
    once all its chunks are."""
    reports = []
    compiler = ThreadPoolExecutor(max_workers=1)  # XLA compiles without holding the GIL

    def compile_ahead(plan):
        cfg, size = plan[0][0].config, plan[3]
        return compiler.submit(sweep.compile_group, cfg, size, exp.dataset(cfg), size)

    try:
        ahead = compile_ahead(plans[0])
        for g, (_, gen, batch, size) in enumerate(plans, 1):
            cfg = batch[0][0].config
            t_wait = time.perf_counter()
            compiled = ahead.result()
            summary.compile_s += time.perf_counter() - t_wait  # what compilation cost the main thread
            if g < len(plans):  # the next group compiles while this one trains
                ahead = compile_ahead(plans[g])
            ds = exp.dataset(cfg)
            inputs = records.dataset_input(cfg, ds)
            while batch:   # the initial grid, then each refinement round: chunks of one program
                runs, base, trained = [r for r, _ in batch], state["trained"], {}
                chunks = sweep.run_chunks(cfg, [sweep.member_of(r.config) for r in runs], ds, cfg["train"]["chunk"],
                                          compiled, chunk_size=size)
                for start, res in chunks:   # each chunk written while the next one trains
                    state["trained"] = base + start + res.size
                    bar.update(state["trained"], state["logged"], detail())
                    summary.train_s += res.run_s
                    end = int(time.time() * 1000)
                    recs = records.records(runs[start:start + res.size], res, inputs)
                    for rec in recs:
                        rec.times = (end - int(round(res.run_s * 1000)), end)   # the chunk's training
                    bar.logging_started()
                    work.put((recs, {keys.ROUND_TAG: str(batch[0][1])}))   # a batch is one round
                    if failure:
                        raise failure[0]
                    trained.update({rec.run.hash: rec.summary for rec in recs})
                try:
                    batch = gen.send(trained)
                    bar.total += len(batch)
                except StopIteration as stop:
                    reports.append(stop.value)
                    batch = None
            state["group"] += 1
    finally:
        compiler.shutdown(wait=False, cancel_futures=True)
    return reports


def _refine_metrics(groups: list[dict] | None) -> dict[str, float]:
    """The parent's refinement summary: rounds (the most any group took), learning rates and
    configurations added, groups resolved out of all (the detail is the artifact refine.json)."""
    if not groups:
        return {}
    return {keys.REFINE_ROUNDS: max(g["rounds"] for g in groups),
            keys.REFINE_LRS_ADDED: sum(g["added"] for g in groups),
            keys.REFINE_CONFIGS_ADDED: sum(g["added"] * g["seeds"] for g in groups),
            keys.REFINE_GROUPS: len(groups),
            keys.REFINE_GROUPS_RESOLVED: sum(g["resolved"] for g in groups)}


def sync(tracker, out=None) -> int:
    """Write every group waiting in the spool of ``tracker``'s store; the number of runs written."""
    from bpresearch.store.spool import Spool, folder_for

    out = out or sys.stderr
    spool = Spool(folder_for(tracker.uri))
    names = {}
    for path in spool.pending():
        try:
            meta, _ = spool.load(path)
        except Exception:  # noqa: BLE001 - Delivery.saved() reports and sets it aside
            meta = None
        if meta:
            names.setdefault(meta["experiment"], meta.get("description", ""))
    written = 0
    for name, description in names.items():
        keep = Delivery(tracker, name, description, out)
        exp_id = keep.call(lambda: tracker.experiment(name, description), "opening the experiment")
        with keep.hold(exp_id):
            finished, unfinished, _ = keep.call(lambda: tracker.runs_by_hash(exp_id), "reading finished runs")
            saved = keep.saved()
            if not saved:
                continue
            parent = keep.call(lambda: tracker.start_sweep(exp_id, f"sync {time.strftime('%Y-%m-%d %H:%M:%S')}",
                                                           params={"spool": str(spool.root)}, tags={},
                                                           artifacts={}), "starting the sync run")
            n = 0
            try:
                for path, meta, recs in saved:
                    recs = [r for r in recs if r.run.hash not in finished]
                    keep.write(path, exp_id, parent, recs, meta.get("tags") or {}, unfinished)
                    n += len(recs)
            except retry.StoreFailure as e:
                raise keep.failure(e) from None
            keep.call(lambda: tracker.end_sweep(parent, {"runs_logged": n}, "FINISHED"), "closing the sync run")
            print(f"{name}: wrote {n} saved run(s) from the spool; not retrained.", file=out)
            written += n
    return written
