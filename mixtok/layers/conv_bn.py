"""Conv + BatchNorm as PyTorch models build them, and their fusion into one conv for inference.

    y = ConvBN(features=64, kernel_size=3, stride=2)(x, train=train)     # conv (no bias) -> BatchNorm
    kernel, bias = fuse_conv_bn(conv_kernel, bn_params, bn_stats)        # the same map as one conv

Many efficient backbones (LeViT-style `Conv2d_BN`, RepVGG, MobileNet, CAS-ViT, FFNet, LSNet) are
made of this pair and re-parameterise it at inference. Conventions, PyTorch's defaults:

- padding (k - 1) // 2 on each side unless given; `groups` as Conv2d's (groups = C: depthwise);
- BatchNorm eps 1e-5 and running-statistics momentum 0.1 (flax's `momentum` = 1 - 0.1 = 0.9);
  statistics live in the `batch_stats` collection, updated when `train=True` (the trainer's
  ClassificationTask passes it as mutable). Under a sharded `jit` the batch statistics are
  computed over the global batch (SyncBatchNorm's behaviour), and flax updates the running
  variance with the biased variance where PyTorch uses the unbiased one (a factor N / (N - 1)).
- `bn_scale_init`: the BatchNorm weight's initial value (LeViT-style blocks start some at 0).

Parameter paths: `conv/kernel` [kh, kw, in / groups, out] and `bn/{scale,bias}`, `bn/{mean,var}`
in batch_stats, so converters map `c.weight` and `bn.*` of a PyTorch `Conv2d_BN` one to one.
"""

from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.partitioning import DEFAULT_KERNEL_INIT, param_with_axes, zeros_with_axes

BN_EPSILON = 1e-5      # torch.nn.BatchNorm2d default
BN_MOMENTUM = 0.9      # flax's convention for PyTorch's momentum 0.1


def batch_norm(name: str, *, train: bool, epsilon: float = BN_EPSILON, scale_init: float = 1.0,
               dtype: Any = None, param_dtype: Any = jnp.float32) -> nn.BatchNorm:
    """A BatchNorm over the last (channel) axis with PyTorch's defaults and logical axis names."""
    return nn.BatchNorm(
        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=epsilon, dtype=dtype, param_dtype=param_dtype,
        scale_init=param_with_axes(jax.nn.initializers.constant(scale_init), ("conv_out",)),
        bias_init=zeros_with_axes(("conv_out",)), name=name)


def conv2d(features: int, kernel_size: int, *, stride: int = 1, groups: int = 1, padding: Optional[int] = None,
           use_bias: bool = True, kernel_init: Optional[Callable] = None, dtype: Any = None,
           param_dtype: Any = jnp.float32, name: Optional[str] = None) -> nn.Conv:
    """An NHWC conv as PyTorch's Conv2d builds it: padding (k - 1) // 2 per side unless given, `groups`,
    a zero bias, and `kernel_init` (default trunc-normal 0.02) with logical axes (a grouped kernel's
    input axis, C / groups, is never sharded)."""
    pad = (kernel_size - 1) // 2 if padding is None else padding
    in_axis = None if groups > 1 else "conv_in"
    init = param_with_axes(kernel_init or DEFAULT_KERNEL_INIT, (None, None, in_axis, "conv_out"))
    return nn.Conv(features, (kernel_size, kernel_size), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                   feature_group_count=groups, use_bias=use_bias, kernel_init=init,
                   bias_init=zeros_with_axes(("conv_out",)), dtype=dtype, param_dtype=param_dtype, name=name)


class ConvBN(nn.Module):
    """conv (no bias) -> BatchNorm: PyTorch's `Conv2d_BN` (LeViT, EfficientViT, CAS-ViT, FFNet, LSNet)."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    padding: Optional[int] = None  # per side; None: (kernel_size - 1) // 2
    bn_scale_init: float = 1.0
    kernel_init: Optional[Callable] = None  # None: trunc-normal 0.02 (timm's)
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if x.shape[-1] % self.groups or self.features % self.groups:
            raise ValueError(f"ConvBN: groups={self.groups} must divide the input channels ({x.shape[-1]}) and "
                             f"features ({self.features}).")
        x = conv2d(self.features, self.kernel_size, stride=self.stride, groups=self.groups, padding=self.padding,
                   use_bias=False, kernel_init=self.kernel_init, dtype=self.dtype, param_dtype=self.param_dtype,
                   name="conv")(x)
        return batch_norm("bn", train=train, scale_init=self.bn_scale_init, dtype=self.dtype,
                          param_dtype=self.param_dtype)(x)


def fuse_conv_bn(kernel: jax.Array, bn_params: Mapping[str, jax.Array], bn_stats: Mapping[str, jax.Array],
                 conv_bias: Optional[jax.Array] = None, epsilon: float = BN_EPSILON) -> Tuple[jax.Array, jax.Array]:
    """(kernel, bias) of the single conv equal to conv -> BatchNorm in inference mode.

    BN(z) = scale * (z - mean) / sqrt(var + eps) + bias, so each output channel's kernel is scaled
    by s = scale / sqrt(var + eps) and the bias becomes bias + s * (conv_bias - mean).
    kernel: [kh, kw, in / groups, out]; bn_params {scale, bias}; bn_stats {mean, var}.
    """
    s = bn_params["scale"] / jnp.sqrt(bn_stats["var"] + epsilon)
    bias = bn_params["bias"] + s * ((0.0 if conv_bias is None else conv_bias) - bn_stats["mean"])
    return kernel * s, bias


def pad_kernel(kernel: jax.Array, size: int) -> jax.Array:
    """Zero-pads a [k, k, in, out] kernel to [size, size, in, out] around its centre (RepVGG's merge)."""
    k = kernel.shape[0]
    if (size - k) % 2 or size < k:
        raise ValueError(f"pad_kernel: cannot centre a {k}x{k} kernel in {size}x{size}.")
    p = (size - k) // 2
    return jnp.pad(kernel, ((p, p), (p, p), (0, 0), (0, 0)))


def conv_bn_variables(variables: Mapping[str, Any], path: Sequence[str]) -> Tuple[jax.Array, dict, dict]:
    """(conv kernel, bn params, bn stats) of the ConvBN at `path` inside a model's variables."""
    params, stats = variables["params"], variables["batch_stats"]
    for key in path:
        params, stats = params[key], stats[key]
    return params["conv"]["kernel"], params["bn"], stats["bn"]
