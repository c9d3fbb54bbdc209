"""Groups on Ray actors, on one machine or a cluster of several, streamed back chunk by chunk.

Each compiled group trains on a Ray Core actor. Actors, not tasks: an actor keeps JAX and
its compiled programs warm, where Ray starts a fresh worker process, and pays JAX's
start-up, for each GPU task. Groups go largest first to whichever actor is free, each data
set is ``ray.put`` once, and an actor's ``run`` is a Ray generator: each chunk of a group
comes back (numpy arrays) as soon as it is trained, so the driver writes chunk c while
chunk c + 1 trains, as with the local executor.

Workers need no checkout: the driver ships the ``bpresearch`` package in the actors'
``runtime_env`` (``py_modules``), and with ``pip=True`` names the pinned versions of what
the workers import (its own). Each actor sets up JAX from its own node's environment
(``sharding.prepare_backend``): every node keeps its own compilation cache.

A lost actor or node costs time, never a run: a chunk is logged only once it has reached
the driver, and when an actor's stream breaks (the actor was killed, or its node lost) the
members it had not yet returned go back in the queue, cut into the same chunks as before so
that their results are the same bit for bit. The sweep says which node was lost and what
is retried. A lost actor is restarted by Ray (``max_restarts``, on another node if its own
is gone) and takes work again once it answers.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections import deque
from importlib import metadata
from typing import Callable, Iterator, NamedTuple

from bpresearch.core.data import Dataset
from bpresearch.run.executors import RAY_INSTALL, Done, ExecutorFailure, Job, MissingRay
from bpresearch.run.sweep import Member, chunks

# What the workers import, beyond the standard library and Ray: pinned by ``pip=True``.
WORKER_DEPS = ("jax", "jaxlib", "optax", "numpy")
STALL_S = 600.0   # no actor alive and free for this long: the sweep fails rather than waits forever
RETRIES = 3       # how often one part of a group is resubmitted after losing its actor
NODE_GRACE_S = 30.0   # how long a lost actor's line waits for Ray to say whether its node is gone


class GroupWorker:
    """A Ray actor's state: a warm JAX process that trains groups (``ray.remote`` applied lazily)."""

    def __init__(self):
        from bpresearch.run import sharding

        sharding.prepare_backend()  # this node's cache, CPU pool and GPU flags, before JAX's backend starts
        import jax
        import ray

        ctx = ray.get_runtime_context()
        self.where = {"pid": os.getpid(), "node_id": ctx.get_node_id(), "cache": str(jax.config.jax_compilation_cache_dir)}
        self.tags = {"jax.backend": jax.default_backend(), "jax.device": str(jax.devices()[0].device_kind),
                     "bpresearch.executor": "ray", "ray.node": platform.node(),
                     "ray.node_id": ctx.get_node_id()}

    def about(self) -> dict:
        """Where this actor runs: pid, Ray node id, its compilation cache folder."""
        return self.where

    def run(self, config: dict, members: list[Member], dataset: Dataset, max_chunk: int, chunk_size: int | None):
        """``run_chunks`` of a group (or of its members from some chunk on): yields
        ``(start, chunk size, GroupResult, tags)`` for each chunk as soon as it is trained."""
        from bpresearch.run import sharding
        from bpresearch.run.sweep import run_chunks

        d = sharding.n_devices()
        size = chunks(chunk_size, chunk_size, d)[1] if chunk_size else chunks(len(members), max_chunk, d)[1]
        for start, res in run_chunks(config, members, dataset, max_chunk, chunk_size=chunk_size):
            yield start, size, res, self.tags


def _ray():
    try:
        import ray
    except ImportError:
        raise MissingRay(RAY_INSTALL) from None
    return ray


def pinned(names=WORKER_DEPS) -> list[str]:
    """``name==version`` of each of ``names`` installed here (the driver's versions)."""
    return [f"{n}=={metadata.version(n)}" for n in names]


ACTOR_ENV = {"env_vars": {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}}   # several actors may share a GPU


def runtime_env(pip: bool = False) -> dict:
    """The sweep's Ray job environment: this ``bpresearch`` package (Ray uploads a local folder
    only for a whole job, at ``ray.init``), and with ``pip`` the pinned worker deps."""
    import bpresearch

    env = {"py_modules": [os.path.dirname(bpresearch.__file__)], **ACTOR_ENV}
    if pip:
        env["pip"] = {"packages": pinned(), "pip_check": False}
    return env


