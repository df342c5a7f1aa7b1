"""Device meshes and logical-axis sharding rules (parameters and activations never name mesh axes)."""

from mixtok.parallel.mesh import MESH_AXES, create_mesh
from mixtok.parallel.sharding import DEFAULT_RULES, batch_sharding, logical_shardings, replicated, rules_from_config

__all__ = [
    "DEFAULT_RULES",
    "MESH_AXES",
    "batch_sharding",
    "create_mesh",
    "logical_shardings",
    "replicated",
    "rules_from_config",
]
