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

# Initialisers that moved to mixtok.layers.init; importing them from here keeps working.
_MOVED_TO_INIT = (
    "DEFAULT_KERNEL_INIT",
    "TORCH_DEFAULT_INIT",
    "torch_uniform_init",
    "dense_kernel_init",
    "conv_kernel_init",
)


def __getattr__(name: str):
    # Lazy so that mixtok.layers.init, which imports `param_with_axes` from here, loads first either way.
    if name in _MOVED_TO_INIT:
        from mixtok.layers import init

        return getattr(init, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def param_with_axes(init: Callable, axes: Axes) -> Callable:
    """Wraps an initialiser so that the created parameter is boxed with logical axis names."""
    return nn.with_logical_partitioning(init, tuple(axes))


def zeros_with_axes(axes: Axes) -> Callable:
    return param_with_axes(jax.nn.initializers.zeros, axes)


def ones_with_axes(axes: Axes) -> Callable:
    return param_with_axes(jax.nn.initializers.ones, axes)
