"""Device meshes and logical-axis sharding rules (parameters and activations never name mesh axes)."""

from mixtok.parallel.mesh import MESH_AXES, create_mesh
from mixtok.parallel.sharding import (
    DEFAULT_RULES,
    DEFAULT_SHARDING_TOLERANCE,
    batch_sharding,
    check_sufficiently_sharded,
    logical_shardings,
    mesh_axes_for,
    replicated,
    rules_from_config,
    sharding_context,
)

__all__ = [
    "DEFAULT_RULES",
    "DEFAULT_SHARDING_TOLERANCE",
    "MESH_AXES",
    "batch_sharding",
    "check_sufficiently_sharded",
    "create_mesh",
    "logical_shardings",
    "mesh_axes_for",
    "replicated",
    "rules_from_config",
    "sharding_context",
]
