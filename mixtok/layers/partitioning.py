"""Logical axis names on parameters (docs/contracts.md, "Parallelism"), so sharding is data, not code.

Parameters use the names `embed, mlp, heads, kv, conv_in, conv_out, freq, codebook`; `None`
means "never sharded". Rules in the config map these names to mesh axes
(`mixtok.parallel.sharding`); the models never name a mesh axis. The initialisers themselves live
in `mixtok.layers.init`.
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax

Axes = Sequence[str | None]


def param_with_axes(init: Callable, axes: Axes) -> Callable:
    """Wraps an initialiser so that the created parameter is boxed with logical axis names."""
    return nn.with_logical_partitioning(init, tuple(axes))


def zeros_with_axes(axes: Axes) -> Callable:
    return param_with_axes(jax.nn.initializers.zeros, axes)


def ones_with_axes(axes: Axes) -> Callable:
    return param_with_axes(jax.nn.initializers.ones, axes)


def constrain(x: jax.Array, names: Axes) -> jax.Array:
    """`x` with a sharding constraint from one logical name per axis (an activation's layout).

    It acts only inside `mixtok.parallel.sharding_context(mesh, rules)` (the trainer's steps enter it);
    elsewhere it returns `x` unchanged, so a model applied in a notebook is untouched. Names resolve
    as parameters' do (`mixtok.parallel.sharding.mesh_axes_for`: first free rule, dividing sizes only).
    Activation names: `batch, height, width, length, embed`, and `mlp`, `heads` for the hidden units
    and heads that tensor parallelism splits.
    """
    from mixtok.parallel.sharding import mesh_axes_for  # the rules' one resolver; mixtok.parallel imports no layers

    rules = nn.get_logical_axis_rules()
    mesh = jax.sharding.get_abstract_mesh()
    if not rules or mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, mesh_axes_for(tuple(names), x.shape, rules, dict(mesh.shape)))


def constrain_channels_last(x: jax.Array, channels: str = "embed") -> jax.Array:
    """`constrain` for [B, ..., C] maps and sequences: batch, (height, width) or length, and `channels`."""
    middle = {2: (), 3: ("length",), 4: ("height", "width")}.get(x.ndim, ("length",) * (x.ndim - 2))
    return constrain(x, ("batch", *middle, channels))