class Part(NamedTuple):
    """Members of one job from ``offset`` on, to train on one actor."""
    index: int                # the job's position in the list given to ``run``
    offset: int               # the job's member the part begins with
    chunk_size: int | None    # None: chunks from the job's max_chunk; else the chunk the part was cut into
    tries: int = 0


class RayExecutor:
    """Groups on Ray actors: a local Ray instance, or a cluster at ``address``.

    Args:
        address: a running cluster (``ray://host:10001`` or ``host:6379``; ``auto``); None
            starts a local instance with every core. If Ray is already initialized in this
            process (a test's own ``ray.init``), that instance is used, its job's
            ``runtime_env`` as it is (the package is then not shipped).
        actors: how many actors; default one per GPU of the cluster, else one per
            ``cpus_per_actor`` CPUs.
        cpus_per_actor: CPUs reserved by each CPU actor (JAX uses several threads anyway).
        gpus_per_actor: GPUs per actor on a GPU cluster; 0.5 puts two actors on one GPU
            (with ``XLA_PYTHON_CLIENT_PREALLOCATE=false``, which every actor gets).
        max_restarts: how often Ray restarts a dead actor (on another node if its own is lost).
        pip: workers install the driver's pinned versions of ``WORKER_DEPS`` (``runtime_env``
            ``pip``: every node needs a package index); else the nodes' Python must have them.
        out: where the lines about lost actors and nodes go.
    """
    name = "ray"

    def __init__(self, address: str | None = None, actors: int | None = None, cpus_per_actor: float = 1,
                 gpus_per_actor: float = 1, max_restarts: int = 3, pip: bool = False, out=None):
        ray = _ray()
        self._ray, self.out = ray, out or sys.stderr
        self._owns_ray = False
        if not ray.is_initialized():
            kwargs = {"address": address, "log_to_driver": False, "logging_level": "ERROR",
                      "runtime_env": runtime_env(pip)}
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
        # Ray does not retry a method on its own (max_task_retries=0): ``run`` resubmits what a
        # lost actor had not returned, so that no chunk comes back twice.
        remote = ray.remote(GroupWorker).options(max_restarts=max_restarts, max_task_retries=0,
                                                 runtime_env=ACTOR_ENV, **options)
        self.actors = [remote.remote() for _ in range(n)]
        self.where = ray.get([a.about.remote() for a in self.actors])  # waits until every actor is up
        self.pids = [w["pid"] for w in self.where]
        self.lost: list[dict] = []   # each part whose actor was lost: when, where, what, when resubmitted

    def run(self, jobs: list[Job], on_runs: Callable[[int], None] | None = None) -> Iterator[Done]:
        """Train ``jobs`` on the actors, largest first; yield each chunk as it comes back."""
        ray = self._ray
        refs: dict[int, object] = {}  # one object-store copy per data set
        for job in jobs:
            if id(job.dataset) not in refs:
                refs[id(job.dataset)] = ray.put(job.dataset)
        queue = deque(Part(i, 0, jobs[i].chunk_size) for i in sorted(range(len(jobs)), key=lambda i: -len(jobs[i].members)))
        free = deque(range(len(self.actors)))
        running: dict = {}    # generator -> (actor number, part, members returned so far)
        waking: dict = {}     # an ``about`` call -> actor number: a restarted actor takes work once it answers
        trained, idle_since = 0, None
        while queue or running:
            while queue and free:
                a, part = free.popleft(), queue.popleft()
                job = jobs[part.index]
                gen = self.actors[a].run.options(num_returns="streaming").remote(
                    job.config, job.members[part.offset:], refs[id(job.dataset)], job.max_chunk, part.chunk_size)
                running[gen] = (a, part, 0)
                self._resubmitted(part)
            if not running and not waking:
                raise ExecutorFailure(f"Ray: no actor left to train {len(queue)} group part(s)")
            ready, _ = ray.wait([*running, *waking], num_returns=1, timeout=1.0)
            self._say()
            if not running:  # only restarting actors: wait for one, within bounds
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > STALL_S:
                    raise ExecutorFailure(f"Ray: no actor came back within {STALL_S:.0f} s; {len(queue)} part(s) untrained")
            else:
                idle_since = None
            for w in ready:
                if w in waking:
                    self._woken(w, waking, free)
                    continue
                a, part, got = running.pop(w)
                try:
                    start, size, res, tags = ray.get(next(w))
                except StopIteration:
                    free.append(a)
                    continue
                except self._lost_errors() as e:
                    self._lose(a, part, got, jobs, e, queue, waking)
                    continue
                running[w] = (a, part._replace(chunk_size=size), got + res.size)
                trained += res.size
                if on_runs:
                    on_runs(trained)
                first = part.offset + start
                yield Done(part.index, res, res.compile_s, tags, first, first + res.size == len(jobs[part.index].members))
        self._settle(waking, free)

    def _settle(self, waking: dict, free: deque):
        """Before the sweep ends: wait (at most ``NODE_GRACE_S``) until Ray says whether each lost
        part's node is gone or its actor is back, so that its line names the right one."""
        deadline = time.monotonic() + NODE_GRACE_S
        while any(not e["said"] for e in self.lost) and time.monotonic() < deadline:
            if waking:
                for w in self._ray.wait(list(waking), num_returns=1, timeout=0.5)[0]:
                    self._woken(w, waking, free)
            else:
                time.sleep(0.5)
            self._say()
        self._say(final=True)

    def _lost_errors(self) -> tuple:
        """What a lost actor, worker process or node raises (not an error of the group's own code)."""
        e = self._ray.exceptions
        return (e.RayActorError, e.ObjectLostError, e.WorkerCrashedError, e.NodeDiedError)

    def _lose(self, a: int, part: Part, got: int, jobs: list[Job], error, queue: deque, waking: dict):
        """Actor ``a`` broke off ``part`` after ``got`` members: requeue the rest, wake the actor, and
        say so once it is known whether its node was lost (``_say``)."""
        job, w = jobs[part.index], self.where[a]
        rest = part._replace(offset=part.offset + got, tries=part.tries + 1)
        waking[self.actors[a].about.remote()] = a
        if rest.offset >= len(job.members):   # lost after its last chunk came back: nothing to retry
            return
        if rest.tries > RETRIES:
            raise ExecutorFailure(f"Ray: group {part.index} lost its actor {rest.tries} times, giving up "
                                  f"({type(error).__name__})")
        retry = (f"retrying group {part.index} ({len(job.members) - rest.offset} of its {len(job.members)} runs "
                 f"not yet returned) on another actor")
        self.lost.append({"t": time.time(), "node": w["node_id"], "pid": w["pid"], "actor": a, "part": rest,
                          "retry": retry, "answered": False, "said": False, "resubmitted": None})
        queue.appendleft(rest)   # first: the runs it holds back are the oldest

    def _say(self, final: bool = False):
        """One line per lost part: its node, if Ray has marked the node dead (which takes it a few
        seconds), else its actor, once the actor is back, ``NODE_GRACE_S`` have passed, or at the end."""
        unsaid = [e for e in self.lost if not e["said"]]
        if not unsaid:
            return
        nodes = {n["NodeID"]: n for n in self._ray.nodes()}
        for e in unsaid:
            node = nodes.get(e["node"], {})
            where = f"{node.get('NodeManagerAddress', '?')} ({e['node'][:8]})"
            if not node.get("Alive"):
                what = f"node {where} lost"
            elif e["answered"] or final or time.time() - e["t"] > NODE_GRACE_S:
                what = f"actor {e['pid']} on node {where} lost"
            else:
                continue
            e["said"] = True
            print(f"Ray: {what}; {e['retry']}.", file=self.out, flush=True)

    def _resubmitted(self, part: Part):
        for event in self.lost:
            if event["part"] == part and event["resubmitted"] is None:
                event["resubmitted"] = time.time()

    def _woken(self, ref, waking: dict, free: deque):
        """A restarted actor answered (it takes work again), or is gone for good (dropped)."""
        a = waking.pop(ref)
        try:
            where = self._ray.get(ref)
        except self._lost_errors():
            return
        for e in self.lost:
            e["answered"] |= e["actor"] == a and e["pid"] == self.where[a]["pid"]
        self.where[a] = where
        free.append(a)

    def close(self):
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self._owns_ray:
            self._ray.shutdown()
