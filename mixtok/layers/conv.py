"""Convolutions as PyTorch models build them: conv -> norm -> activation, Conv + BatchNorm, and their fusion.

    y = ConvBN(features=64, kernel_size=3, stride=2)(x, train=train)      # conv (no bias) -> BatchNorm
    y = ConvNormAct(64, 3, 2, activation="relu")(x, train=train)         # conv -> BatchNorm -> ReLU
    y = conv_norm_act(x, 64, 3, stride=2, use_bias=True, conv_name="proj1", norm_name="norm1", train=train)
    kernel, bias = fuse_conv_bn(conv_kernel, bn_params, bn_stats)         # the same map as one conv

`conv2d` builds a `Conv2d`: flax's `nn.Conv` for NHWC images, with nn.Conv's parameters (names, shapes,
initialisers, dtype promotion), whose depthwise case (groups = input channels = features) runs
`mixtok.layers.depthwise.depthwise_conv2d` ("auto": XLA's convolution on GPU / TPU, a faster shifted
multiply-add form on CPU) and every other case `lax.conv_general_dilated` as nn.Conv does.

Many efficient backbones (LeViT-style `Conv2d_BN`, RepVGG, MobileNet, CAS-ViT, FFNet, LSNet, iFormer's
stem) are made of these pieces. `conv_norm_act` creates its layers in the scope of the module that calls
it, under the names it is given, so a family whose official code is a flat `Sequential` of Conv2d and
BatchNorm2d keeps its flat parameter paths; `ConvBN` and `ConvNormAct` nest them in a module of their own.

Conventions, PyTorch's defaults:
- padding (k - 1) // 2 on each side unless given; `groups` as Conv2d's (groups = C: depthwise);
- BatchNorm eps 1e-5 and running-statistics momentum 0.1 (flax's `momentum` = 1 - 0.1 = 0.9);
  statistics live in the `batch_stats` collection, updated when `train=True` (the trainer's
  ClassificationTask passes it as mutable). Under a sharded `jit` the batch statistics are
  computed over the global batch (SyncBatchNorm's behaviour), and flax updates the running
  variance with the biased variance where PyTorch uses the unbiased one (a factor N / (N - 1)).
- `bn_scale_init`: the BatchNorm weight's initial value (LeViT-style blocks start some at 0).
- kernels default to trunc-normal(0.02) (timm's init), biases to zero; models that keep PyTorch's
  default init pass `kernel_init=TORCH_DEFAULT_INIT` and `bias_init=torch_uniform_init(fan_in)`.

Parameter paths: `conv/kernel` [kh, kw, in / groups, out] and `bn/{scale,bias}`, `bn/{mean,var}`
in batch_stats, so converters map `c.weight` and `bn.*` of a PyTorch `Conv2d_BN` one to one.
"""

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype
from jax import lax

from mixtok.layers.activations import get_activation
from mixtok.layers.depthwise import (
    DIMENSION_NUMBERS,
    IMPLEMENTATIONS,
    Padding,
    depthwise_conv2d,
    explicit_padding,
    pair,
)
from mixtok.layers.init import DEFAULT_KERNEL_INIT
from mixtok.layers.module import Module
from mixtok.layers.norms import NORMS, get_norm
from mixtok.layers.partitioning import param_with_axes, zeros_with_axes
from mixtok.registry import unknown_name_error

BN_EPSILON = 1e-5  # torch.nn.BatchNorm2d default
BN_MOMENTUM = 0.9  # flax's convention for PyTorch's momentum 0.1
CONV_NORMS = ("batchnorm", *NORMS)


def batch_norm(
    name: str,
    *,
    train: bool,
    epsilon: float = BN_EPSILON,
    scale_init: float = 1.0,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> nn.BatchNorm:
    """A BatchNorm over the last (channel) axis with PyTorch's defaults and logical axis names."""
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=BN_MOMENTUM,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=param_with_axes(jax.nn.initializers.constant(scale_init), ("conv_out",)),
        bias_init=zeros_with_axes(("conv_out",)),
        name=name,
    )


