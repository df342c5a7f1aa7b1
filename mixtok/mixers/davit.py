"""The attention mixers of DaViT: global multi-head, (shifted) window and channel ("channel token") attention.

Paper: "DaViT: Dual Attention Vision Transformers" (Ding et al., ECCV 2022). Official code: dingmyu/davit
@ fc79470d: timm/models/davit.py (`WindowAttention`, `ChannelAttention`, `SpatialBlock`); timm's port,
huggingface/pytorch-image-models: timm/models/davit.py, has the same attention maths and is what the
converted weights come from. The shifted-window mask is Swin's (microsoft/Swin-Transformer:
models/swin_transformer.py `SwinTransformerBlock`).

With heads h, head width d = C / h and tokens X [N, C] (N = H * W), every mixer first projects
q, k, v = split(Linear(C -> 3C)(X)), the fused output ordered (3, h, d) as in the official code, and ends
with Linear(C -> C) (`proj`):

    MultiHeadAttention  y_h = softmax(q_h k_h^T / sqrt(d)) v_h                over all N tokens, O(N^2 C)
    WindowAttention     the same inside each non-overlapping 7 x 7 window       O(N 49 C)
    ChannelAttention    A_h = softmax((k_h / sqrt(d))^T v_h)  [d x d];  y_h = q_h A_h^T     O(N C d)

Spatial attention runs through `jax.nn.dot_product_attention` (softmax in float32 whatever the compute
dtype); `attention_implementation=None` picks cuDNN flash attention on GPUs for bfloat16 / float16
inputs whose head width cuDNN supports, and XLA otherwise ("xla" / "cudnn" force one).

Window attention follows DaViT's `SpatialBlock`: the map is zero-padded at the bottom and right to a
multiple of the window, the padded tokens take part in the attention as keys (their k and v are the qkv
bias, since the zeros enter the qkv projection), and the output is cropped back. With `shift_size` > 0
the padded map is rolled by (-shift, -shift) first and tokens attend only to tokens of the same Swin
region (Swin's mask; Swin adds -100 to masked logits, here they are excluded exactly; the difference is
exp(-100) of the weights). As in Swin, a map no larger than one window (min(H, W) <= window_size) is not
shifted. DaViT itself never shifts (shift_size = 0), and neither model has a relative position bias.

All three take NHWC [B, H, W, C] and return the same shape; norms and residuals belong to the block.
Differences from the official code: none in the maths; no attention dropout (DaViT has none).
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.partitioning import dense_kernel_init, zeros_with_axes
from mixtok.mixers.registry import register

IMPLEMENTATIONS = (None, "xla", "cudnn")
CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)


def _head_dim(dim: int, num_heads: int, mixer: str) -> int:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f"{mixer}: dim {dim} must be a positive multiple of num_heads {num_heads} "
                         f"(each head takes dim // num_heads channels).")
    return dim // num_heads


def _check_implementation(implementation: Optional[str]) -> None:
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention_implementation {implementation!r} is not one of {IMPLEMENTATIONS} "
                         f"(None: cuDNN on GPU where it applies, else XLA).")


def dot_product_attention(q, k, v, mask=None, implementation: Optional[str] = None):
    """softmax(q k^T / sqrt(d) [masked]) v over [B, T, heads, d] arrays through `jax.nn.dot_product_attention`.

    `mask` (bool, True = attend) broadcasts to [B, heads, T, S]. With `implementation=None` cuDNN's flash
    attention is used on a GPU for half-precision inputs with a head width of at most 128 that is a
    multiple of 8 (what cuDNN supports), XLA otherwise; if cuDNN refuses the call while it is traced,
    XLA is used instead.
    """
    _check_implementation(implementation)
    if implementation is None:
        head_dim = q.shape[-1]
        use_cudnn = (jax.default_backend() == "gpu" and q.dtype in CUDNN_DTYPES and head_dim <= 128
                     and head_dim % 8 == 0)
        if use_cudnn:
            try:
                return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn")
            except (ValueError, NotImplementedError, RuntimeError):
                pass  # an unsupported shape, GPU or cuDNN version: the XLA path computes the same thing
        implementation = "xla"
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=implementation)


def _qkv_projection(module: nn.Module, x, num_heads: int, use_bias: bool):
    """The fused q, k, v projection `qkv` of `module`: [..., C] -> three [..., heads, head_dim] arrays."""
    channels = x.shape[-1]
    qkv = nn.Dense(3 * channels, use_bias=use_bias, dtype=module.dtype, param_dtype=module.param_dtype,
                   kernel_init=dense_kernel_init(("embed", "heads")), bias_init=zeros_with_axes(("heads",)),
                   name="qkv")(x)
    qkv = qkv.reshape(x.shape[:-1] + (3, num_heads, channels // num_heads))
    return qkv[..., 0, :, :], qkv[..., 1, :, :], qkv[..., 2, :, :]


def _output_projection(module: nn.Module, x, use_bias: bool):
    return nn.Dense(x.shape[-1], use_bias=use_bias, dtype=module.dtype, param_dtype=module.param_dtype,
                    kernel_init=dense_kernel_init(("heads", "embed")), bias_init=zeros_with_axes(("embed",)),
                    name="proj")(x)


@register("multi_head_attention")
class MultiHeadAttention(nn.Module):
    """Global softmax self-attention over the H * W tokens, with `num_heads` heads of width dim // num_heads."""

    dim: int
    num_heads: int = 8
    qkv_bias: bool = True
    proj_bias: bool = True
    attention_implementation: Optional[str] = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        batch, height, width, channels = x.shape
        _head_dim(channels, self.num_heads, "multi_head_attention")
        tokens = x.reshape(batch, height * width, channels)
        q, k, v = _qkv_projection(self, tokens, self.num_heads, self.qkv_bias)
        out = dot_product_attention(q, k, v, implementation=self.attention_implementation)
        out = _output_projection(self, out.reshape(batch, height * width, channels), self.proj_bias)
        return out.reshape(batch, height, width, channels)


