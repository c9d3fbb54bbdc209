"""Run experiment files end to end: plan → compiled groups → records → MLflow.

A ``SweepRun`` is one sweep of one experiment, its lease held: it reads what the store
already has, plans, trains, writes and closes. An executor (``executors``) trains the groups:
by default on this process's devices, the next group compiling on a thread while the current
one trains (XLA releases the GIL while it compiles and computes); or on Ray actors. Planning,
resume by config hash, the parent run and the single writer thread (``writer``) stay here
whatever the executor. The writer logs each chunk of a group as soon as it is trained, while
the next chunk (or group) trains, so that only the last chunk's writes are left for the end.
A ``RefiningSweepRun`` plans, trains and reports refinement rounds in this process instead.
The parent run's ``compile_time_s`` is the time the main thread waited for compilation
(local executor), or the workers' compile time (Ray).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time

from bpresearch import keys
from bpresearch.run import records, resume, rounds, sweep
from bpresearch.run.executors import Job, LocalExecutor, compiled_in_turn, train_chunks
from bpresearch.run.progress import Progress
from bpresearch.run.provenance import provenance
from bpresearch.run.summary import SweepSummary
from bpresearch.run.writer import Writer
from bpresearch.spec import config
from bpresearch.spec import experiment as expmod
from bpresearch.store import retry
from bpresearch.store.delivery import Delivery


def source_tags(exp: expmod.Experiment) -> dict[str, str]:
    """MLflow's ``mlflow.source.*`` tags: the UI's *Source* column shows the experiment file,
    the run page its git commit."""
    tags = {"mlflow.source.name": str(exp.path), "mlflow.source.type": "LOCAL"}
    commit = provenance(str(exp.path.parent)).get("git.commit")
    if commit and commit != "unknown":
        tags["mlflow.source.git.commit"] = commit
    return tags


def placement_artifact(exp: expmod.Experiment) -> dict[str, str]:
    """``auto.json`` on the parent run where ``learning_rate = "auto"`` placed the grid: what the report states."""
    return {} if exp.placement is None else {keys.AUTO_ARTIFACT: json.dumps(exp.placement.record(), indent=2)}


def describe(exp: expmod.Experiment, stored: resume.Stored | None = None) -> str:
    """What a dry run prints: grid size and the compiled groups."""
    groups = exp.groups()
    lines = [f"{exp.path}: experiment {exp.name!r}: {len(exp.runs)} runs in {len(groups)} compiled group(s)"]
    for runs in groups.values():
        c = runs[0].config
        lrs = sorted({r.config["optimizer"]["learning_rate"] for r in runs})
        seeds = sorted({r.config["train"]["seed"] for r in runs})
        lines.append(f"  {c['model']['kind']} · {c['optimizer']['kind']} · {rounds.label(c)} · "
                     f"{c['train']['steps']} steps: "
                     f"{len(runs)} runs ({len(lrs)} learning rates × {len(seeds)} seeds)")
    if exp.placement is not None:
        p = exp.placement
        lines.append(f"  learning rates placed by \"auto\": {p.learning_rates[0]:g}–{p.learning_rates[-1]:g} "
                     f"({len(p.learning_rates)}, ×2 apart) below the stability bound {p.factor:g}/λ_max = {p.bound:.3g} "
                     f"(λ_max = {p.sharpness:.3g} at initialisation, the largest of {p.seeds} seed(s))")
    if exp.refine:
        r = exp.refine
        lines.append(f"  then refined per group for loss {', '.join(f'{t:g}' for t in r.targets)}: up to {r.max_rounds} "
                     f"round(s) until the best learning rate is inside and its neighbours within ×{r.resolution:.3g}")
    if stored is not None:
        done = sum(stored.has(r) for r in exp.runs)
        lines.append(f"  already finished in the store: {done} of {len(exp.runs)}; a sweep would train {len(exp.runs) - done}")
        lines += [new_targets_line(exp, stored)] if stored.new_targets(exp.base["train"]["targets"]) else []
    return "\n".join(lines)


def new_targets_line(exp: expmod.Experiment, stored: resume.Stored) -> str:
    """Targets no run in the store was swept with: the report answers them from the logged curves."""
    new = stored.new_targets(exp.base["train"]["targets"])
    every = ",".join(f"{t:g}" for t in exp.base["train"]["targets"])
    return (f"  new target(s) {', '.join(f'{t:g}' for t in new)}: nothing to train for them (targets are not "
            f"part of a run's hash); the report answers them from the logged curves, between two evaluations: "
            f"`bpresearch report {exp.name} --targets {every}`")


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


def _plan(exp: expmod.Experiment, stored: resume.Stored):
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


def check_refine_targets(exp: expmod.Experiment, stored: resume.Stored):
    """Refining needs each refine target counted by the compiled program when the runs trained.

    A target is not part of a run's hash, so runs swept before it was a target are not
    retrained, and they have no count of it to refine with.

    Raises:
        ExperimentError: one line naming the file, the targets and what to do.
    """
    done = [r for r in exp.runs if stored.has(r)]
    late = [t for t in exp.refine.targets if any(keys.reached_key(t) not in stored.summary(r) for r in done)]
    if late:
        swept = sorted({t for ts in stored.targets for t in ts}, reverse=True)
        raise config.ExperimentError(
            f"{exp.path}: [sweep] refine target: loss {', '.join(f'{t:g}' for t in late)} was not a [train] target "
            f"when runs of this grid trained (targets are not part of a run's hash: they are not retrained), so "
            f"there is no in-program count to refine with; refine only targets the store's runs were swept with "
            f"({', '.join(f'{t:g}' for t in swept) or 'none'}), or sweep into another store "
            f"(`bpresearch report {exp.name} --targets …` answers any target from the logged curves)")


def dry_run(exps: list[expmod.Experiment], tracking_uri: str | None, out=None):
    """What ``sweep --dry-run`` prints: each experiment's groups and what is already in the store."""
    from bpresearch.store.tracking import stored_runs
    from bpresearch.store.uri import resolve_uri

    out = out or sys.stdout
    uri = resolve_uri(tracking_uri)
    total = done = 0
    for exp in exps:
        finished, diverged, targets = stored_runs(uri, exp.name, resume.TARGETS_PARAM)
        stored = resume.Stored(finished, diverged, resume.target_lists(targets))
        print(describe(exp, stored), file=out)
        total += len(exp.runs)
        done += sum(stored.has(r) for r in exp.runs)
    print(f"dry run: {total} runs in all, {done} already finished in {uri}, {total - done} to train; "
          f"nothing trained, nothing logged.", file=out)


