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

Every mixer is (a subclass of) `mixtok.layers.MultiHeadAttention`, and spatial and channel attention both run
through the shared `dot_product_attention` (softmax in float32 whatever the compute dtype);
`attention_implementation` is its `impl` (None: "auto", cuDNN flash attention on GPUs where it applies,
TPU flash attention where the shapes fit, XLA otherwise).

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

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mixtok.layers.attention import MultiHeadAttention
from mixtok.layers.module import check_channels
from mixtok.mixers.registry import register

# DaViT's global attention is the shared module as it is: qkv and proj with biases, heads of width C / heads.
register("multi_head_attention")(MultiHeadAttention)


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
class WindowAttention(MultiHeadAttention):
    """Softmax self-attention inside non-overlapping `window_size` windows (DaViT / Swin W-MSA, SW-MSA)."""

    window_size: int = 7
    shift_size: int = 0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        check_channels(self, x, nhwc=True)
        batch, height, width, _ = x.shape
        self.heads()
        ws = self.window_size
        if ws < 1:
            raise ValueError(f"window_attention: window_size must be a positive integer; got {ws}.")
        if not 0 <= self.shift_size < ws:
            raise ValueError(
                f"window_attention: shift_size must lie in [0, window_size) = [0, {ws}); got {self.shift_size}."
            )
        shift = self.shift_size if min(height, width) > ws else 0
        pad_bottom, pad_right = -height % ws, -width % ws
        x = jnp.pad(x, ((0, 0), (0, pad_bottom), (0, pad_right), (0, 0)))
        padded_height, padded_width = height + pad_bottom, width + pad_right
        if shift:
            x = jnp.roll(x, (-shift, -shift), axis=(1, 2))
        windows = window_partition(x, ws)  # [B * nW, T, C]
        q, k, v = self.project_qkv(windows)
        mask = None
        if shift:
            window_mask = shifted_window_mask(padded_height, padded_width, ws, shift)  # [nW, T, T]
            mask = jnp.tile(jnp.asarray(window_mask)[:, None], (batch, 1, 1, 1))  # [B * nW, 1, T, T]
        out = self.project_out(self.attend(q, k, v, mask=mask, train=train), train=train)
        out = window_merge(out, ws, padded_height, padded_width)
        if shift:
            out = jnp.roll(out, (shift, shift), axis=(1, 2))
        return out[:, :height, :width, :]


@register("channel_attention")
class ChannelAttention(MultiHeadAttention):
    """DaViT's channel attention: per head, a d x d softmax attention among channels, over all H * W tokens.

    A_h[i, j] = softmax_j(sum_n k[n, h, i] v[n, h, j] / sqrt(d)) and y = q A^T is attention with the roles
    turned: the d channels of k are the queries, those of v the keys and those of q the values, each a
    vector over the N tokens. So it runs through the shared attention function on the transposed arrays
    ([B, d, heads, N]: head width N) with the scale d ** -0.5.
    """

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        check_channels(self, x, nhwc=True)
        batch, height, width, channels = x.shape
        _, head_dim = self.heads()
        tokens = x.reshape(batch, height * width, channels)
        q, k, v = self.project_qkv(tokens)
        q, k, v = (a.transpose(0, 3, 2, 1) for a in (q, k, v))  # [B, N, h, d] -> [B, d, h, N]
        out = self.attend(k, v, q, scale=head_dim**-0.5, train=train)
        out = self.project_out(out.transpose(0, 3, 2, 1), train=train)
        return out.reshape(batch, height, width, channels)