def window_partition(x, window_size: int):
    """[B, H, W, C] (H, W multiples of the window) -> [B * windows, window_size ** 2, C], windows row-major."""
    batch, height, width, channels = x.shape
    x = x.reshape(batch, height // window_size, window_size, width // window_size, window_size, channels)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window_size * window_size, channels)


def window_merge(windows, window_size: int, height: int, width: int):
    """The inverse of `window_partition`: [B * windows, window_size ** 2, C] -> [B, H, W, C]."""
    channels = windows.shape[-1]
    x = windows.reshape(-1, height // window_size, width // window_size, window_size, window_size, channels)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, height, width, channels)


def shifted_window_mask(height: int, width: int, window_size: int, shift_size: int) -> np.ndarray:
    """Swin's mask for a map rolled by -shift: [windows, T, T] booleans, True where two tokens may attend.

    The rolled map has three bands per axis, [0, -window), [-window, -shift), [-shift, end); the last two
    hold tokens that the roll brought from opposite edges. Tokens attend only within their own band pair.
    """
    labels = np.zeros((height, width), np.int32)
    bands = (slice(0, -window_size), slice(-window_size, -shift_size), slice(-shift_size, None))
    for i, rows in enumerate(bands):
        for j, cols in enumerate(bands):
            labels[rows, cols] = 3 * i + j
    windows = window_partition(labels[None, :, :, None], window_size)[..., 0]  # [windows, T]
    return windows[:, :, None] == windows[:, None, :]


@register("window_attention")
class WindowAttention(nn.Module):
    """Softmax self-attention inside non-overlapping `window_size` windows (DaViT / Swin W-MSA, SW-MSA)."""

    dim: int
    num_heads: int = 8
    window_size: int = 7
    shift_size: int = 0
    qkv_bias: bool = True
    proj_bias: bool = True
    attention_implementation: Optional[str] = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        batch, height, width, channels = x.shape
        _head_dim(channels, self.num_heads, "window_attention")
        ws = self.window_size
        if ws < 1:
            raise ValueError(f"window_attention: window_size must be a positive integer; got {ws}.")
        if not 0 <= self.shift_size < ws:
            raise ValueError(f"window_attention: shift_size must lie in [0, window_size) = [0, {ws}); "
                             f"got {self.shift_size}.")
        shift = self.shift_size if min(height, width) > ws else 0
        pad_bottom, pad_right = -height % ws, -width % ws
        x = jnp.pad(x, ((0, 0), (0, pad_bottom), (0, pad_right), (0, 0)))
        padded_height, padded_width = height + pad_bottom, width + pad_right
        if shift:
            x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
        windows = window_partition(x, ws)  # [B * nW, T, C]
        q, k, v = _qkv_projection(self, windows, self.num_heads, self.qkv_bias)
        mask = None
        if shift:
            window_mask = shifted_window_mask(padded_height, padded_width, ws, shift)  # [nW, T, T]
            mask = jnp.tile(jnp.asarray(window_mask)[:, None], (batch, 1, 1, 1))  # [B * nW, 1, T, T]
        out = dot_product_attention(q, k, v, mask=mask, implementation=self.attention_implementation)
        out = _output_projection(self, out.reshape(windows.shape), self.proj_bias)
        out = window_merge(out, ws, padded_height, padded_width)
        if shift:
            out = jnp.roll(out, (shift, shift), axis=(1, 2))
        return out[:, :height, :width, :]


@register("channel_attention")
class ChannelAttention(nn.Module):
    """DaViT's channel attention: per head, a d x d softmax attention among channels, over all H * W tokens."""

    dim: int
    num_heads: int = 8
    qkv_bias: bool = True
    proj_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        batch, height, width, channels = x.shape
        head_dim = _head_dim(channels, self.num_heads, "channel_attention")
        tokens = x.reshape(batch, height * width, channels)
        q, k, v = _qkv_projection(self, tokens, self.num_heads, self.qkv_bias)
        k = k * jnp.asarray(head_dim ** -0.5, k.dtype)
        # A[h, i, j] = sum_n k[n, h, i] v[n, h, j]: channel i of the keys against channel j of the values.
        logits = jnp.einsum("bnhi,bnhj->bhij", k, v, preferred_element_type=jnp.float32)
        weights = jax.nn.softmax(logits, axis=-1).astype(q.dtype)
        out = jnp.einsum("bhij,bnhj->bnhi", weights, q)  # y = q A^T
        out = _output_projection(self, out.reshape(batch, height * width, channels), self.proj_bias)
        return out.reshape(batch, height, width, channels)
