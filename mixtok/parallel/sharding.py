"""Logical axis names -> mesh shardings, with the rules as data (big_vision / MaxText style).

Rules are an ordered list of (logical name, mesh axes) pairs; the first match wins and a name
that matches nothing is replicated. The defaults are plain data parallelism: batches split over
`data` and `fsdp`, weights replicated. FSDP is one config change:
`("embed", "fsdp")` shards every weight with an `embed` axis over the fsdp devices.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rule = tuple[str, str | Sequence[str] | None]

DEFAULT_RULES: tuple[Rule, ...] = (
    ("batch", ("data", "fsdp")),
    ("embed", None),
    ("mlp", None),
    ("heads", None),
    ("kv", None),
    ("conv_in", None),
    ("conv_out", None),
    ("freq", None),
    ("codebook", None),
    ("height", None),
    ("width", None),
    ("length", None),
)


def rules_from_config(rules: Sequence[Sequence[Any]] | None) -> tuple[Rule, ...]:
    """Normalises config rules (lists from ml_collections) to tuples; None gives DEFAULT_RULES."""
    if rules is None:
        return DEFAULT_RULES
    out = []
    for rule in rules:
        if len(rule) != 2:
            raise ValueError(f"A sharding rule is a (logical name, mesh axes) pair; got {rule!r}.")
        name, axes = rule
        out.append((str(name), tuple(axes) if isinstance(axes, (list, tuple)) else axes))
    return tuple(out)


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules: Sequence[Rule]) -> Any:
    """NamedShardings for a tree of `nn.LogicallyPartitioned` leaves (unannotated leaves: replicated)."""
    specs = nn.get_partition_spec(boxed_tree)
    return nn.logical_to_mesh_sharding(specs, mesh, tuple(rules))


def batch_sharding(mesh: Mesh, rules: Sequence[Rule] = DEFAULT_RULES) -> NamedSharding:
    """Shards the leading (batch) axis of every input array as the `batch` rule says."""
    axes = dict(rules).get("batch", ("data", "fsdp"))
    return NamedSharding(mesh, PartitionSpec(axes))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def sharding_tree_like(tree: Any, sharding: NamedSharding) -> Any:
    return jax.tree_util.tree_map(lambda _: sharding, tree)
