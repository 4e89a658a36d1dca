"""Data parallelism with ``jax.make_mesh`` + ``NamedSharding`` + ``jax.jit``.

One mesh axis, ``data``, over every device of every process. Batches are sharded along it;
parameters and optimizer state are replicated. ``jax.jit`` with these shardings inserts the
gradient all-reduce itself; no ``pmap`` and no per-device code.
"""

from __future__ import annotations

import collections
import itertools
import os
from collections.abc import Iterable, Iterator

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

__all__ = [
    "DATA_AXIS",
    "batch_sharding",
    "check_batch_size",
    "global_batch",
    "initialize",
    "make_mesh",
    "prefetch_to_device",
    "replicated",
]

DATA_AXIS = "data"


def initialize(enabled: bool) -> None:
    """Join a multi-host job through ``jax.distributed.initialize`` when asked to.

    ``enabled`` comes from the config; the environment variable ``JAXAR_DISTRIBUTED=1`` asks
    too. On TPU pods and SLURM/Kubernetes clusters JAX finds the coordinator by itself;
    elsewhere set ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``.
    """
    if not (enabled or os.environ.get("JAXAR_DISTRIBUTED") == "1"):
        return
    if jax.distributed.is_initialized():
        return
    kwargs = {}
    if "JAX_COORDINATOR_ADDRESS" in os.environ:
        kwargs = dict(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    jax.distributed.initialize(**kwargs)


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``data`` over ``devices`` (default: every device of the job)."""
    devices = jax.devices() if devices is None else list(devices)
    # Auto axes: XLA propagates the batch sharding through model code (scan carries, zeros
    # made inside the step), which then needs no sharding annotations of its own.
    return jax.make_mesh((len(devices),), (DATA_AXIS,), (AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, name: str = "batch_size") -> int:
    """The per-device batch; a clear error when ``batch_size`` does not divide over devices."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(
            f"{name}={batch_size} is not divisible by the {n} devices of the mesh; "
            f"use a multiple of {n}"
        )
    return batch_size // n


def global_batch(local: dict, mesh: Mesh) -> dict:
    """Assemble global arrays, sharded on ``data``, from this process's part of a batch."""
    sharding = batch_sharding(mesh)
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()
    }


def prefetch_to_device(batches: Iterable[dict], size: int, mesh: Mesh) -> Iterator[dict]:
    """Yield :func:`global_batch` of each local batch, keeping ``size`` of them in flight.

    ``jax.make_array_from_process_local_data`` starts the host->device copies and returns at
    once, so holding the next ``size`` global batches in a queue lets their transfers overlap
    the step that runs on the current one: the loop waits on the host only when the data is
    slower than the step. ``size`` 0 converts each batch when it is asked for (no prefetch).
    The batches and their order are those of ``batches``; the queue holds ``size`` extra batches
    of device memory.
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"prefetch size must be an int >= 0, got {size!r}")
    iterator = iter(batches)
    if size == 0:
        for local in iterator:
            yield global_batch(local, mesh)
        return
    queue = collections.deque(global_batch(b, mesh) for b in itertools.islice(iterator, size))
    end = object()
    while queue:
        nxt = next(iterator, end)
        if nxt is not end:
            queue.append(global_batch(nxt, mesh))
        yield queue.popleft()
