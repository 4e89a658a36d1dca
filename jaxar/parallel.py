"""Data parallelism with ``jax.make_mesh`` + ``NamedSharding`` + ``jax.jit``.

One mesh axis, ``data``, over every device of every process. Batches are sharded along it;
parameters and optimizer state are replicated. ``jax.jit`` with these shardings inserts the
gradient all-reduce itself; no ``pmap`` and no per-device code.
"""

from __future__ import annotations

import os

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
