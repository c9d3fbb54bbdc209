"""Where a sweep's compiled groups train: in this process, or on Ray actors.

A sweep is a list of ``Job``s, one per compiled group; an executor trains them and
yields a ``Done`` (the job's index, a ``GroupResult`` of numpy arrays for some or all of
its members, and tags saying where it ran) as soon as results reach this process.
Planning, resume by config hash, the parent run and the single writer thread stay with
the driver (``runner``), whatever the executor.

- ``LocalExecutor``: one group after another on this process's devices, the next group
  compiling on a thread while the current one trains (``compiled_in_turn``, which a
  refining sweep's rounds use too); each chunk of a group is yielded as soon as it is on
  the host, so the driver writes it while the next chunk trains.
- ``ray_executor.RayExecutor``: each group on a Ray Core actor (one per GPU, or per few CPU
  cores), on one machine or a cluster; each chunk is yielded as soon as it reaches the
  driver, and what a lost actor or node had not returned is trained again elsewhere.

Ray is optional (``pip install -e '.[ray]'``); only ``ray_executor`` imports it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, NamedTuple

from bpresearch.core.data import Dataset
from bpresearch.run.sweep import GroupResult, Member, compile_group, run_chunks

RAY_INSTALL = "--executor ray needs Ray, an optional extra: pip install -e '.[ray]'"


class MissingRay(RuntimeError):
    """Ray is not installed; the message says how to install it."""


class ExecutorFailure(RuntimeError):
    """The executor cannot go on (every Ray actor lost); the message says why, in one line."""


class Job(NamedTuple):
    """One compiled group: the config it shares, its members, its data."""
    config: dict
    members: list[Member]
    dataset: Dataset
    max_chunk: int
    chunk_size: int | None = None   # the chunk compiled for, when rounds reuse the program (else from max_chunk)


class Done(NamedTuple):
    """Trained members of one job: the whole group (Ray), or one chunk of it (local)."""
    index: int                # the job's position in the list given to ``run``
    result: GroupResult       # over members[start : start + its length] of the job
    compile_s: float          # what compiling cost: the driver's wait (local), the worker's time (Ray)
    tags: dict[str, str]      # where it ran: overrides the driver's provenance tags
    start: int = 0            # the job's member that ``result`` begins with
    last: bool = True         # the job's last part: its group is trained


def compile_job(job: Job):
    """``compile_group`` for ``job``: its chunk size, or one from its members and ``max_chunk``."""
    if job.chunk_size:
        return compile_group(job.config, job.chunk_size, job.dataset, job.chunk_size)
    return compile_group(job.config, len(job.members), job.dataset, job.max_chunk)


def compiled_in_turn(jobs: list[Job]) -> Iterator[tuple[int, Job, tuple, float]]:
    """Each job with its compiled program, the next one compiling on a thread while the caller
    trains this one (XLA compiles without holding the GIL).

    Yields:
        ``(index, job, compile_job(job), seconds the caller waited for it)``.
    """
    if not jobs:
        return
    compiler = ThreadPoolExecutor(max_workers=1)
    try:
        pending = compiler.submit(compile_job, jobs[0])
        for i, job in enumerate(jobs):
            t0 = time.perf_counter()
            compiled = pending.result()
            waited = time.perf_counter() - t0
            if i + 1 < len(jobs):
                pending = compiler.submit(compile_job, jobs[i + 1])
            yield i, job, compiled, waited
    finally:
        compiler.shutdown(wait=False, cancel_futures=True)


def train_chunks(job: Job, compiled) -> Iterator[tuple[int, GroupResult]]:
    """``run_chunks`` of ``job`` with its compiled program: each chunk as soon as it is on the host."""
    return run_chunks(job.config, job.members, job.dataset, job.max_chunk, compiled, chunk_size=job.chunk_size)


class LocalExecutor:
    """Groups in order on this process's devices; the next one compiles while one trains."""
    name = "local"

    def run(self, jobs: list[Job], on_runs: Callable[[int], None] | None = None) -> Iterator[Done]:
        """Train ``jobs`` in order, yielding each chunk of each; ``on_runs(n)``: runs trained so far."""
        base = 0
        for i, job, compiled, waited in compiled_in_turn(jobs):
            for start, res in train_chunks(job, compiled):
                if on_runs:
                    on_runs(base + start + res.size)
                yield Done(i, res, waited if start == 0 else 0.0, {}, start, start + res.size == len(job.members))
            base += len(job.members)

    def close(self):
        pass


def make_executor(kind: str, address: str | None = None, actors: int | None = None, pip: bool = False):
    """The executor ``--executor`` names: ``LocalExecutor``, or a ``ray_executor.RayExecutor``
    (started now, before the driver's JAX touches a device). Raises ``MissingRay`` without Ray."""
    if kind != "ray":
        return LocalExecutor()
    from bpresearch.run.ray_executor import RayExecutor

    return RayExecutor(address, actors, pip=pip)
