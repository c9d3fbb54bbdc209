"""Watches a sweep write each chunk while the next one trains (tests of ``sweep.run_chunks`` in use).

``ChunkWrites`` wraps the ``run_chunks`` a driver calls and ``Store.log_runs``: it records
when each chunk is trained and what each writer call wrote, and before the driver may train
the next chunk it waits until the last one is in the store. Records made only after a whole
group (or round) never reach the store in time; the wait is bounded so that such a driver
fails the test instead of hanging it.
"""

import threading

from bpresearch.store.base import Store


class ChunkWrites:
    def __init__(self, monkeypatch, module, timeout: float = 30):
        self.events = []   # ("trained", start, size) and ("written", [hashes]) in the order they happened
        self._cond = threading.Condition()
        real_chunks, real_log = module.run_chunks, Store.log_runs

        def log_runs(tracker, exp_id, parent_id, records, tags, replaces=None):
            ids = real_log(tracker, exp_id, parent_id, records, tags, replaces)
            with self._cond:
                self.events.append(("written", [r.run.hash for r in records]))
                self._cond.notify_all()
            return ids

        def run_chunks(*args, **kwargs):
            for start, res in real_chunks(*args, **kwargs):
                before = self.writes()
                self.events.append(("trained", start, res.size))
                yield start, res
                # the driver asks for the next chunk: this one must be in the store before it trains
                with self._cond:
                    if not self._cond.wait_for(lambda: self.writes() > before, timeout=timeout):
                        self.events.append(("not written before the next chunk", start))

        monkeypatch.setattr(module, "run_chunks", run_chunks)
        monkeypatch.setattr(Store, "log_runs", log_runs)

    def writes(self) -> int:
        return sum(e[0] == "written" for e in self.events)

    def alternate(self) -> bool:
        """Every chunk trained is written, by one writer call of its runs alone, before the next trains."""
        pairs = list(zip(self.events[0::2], self.events[1::2]))
        return len(self.events) % 2 == 0 and all(
            t[0] == "trained" and w[0] == "written" and len(w[1]) == t[2] for t, w in pairs)
