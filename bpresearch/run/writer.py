"""A sweep's single writer thread: each trained part into the spool, then into the store.

Each part the executor hands out (a chunk of a group trained here, a whole group from Ray)
goes into the spool first, then into the store (one part, one call: on sqlite a few
transactions for all its runs, ``Delivery.write`` → ``log_runs``), while the next chunk
trains. The queue is bounded, so host memory stays bounded too. After a store failure the
parts still coming are only spooled; the failure surfaces on the main thread (``check``).
"""

from __future__ import annotations

import queue
import threading
from typing import Callable

from bpresearch.store.delivery import Delivery
from bpresearch.store.record import RunRecord


class Writer:
    """The writer thread of one sweep; started on creation.

    Args:
        keep: the experiment's ``Delivery``.
        exp_id, parent: the experiment and the sweep's parent run.
        tags: every run's tags (provenance); a part's own tags override them.
        unfinished: config hash -> ids of unfinished copies that a written run replaces.
        on_run: called with each record once it is in the store (on the writer thread).
    """

    def __init__(self, keep: Delivery, exp_id: str, parent: str, tags: dict, unfinished: dict,
                 on_run: Callable[[RunRecord], None]):
        self.keep, self.exp_id, self.parent, self.tags = keep, exp_id, parent, tags
        self.unfinished, self.on_run = unfinished, on_run
        self.work: queue.Queue = queue.Queue(maxsize=2)
        self.failure: list[BaseException] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while (item := self.work.get()) is not None:
            records, where = item
            group_tags = {**self.tags, **where}
            try:
                path = self.keep.save(records, group_tags)
                if not self.failure:
                    self.keep.write(path, self.exp_id, self.parent, records, group_tags, self.unfinished, self.on_run)
            except BaseException as e:  # surfaced on the main thread
                self.failure.append(e)

    def put(self, records: list[RunRecord], where: dict[str, str]):
        """Queue a trained part (waits while two are queued); then raise the writer's failure, if any."""
        self.work.put((records, where))
        self.check()

    def check(self):
        """Raise the first error the writer met."""
        if self.failure:
            raise self.failure[0]

    def drain(self, tick: Callable[[], None]):
        """Wait until every queued part is written (or spooled), calling ``tick()`` every half second."""
        self.work.put(None)
        while self.thread.is_alive():
            self.thread.join(timeout=0.5)
            tick()

    def spool_rest(self):
        """After a store failure: wait (at most 2 min) while the writer spools what is still queued."""
        if self.thread.is_alive():
            self.work.put(None)
            self.thread.join(timeout=120)

    def close(self):
        """The writer stops once the queued parts are handled; after a failure (it only spools
        them then) wait for that, at most 2 min."""
        if self.thread.is_alive():
            self.work.put(None)
            if self.failure:
                self.thread.join(timeout=120)
