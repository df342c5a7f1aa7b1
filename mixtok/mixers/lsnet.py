"""LSNet's LS convolution: "see large, focus small" — large-kernel perception predicts small dynamic kernels.

Paper: "LSNet: See Large, Focus Small" (Wang et al., CVPR 2025). Official code: jameslahm/lsnet @ cbe737c9,
model/lsnet.py (`LKP`, `LSConv`) and model/ska.py (`SKA`, a Triton kernel). With C channels, G = C / 8
kernel groups (`channels_per_kernel` = 8, the official `groups`) and 3x3 small kernels:

    LKP (large-kernel perception):
        h = ReLU(ConvBN1x1(ConvBN_dw7x7(ReLU(ConvBN1x1(x, C -> C/2)))))
        W = GroupNorm_G(Conv1x1(h, C/2 -> 9 G, bias))       reshaped to [B, H, W, G, 9]: group g, tap t = channel 9g + t
    SKA (small-kernel aggregation), zero padding:
        out[b, h, w, c] = sum_{kh, kw in 0..2} x[b, h + kh - 1, w + kw - 1, c] * W[b, h, w, c mod G, 3 kh + kw]
    LSConv(x) = BN(SKA(x, LKP(x))) + x

Channel c uses kernel group c mod G (interleaved: channels g, g + G, g + 2G, ... share a kernel), not c // 8.
This mapping is only visible in the Triton kernel (`w_off = ((ni * wc + ci % wc) * ...`).

The residual (+ x) is inside the mixer, as in the official `LSConv`; BatchNorm (eps 1e-5, momentum 0.1) keeps
running statistics in `batch_stats`. Initialisation is PyTorch's default (the official code re-initialises
only the BatchNorm affines): convs U(+-1/sqrt(fan_in)), the Conv1x1 bias likewise, GroupNorm 1 / 0.

Differences from the official code:
- NHWC; SKA is plain jnp (nine shifted copies of x, multiplied by the broadcast kernels) with XLA's autodiff
  instead of a hand-written Triton forward / backward.
- Parameter names follow the official modules (`lkp/cv1/conv`, `lkp/cv4`, `lkp/norm`, `bn`), with ConvBN's
  `conv`/`bn` for Conv2d_BN's `c`/`bn`.
- Under a sharded `jit` BatchNorm's batch statistics are those of the global batch; flax's running variance
  uses the biased batch variance where PyTorch uses the unbiased one.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.conv import ConvBN, batch_norm, conv2d
from mixtok.layers.init import TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.module import Module
from mixtok.layers.partitioning import ones_with_axes, zeros_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

GROUP_NORM_EPSILON = 1e-5


def small_kernel_aggregation(x: jax.Array, kernels: jax.Array) -> jax.Array:
    """SKA: each pixel's channels filtered by that pixel's own k x k kernels, channel c by group c mod G.

    x: [B, H, W, C]; kernels: [B, H, W, G, k * k] (tap index k * kh + kw) with G dividing C.
    Returns [B, H, W, C]; zero padding (k - 1) / 2.
    """
    batch, height, width, channels = x.shape
    groups, taps = kernels.shape[-2:]
    size = int(round(taps**0.5))
    if size * size != taps or size % 2 == 0:
        raise ValueError(f"small_kernel_aggregation: kernels need an odd square number of taps; got {taps}.")
    if kernels.shape[:3] != (batch, height, width) or channels % groups:
        raise ValueError(
            f"small_kernel_aggregation: kernels {kernels.shape} must be [B, H, W, G, k*k] for x "
            f"{x.shape}, with G dividing the {channels} channels."
        )
    pad = size // 2
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    # Channels as (C / G, G): channel c = r * G + g sits at [r, g], so its kernel group is g = c mod G.
    out = jnp.zeros((batch, height, width, channels // groups, groups), jnp.promote_types(x.dtype, kernels.dtype))
    for kh in range(size):
        for kw in range(size):
            shifted = padded[:, kh : kh + height, kw : kw + width, :].reshape(out.shape)
            out = out + shifted * kernels[:, :, :, None, :, size * kh + kw]
    return out.reshape(batch, height, width, channels).astype(x.dtype)


class LargeKernelPerception(Module):
    """LKP: a bottleneck with a depthwise large kernel that predicts per-pixel small kernels [B, H, W, G, k*k]."""

    large_kernel: int = 7
    small_kernel: int = 3
    channels_per_kernel: int = 8

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        dim = x.shape[-1]
        hidden = dim // 2
        groups = dim // self.channels_per_kernel
        taps = self.small_kernel**2
        # LSNet keeps PyTorch's default Conv2d init (weights and the cv4 bias U(+-1/sqrt(fan_in))).
        common = dict(kernel_init=TORCH_DEFAULT_INIT, **self.dtype_kwargs)
        h = nn.relu(ConvBN(hidden, name="cv1", **common)(x, train=train))
        h = ConvBN(hidden, self.large_kernel, groups=hidden, name="cv2", **common)(h, train=train)
        h = nn.relu(ConvBN(hidden, name="cv3", **common)(h, train=train))
        w = conv2d(taps * groups, 1, bias_init=torch_uniform_init(hidden), name="cv4", **common)(h)
        # GroupNorm's groups are blocks of k*k consecutive channels: the taps of one kernel group.
        w = nn.GroupNorm(
            num_groups=groups,
            epsilon=GROUP_NORM_EPSILON,
            use_fast_variance=False,
            **self.dtype_kwargs,
            scale_init=ones_with_axes(("conv_out",)),
            bias_init=zeros_with_axes(("conv_out",)),
            name="norm",
        )(w)
        return w.reshape(*w.shape[:3], groups, taps)


@register("ls_conv")
class LSConv(Mixer):
    """LSNet's LS convolution: BN(SKA(x, LKP(x))) + x, with interleaved kernel groups (channel c -> c mod C/8)."""

    large_kernel: int = 7
    small_kernel: int = 3
    channels_per_kernel: int = 8

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        if self.dim % 2 or self.channels_per_kernel < 1 or self.dim % self.channels_per_kernel:
            raise ValueError(
                f"LSConv: dim={self.dim} must be even and divisible by channels_per_kernel={self.channels_per_kernel}."
            )
        if self.small_kernel % 2 == 0 or self.large_kernel % 2 == 0:
            raise ValueError(
                f"LSConv: kernel sizes must be odd; got large_kernel={self.large_kernel}, "
                f"small_kernel={self.small_kernel}."
            )
        kernels = LargeKernelPerception(
            self.large_kernel,
            self.small_kernel,
            self.channels_per_kernel,
            **self.dtype_kwargs,
            name="lkp",
        )(x, train=train)
        y = small_kernel_aggregation(x, kernels)
        y = batch_norm("bn", train=train, **self.dtype_kwargs)(y)
        return y + x
