"""Independent chains of work side by side on a few threads: a refining sweep's groups.

A refining group is a chain: its initial grid, then round after round, each round needing
the outcomes of the one before. Groups do not depend on one another, though, and a round is
a few configurations, a program that one core trains alone (XLA also compiles a program on
one thread). So with ``executors.compile_ahead()`` threads, two groups compile side by side
and then train side by side on two cores, rather than one after the other. The results are
the same bit for bit: each group runs the same compiled program on the same inputs, only at
the same time as another group.
"""

from __future__ import annotations

import threading
from typing import Callable, TypeVar

T = TypeVar("T")


def side_by_side(n: int, work: Callable[[int, threading.Event], T], workers: int) -> list[T]:
    """``work(i, stop)`` for i in 0 … n − 1 on ``workers`` threads, each taking the next i in turn.

    Args:
        n: how many pieces of work.
        work: one piece; it should return early once ``stop`` is set (another piece failed,
            or the caller was interrupted).
        workers: threads (one: every piece on the calling thread, in order).
    Returns:
        The pieces' results, by i.
    Raises:
        The first exception a piece raised, once every thread has ended (``stop`` is set as
        soon as it is raised, so the others end at their next check). An interrupt of the
        caller sets ``stop`` and is raised at once; the threads are daemons.
    """
    stop = threading.Event()
    if workers <= 1 or n <= 1:
        return [work(i, stop) for i in range(n)]
    results: list = [None] * n
    failures: list[BaseException] = []
    lock = threading.Lock()
    todo = iter(range(n))

    def loop():
        while not stop.is_set():
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                results[i] = work(i, stop)
            except BaseException as e:  # raised on the caller's thread below
                failures.append(e)
                stop.set()
                return

    threads = [threading.Thread(target=loop, name=f"group-{k}", daemon=True) for k in range(min(workers, n))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)   # a timeout, so that Ctrl-C reaches this thread
    except BaseException:
        stop.set()
        raise
    if failures:
        raise failures[0]
    return results
