"""Initialisers that carry the logical axis names of docs/contracts.md, "Parallelism": sharding is data.

Parameters use the names `embed, mlp, heads, kv, conv_in, conv_out, freq, codebook`; `None`
means "never sharded". Rules in the config map these names to mesh axes
(`mixtok.parallel.sharding`); the models never name a mesh axis.
"""

from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax

# timm initialises every conv and linear weight with trunc_normal_(std=0.02) and zero biases.
# jax's truncated normal cuts at +-2 standard deviations, which timm's absolute bounds (+-2.0)
# effectively never reach; the small difference in spread only matters for from-scratch training.
DEFAULT_KERNEL_INIT = jax.nn.initializers.truncated_normal(stddev=0.02)

# PyTorch's default Conv2d / Linear weight init, kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)):
# for models whose official code keeps it (no init of its own).
TORCH_DEFAULT_INIT = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

Axes = Sequence[Optional[str]]


def torch_uniform_init(fan_in: int) -> Callable:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for any shape: PyTorch's default bias init (and weight init)."""
    bound = fan_in ** -0.5

    def init(key, shape, dtype=jax.numpy.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def param_with_axes(init: Callable, axes: Axes) -> Callable:
    """Wraps an initialiser so that the created parameter is boxed with logical axis names."""
    return nn.with_logical_partitioning(init, tuple(axes))


def dense_kernel_init(axes: Axes = ("embed", "mlp")) -> Callable:
    return param_with_axes(DEFAULT_KERNEL_INIT, axes)


def conv_kernel_init(axes: Axes = (None, None, "conv_in", "conv_out")) -> Callable:
    return param_with_axes(DEFAULT_KERNEL_INIT, axes)


def zeros_with_axes(axes: Axes) -> Callable:
    return param_with_axes(jax.nn.initializers.zeros, axes)


def ones_with_axes(axes: Axes) -> Callable:
    return param_with_axes(jax.nn.initializers.ones, axes)
