"""Groups → compiled programs → result arrays. No tracking here.

A group is every run of an experiment that shares one compiled program: same model,
loss, optimizer kind, batch size and step count. Inside it the learning rate, the
momentum and the seed are data, vmapped over; the group is cut into chunks of equal
size (the last padded) so that one compilation serves them all and memory stays bounded.
Where JAX sees several local devices, each chunk's configurations are split over them
(``sharding``).

``run_group`` is a pure function from a group description (a resolved config, the
members' swept values, the data arrays) to numpy arrays, so that a group can run in
another process or on another machine. ``run_chunks`` is the same computation handed out
chunk by chunk, so that a caller can write one chunk while the next one trains. What the
config means (model, loss, optimizer, static settings) is read by ``workload``.
"""

from __future__ import annotations

import time
from typing import Iterator, NamedTuple

import jax
import numpy as np

from bpresearch.core import train
from bpresearch.core.data import Dataset
from bpresearch.run import sharding
from bpresearch.spec.workload import build_run, to_device, train_spec


class Member(NamedTuple):
    learning_rate: float
    momentum: float
    seed: int


class GroupResult(NamedTuple):
    arrays: dict[str, np.ndarray]   # each (n_members, ...)
    eval_steps: np.ndarray          # the steps of full_train_loss / test_loss
    compile_s: float
    run_s: float

    @property
    def size(self) -> int:
        """How many members the arrays hold."""
        return len(next(iter(self.arrays.values())))


def chunks(n: int, max_chunk: int, devices: int = 1) -> tuple[int, int]:
    """(number of chunks, chunk size) for n members: equal sizes, each a multiple of ``devices``.

    ``max_chunk`` is first rounded up to a multiple of ``devices``, so that every device gets
    a share of every chunk. With one device the padding is under one member per chunk.
    """
    max_chunk = -(-max_chunk // devices) * devices
    n_chunks = -(-n // max_chunk)
    size = -(-n // n_chunks)
    return n_chunks, -(-size // devices) * devices


def compile_group(config: dict, n_members: int, dataset: Dataset, max_chunk: int = 64, data=None):
    """The group's program, compiled for its chunk size: ``(compiled, seconds)``.

    Separate from ``run_group`` so that a caller may compile the next group on another
    thread while this one trains (XLA compiles without holding the GIL).
    """
    devices = sharding.n_devices()
    data = sharding.replicate(to_device(config, dataset), devices) if data is None else data
    program = sharding.group_program(build_run(config, dataset), devices)
    _, size = chunks(n_members, max_chunk, devices)
    z = np.zeros(size, np.float32)
    t0 = time.perf_counter()
    compiled = program.lower(data, z, z, np.zeros(size, np.int32)).compile()
    return compiled, time.perf_counter() - t0


def run_chunks(config: dict, members: list[Member], dataset: Dataset, max_chunk: int = 64,
               compiled=None, chunk_size: int | None = None) -> Iterator[tuple[int, GroupResult]]:
    """Train a group chunk by chunk; yield each chunk's results as soon as they are on the host.

    A caller can write chunk c while chunk c + 1 trains, rather than wait for the whole
    group. Every chunk is one call of the same compiled program on the same padded member
    arrays that ``run_group`` concatenates, so the results are the same bit for bit.

    Args:
        config, members, dataset, max_chunk, compiled, chunk_size: as for ``run_group``.
    Yields:
        ``(start, result)``: the index in ``members`` of the chunk's first member, and a
        ``GroupResult`` over that chunk's members only (padding cut off). The first chunk's
        ``compile_s`` carries the group's compilation, the others 0, so that they add up;
        ``run_s`` is the chunk's own training and transfer to the host.
    """
    devices = sharding.n_devices()
    data = sharding.replicate(to_device(config, dataset), devices)
    if chunk_size:  # the program was compiled for this chunk: a refinement round reuses it
        size = chunks(chunk_size, chunk_size, devices)[1]
        n_chunks = -(-len(members) // size)
    else:
        n_chunks, size = chunks(len(members), max_chunk, devices)
    program, compile_s = compiled or compile_group(config, size, dataset, size, data)
    padded = members + [members[-1]] * (n_chunks * size - len(members))
    lr = np.array([m.learning_rate for m in padded], np.float32)
    mom = np.array([m.momentum for m in padded], np.float32)
    seed = np.array([m.seed for m in padded], np.int32)
    t = train_spec(config)
    ev = train.eval_steps(t.steps, t.eval_every)
    # Chunk c + 1 is not dispatched before chunk c is fetched: the caller's host work between
    # chunks (a chunk's records: ≈ 20 ms for 64 digits runs) is under 1% of a chunk's training,
    # and a second call in flight would double what Ctrl-C waits for.
    for c in range(n_chunks):
        start, stop = c * size, min((c + 1) * size, len(members))
        sl = slice(c * size, (c + 1) * size)
        t0 = time.perf_counter()
        out = jax.device_get(program(data, lr[sl], mom[sl], seed[sl]))
        run_s = time.perf_counter() - t0
        arrays = {k: v[:stop - start] for k, v in out.items()}
        yield start, GroupResult(arrays, ev, compile_s if c == 0 else 0.0, run_s)


def run_group(config: dict, members: list[Member], dataset: Dataset, max_chunk: int = 64,
              on_chunk=None, compiled=None, chunk_size: int | None = None) -> GroupResult:
    """Train every member of a group with one compiled program (``run_chunks``, joined).

    Args:
        config: the resolved config of any member (only what the group shares is read).
        members: the vmapped values (learning rate, momentum, seed) of each run.
        dataset: the training (and test) arrays.
        max_chunk: the most members per compiled call.
        on_chunk: optional ``on_chunk(done, total)`` progress callback.
        compiled: ``compile_group``'s result, if the caller compiled ahead.
        chunk_size: the chunk ``compiled`` was compiled for, when it is not the one
            ``chunks(len(members), max_chunk)`` gives (a refinement round reuses the program).
    Returns:
        ``GroupResult``: arrays stacked over members, in the order given.
    """
    parts = []
    for start, part in run_chunks(config, members, dataset, max_chunk, compiled, chunk_size):
        parts.append(part)
        if on_chunk:
            on_chunk(start + part.size, len(members))
    arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays}
    return GroupResult(arrays, parts[0].eval_steps, sum(p.compile_s for p in parts), sum(p.run_s for p in parts))


def member_of(config: dict) -> Member:
    """The values a run contributes to its group's vmapped axes."""
    return Member(config["optimizer"]["learning_rate"], config["optimizer"]["momentum"], config["train"]["seed"])
