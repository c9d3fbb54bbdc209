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
- ``RayExecutor``: each group on a Ray Core actor (one per GPU, or per few CPU cores).
  Actors, not tasks: an actor keeps JAX and its compiled programs warm, where Ray starts
  a fresh worker process, and pays JAX's start-up, for each GPU task. Groups go largest
  first through ``ray.util.ActorPool`` (each actor holds one group at a time), each data
  set is ``ray.put`` once, and workers return numpy arrays. An actor that dies is
  restarted and its group run again (``max_restarts``/``max_task_retries``); nothing of a
  group is logged before its result reaches the driver, so a death costs time, never a
  duplicate or a partial run.

Ray is optional (``pip install -e '.[ray]'``); only ``RayExecutor`` imports it.
"""

from __future__ import annotations

import os
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

from bpresearch.core.data import Dataset
from bpresearch.run.sweep import GroupResult, Member, compile_group, run_chunks, run_group

RAY_INSTALL = "--executor ray needs Ray, an optional extra: pip install -e '.[ray]'"


class MissingRay(RuntimeError):
    """Ray is not installed; the message says how to install it."""


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


class GroupWorker:
    """A Ray actor's state: a warm JAX process that trains groups (``ray.remote`` applied lazily)."""

    def __init__(self):
        import jax

        self.tags = {"jax.backend": jax.default_backend(), "jax.device": str(jax.devices()[0].device_kind),
                     "bpresearch.executor": "ray", "ray.node": platform.node()}

    def pid(self) -> int:
        return os.getpid()

    def run(self, index: int, config: dict, members: list[Member], dataset: Dataset, max_chunk: int):
        return index, run_group(config, members, dataset, max_chunk), self.tags


def _ray():
    try:
        import ray
    except ImportError:
        raise MissingRay(RAY_INSTALL) from None
    return ray


def cache_dir() -> str:
    """The persistent compilation cache that the driver uses (and so the actors share)."""
    import jax  # reading a config value does not start JAX's backend

    return (os.environ.get("JAX_COMPILATION_CACHE_DIR") or jax.config.jax_compilation_cache_dir
            or str(Path.home() / ".cache" / "bpresearch" / "jax"))


class RayExecutor:
    """Groups on Ray actors: a local Ray instance, or a cluster at ``address``.

    Args:
        address: a running cluster (``ray://host:10001`` or ``host:6379``; ``auto``); None
            starts a local instance with every core. If Ray is already initialized in this
            process (a test's own ``ray.init``), that instance is used.
        actors: how many actors; default one per GPU of the cluster, else one per
            ``cpus_per_actor`` CPUs.
        cpus_per_actor: CPUs reserved by each CPU actor (JAX uses several threads anyway).
        gpus_per_actor: GPUs per actor on a GPU cluster; 0.5 puts two actors on one GPU
            (with ``XLA_PYTHON_CLIENT_PREALLOCATE=false``, which every actor gets).
        max_restarts: how often a dead actor is restarted, its group run again each time.
    """
    name = "ray"

    def __init__(self, address: str | None = None, actors: int | None = None, cpus_per_actor: float = 1,
                 gpus_per_actor: float = 1, max_restarts: int = 3):
        ray = _ray()
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs = {"address": address, "log_to_driver": False, "logging_level": "ERROR"}
            if address is None:  # a local instance on loopback, without the dashboard
                kwargs.update(include_dashboard=False, _node_ip_address="127.0.0.1")
            ray.init(**kwargs)
            self._owns_ray = True
        # Before the driver's JAX touches a GPU: the actors need its memory.
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        resources = ray.cluster_resources()
        gpus = resources.get("GPU", 0)
        if gpus:
            n = actors or max(1, int(gpus // gpus_per_actor))
            options = {"num_gpus": gpus_per_actor, "num_cpus": 1}
        else:
            n = actors or max(1, int(resources.get("CPU", 1) // cpus_per_actor))
            options = {"num_cpus": cpus_per_actor}
        env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false", "JAX_COMPILATION_CACHE_DIR": cache_dir()}
        remote = ray.remote(GroupWorker).options(
            max_restarts=max_restarts, max_task_retries=max_restarts, runtime_env={"env_vars": env}, **options)
        self.actors = [remote.remote() for _ in range(n)]
        self.pids = ray.get([a.pid.remote() for a in self.actors])  # waits until every actor is up

    def run(self, jobs: list[Job], on_runs: Callable[[int], None] | None = None) -> Iterator[Done]:
        """Train ``jobs`` on the actors, largest first; yield each as it finishes."""
        from ray.util import ActorPool

        ray = self._ray
        pool = ActorPool(self.actors)
        refs: dict[int, object] = {}  # one object-store copy per data set
        for i in sorted(range(len(jobs)), key=lambda i: -len(jobs[i].members)):
            job = jobs[i]
            if id(job.dataset) not in refs:
                refs[id(job.dataset)] = ray.put(job.dataset)
            args = (i, job.config, job.members, refs[id(job.dataset)], job.max_chunk)
            pool.submit(lambda actor, a: actor.run.remote(*a), args)
        trained = 0
        while pool.has_next():
            index, res, tags = pool.get_next_unordered()
            trained += len(jobs[index].members)
            if on_runs:
                on_runs(trained)
            yield Done(index, res, res.compile_s, tags)

    def close(self):
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            self._ray.shutdown()


def make_executor(kind: str, address: str | None = None, actors: int | None = None):
    """The executor ``--executor`` names: ``LocalExecutor``, or a ``RayExecutor`` (started now,
    before the driver's JAX touches a device). Raises ``MissingRay`` without Ray."""
    return RayExecutor(address, actors) if kind == "ray" else LocalExecutor()
