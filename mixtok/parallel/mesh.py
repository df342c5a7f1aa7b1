"""Device meshes with the axes `data`, `fsdp`, `tensor` (docs/contracts.md, "Parallelism"), sized from the config."""

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

MESH_AXES = ("data", "fsdp", "tensor")


def create_mesh(shape: Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over `devices` (default: all devices of all processes) with axes data, fsdp, tensor.

    `shape` maps axis names to sizes; one axis may be -1, meaning "the rest of the devices"
    (the default is all data-parallel: {"data": -1, "fsdp": 1, "tensor": 1}).
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = dict(shape or {"data": -1})
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"Unknown mesh axes {sorted(unknown)}; valid axes are {MESH_AXES}.")
    sizes = [int(shape.get(axis, 1)) for axis in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"At most one mesh axis may be -1; got {dict(zip(MESH_AXES, sizes))}.")
    known = int(np.prod([s for s in sizes if s != -1]))
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(
                f"Cannot fill mesh {dict(zip(MESH_AXES, sizes))} with {len(devices)} devices: "
                f"{len(devices)} is not divisible by {known}."
            )
        sizes[sizes.index(-1)] = len(devices) // known
    if int(np.prod(sizes)) != len(devices):
        raise ValueError(
            f"Mesh {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices but {len(devices)} are available."
        )
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES)