class Conv2d(Module):
    """flax's `nn.Conv` for NHWC images (any leading batch axes, as nn.Conv), with the same parameters and maths.

    Parameters as nn.Conv creates them: `kernel` [kh, kw, in / groups, features] then `bias` [features], from
    `kernel_init` / `bias_init` (nn.Conv's defaults: lecun-normal, zeros) in `param_dtype`; inputs, kernel and
    bias promoted by `flax.linen.dtypes.promote_dtype` to `dtype`. A depthwise conv (feature_group_count =
    input channels; features a multiple of them) runs `depthwise_conv2d(impl=depthwise_impl)`; every other one runs
    `lax.conv_general_dilated` as nn.Conv does. `padding`: "SAME", "VALID", an int for every side or
    ((top, bottom), (left, right)).
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Padding = "SAME"
    feature_group_count: int = 1
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros_init()
    precision: Any = None
    depthwise_impl: str = "auto"

    @nn.compact
    def __call__(self, x):
        name = type(self).__name__
        kernel_size = pair(self.kernel_size, f"{name}: kernel_size")
        strides = pair(self.strides, f"{name}: strides")
        if self.depthwise_impl not in IMPLEMENTATIONS:
            raise ValueError(f"{name}: depthwise_impl {self.depthwise_impl!r} is not one of {IMPLEMENTATIONS}.")
        if x.ndim < 3:
            raise ValueError(f"{name} takes [..., H, W, C] images; got shape {x.shape}.")
        in_features, groups = x.shape[-1], self.feature_group_count
        if groups < 1 or in_features % groups or self.features % groups:
            raise ValueError(
                f"{name}: feature_group_count={groups} must divide the input channels ({in_features}) "
                f"and features ({self.features})."
            )
        kernel_shape = (*kernel_size, in_features // groups, self.features)
        kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
        bias = self.param("bias", self.bias_init, (self.features,), self.param_dtype) if self.use_bias else None
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        batch_shape = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])  # one batch axis, as nn.Conv flattens them
        if groups == in_features:  # depthwise, with a channel multiplier if features = m * in_features
            y = depthwise_conv2d(
                x, kernel, stride=strides, padding=self.padding, impl=self.depthwise_impl, precision=self.precision
            )
        else:
            y = lax.conv_general_dilated(
                x,
                kernel,
                strides,
                explicit_padding(self.padding, x.shape[1:3], kernel_size, strides),
                dimension_numbers=DIMENSION_NUMBERS,
                feature_group_count=groups,
                precision=self.precision,
            )
        if bias is not None:
            y = y + bias
        return y.reshape(*batch_shape, *y.shape[1:])


def conv2d(
    features: int,
    kernel_size: int,
    *,
    stride: int = 1,
    groups: int = 1,
    padding: int | None = None,
    use_bias: bool = True,
    kernel_init: Callable | None = None,
    bias_init: Callable | None = None,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    name: str | None = None,
) -> Conv2d:
    """An NHWC conv (`Conv2d`) as PyTorch's Conv2d builds it: padding (k - 1) // 2 per side unless given, `groups`,
    `kernel_init` (default trunc-normal 0.02) and `bias_init` (default zeros) with logical axes (a grouped
    kernel's input axis, C / groups, is never sharded)."""
    pad = (kernel_size - 1) // 2 if padding is None else padding
    in_axis = None if groups > 1 else "conv_in"
    init = param_with_axes(kernel_init or DEFAULT_KERNEL_INIT, (None, None, in_axis, "conv_out"))
    bias = zeros_with_axes(("conv_out",)) if bias_init is None else param_with_axes(bias_init, ("conv_out",))
    return Conv2d(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        use_bias=use_bias,
        kernel_init=init,
        bias_init=bias,
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def conv_norm_act(
    x: jax.Array,
    features: int,
    kernel_size: int = 1,
    *,
    stride: int = 1,
    groups: int = 1,
    padding: int | None = None,
    use_bias: bool = False,
    norm: str | None = "batchnorm",
    norm_epsilon: float | None = None,
    activation: str | None = None,
    bn_scale_init: float = 1.0,
    kernel_init: Callable | None = None,
    bias_init: Callable | None = None,
    conv_name: str = "conv",
    norm_name: str = "bn",
    train: bool = False,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> jax.Array:
    """conv -> [norm] -> [activation], created inside the calling module under `conv_name` and `norm_name`.

    norm: "batchnorm" (eps default 1e-5, PyTorch's), one of the `get_norm` kinds (eps default 1e-6), or None;
    activation: a `get_activation` kind or None. Call it from a `@nn.compact` method.
    """
    if x.shape[-1] % groups or features % groups:
        raise ValueError(
            f"conv_norm_act: groups={groups} must divide the input channels ({x.shape[-1]}) and features ({features})."
        )
    if norm is not None and norm not in CONV_NORMS:
        raise unknown_name_error("norm", norm, CONV_NORMS)
    common = dict(dtype=dtype, param_dtype=param_dtype)
    x = conv2d(
        features,
        kernel_size,
        stride=stride,
        groups=groups,
        padding=padding,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        name=conv_name,
        **common,
    )(x)
    if norm == "batchnorm":
        epsilon = BN_EPSILON if norm_epsilon is None else norm_epsilon
        x = batch_norm(norm_name, train=train, epsilon=epsilon, scale_init=bn_scale_init, **common)(x)
    elif norm is not None:
        x = get_norm(norm, epsilon=1e-6 if norm_epsilon is None else norm_epsilon, name=norm_name, **common)(x)
    if activation is not None:
        x = get_activation(activation, **common)(x)
    return x


class ConvNormAct(Module):
    """conv -> norm -> activation as one module (`conv`, `norm`): timm's ConvNormAct, cvnets' ConvLayer."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    padding: int | None = None  # per side; None: (kernel_size - 1) // 2
    use_bias: bool = False
    norm: str | None = "batchnorm"
    norm_epsilon: float | None = None  # None: 1e-5 for BatchNorm, 1e-6 otherwise
    activation: str | None = "relu"
    bn_scale_init: float = 1.0
    kernel_init: Callable | None = None  # None: trunc-normal 0.02 (timm's)
    norm_name: str = "norm"

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        return conv_norm_act(
            x,
            self.features,
            self.kernel_size,
            stride=self.stride,
            groups=self.groups,
            padding=self.padding,
            use_bias=self.use_bias,
            norm=self.norm,
            norm_epsilon=self.norm_epsilon,
            activation=self.activation,
            bn_scale_init=self.bn_scale_init,
            kernel_init=self.kernel_init,
            norm_name=self.norm_name,
            train=train,
            **self.dtype_kwargs,
        )


class ConvBN(ConvNormAct):
    """conv (no bias) -> BatchNorm (`conv`, `bn`): PyTorch's `Conv2d_BN` (LeViT, EfficientViT, CAS-ViT, FFNet,
    LSNet). Positional arguments: features, kernel_size, stride, groups."""

    activation: str | None = None
    norm_name: str = "bn"


def fuse_conv_bn(
    kernel: jax.Array,
    bn_params: Mapping[str, jax.Array],
    bn_stats: Mapping[str, jax.Array],
    conv_bias: jax.Array | None = None,
    epsilon: float = BN_EPSILON,
) -> tuple[jax.Array, jax.Array]:
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


def conv_bn_variables(variables: Mapping[str, Any], path: Sequence[str]) -> tuple[jax.Array, dict, dict]:
    """(conv kernel, bn params, bn stats) of the ConvBN at `path` inside a model's variables."""
    params, stats = variables["params"], variables["batch_stats"]
    for key in path:
        params, stats = params[key], stats[key]
    return params["conv"]["kernel"], params["bn"], stats["bn"]
