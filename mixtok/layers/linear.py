"""The Dense layer of mixtok's modules: timm's initialisation, with logical axis names on its weights."""

import flax.linen as nn

from mixtok.layers.init import dense_kernel_init
from mixtok.layers.partitioning import Axes, zeros_with_axes


def dense(features: int, axes: Axes = ("embed", "mlp"), **kwargs) -> nn.Dense:
    """`nn.Dense(features)` with a trunc-normal(0.02) kernel and a zero bias (timm's `_init_weights`),
    named by the logical `axes` (input, output) that a config's sharding rules map to mesh axes.

    Other keyword arguments go to `nn.Dense` (`name`, `use_bias`, `dtype`, `param_dtype`, or another
    `kernel_init`). Called inside a module's compact method, the layer belongs to that module, so its
    parameter path is the same as `nn.Dense(...)` written there.
    """
    kwargs.setdefault("kernel_init", dense_kernel_init(axes))
    kwargs.setdefault("bias_init", zeros_with_axes((axes[-1],)))
    return nn.Dense(features, **kwargs)
