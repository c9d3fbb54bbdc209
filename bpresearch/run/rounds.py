"""Which runs of a compiled group to train next: the initial grid, then refinement rounds.

``schedule`` is a generator, pure (no JAX, no tracking): it yields a batch of runs to
train, is sent back their summary metrics, and yields the next batch; it returns a
``GroupReport``. Runs already FINISHED in the store are never yielded: their stored
summaries stand in for training, so a killed refinement resumes round by round to the
same learning rates (each round depends only on the outcomes before it, and the same
configuration and seed give the same curve), and a finished one yields nothing at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generator

from bpresearch import keys, verdicts
from bpresearch.run import refine as refinemod
from bpresearch.run.resume import Stored
from bpresearch.spec import experiment as expmod
from bpresearch.spec.experiment import Run
from bpresearch.spec.refine import Settings


@dataclass
class RefineGroup:
    """One refinement group (batch size × every other facet value): its runs and where it stands."""
    label: str
    initial_lrs: list[float]
    seeds: list[int]
    templates: dict[int, Run]                      # seed -> a run to derive new learning rates from
    outcomes: dict[float, list[refinemod.Outcome]]  # target -> outcomes so far
    rounds: int = 0
    added: list[float] = field(default_factory=list)
    decisions: dict[float, refinemod.Decision] = field(default_factory=dict)

    def as_dict(self, settings: Settings) -> dict:
        """What the parent run records about this group (JSON-ready)."""
        lrs = sorted(set(self.initial_lrs) | set(self.added))
        out = {"group": self.label, "rounds": self.rounds, "added": len(self.added),
               "added_learning_rates": sorted(self.added), "initial_learning_rates": sorted(self.initial_lrs),
               "configurations": len(lrs) * len(self.seeds), "seeds": len(self.seeds),
               "uniform_grid": verdicts.uniform_count(lrs[0], lrs[-1], settings.resolution) * len(self.seeds),
               "targets": {}}
        for t, d in self.decisions.items():
            out["targets"][f"{t:g}"] = {
                "status": d.status, "resolved": d.resolved, "best_learning_rate": d.best,
                "best_steps": None if d.best_steps == float("inf") else d.best_steps,
                "below": _pair(d.below), "above": _pair(d.above)}
        out["resolved"] = bool(self.decisions) and all(d.resolved for d in self.decisions.values())
        return out


def _pair(p):
    if p is None:
        return None
    return {"learning_rate": p[0], "steps": None if p[1] == float("inf") else p[1]}


@dataclass
class GroupReport:
    groups: list[RefineGroup]
    trained: int = 0        # runs yielded for training


def label(config: dict) -> str:
    """``bs=32`` plus every other swept facet except learning rate and seed."""
    bs = "full" if config["train"]["full_batch"] else config["train"]["batch_size"]
    skip = {expmod.SWEPT_INTO["learning_rate"], expmod.SWEPT_INTO["seeds"], expmod.SWEPT_INTO["batch_size"]}
    return " ".join([f"bs={bs}"] + [f"{k}={v}" for k, v in config["swept"].items() if k not in skip])


def _shape(runs: list[Run]) -> tuple[int, int]:
    """(refinement groups, most seeds in one) of a compiled group."""
    seeds: dict[str, set] = {}
    for r in runs:
        seeds.setdefault(expmod.refine_key(r.config), set()).add(r.config["train"]["seed"])
    return len(seeds), max(len(v) for v in seeds.values())


def chunk_size(settings: Settings, runs: list[Run], max_chunk: int) -> int:
    """The chunk a refining group compiles for: the initial grid's, or one round's when
    ``per_round`` is set and smaller (the initial grid then runs as several such chunks)."""
    size = sweep_chunks(len(runs), max_chunk)
    if settings.per_round:
        groups, seeds = _shape(runs)
        size = min(size, settings.per_round * seeds * groups)
    return size


def sweep_chunks(n: int, max_chunk: int) -> int:
    """Equal chunks of at most ``max_chunk`` for n members (``sweep.chunks``, without JAX)."""
    n_chunks = -(-n // max_chunk)
    return -(-n // n_chunks)


def slots(settings: Settings, chunk_size: int, runs: list[Run]) -> int:
    """Learning rates per refinement group per round: ``per_round``, else as many as fill one chunk."""
    if settings.per_round:
        return settings.per_round
    groups, seeds = _shape(runs)
    return max(1, chunk_size // (seeds * groups))


def outcome(run: Run, summary: dict[str, float], target: float) -> refinemod.Outcome:
    """A run's ``Outcome`` for ``target`` from its summary metrics (as logged, or as just trained)."""
    steps = summary.get(keys.steps_key(target))   # absent: never reached (censored)
    return refinemod.Outcome(run.config["optimizer"]["learning_rate"], run.config["train"]["seed"],
                             None if steps is None else float(steps), bool(summary.get(keys.DIVERGED, 0.0)),
                             float(summary.get(keys.FINAL_LOSS, float("nan"))), target)


