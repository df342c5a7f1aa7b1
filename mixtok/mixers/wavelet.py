"""WaveletMixer: WaveMix's token mixer, a multi-level 2-D Haar DWT whose coefficients feed-forward nets upsample back.

"WaveMix: A Resource-efficient Neural Network for Image Analysis" (Jeevan, Viswanathan, A S, Sethi; arXiv 2205.14375).
Official code: pranavphoenix/WaveMix @ ba3d1b42: wavemix/__init__.py (`Level1Waveblock` ... `Level4Waveblock`, and
the `DWTForward(J, wave='db1', mode='zero')` of pytorch_wavelets, copied into that file). For x [B, H, W, C] and
L = `levels`:

    r = reduction(x)                                   Conv1x1 C -> C/4 (with bias)
    LL_0 = r;  LL_j, (LH_j, HL_j, HH_j) = DWT(LL_{j-1})    j = 1 ... L: one Haar level each, H/2^j x W/2^j
    c_j = concat(LL_j, highs_j)                        C/4 + 3C/4 = C channels; the highs channel-major (c, band)
    y_L = FF_L(c_L)                                    C        -> C/2 (C when L = 1), upsampled x2
    y_j = FF_j(concat(c_j, y_{j+1}))                   C + C/2  -> C/2 (C for j = 1),  upsampled x2
    return y_1                                         [B, H, W, C]

    FF (`feedforward` at level 1, else `feedforward1` ... `feedforwardL`, each an nn.Sequential):
        expand    Conv1x1 (in -> mlp_ratio * C) - GELU (exact) - Dropout(dropout)
        project   Conv1x1 (-> ff_channel)
        upsample  ConvTranspose2d(ff_channel -> out, kernel 4, stride 2, padding 1)
        norm      BatchNorm2d(out)

The DWT is pytorch_wavelets' `afb1d` with db1 (Haar) filters, rows (W) first, then columns (H). For the 2 x 2 block
(a b / c d) of each channel: LL = (a + b + c + d) / 2, LH = (a + b - c - d) / 2 (high along H, pywt's cH),
HL = (a - b + c - d) / 2 (high along W, pywt's cV), HH = (a - b - c + d) / 2, in that band order (`haar_dwt2`; equal
to `pywt.dwt2(x, 'haar', mode='zero')` on even sizes, tests/mixers/test_wavelet.py). The official block reshapes
each level's highs to `int(h / 2^j)`, so the grid must be a multiple of 2^L (`levels`): another grid is one
ValueError naming the multiple. No parameter depends on the grid: any multiple of 2^L works.

Checked: tests/mixers/test_wavelet.py against PyWavelets and a numpy restatement of the official block; the official
Waveblocks themselves (levels 1 to 4, random weights and BatchNorm statistics) through the WaveMix models, whose eval
logits agree within 1.7e-6 (5.4e-7 of the largest logit; `mixtok.interop.wavemix`, tests/fixtures/wavemix).

The residual, and any norm, belong to the block around the mixer (WaveMix: `x = block(x) + x`, no norm; see
`mixtok.models.wavemix`). The BatchNorms inside are the official ones: their statistics live in `batch_stats`
and update when `train=True`.

Parameters: `reduction/{kernel,bias}`; per feed-forward `expand`, `project` (1x1 conv kernels [1, 1, in, out] and
biases), `upsample/kernel` [4, 4, out, in] (flax's transpose_kernel layout: the official ConvTranspose2d weight
[in, out, 4, 4] permuted (2, 3, 1, 0), as a Conv2d weight is), `upsample/bias`, `norm/{scale,bias}` and
batch_stats `norm/{mean,var}`.

Differences from the official code:
- NHWC layout. `levels` (official `level`) above 4 continues the same pattern (the official code stops at 4).
- `dim` must be a multiple of 4 (the official reshape to `int(c * 3 / 4)` channels fails otherwise); another is one
  ValueError naming the multiple.
- `dropout` defaults to 0 here (the official Waveblocks' default is 0.5; the WaveMix model passes its own,
  0.5 in every released configuration).
- Init: PyTorch's defaults, which the official model keeps (`timm.py` defines an `_init_weights` it never applies):
  kernels and biases U(+-1/sqrt(fan_in)), the transposed conv's fan-in out * 16 (PyTorch reads it from
  weight.size(1)); BatchNorm ones / zeros.
- The shared core has no transposed convolution; `upsample` is flax's `nn.ConvTranspose` with padding 4 - 1 - 1 = 2
  on the dilated input, which is PyTorch's ConvTranspose2d(4, stride 2, padding 1).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.activations import get_activation
from mixtok.layers.conv import batch_norm, conv2d
from mixtok.layers.init import TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.module import Module
from mixtok.layers.partitioning import param_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

UPSAMPLE_KERNEL = 4  # ConvTranspose2d(ff_channel, out, 4, stride=2, padding=1): exactly doubles the grid
UPSAMPLE_PADDING = 1


def haar_dwt2(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One level of the 2-D Haar DWT of NHWC `x` (even H, W): (LL [B, H/2, W/2, C], highs [B, H/2, W/2, C, 3]).

    The bands are pytorch_wavelets' (LH, HL, HH): high along H, high along W, high along both (pywt.dwt2's cH,
    cV, cD), each orthonormal (the 1/2 is 1/sqrt(2) per axis).
    """
    a, b = x[:, 0::2, 0::2], x[:, 0::2, 1::2]
    c, d = x[:, 1::2, 0::2], x[:, 1::2, 1::2]
    low_w_top, high_w_top = a + b, a - b  # the row (W) filters of the top and bottom rows of each 2 x 2 block
    low_w_bottom, high_w_bottom = c + d, c - d
    ll = (low_w_top + low_w_bottom) / 2
    lh = (low_w_top - low_w_bottom) / 2
    hl = (high_w_top + high_w_bottom) / 2
    hh = (high_w_top - high_w_bottom) / 2
    return ll, jnp.stack([lh, hl, hh], axis=-1)


