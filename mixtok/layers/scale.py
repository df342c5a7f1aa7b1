"""Learned per-channel scales on a residual branch or path: LayerScale (CaiT) and ResScale (MetaFormer).

    y = LayerScale(1e-5, name="layer_scale1")(branch)          # y = gamma * branch, gamma [C] init 1e-5
    gamma = layer_scale_param(self, "gamma", 1e-6, channels)   # the bare parameter, in the caller's scope
    y = scale_by_param(self, "gamma", 1e-6, branch)             # that parameter times the branch, rounded once

LayerScale ("Going deeper with Image Transformers", Touvron et al., 2021) starts a residual branch
near zero so that deep stacks train; MetaFormer Baselines' ResScale is the same map on the skip path,
initialised to 1. Official models store the scale either as a module (`layer_scale1.scale`, timm)
or as a bare tensor of the block (`gamma`, GFNet's `BlockLayerScale`; FFNet's `layer_scale`):
`LayerScale` gives the first parameter path, `layer_scale_param` the second, so converted
checkpoints map one to one. The scale has shape [C] (PyTorch's [C, 1, 1] on NCHW maps is the same
numbers) and the logical axis `embed`.

`LayerScale` multiplies in the wider of the input's and the parameter's dtype and returns the input's:
a bfloat16 map times a float32 scale is computed in float32 and rounded once. Rounding the scale to
bfloat16 first would be a fixed per-channel error of up to 2^-9 that every block repeats on the
residual path (ResScale): it was most of the bf16-vs-fp32 logit drift of CAFormer-S18 and
ConvFormer-S18 (benchmarks/RESULTS.md, "bf16 compute against PyTorch autocast"), and the scale's
gradient was then summed in bfloat16. PyTorch's autocast keeps the scale in float32 too.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.partitioning import param_with_axes


def layer_scale_param(
    module: nn.Module, name: str, init_value: float, channels: int, param_dtype: Any = jnp.float32
) -> jax.Array:
    """A [channels] parameter `name` of `module`, initialised to `init_value` (call it inside a compact method)."""
    return module.param(
        name, param_with_axes(nn.initializers.constant(init_value), ("embed",)), (channels,), param_dtype
    )


def scale_by_param(module: nn.Module, name: str, init_value: float, x: jax.Array, param_dtype: Any = jnp.float32):
    """x times the bare per-channel scale `name` of `module` (`layer_scale_param`), computed in the wider dtype and
    rounded once to x's (the module docstring says why)."""
    scale = layer_scale_param(module, name, init_value, x.shape[-1], param_dtype)
    return (x * scale).astype(x.dtype)


class LayerScale(nn.Module):
    """x * gamma with a learned per-channel gamma (parameter `scale`) initialised to `init_value`."""

    init_value: float
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return scale_by_param(self, "scale", self.init_value, x, self.param_dtype)