Batch = list[tuple[Run, int]]   # (run, round): round 0 is the initial grid


def schedule(runs: list[Run], finished: Stored, settings: Settings | None,
             n_slots: int = 1) -> Generator[Batch, dict[str, dict], GroupReport]:
    """The batches of one compiled group.

    Args:
        runs: the group's initial grid.
        finished: the runs FINISHED in the store, with their summary metrics (``resume.Stored``).
        settings: ``[sweep] refine``, or None for a plain grid.
        n_slots: learning rates per refinement group per round (see ``slots``).
    Yields:
        Batches of (run, round) to train, one round each; send back {hash: summary} of the batch.
    Returns:
        ``GroupReport``: each refinement group's final decisions, rounds and added rates.
    """
    report = GroupReport([])
    todo = [(r, 0) for r in runs if not finished.has(r)]
    got: dict[str, dict] = {}   # hash -> summary of the runs trained by this sweep

    def summary(r: Run) -> dict:
        return got[r.hash] if r.hash in got else finished.summary(r)

    if todo:
        report.trained += len(todo)
        got.update((yield todo))
    refinable = settings is not None and runs[0].config["optimizer"]["kind"] != "random_search"
    if not refinable:
        return report

    groups: dict[str, RefineGroup] = {}
    for r in runs:
        g = groups.setdefault(expmod.refine_key(r.config), RefineGroup(
            label(r.config), [], [], {}, {t: [] for t in settings.targets}))
        lr, seed = r.config["optimizer"]["learning_rate"], r.config["train"]["seed"]
        if lr not in g.initial_lrs:
            g.initial_lrs.append(lr)
        if seed not in g.templates:
            g.templates[seed] = r
            g.seeds.append(seed)
        for t in settings.targets:
            g.outcomes[t].append(outcome(r, summary(r), t))
    report.groups = list(groups.values())

    round_no = 0   # one number per batch: groups that stop never resume, the rest advance together
    while True:
        batch: Batch = []
        for g in groups.values():
            g.decisions = {t: refinemod.decide(g.outcomes[t], settings.resolution, n_slots) for t in settings.targets}
            if g.rounds >= settings.max_rounds:
                continue
            nxt = refinemod.merge_proposals(g.decisions.values(), n_slots)
            if not nxt:
                continue
            g.rounds += 1
            g.added += nxt
            batch += [(expmod.with_learning_rate(g.templates[s], lr), round_no + 1) for lr in nxt for s in g.seeds]
        if not batch:
            return report
        round_no += 1
        todo = [(r, k) for r, k in batch if r.hash not in got and not finished.has(r)]
        if todo:
            report.trained += len(todo)
            got.update((yield todo))
        for r, _ in batch:
            g = groups[expmod.refine_key(r.config)]
            for t in settings.targets:
                g.outcomes[t].append(outcome(r, summary(r), t))
