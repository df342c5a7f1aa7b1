"""The Dense layer of mixtok's modules: timm's initialisation, with logical axis names on its weights."""

import flax.linen as nn
import jax

from mixtok.layers.init import dense_kernel_init
from mixtok.layers.partitioning import Axes, zeros_with_axes


class Dense(nn.Dense):
    """`nn.Dense` (the same parameters, names and numerics) that on CPU flattens an input of rank > 2 to a matrix.

    flax's `nn.Dense` contracts the last axis of an input `[..., C_in]` directly. Its kernel gradient is
    then a dot contracting every leading axis at once, which XLA:CPU (JAX 0.10) runs as a transpose of the
    output gradient to memory followed by a slow dot: a Linear(64 -> 128) on [8, 56, 56, 64] followed by
    StarReLU takes 26-31 ms forward + backward, the same on `[25088, 64]` 5-6 ms (2-core AMD EPYC, float32).
    So on CPU the input is reshaped to `[prod(leading), C_in]` (free for a contiguous array) and the result
    back. GPU and TPU keep the rank-N dot: on a TPU merging a leading axis that is not a multiple of its
    tile (197 tokens) would copy the array to a new layout. `flatten=True / False` forces either form.
    """

    flatten: bool | None = None

    def __call__(self, inputs):
        flatten = jax.default_backend() == "cpu" if self.flatten is None else self.flatten
        if not flatten or inputs.ndim <= 2:
            return super().__call__(inputs)
        y = super().__call__(inputs.reshape(-1, inputs.shape[-1]))
        return y.reshape(*inputs.shape[:-1], y.shape[-1])


def dense(features: int, axes: Axes = ("embed", "mlp"), **kwargs) -> Dense:
    """`nn.Dense(features)` with a trunc-normal(0.02) kernel and a zero bias (timm's `_init_weights`),
    named by the logical `axes` (input, output) that a config's sharding rules map to mesh axes.

    Other keyword arguments go to `nn.Dense` (`name`, `use_bias`, `dtype`, `param_dtype`, or another
    `kernel_init`). Called inside a module's compact method, the layer belongs to that module, so its
    parameter path is the same as `nn.Dense(...)` written there.
    """
    kwargs.setdefault("kernel_init", dense_kernel_init(axes))
    kwargs.setdefault("bias_init", zeros_with_axes((axes[-1],)))
    return Dense(features, **kwargs)
