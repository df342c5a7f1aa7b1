"""Logical axis names -> mesh shardings, with the rules as data (big_vision / MaxText style).

Rules are an ordered list of (logical name, mesh axes) pairs. For each array dimension the first rule
of its name whose mesh axes are not yet used by another dimension of the same array, and whose size
divides the dimension, wins; a name that matches nothing is replicated. (flax's own resolution,
`flax.linen.spmd._logical_to_mesh_axes`, is the same except that it has no divisibility fallback:
jit needs every sharded dimension to divide evenly, and a 3-head attention on a 2-way `tensor` axis
would otherwise fail to compile.)

The defaults (DEFAULT_RULES) name every mesh axis, so the mesh alone picks the parallelism and a
config runs unchanged on any mesh: with `tensor` and `fsdp` of size 1 they are plain data
parallelism; `--config.mesh.fsdp=8` shards every weight's `embed` (or `conv_out`) dimension over 8
devices (FSDP); `--config.mesh.tensor=2` splits attention heads and MLP hidden units over 2
devices (Megatron-style tensor parallelism: the first projection by columns, the second by rows),
with activation constraints at the block boundaries (`mixtok.layers.partitioning.constrain`).

The constraints act while tracing inside `sharding_context(mesh, rules)`, which the train and eval
steps enter (a jitted function cannot enter `jax.set_mesh`; `use_abstract_mesh` works inside one).
"""

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rule = tuple[str, str | Sequence[str] | None]

DEFAULT_RULES: tuple[Rule, ...] = (
    ("batch", ("data", "fsdp")),  # activations: the batch over every data-parallel device
    ("embed", "fsdp"),  # weights: FSDP shards the model-width dimension
    ("conv_out", "fsdp"),  # convolutions (stems, downsampling, depthwise) by output channel
    ("mlp", "tensor"),  # tensor parallelism: MLP hidden units ...
    ("heads", "tensor"),  # ... and attention heads
    ("kv", None),
    ("conv_in", None),
    ("freq", None),
    ("codebook", None),
    ("height", None),
    ("width", None),
    ("length", None),
)
# Axes over which a run asks for its parameters to be split (data parallelism replicates them).
PARAMETER_AXES = ("fsdp", "tensor")
DEFAULT_SHARDING_TOLERANCE = 0.1


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


def _as_tuple(axes) -> tuple[str, ...]:
    if axes is None:
        return ()
    return (axes,) if isinstance(axes, str) else tuple(axes)


def mesh_axes_for(
    names: Sequence[str | None], shape: Sequence[int], rules: Sequence[Rule], mesh_shape: Mapping[str, int]
) -> PartitionSpec:
    """The PartitionSpec of an array of `shape` whose dimensions carry the logical `names` (see the module doc).

    A rule naming an axis the mesh does not have is skipped, so one rule set serves every mesh.
    """
    if len(names) != len(shape):
        raise ValueError(f"{len(names)} logical axis names {tuple(names)} for an array of shape {tuple(shape)}.")
    used: set[str] = set()
    spec = []
    for name, size in zip(names, shape, strict=True):
        chosen = None
        for rule_name, axes in rules if name is not None else ():
            if rule_name != name:
                continue
            axes = _as_tuple(axes)
            if any(a not in mesh_shape for a in axes) or used & set(axes):
                continue
            if size % math.prod(mesh_shape[a] for a in axes):
                continue
            chosen = axes
            break
        if chosen:
            used.update(chosen)
            spec.append(chosen[0] if len(chosen) == 1 else chosen)
        else:
            spec.append(None)
    return PartitionSpec(*spec)


def logical_shardings(boxed_tree: Any, mesh: Mesh, rules: Sequence[Rule]) -> Any:
    """NamedShardings for a tree of `nn.LogicallyPartitioned` leaves (unannotated leaves: replicated)."""
    mesh_shape = dict(mesh.shape)

    def one(leaf):
        if isinstance(leaf, nn.LogicallyPartitioned):
            names, shape = leaf.names, leaf.value.shape
        else:
            shape = leaf.shape if hasattr(leaf, "shape") else np.shape(leaf)
            names = (None,) * len(shape)
        return NamedSharding(mesh, mesh_axes_for(names, shape, rules, mesh_shape))

    return jax.tree_util.tree_map(one, boxed_tree, is_leaf=lambda x: isinstance(x, nn.LogicallyPartitioned))


@contextmanager
def sharding_context(mesh: Mesh, rules: Sequence[Rule]) -> Iterator[None]:
    """Makes `mixtok.layers.partitioning.constrain` act: the mesh (abstract, so it works inside jit) and rules."""
    with jax.sharding.use_abstract_mesh(mesh.abstract_mesh), nn.logical_axis_rules(tuple(rules)):
        yield


def batch_sharding(mesh: Mesh, rules: Sequence[Rule] = DEFAULT_RULES) -> NamedSharding:
    """Shards the leading (batch) axis of every input array as the `batch` rule says."""
    axes = dict(rules).get("batch", ("data", "fsdp"))
    return NamedSharding(mesh, PartitionSpec(axes))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def sharding_tree_like(tree: Any, sharding: NamedSharding) -> Any:
    return jax.tree_util.tree_map(lambda _: sharding, tree)


def check_sufficiently_sharded(params: Any, mesh: Mesh, tolerance: float = DEFAULT_SHARDING_TOLERANCE) -> None:
    """Raises a ValueError when a run asks for FSDP or tensor parallelism but its parameters stay replicated.

    `params`: a tree of arrays or `jax.ShapeDtypeStruct`s with `.sharding` (the train state's layout).
    The parameter axes of the mesh are those of PARAMETER_AXES larger than 1 (none: nothing to check).
    A parameter counts as replicated when its sharding uses none of them; the run fails when such
    parameters hold more than `tolerance` of the parameter bytes, naming the five largest with their
    logical-axis fix. (MaxText's `assert_params_sufficiently_sharded`, AI-Hypercomputer/maxtext:
    src/maxtext/utils/sharding.py, fails unless a parameter uses every such axis, at tolerance 0.02;
    vision backbones keep small convolutions and norms whole, so here "replicated" means "split over
    none of them".)
    """
    targets = {axis: size for axis, size in mesh.shape.items() if axis in PARAMETER_AXES and size > 1}
    if not targets:
        return
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    total, replicated_bytes, offenders = 0, 0, []
    for path, leaf in leaves:
        size = math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
        total += size
        used = {a for entry in leaf.sharding.spec for a in _as_tuple(entry)}
        if not used & set(targets):
            replicated_bytes += size
            offenders.append((size, jax.tree_util.keystr(path), tuple(leaf.shape)))
    if total and replicated_bytes / total > tolerance:
        offenders.sort(reverse=True)
        largest = "; ".join(f"{name} {list(shape)}" for _, name, shape in offenders[:5])
        raise ValueError(
            f"mesh {dict(mesh.shape)} asks for parameters split over {sorted(targets)}, but "
            f"{replicated_bytes / total:.0%} of the parameter bytes are replicated on every device "
            f"(allowed: {tolerance:.0%}, config.sharding_tolerance). Largest: {largest}. Map their logical axis "
            f"names to {' or '.join(sorted(targets))} in config.sharding_rules (see mixtok.parallel.DEFAULT_RULES), "
            f"or make those mesh axes 1."
        )
