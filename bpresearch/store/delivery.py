"""Trained groups into the store, none lost: spool first, bounded retries, replay, one sweep at a time.

The runner's seam to the store for one experiment:

- ``hold(exp_id)``: the experiment's lease for the whole sweep (``lease.py``);
- ``save(records, tags)``: the group in the spool, atomically, as soon as it is trained;
- ``write(path, records, ...)``: the group's runs into the store (``Store.log_runs``;
  transient errors retried for a bounded time, ``retry.py``), then the spool file deleted;
- ``saved()``: groups an earlier sweep trained but could not write, to write first;
- ``call(fn, what)``: any other store operation, with the same retries.

A store failure surfaces as ``retry.StoreFailure``; what is spooled stays spooled.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from bpresearch.store import lease, retry
from bpresearch.store.record import RunRecord
from bpresearch.store.spool import Spool, SpoolError, folder_for
from bpresearch.store.uri import sqlite_path


class Delivery:
    def __init__(self, tracker, name: str, description: str, out):
        self.tracker, self.name, self.description, self.out = tracker, name, description, out
        self.spool = Spool(folder_for(tracker.uri))
        self.failed = False        # after a failure, a last store call is tried once, not retried
        self._warned = False

    def call(self, fn, what: str):
        return retry.call(fn, f"{self.name}: {what}", retry.is_transient, budget=0.0 if self.failed else None,
                          on_retry=self._say_retry)

    def _say_retry(self, attempt, exc, delay):
        if attempt == 1:
            print(f"{self.name}: store error ({retry.describe(exc)[:120]}); retrying for up to "
                  f"{retry.budget_s():g} s.", file=self.out, flush=True)

    @contextmanager
    def hold(self, exp_id: str):
        """One sweep of this experiment in this store at a time; a second waits."""
        if sqlite_path(self.tracker.uri) is not None:
            with lease.file_lock(self.spool.folder(self.name) / ".lock", self.name, self.out):
                yield
            return
        get = lambda: self.call(lambda: self.tracker.lease(exp_id), "reading the sweep lease")  # noqa: E731
        put = lambda v: self.call(lambda: self.tracker.set_lease(exp_id, v), "writing the sweep lease")  # noqa: E731
        with lease.store_lease(get, put, self.name, self.out):
            yield

    def save(self, records: list[RunRecord], tags: dict) -> Path | None:
        """The group in the spool; None (and one warning) if the spool itself cannot be written."""
        try:
            return self.spool.save(self.name, self.description, records, tags)
        except OSError as e:
            if not self._warned:
                print(f"{self.name}: warning: cannot save trained results in the spool {self.spool.root} "
                      f"({e.strerror or e}); they go to the store only.", file=self.out, flush=True)
                self._warned = True
            return None

    def saved(self) -> list[tuple[Path, dict, list[RunRecord]]]:
        """Groups waiting in the spool for this experiment: (path, meta, records), oldest first."""
        out = []
        for path in self.spool.pending(self.name):
            try:
                meta, records = self.spool.load(path)
            except SpoolError as e:
                aside = self.spool.set_aside(path)
                print(f"{self.name}: warning: {e}; moved to {aside}.", file=self.out, flush=True)
                continue
            out.append((path, meta, records))
        return out

    def write(self, path: Path | None, exp_id: str, parent: str, records: list[RunRecord], tags: dict,
              unfinished: dict, on_run=None):
        """Every run of a group, complete and FINISHED; then its spool file deleted.

        A retry first reads which runs an earlier attempt finished (its answer may have been
        lost with the connection) and writes only the others: never a second FINISHED run.
        """
        pending, attempts = list(records), [0]

        def once():
            nonlocal pending
            attempts[0] += 1
            if attempts[0] > 1:
                finished = self.tracker.runs_by_hash(exp_id)[0]
                pending = [r for r in pending if r.run.hash not in finished]
            if pending:
                group = {"bpresearch.group": pending[0].group}  # one group per call
                self.tracker.log_runs(exp_id, parent, pending, {**tags, **group},
                                      {r.run.hash: unfinished.get(r.run.hash, []) for r in pending})

        if records:
            self.call(once, f"writing {len(records)} run(s) ({records[0].run.name} …)")
        for rec in records:
            if on_run:
                on_run(rec)
        if path is not None:
            self.spool.discard(path)

    def failure(self, what: BaseException) -> retry.StoreFailure:
        """The one-line error of a failed sweep, saying what is saved and how to write it."""
        self.failed = True
        n = len(self.spool.pending(self.name))
        saved = (f"{n} trained chunk(s) are saved in {self.spool.folder(self.name)}: run the same command again "
                 f"(or `bpresearch sync`) to write them without training them again" if n else
                 "no trained results were waiting to be written")
        text = str(what) if isinstance(what, retry.StoreFailure) else f"{self.name}: {retry.describe(what)}"
        return retry.StoreFailure(f"the MLflow store failed: {text}. {saved}.")