def run_experiment(exp: expmod.Experiment, tracker, source_text: str, overrides=(), out=None,
                   executor=None) -> SweepSummary:
    """Train and log every configuration of ``exp`` that has no FINISHED run yet.

    ``executor``: where the groups train (``executors.LocalExecutor`` by default, or a
    ``RayExecutor``); the caller closes it. With ``[sweep] refine`` each compiled group then
    runs refinement rounds (``rounds.schedule``) as more chunks of its one compiled program,
    in this process: each round needs the one before it (``RefiningSweepRun``).

    Groups an earlier sweep trained but could not write (the spool) are written first, not
    retrained. One sweep of an experiment per store at a time: a second one waits (lease.py).

    Raises:
        retry.StoreFailure: the store failed; every trained chunk not yet written is in the spool.
    """
    out = out or sys.stderr
    keep = Delivery(tracker, exp.name, exp.description, out)
    exp_id = keep.call(lambda: tracker.experiment(exp.name, exp.description), "opening the experiment")
    facets = [k for k, values in exp.axes.items() if len(values) > 1]
    seeds = exp.axes.get(keys.SWEPT_INTO["seeds"], [])
    keep.call(lambda: tracker.write_view(exp_id, facets, len(exp.runs), min(seeds) if len(seeds) > 1 else None),
              "writing the experiment's view in the MLflow UI")
    kind = RefiningSweepRun if exp.refine else SweepRun
    with keep.hold(exp_id):
        return kind(exp, tracker, keep, exp_id, source_text, overrides, out, executor or LocalExecutor()).run()


