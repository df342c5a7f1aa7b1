"""The Inception mixer of iFormer: high-frequency conv / max-pool branches beside low-frequency attention.

Paper: "Inception Transformer" (Si et al., NeurIPS 2022). Official code: sail-sg/iFormer @ 725d8e7f,
models/inception_transformer.py (`HighMixer`, `LowMixer`, `Mixer`). With C = `dim`, head width
d = C / num_heads, low_dim = attention_heads * d and high_dim = C - low_dim (h = high_dim / 2):

    high, low = x[..., :high_dim], x[..., high_dim:]
    conv branch    c = GELU(dw3x3(Conv1x1(high[..., :h] -> 2h, no bias), no bias))
    pool branch    p = GELU(Conv1x1(MaxPool3x3(high[..., h:], stride 1, pad 1) -> 2h, bias))
    low branch     a = Upsample_nearest(MHSA(AvgPool(low, pool_size)), pool_size)   (heads = attention_heads,
                   qkv bias, no output projection; pool_size 2 in stages 1-2, 1 in stages 3-4)
    z = concat[c, p, a]                (2 high_dim + low_dim channels)
    y = Conv1x1(z + dw3x3(z, no bias) -> C, bias)

Norms and residuals belong to the block (`mixtok.models.iformer`). The attention runs through the shared
`mixtok.layers.dot_product_attention` (softmax in float32; the reference form while attention dropout is active).

Differences from the official code:
- NHWC throughout; parameter names follow the official modules (`high_mixer/conv1`, `high_mixer/proj1`,
  `high_mixer/proj2`, `low_mixer/qkv`, `conv_fuse`, `proj`).
- The official LowMixer reshapes the pooled tokens to a square (`int(N ** 0.5)`), so it only runs on square
  maps; here any H x W whose sides `pool_size` divides works (the official code also needs that divisibility,
  or the upsampled map no longer matches the conv branch).
- Dropouts (attention and projection, official defaults 0) are options here with the same defaults.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.attention import dot_product_attention
from mixtok.layers.conv import Conv2d
from mixtok.layers.init import conv_kernel_init
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.partitioning import zeros_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)  # PyTorch's nn.GELU


def _depthwise_conv3x3(x, name, dtype, param_dtype):
    channels = x.shape[-1]
    return Conv2d(
        channels,
        (3, 3),
        padding=((1, 1), (1, 1)),
        feature_group_count=channels,
        use_bias=False,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=conv_kernel_init((None, None, None, "conv_out")),
        name=name,
    )(x)


def _pointwise_conv(x, features, use_bias, name, dtype, param_dtype):
    return nn.Conv(
        features,
        (1, 1),
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=conv_kernel_init(),
        bias_init=zeros_with_axes(("conv_out",)),
        name=name,
    )(x)


class HighMixer(Module):
    """The two high-frequency branches on `high_dim` channels; returns 2 * high_dim channels."""

    @nn.compact
    def __call__(self, x):
        half = x.shape[-1] // 2
        conv_part, pool_part = x[..., :half], x[..., half:]
        c = _pointwise_conv(conv_part, 2 * half, False, "conv1", self.dtype, self.param_dtype)
        c = _gelu(_depthwise_conv3x3(c, "proj1", self.dtype, self.param_dtype))
        # PyTorch's MaxPool2d pads with -inf, which nn.max_pool's padding does too.
        p = nn.max_pool(pool_part, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        p = _gelu(_pointwise_conv(p, 2 * half, True, "proj2", self.dtype, self.param_dtype))
        return jnp.concatenate([c, p], axis=-1)


class LowMixer(Module):
    """Self-attention on average-pooled tokens, upsampled back by nearest-neighbour repetition."""

    num_heads: int
    pool_size: int = 2
    attn_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        batch, height, width, channels = x.shape
        head_dim = channels // self.num_heads
        s = self.pool_size
        if s > 1:
            x = nn.avg_pool(x, (s, s), strides=(s, s))
        pooled_h, pooled_w = x.shape[1:3]
        tokens = x.reshape(batch, pooled_h * pooled_w, channels)
        qkv = dense(3 * channels, ("embed", "heads"), use_bias=True, **self.dtype_kwargs, name="qkv")(tokens)
        q, k, v = jnp.moveaxis(qkv.reshape(batch, -1, 3, self.num_heads, head_dim), 2, 0)
        rng = self.make_rng("dropout") if train and self.attn_dropout > 0.0 else None
        out = dot_product_attention(q, k, v, dropout_rate=self.attn_dropout, dropout_rng=rng)
        out = out.reshape(batch, pooled_h, pooled_w, channels)
        if s > 1:
            out = jnp.repeat(jnp.repeat(out, s, axis=1), s, axis=2)
        return out


@register("inception_mixer")
class InceptionMixer(Mixer):
    """iFormer's token mixer: channel split into high-frequency (conv, max-pool) and low-frequency (attention)."""

    num_heads: int = 8
    attention_heads: int = 1
    pool_size: int = 2
    attn_dropout: float = 0.0
    proj_dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x, num_heads=self.num_heads)
        head_dim = self.dim // self.num_heads
        low_dim = self.attention_heads * head_dim
        high_dim = self.dim - low_dim
        if not 1 <= self.attention_heads < self.num_heads or high_dim % 2:
            raise ValueError(
                f"InceptionMixer: attention_heads={self.attention_heads} must be in [1, num_heads="
                f"{self.num_heads}) and leave an even number of high-frequency channels "
                f"(dim - attention_heads * dim / num_heads = {high_dim})."
            )
        if self.pool_size < 1 or x.shape[1] % self.pool_size or x.shape[2] % self.pool_size:
            raise ValueError(
                f"InceptionMixer: pool_size={self.pool_size} must be >= 1 and divide the feature map "
                f"{x.shape[1]}x{x.shape[2]} (the attention runs on the pooled map, then is upsampled)."
            )
        high = HighMixer(**self.dtype_kwargs, name="high_mixer")(x[..., :high_dim])
        low = LowMixer(
            self.attention_heads,
            self.pool_size,
            self.attn_dropout,
            **self.dtype_kwargs,
            name="low_mixer",
        )(x[..., high_dim:], train=train)
        z = jnp.concatenate([high, low.astype(high.dtype)], axis=-1)
        z = z + _depthwise_conv3x3(z, "conv_fuse", self.dtype, self.param_dtype)
        y = _pointwise_conv(z, self.dim, True, "proj", self.dtype, self.param_dtype)
        return nn.Dropout(self.proj_dropout, deterministic=not train)(y)
