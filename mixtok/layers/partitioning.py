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