class SweepRun:
    """One sweep of one experiment, its lease held: read the store, plan, train while writing, close.

    ``run`` is the whole sequence, the same for every sweep. A plain sweep trains the grid's
    compiled groups on the executor; ``RefiningSweepRun`` overrides ``plan``, ``train``,
    ``nothing_to_do`` and ``report`` for refinement rounds.
    """

    refining = False   # whether planning needs the finished runs' summaries

    def __init__(self, exp: expmod.Experiment, tracker, keep: Delivery, exp_id: str, source_text: str,
                 overrides, out, executor):
        self.exp, self.tracker, self.keep, self.exp_id = exp, tracker, keep, exp_id
        self.source_text, self.overrides, self.out, self.executor = source_text, overrides, out, executor
        self.t_start = time.perf_counter()
        self.seconds0, self.points0 = tracker.seconds, tracker.points
        self.trained = self.logged = self.groups_done = 0   # runs trained, runs in the store, groups trained
        self._inputs: dict[int, dict] = {}   # one dataset input (and digest) per data set

    def run(self) -> SweepSummary:
        """Write what the spool holds, train and write what the store lacks; the summary."""
        self.read_store()
        self.plan()
        exp, s = self.exp, self.start_summary()
        if self.stored.new_targets(exp.base["train"]["targets"]):
            print(f"{exp.name}:{new_targets_line(exp, self.stored)[1:]}", file=self.out)
        if not self.todo and not self.saved:
            print(f"{exp.name}: {self.nothing_to_do()}; nothing to do.", file=self.out)
            return s
        if s.skipped:
            print(f"{exp.name}: resuming: {s.skipped} of {len(exp.runs)} runs already finished, {len(self.todo)} "
                  f"to go{' in the next round (refinement may add more)' if self.n_todo == 0 else ''}.", file=self.out)
        self.open()
        status = "FAILED"
        try:
            self.write_saved()
            self.train()
            self.drain()
            self.report()
            status = "FINISHED"
        except retry.StoreFailure as e:
            if self.keep.failed:
                raise
            self.writer.spool_rest()   # then say what is saved
            raise self.keep.failure(e) from None
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self.close(status)
        return s

    def read_store(self):
        """Finished runs (``resume.Stored``; stray unfinished copies closed), and the groups waiting in the spool."""
        keep, tracker = self.keep, self.tracker
        self.stored, unfinished = keep.call(lambda: resume.read(tracker, self.exp_id, self.refining),
                                            "reading finished runs")
        self.unfinished = resume.rekeyed(unfinished, self.exp.runs)
        strays = [i for h, ids in unfinished.items() if h in self.stored.finished for i in ids]
        if strays:  # copies of finished runs left RUNNING by an interrupted write
            keep.call(lambda: tracker.mark_killed(strays), "closing unfinished copies of finished runs")
        self.saved = []
        for path, meta, recs in keep.saved():  # groups trained by an earlier sweep that could not write them
            recs = [r for r in recs if not self.stored.has(r.run)]
            if recs:
                self.saved.append((path, meta, recs))
            else:
                keep.spool.discard(path)  # written before the earlier sweep could delete the file

    def plan(self):
        """``todo``: the grid's runs neither finished nor in the spool; ``groups``: them by compiled group;
        ``n_todo``: how many of the grid's runs are to train."""
        in_spool = {r.run.hash for _, _, recs in self.saved for r in recs}
        self.todo = [r for r in self.exp.runs if not self.stored.has(r) and r.hash not in in_spool]
        self.n_todo = len(self.todo)
        groups: dict[str, list] = {}
        for run in self.todo:
            groups.setdefault(expmod.group_key(run.config), []).append(run)
        self.groups = list(groups.values())

    def start_summary(self) -> SweepSummary:
        """The summary as planned: grid, runs skipped, groups, diverged runs already in the store."""
        exp = self.exp
        self.summary = SweepSummary(exp.name, len(exp.runs), len(exp.runs) - self.n_todo, 0, len(self.groups),
                                    experiment_id=self.exp_id)
        self.summary.diverged_before = sum(self.stored.diverged(r) for r in exp.runs)
        return self.summary

    def nothing_to_do(self) -> str:
        """Why the sweep has nothing to do."""
        return f"all {len(self.exp.runs)} runs already finished"

    def open(self):
        """The parent run, the progress line (its total grows with each refinement round), the writer."""
        exp = self.exp
        self.tags = {**provenance(str(exp.path.parent)), **source_tags(exp)}
        self.parent = self.keep.call(lambda: self.tracker.start_sweep(
            self.exp_id, f"sweep {time.strftime('%m-%d %H:%M:%S')}",
            params={"file": str(exp.path), "grid_size": str(len(exp.runs)), "runs_to_do": str(len(self.todo)),
                    "groups": str(len(self.groups)), "overrides": " ".join(self.overrides) or "none",
                    "executor": self.executor.name,
                    **({"placement": "auto"} if exp.placement is not None else {})},
            tags=self.tags, artifacts={"experiment.toml": self.source_text, "resolved.toml": config.to_toml(exp),
                                       **{f"code/{name}": text for name, text in exp.sources.items()},
                                       **placement_artifact(exp)}),
            "starting the sweep run")
        self.summary.parent_id = self.parent
        self.bar = Progress(len(self.todo), exp.name, self.out)
        self.writer = Writer(self.keep, self.exp_id, self.parent, self.tags, self.unfinished, self.count)

    def count(self, rec):
        """A run is in the store (called on the writer thread)."""
        self.logged += 1
        self.summary.diverged += int(rec.summary["diverged"])

    def tick(self, force: bool = False):
        """The progress line (at most every few seconds unless ``force``)."""
        self.bar.update(self.trained, self.logged, f"{self.groups_done}/{len(self.groups)} groups trained", force)

    def write_saved(self):
        """The groups an earlier sweep trained but could not write: written first, never retrained."""
        for path, meta, recs in self.saved:
            self.keep.write(path, self.exp_id, self.parent, recs, meta.get("tags") or self.tags, self.unfinished,
                            self.count)
            print(f"{self.exp.name}: wrote {len(recs)} run(s) saved in the spool by an earlier sweep "
                  f"({path.name}); not retrained.", file=self.out, flush=True)

    def train(self):
        """Every group on the executor; each part (a chunk, or a group from Ray) to the writer once trained."""
        jobs = [Job(runs[0].config, [sweep.member_of(r.config) for r in runs], self.exp.dataset(runs[0].config),
                    runs[0].config["train"]["chunk"]) for runs in self.groups]
        for done in (self.executor.run(jobs, self.on_runs) if jobs else ()):
            self.groups_done += int(done.last)
            self.summary.compile_s += done.compile_s
            runs = self.groups[done.index][done.start:done.start + done.result.size]   # a chunk, or the group
            self.deliver(runs, done.result, jobs[done.index], done.tags)

    def on_runs(self, trained: int):
        """The executor has trained ``trained`` runs."""
        self.trained = trained
        self.tick()

    def deliver(self, runs: list[expmod.Run], result: sweep.GroupResult, job: Job, where: dict[str, str]) -> list:
        """The records of trained ``runs`` to the writer; raises the writer's failure, if any."""
        self.summary.train_s += result.run_s
        end = int(time.time() * 1000)
        span = (end - int(round(result.run_s * 1000)), end)   # its compiled call(s)
        if id(job.dataset) not in self._inputs:
            self._inputs[id(job.dataset)] = records.dataset_input(job.config, job.dataset)
        recs = records.records(runs, result, self._inputs[id(job.dataset)])
        for rec in recs:
            rec.times = span
        self.bar.logging_started()
        self.writer.put(recs, where)
        return recs

    def drain(self):
        """Wait for the writer to finish the last parts (timed: tracking the sweep waited for)."""
        t_wait = time.perf_counter()
        self.writer.drain(self.tick)
        self.summary.tracking_wait_s = time.perf_counter() - t_wait
        self.writer.check()

    def report(self):
        """Anything more to say once every run is written (a plain sweep: nothing)."""

    def close(self, status: str):
        """Stop the writer and the progress line, complete the summary, end the parent run with ``status``."""
        self.writer.close()
        self.tick(force=True)
        self.bar.close()
        s = self.summary
        s.logged, s.trained = self.logged, self.trained
        s.wall_s = time.perf_counter() - self.t_start
        s.tracking_s = self.tracker.seconds - self.seconds0
        s.points = self.tracker.points - self.points0
        metrics = s.metrics()
        try:  # after a store failure: tried once, not retried
            self.keep.call(lambda: self.tracker.end_sweep(self.parent, metrics, status), "closing the sweep run")
        except retry.StoreFailure:
            if not self.keep.failed:
                raise


