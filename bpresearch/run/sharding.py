"""A chunk's configuration axis split over the local devices JAX sees.

A chunk of a group is ``vmap(run)`` over (learning rate, momentum, seed). The runs are
independent, so the chunk splits over devices with no communication at all: each device
runs ``vmap(run)`` on its share of the configurations, with the data replicated.
``jax.shard_map`` over a one-axis mesh says exactly that. ``check_vma=False``: the scan
carries mix per-device values with replicated ones, which the varying-manual-axes check
rejects; no collective is used, so nothing needs it. The chunk size is a multiple of the
device count (``sweep.chunks``). With one device the program is ``train.make_group_program``
itself, unchanged.

Several CPU devices (``JAX_NUM_CPU_DEVICES=4``, for tests or a many-core host) need one
more thing: jaxlib 0.10's batched LAPACK kernels (the ``eigh`` of the Lanczos sharpness
estimate) hand their batch to XLA's intra-op thread pool and block until it is done. When
every pool thread is such a device program, waiting, nobody runs the work: a deadlock,
seen here about one run in two with 4 devices on 2 cores. ``configure_cpu_pool`` sizes the
pool (XLA reads ``NPROC``) to twice the device count before JAX starts its backend.
"""

from __future__ import annotations

import functools
import os
import re

import jax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from bpresearch.core import train

AXIS = "configs"


def requested_cpu_devices() -> int:
    """CPU devices asked for through ``JAX_NUM_CPU_DEVICES`` or ``XLA_FLAGS`` (without starting JAX)."""
    n = int(os.environ.get("JAX_NUM_CPU_DEVICES") or 1)
    m = re.search(r"--xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    return max(n, int(m.group(1)) if m else 1)


def configure_cpu_pool() -> None:
    """With several CPU devices, give XLA's intra-op pool two threads per device (see above).

    Call before JAX starts its backend; a no-op with one device or when ``NPROC`` is set.
    """
    n = requested_cpu_devices()
    if n > 1 and "NPROC" not in os.environ:
        os.environ["NPROC"] = str(max(2 * n, os.cpu_count() or 1))


def deterministic_gpu() -> None:
    """The same config and seed give the same curve bit for bit on a GPU too.

    XLA's GPU reductions may use atomics, whose order varies from run to run: on an H100
    two sweeps of the bench grid differed by up to 8e-4 in their final losses without
    this flag. Set before JAX starts its backend (inherited by local Ray workers); a flag
    the user set in ``XLA_FLAGS`` wins. CPUs are deterministic either way.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_gpu_deterministic_ops" not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} --xla_gpu_deterministic_ops=true".strip()


def prepare_backend() -> None:
    """What a sweep sets before JAX starts its backend: the persistent compilation cache,
    the CPU pool (``configure_cpu_pool``) and deterministic GPU reductions.

    Compiled programs persist across sweeps (JAX's persistent cache): a rerun with other
    learning rates or seeds, a resume, or the test suite skips XLA compilation.
    """
    if not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        from bpresearch.core.cache import root
        jax.config.update("jax_compilation_cache_dir", str(root() / "jax"))
    configure_cpu_pool()
    deterministic_gpu()


def n_devices() -> int:
    """Local devices of JAX's default backend."""
    return jax.local_device_count()


@functools.cache
def mesh(devices: int) -> jax.sharding.Mesh:
    """A one-axis mesh over the first ``devices`` local devices (Auto axes: jit places the inputs)."""
    return jax.make_mesh((devices,), (AXIS,), (jax.sharding.AxisType.Auto,), devices=jax.local_devices()[:devices])


def group_program(run, devices: int = 1):
    """The jitted group program ``program(data, lr, momentum, seed) -> dict of (n, ...) arrays``.

    Args:
        run: the unjitted ``run(data, learning_rate, momentum, seed)`` of ``train.make_run``.
        devices: local devices to split the configurations over.
    Returns:
        With one device ``train.make_group_program(run)``; with several, the same vmapped run
        under ``shard_map``: lr, momentum, seed and every output split along their first axis,
        the data replicated.
    """
    if devices == 1:
        return train.make_group_program(run)
    vmapped = jax.vmap(run, in_axes=(None, 0, 0, 0))
    return jax.jit(jax.shard_map(vmapped, mesh=mesh(devices), in_specs=(P(), P(AXIS), P(AXIS), P(AXIS)),
                                 out_specs=P(AXIS), check_vma=False))


def replicate(data, devices: int = 1):
    """``data`` copied once to every device of the mesh (unchanged with one device)."""
    return data if devices == 1 else jax.device_put(data, NamedSharding(mesh(devices), P()))
