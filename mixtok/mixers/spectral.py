"""Spectral token mixers. GlobalFilter: GFNet's learned per-channel filter in the 2-D Fourier domain.

"Global Filter Networks for Image Classification" (Rao et al., NeurIPS 2021); official:
raoyongming/GFNet: gfnet.py `GlobalFilter`:

    X = rfft2(x, ortho) over (H, W)          x in float32, [B, H, W, C] -> [B, H, W//2+1, C]
    y = irfft2(X * K, s=(H, W), ortho)       K complex [H, W//2+1, C], one filter per channel

i.e. a global circular convolution of each channel with a learned kernel, in O(N log N).

The filter is stored as the official stores it, real pairs `complex_weight` [h, w//2+1, C, 2]
(real, imaginary), initialised 0.02 * N(0, 1), so parameter counts and converted checkpoints match.
Its grid (h, w) is `grid_size` or, if that is None, the (H, W) of the input at initialisation.

Other resolutions. The official code never resizes a filter in the forward pass: a GFNet is built
for one `img_size`, and fine-tuning at 384 px (main_gfnet.py, `--finetune`) builds a 384-px model
and converts the 224-px checkpoint by resizing every `complex_weight`, seen as a [1, 2C, h, w//2+1]
image, with `F.interpolate(mode='bicubic', align_corners=True)` to (h', h'//2+1), h' = h * 24 / 14
(the position embedding is resized too, bicubic with align_corners=False). We apply that same map
whenever the input grid (H, W) differs from the stored one: the stored filter is resized to
(H, W//2+1) by PyTorch's bicubic (cubic convolution, a = -0.75, border-clamped taps,
align_corners=True), so running a 224-px GlobalFilter on a 384-px map equals running a 384-px one
whose weights were converted as the official fine-tuning recipe does. The parameters keep their
stored shape; the resize is part of the forward pass (and is differentiated through). Note this
interpolates the half-spectrum as an image; it is the official recipe, not an exact resampling of
the underlying convolution kernel.

Precision: the FFTs run in float32 (the official casts to float32; complex half precision is
unsupported, GFNet issue #2) through `mixtok.kernels.spectral_filter`; the output is cast back to
`dtype` (or the input's dtype), where the official returns float32 under autocast.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.kernels.spectral_filter import spectral_filter
from mixtok.layers.partitioning import param_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

TORCH_BICUBIC_A = -0.75  # PyTorch's cubic-convolution coefficient (Keys' kernel uses -0.5)


def bicubic_resize_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
    """The [out_size, in_size] matrix of PyTorch's 1-D bicubic interpolation (`F.interpolate`).

    Source coordinates follow `align_corners` as PyTorch defines it; the four taps around each
    source coordinate use cubic convolution with a = -0.75 and are clamped to the border.
    """
    out = np.arange(out_size, dtype=np.float64)
    if align_corners:
        src = out * ((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
    else:
        src = (out + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(src)
    t = src - base
    a = TORCH_BICUBIC_A

    def near(d):  # |d| <= 1
        return ((a + 2) * d - (a + 3)) * d * d + 1

    def far(d):  # 1 < |d| < 2
        return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a

    taps = (far(t + 1), near(t), near(1 - t), far(2 - t))
    matrix = np.zeros((out_size, in_size))
    for offset, weight in zip((-1, 0, 1, 2), taps):
        index = np.clip(base.astype(int) + offset, 0, in_size - 1)
        np.add.at(matrix, (np.arange(out_size), index), weight)
    return matrix


def resize_bicubic(x: jax.Array, size: tuple[int, int], *, align_corners: bool, axes=(0, 1)) -> jax.Array:
    """Resizes the two `axes` of `x` to `size` as PyTorch's bicubic `F.interpolate` does."""
    for axis, new in zip(axes, size):
        old = x.shape[axis]
        if old == new:
            continue
        matrix = jnp.asarray(bicubic_resize_matrix(old, new, align_corners), jnp.float32)
        moved = jnp.moveaxis(x, axis, 0)
        resized = jnp.tensordot(matrix, moved.astype(jnp.float32), axes=(1, 0), precision="highest")
        x = jnp.moveaxis(resized.astype(x.dtype), 0, axis)
    return x


@register("global_filter")
class GlobalFilter(Mixer):
    """y = irfft2(rfft2(x) * K) per channel: a learned global circular convolution (GFNet)."""

    grid_size: Sequence[int] | None = None  # (h, w) of the stored filter; None: the input's at init

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        height, width = x.shape[1:3]
        grid_h, grid_w = self.grid_size if self.grid_size is not None else (height, width)
        weight = self.param(
            "complex_weight",
            param_with_axes(jax.nn.initializers.normal(stddev=0.02), (None, None, "embed", None)),
            (grid_h, grid_w // 2 + 1, self.dim, 2),
            self.param_dtype,
        )
        weight = weight.astype(jnp.float32)
        if weight.shape[:2] != (height, width // 2 + 1):
            weight = resize_bicubic(weight, (height, width // 2 + 1), align_corners=True)
        filt = jax.lax.complex(weight[..., 0], weight[..., 1])
        y = spectral_filter(x.astype(jnp.float32), filt)
        return y.astype(self.dtype or x.dtype)
