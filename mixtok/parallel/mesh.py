"""Device meshes with the axes `data`, `fsdp`, `tensor` (docs/contracts.md, "Parallelism"), sized from the config.

The axes are `AxisType.Auto`: the compiler propagates shardings from the parameters' and the
activations' constraints. (`jax.make_mesh` defaults to `AxisType.Explicit` since JAX 0.9, under which
`with_sharding_constraint`, and so flax's logical constraints, only assert; jax-ml/jax:
jax/_src/pjit.py. MaxText builds its meshes with Auto axes for the same reason.)
"""

from collections.abc import Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh

MESH_AXES = ("data", "fsdp", "tensor")


def create_mesh(shape: Mapping[str, int] | None = None, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over `devices` (default: all devices of all processes) with axes data, fsdp, tensor.

    `shape` maps axis names to sizes; one axis may be -1, meaning "the rest of the devices". An axis
    left out has size 1, except `data`, which is -1 unless another axis is (so {"tensor": 2} is data
    parallel over the rest of the devices; the default is all data-parallel). `tensor` is the
    innermost axis, so its devices are neighbours (the fastest links) in `jax.devices()` order.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = dict(shape or {"data": -1})
    unknown = set(shape) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"Unknown mesh axes {sorted(unknown)}; valid axes are {MESH_AXES}.")
    # An axis left out has size 1, except `data`, which takes the rest unless another axis does.
    data_default = 1 if -1 in shape.values() else -1
    sizes = [int(shape.get(axis, data_default if axis == "data" else 1)) for axis in MESH_AXES]
    if sizes.count(-1) > 1:
        raise ValueError(f"At most one mesh axis may be -1; got {dict(zip(MESH_AXES, sizes))}.")
    if any(size < 1 and size != -1 for size in sizes):
        raise ValueError(f"Mesh axis sizes must be positive (or -1 for one axis); got {dict(zip(MESH_AXES, sizes))}.")
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
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))