def wavelet_coefficients(x: jax.Array, levels: int) -> list[jax.Array]:
    """[c_1, ..., c_L]: level j's LL next to its highs, channel-major (channel c * 3 + band), as the official
    block concatenates them; c_j is [B, H / 2^j, W / 2^j, 4 * C] for x [B, H, W, C]."""
    coefficients, low = [], x
    for _ in range(levels):
        low, highs = haar_dwt2(low)
        coefficients.append(jnp.concatenate([low, highs.reshape(*highs.shape[:3], -1)], axis=-1))
    return coefficients


class WaveFeedForward(Module):
    """The official feed-forward: Conv1x1 -> GELU -> Dropout -> Conv1x1 -> ConvTranspose2d(4, s2, p1) -> BatchNorm."""

    features: int  # the output channels after the upsampling
    hidden: int  # mult * final_dim
    ff_channel: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs

        def conv1x1(features, name, fan_in):
            return conv2d(
                features,
                1,
                kernel_init=TORCH_DEFAULT_INIT,
                bias_init=torch_uniform_init(fan_in),
                name=name,
                **common,
            )

        x = conv1x1(self.hidden, "expand", x.shape[-1])(x)
        x = get_activation("gelu", **common)(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = conv1x1(self.ff_channel, "project", self.hidden)(x)
        k, pad = UPSAMPLE_KERNEL, UPSAMPLE_KERNEL - 1 - UPSAMPLE_PADDING
        fan_in = self.features * k * k  # PyTorch's for a ConvTranspose2d weight [in, out, k, k]: out * k * k
        x = nn.ConvTranspose(
            self.features,
            (k, k),
            strides=(2, 2),
            padding=((pad, pad), (pad, pad)),
            transpose_kernel=True,  # kernel [k, k, out, in], flipped: PyTorch's transposed convolution
            kernel_init=param_with_axes(TORCH_DEFAULT_INIT, (None, None, "conv_out", "conv_in")),
            bias_init=param_with_axes(torch_uniform_init(fan_in), ("conv_out",)),
            name="upsample",
            **common,
        )(x)
        return batch_norm("norm", train=train, **common)(x)


@register("wavelet_mixer")
class WaveletMixer(Mixer):
    """The level-`levels` Waveblock of WaveMix: reduce to C/4, Haar DWT per level, feed-forwards from coarse to fine."""

    levels: int = 3  # official `level`; the ImageNet model's
    mlp_ratio: int = 2  # official `mult`: the feed-forwards' hidden width is mlp_ratio * dim
    ff_channel: int | None = None  # official `ff_channel`; None: dim (as every released configuration)
    dropout: float = 0.0  # inside each feed-forward, after the GELU

    def check_grid(self, x: jax.Array) -> None:
        """One ValueError unless `dim` is a multiple of 4 and the grid of a multiple of 2^levels."""
        name = type(self).__name__
        if self.levels < 1:
            raise ValueError(f"{name}: levels={self.levels} must be at least 1 (the official code has 1 to 4).")
        if self.dim % 4:
            raise ValueError(
                f"{name}: dim={self.dim} must be a multiple of 4 (the block reduces to dim / 4 channels before the "
                f"DWT); e.g. {max(4, self.dim // 4 * 4)} or {self.dim // 4 * 4 + 4}."
            )
        multiple = 2**self.levels
        height, width = x.shape[1:3]
        if height % multiple or width % multiple:
            raise ValueError(
                f"{name}: a {self.levels}-level DWT needs a grid whose height and width are multiples of {multiple}; "
                f"got {height}x{width} (e.g. {max(multiple, height // multiple * multiple)}x"
                f"{max(multiple, width // multiple * multiple)})."
            )

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        self.check_grid(x)
        common = self.dtype_kwargs
        dim, levels = self.dim, self.levels
        reduced = conv2d(
            dim // 4,
            1,
            kernel_init=TORCH_DEFAULT_INIT,
            bias_init=torch_uniform_init(dim),
            name="reduction",
            **common,
        )(x)
        coefficients = wavelet_coefficients(reduced, levels)
        hidden = self.mlp_ratio * dim
        ff_channel = dim if self.ff_channel is None else self.ff_channel
        y = None
        for j in reversed(range(levels)):  # coarsest first: each output joins the next finer level's coefficients
            inputs = coefficients[j] if y is None else jnp.concatenate([coefficients[j], y], axis=-1)
            name = "feedforward" if levels == 1 else f"feedforward{j + 1}"
            features = dim if j == 0 else dim // 2
            y = WaveFeedForward(features, hidden, ff_channel, self.dropout, name=name, **common)(inputs, train=train)
        return y
