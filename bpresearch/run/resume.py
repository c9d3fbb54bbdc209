"""What the store already holds of an experiment: its FINISHED runs, found by config hash.

A run's hash (``spec.experiment.config_hash``) names it in the store. It leaves out the loss
targets: they are questions asked of the logged curve, so adding one never retrains. Stores
swept by releases up to 4a2693c tag each run with ``legacy_hash``, whose form covered the
targets it was swept with. ``Stored.key`` finds a run under either form: its hash, else the
old form with the run's own targets, else with each target list the store's runs were swept
with (their ``train.targets`` param). So a store swept by an earlier release resumes with
nothing to train, also when the experiment now asks it a new target (docs/guarantees.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from bpresearch.keys import param_key
from bpresearch.spec.experiment import legacy_hash

TARGETS_PARAM = param_key("train", "targets")


def target_lists(texts: Iterable[str]) -> list[tuple]:
    """The ``train.targets`` params of the store's runs (JSON lists) as tuples; unreadable ones skipped."""
    out = []
    for text in texts:
        try:
            value = json.loads(text)
        except (TypeError, ValueError):
            continue
        if isinstance(value, list) and tuple(value) not in out:
            out.append(tuple(value))
    return out


class Stored:
    """An experiment's FINISHED runs in the store, looked up by run (either hash form).

    Args:
        finished: stored config hash -> summary metrics (short names; ``{}`` when not read).
        diverged: stored hashes whose run diverged.
        targets: the ``train.targets`` lists the store's runs were swept with (``target_lists``).
    """

    def __init__(self, finished: dict[str, dict] | Iterable[str], diverged: Iterable[str] = (),
                 targets: Iterable[tuple] = ()):
        self.finished = finished if isinstance(finished, dict) else {h: {} for h in finished}
        self.diverged_hashes = set(diverged)
        self.targets = [tuple(t) for t in targets]

    def key(self, run) -> str | None:
        """The stored hash of ``run``'s FINISHED copy (``run``: ``.hash`` and ``.config``), or None."""
        if run.hash in self.finished:
            return run.hash
        own = tuple(run.config["train"]["targets"])
        for targets in [own, *(t for t in self.targets if t != own)]:
            h = legacy_hash(run.config, targets)
            if h in self.finished:
                return h
        return None

    def has(self, run) -> bool:
        """Whether ``run`` has a FINISHED copy in the store."""
        return self.key(run) is not None

    def summary(self, run) -> dict:
        """The summary metrics of ``run``'s FINISHED copy (KeyError when there is none)."""
        return self.finished[self.key(run)]

    def diverged(self, run) -> bool:
        """Whether ``run``'s FINISHED copy diverged."""
        return self.key(run) in self.diverged_hashes

    def new_targets(self, targets) -> list[float]:
        """Those of ``targets`` that no run in the store was swept with (none when the store has no runs)."""
        seen = {t for ts in self.targets for t in ts}
        return [t for t in targets if seen and t not in seen]


def rekeyed(unfinished: dict[str, list[str]], runs) -> dict[str, list[str]]:
    """``unfinished`` (stored hash -> ids) with each run's old-form copies also under its hash,
    so that writing the run closes them as it closes copies under its own."""
    out = dict(unfinished)
    for r in runs:
        old = legacy_hash(r.config, r.config["train"]["targets"])
        if old in unfinished and old != r.hash:
            out[r.hash] = [*out.get(r.hash, []), *unfinished[old]]
    return out


def read(tracker, exp_id: str, summaries: bool = False) -> tuple[Stored, dict[str, list[str]]]:
    """(the experiment's ``Stored`` runs, stored hash -> ids of unfinished copies) from ``tracker``.

    ``summaries``: read each finished run's summary metrics too (refinement plans with them).
    """
    finished, unfinished, diverged = tracker.runs_by_hash(exp_id)
    found = tracker.finished_summaries(exp_id) if summaries else finished
    return Stored(found, diverged, target_lists(tracker.param_values(exp_id, TARGETS_PARAM))), unfinished