class RefiningSweepRun(SweepRun):
    """A sweep with ``[sweep] refine``: each compiled group's initial grid, then its refinement rounds
    (``rounds.schedule``), as chunks of one program compiled for the group's chunk size (the next
    group compiles on a thread meanwhile); each chunk goes to the writer as soon as it is trained,
    and a round's summaries to the schedule once all its chunks are."""

    refining = True

    def plan(self):
        """Each compiled group's schedule with its first batch; reports of the groups already complete."""
        if self.executor.name != "local":
            print(f"{self.exp.name}: [sweep] refine trains in this process, not on {self.executor.name} "
                  f"(each round needs the one before it).", file=self.out)
        check_refine_targets(self.exp, self.stored)
        # groups waiting in the spool are trained: plan with their summaries so that no round
        # trains them again (they are written first)
        self.stored.finished.update({r.run.hash: r.summary for _, _, recs in self.saved for r in recs})
        self.plans, self.reports = _plan(self.exp, self.stored)
        self.groups = [[r for r, _ in first] for _, _, first, _ in self.plans]
        self.todo = [r for runs in self.groups for r in runs]
        self.n_todo = sum(1 for _, _, first, _ in self.plans for _, rnd in first if rnd == 0)

    def nothing_to_do(self) -> str:
        self.summary.refined = [g.as_dict(self.exp.refine) for rep in self.reports for g in rep.groups]
        return (f"{super().nothing_to_do()} and the refinement is complete "
                f"({sum(g['added'] for g in self.summary.refined)} learning rates added)")

    def train(self):
        """Group after group, each compiled once for its chunk size: its initial grid, then its rounds."""
        # compiled for the chunk ``size``: each batch brings its own members
        jobs = [Job(runs[0].config, [], self.exp.dataset(runs[0].config), runs[0].config["train"]["chunk"], size)
                for runs, _, _, size in self.plans]
        with contextlib.closing(compiled_in_turn(jobs)) as ahead:
            for i, job, compiled, waited in ahead:
                self.summary.compile_s += waited  # what compilation cost the main thread
                _, schedule, batch, _ = self.plans[i]
                cfg = batch[0][0].config
                self.reports.append(self._rounds(job._replace(config=cfg, dataset=self.exp.dataset(cfg)),
                                                 compiled, schedule, batch))
                self.groups_done += 1

    def _rounds(self, job: Job, compiled, schedule, batch: rounds.Batch) -> rounds.GroupReport:
        """One group's batches (the initial grid, then each refinement round) as chunks of ``compiled``."""
        while True:
            runs, base, trained = [r for r, _ in batch], self.trained, {}
            part = job._replace(members=[sweep.member_of(r.config) for r in runs])
            for start, res in train_chunks(part, compiled):   # each chunk written while the next one trains
                self.trained = base + start + res.size
                self.tick()
                recs = self.deliver(runs[start:start + res.size], res, part,
                                    {keys.ROUND_TAG: str(batch[0][1])})   # a batch is one round
                trained.update({rec.run.hash: rec.summary for rec in recs})
            try:
                batch = schedule.send(trained)
            except StopIteration as stop:
                return stop.value
            self.bar.total += len(batch)

    def report(self):
        """The refinement's outcome: the parent's artifact refine.json, and one line per group."""
        refine = self.exp.refine
        self.summary.refined = [grp.as_dict(refine) for rep in self.reports for grp in rep.groups]
        self.tracker.log_text(self.parent, json.dumps(self.summary.refined, indent=2), keys.REFINE_ARTIFACT)
        print(f"{self.exp.name}: learning-rate refinement (resolution {refine.resolution:g}, "
              f"at most {refine.max_rounds} rounds):", file=self.out)
        for line in refine_lines(self.summary.refined):
            print(line, file=self.out)


def sync(tracker, out=None) -> int:
    """Write every group waiting in the spool of ``tracker``'s store, then each experiment's
    view in the MLflow UI (stores swept before there were views); the number of runs written."""
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
    views = retry.call(tracker.write_views, "writing the experiments' views in the MLflow UI", retry.is_transient)
    if views:
        print(f"MLflow UI view written for {len(views)} experiment(s): {', '.join(views)}.", file=out)
    return written
