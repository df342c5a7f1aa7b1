"""The transformer pieces of OmniTokenizer: PEG, its attention, Swin window attention, GEGLU feed-forward.

Official code: FoundationVision/OmniTokenizer @ 701b619: OmniTokenizer/modules/attention.py (`PEG`, `Attention`,
`WindowAttention`, `FeedForward`, `ContinuousPositionBias`, `AlibiPositionalBias`, `Transformer`). Every softmax
goes through mixtok.layers.attention.dot_product_attention; the window attention is mixtok's MultiHeadAttention
over 8 x 8-token windows. Parameter names are listed in mixtok/interop/omnitokenizer.py.

What the official `Attention` computes (a 't' layer; `num_null_kv` 0: the `Transformer` passes its
`attn_num_null_kv=2` only to the cross-attention, which OmniTokenizer never builds):

    q = LN_gamma(x) Wq (a LayerNorm whose bias is a zero buffer);  k, v = x Wkv, from x before the norm (sic)
    q, k = RoPE-2D(q, k)                 spatial layers with spatial_pos "rope" (stage 2 and 3)
    k, v = [null_kv; k], [null_kv; v]    num_null_kv > 0 only
    q, k = l2norm(q) * q_scale, l2norm(k) * k_scale;   out = softmax(8 q k^T [+ bias] [causal]) v Wo

`position_biases`. With PyTorch >= 2.1 the official code calls `F.scaled_dot_product_attention(q, k, v,
is_causal=causal, scale=8)` and its relative biases are not applied (the continuous position bias of spatial
'rel' layers is computed and dropped; the ALiBi bias of the causal temporal layers is not computed). Its
fallback einsum path (older PyTorch) adds both: the continuous position bias (an MLP 2 -> dim -> dim -> heads,
LeakyReLU 0.1, of the signed log distance between grid positions, Swin-v2's) to spatial logits, and ALiBi
(-slope_h |i - j|) to temporal ones. `position_biases=False` is the first (what a PyTorch >= 2.1 model
computes; the official README installs PyTorch 2.2.1, which takes this path), True the second. The
continuous-position-bias weights exist either way: they are parameters of every official 't' attention with
spatial_pos "rel", temporal ones included, where they are never used.

Causal masks are aligned bottom-right (query i sees the null keys and keys <= i), as the einsum path's
`triu(j - i + 1)`; PyTorch's `is_causal` aligns top-left, which differs only when null keys are added.
"""

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mixtok.layers.attention import IMPLEMENTATIONS, MultiHeadAttention, dot_product_attention
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm

TORCH_LN_EPS = 1e-5


def gamma_norm(name: str, dtype_kwargs) -> LayerNorm:
    """The official `LayerNorm` (a learned gamma, beta a zero buffer), eps 1e-5."""
    return LayerNorm(epsilon=TORCH_LN_EPS, use_bias=False, name=name, **dtype_kwargs)


def l2_normalize(x, eps: float = 1e-12):
    """F.normalize(x, dim=-1): x / max(||x||, eps)."""
    x32 = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(jnp.square(x32), axis=-1, keepdims=True))
    return (x32 / jnp.maximum(norm, eps)).astype(x.dtype)


def rope_angles(dim_head: int, height: int, width: int, theta: float = 10000.0) -> np.ndarray:
    """[h * w, dim_head / 2] angles of the official `precompute_freqs_cis_2d(dim_head, h * w)`.

    Pair 2m of a head rotates by column * f_m, pair 2m + 1 by row * f_m, f_m = theta^(-4m / dim_head),
    m < dim_head / 4 (the official code takes column = pos % sqrt(N), row = pos // sqrt(N), the same on a
    square grid).
    """
    freqs = 1.0 / theta ** (np.arange(0, dim_head, 4)[: dim_head // 4].astype(np.float32) / dim_head)
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    x_angles = np.outer(cols.reshape(-1), freqs)
    y_angles = np.outer(rows.reshape(-1), freqs)
    return np.stack([x_angles, y_angles], axis=-1).reshape(height * width, -1).astype(np.float32)


def apply_rope(x, angles):
    """Rotates channel pairs (2i, 2i + 1) of x [N, L, heads, d] by angles [L, d / 2] (`apply_rotary_emb`)."""
    x32 = x.astype(jnp.float32).reshape(x.shape[:-1] + (-1, 2))
    cos, sin = jnp.cos(angles)[None, :, None], jnp.sin(angles)[None, :, None]
    real = x32[..., 0] * cos - x32[..., 1] * sin
    imag = x32[..., 0] * sin + x32[..., 1] * cos
    return jnp.stack([real, imag], axis=-1).reshape(x.shape).astype(x.dtype)


def alibi_slopes(heads: int) -> np.ndarray:
    """The official `AlibiPositionalBias._get_slopes`."""

    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(heads).is_integer():
        return np.asarray(power_of_2(heads), np.float32)
    closest = 2 ** math.floor(math.log2(heads))
    return np.asarray(power_of_2(closest) + power_of_2(2 * closest)[0::2][: heads - closest], np.float32)


def causal_mask(q_len: int, kv_len: int) -> np.ndarray:
    """[q_len, kv_len] bool, True where query i may see key j: j <= i + (kv_len - q_len)."""
    return np.arange(kv_len)[None, :] <= np.arange(q_len)[:, None] + (kv_len - q_len)


def relative_position_index(window: int) -> np.ndarray:
    """Swin's [w^2, w^2] index into the (2w - 1)^2 table of relative offsets (official WindowAttention)."""
    coords = np.stack(np.meshgrid(np.arange(window), np.arange(window), indexing="ij")).reshape(2, -1)
    relative = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (window - 1)
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


class PEG(Module):
    """Position-generating depthwise Conv3d(3, groups=dim) over a [B, T, H, W, C] view of the tokens.

    Padding: 1 on H and W; on T (1, 1), or (2, 0) when `causal` (no frame sees a later one). `x` is
    [N, L, C] with `video_shape` (B, T, H, W) and is viewed as [B, T, H, W, C] by a plain reshape, as the
    official code does: right for the spatial layers ((B T), (H W)). The temporal layers' tokens are
    ((B H W), T): the official reshape then scrambles positions (its "TO FIX" comment), which mixes frames
    (and breaks causality) for clips with more than one latent frame; `per_location=True` (set for temporal
    layers by the tokenizer's `fix_temporal_peg`) views them correctly instead.
    """

    dim: int
    causal: bool = True
    per_location: bool = False

    @nn.compact
    def __call__(self, x, video_shape):
        batch, frames, height, width = video_shape
        if self.per_location:
            grid = x.reshape(batch, height, width, frames, self.dim).transpose(0, 3, 1, 2, 4)
        else:
            grid = x.reshape(batch, frames, height, width, self.dim)
        time_pad = (2, 0) if self.causal else (1, 1)
        grid = jnp.pad(grid, ((0, 0), time_pad, (1, 1), (1, 1), (0, 0)))
        out = nn.Conv(
            self.dim, (3, 3, 3), padding="VALID", feature_group_count=self.dim, name="dsconv", **self.dtype_kwargs
        )(grid)
        if self.per_location:
            return out.transpose(0, 2, 3, 1, 4).reshape(x.shape)
        return out.reshape(x.shape)


class ContinuousPositionBias(Module):
    """Swin-v2's continuous position bias (official `ContinuousPositionBias`, 2-D, log distance): [heads, L, L]."""

    dim: int
    heads: int

    @nn.compact
    def __call__(self, height: int, width: int):
        grid = np.stack(np.meshgrid(np.arange(height), np.arange(width), indexing="ij"), -1).reshape(-1, 2)
        rel = (grid[:, None, :] - grid[None, :, :]).astype(np.float32)
        h = jnp.asarray(np.sign(rel) * np.log(np.abs(rel) + 1.0))
        h = nn.leaky_relu(nn.Dense(self.dim, name="net_0", **self.dtype_kwargs)(h), 0.1)
        h = nn.leaky_relu(nn.Dense(self.dim, name="net_1", **self.dtype_kwargs)(h), 0.1)
        return nn.Dense(self.heads, name="net_2", **self.dtype_kwargs)(h).transpose(2, 0, 1)


class OmniAttention(Module):
    """The official `Attention` of a 't' layer (module docstring): x [N, L, dim] -> [N, L, dim]."""

    dim: int
    heads: int = 8
    dim_head: int = 64
    causal: bool = False
    spatial: bool = True
    spatial_pos: str = "rel"
    num_null_kv: int = 0
    position_biases: bool = False
    scale: float = 8.0
    attention_implementation: str | None = None

    @nn.compact
    def __call__(self, x, video_shape):
        inner = self.heads * self.dim_head
        h = gamma_norm("norm", self.dtype_kwargs)(x)
        # The official context norm: a parameter of every Attention, used only with a context (never here).
        self.param("context_norm_gamma", nn.initializers.ones, (self.dim,), self.param_dtype)
        q = dense(inner, ("embed", "heads"), use_bias=False, name="to_q", **self.dtype_kwargs)(h)
        # The official code takes k and v from x before its norm (kv_input is bound before x = self.norm(x)).
        kv = dense(2 * inner, ("embed", "heads"), use_bias=False, name="to_kv", **self.dtype_kwargs)(x)
        split = x.shape[:2] + (self.heads, self.dim_head)
        q, k, v = q.reshape(split), kv[..., :inner].reshape(split), kv[..., inner:].reshape(split)
        _, _, height, width = video_shape
        if self.spatial and self.spatial_pos == "rope":
            angles = jnp.asarray(rope_angles(self.dim_head, height, width))
            q, k = apply_rope(q, angles), apply_rope(k, angles)
        if self.num_null_kv:
            null_kv = self.param(
                "null_kv", nn.initializers.normal(1.0), (self.heads, 2 * self.num_null_kv, self.dim_head)
            )
            # official: repeat 'h (n r) d -> b h n r d', r=2, then unbind r into keys and values
            null_kv = null_kv.astype(k.dtype).reshape(self.heads, self.num_null_kv, 2, self.dim_head)
            null_kv = null_kv.transpose(1, 2, 0, 3)  # [n, 2, heads, d]
            shape = (x.shape[0], self.num_null_kv, self.heads, self.dim_head)
            null_k, null_v = (jnp.broadcast_to(null_kv[:, r], shape) for r in range(2))
            k, v = jnp.concatenate([null_k, k], axis=1), jnp.concatenate([null_v, v], axis=1)
        q_scale = self.param("q_scale", nn.initializers.ones, (self.dim_head,), self.param_dtype)
        k_scale = self.param("k_scale", nn.initializers.ones, (self.dim_head,), self.param_dtype)
        q = l2_normalize(q) * q_scale.astype(q.dtype)
        k = l2_normalize(k) * k_scale.astype(k.dtype)

        bias = mask = None
        q_len, kv_len = q.shape[1], k.shape[1]
        if self.spatial_pos == "rel":
            cpb = ContinuousPositionBias(self.dim, self.heads, name="spatial_rel_pos_bias", **self.dtype_kwargs)
            if self.spatial and self.position_biases:
                bias = jnp.pad(cpb(height, width), ((0, 0), (0, 0), (self.num_null_kv, 0)))
            elif self.is_initializing():
                cpb(1, 1)  # create the (unused) weights
        if self.causal:
            mask = jnp.asarray(causal_mask(q_len, kv_len))
            if self.position_biases:
                i_pos = np.arange(kv_len - q_len, kv_len)
                distance = -np.abs(np.arange(kv_len)[None, :] - i_pos[:, None]).astype(np.float32)
                alibi = jnp.asarray(alibi_slopes(self.heads)[:, None, None] * distance[None])
                bias = alibi if bias is None else bias + alibi
        impl = "auto" if self.attention_implementation is None else self.attention_implementation
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"attention_implementation {impl!r} is not one of {(None,) + IMPLEMENTATIONS}.")
        out = dot_product_attention(q, k, v, bias=bias, mask=mask, scale=self.scale, impl=impl)
        out = out.reshape(x.shape[:2] + (inner,))
        return dense(self.dim, ("heads", "embed"), use_bias=False, name="to_out", **self.dtype_kwargs)(out)


class WindowAttention(Module):
    """Swin's non-shifted window attention with a relative-position bias table (official `WindowAttention`).

    x [N, H * W, dim] (grid from `video_shape`), LN_gamma, then MultiHeadAttention (qkv without bias, head
    width dim // heads, scale its -0.5 power) inside each `window` x `window` block of the grid, plus
    table[relative_position_index] per head. H and W must be multiples of `window`.
    """

    dim: int
    heads: int = 8
    window: int = 8
    attention_implementation: str | None = None

    @nn.compact
    def __call__(self, x, video_shape):
        _, _, height, width = video_shape
        w = self.window
        if height % w or width % w:
            raise ValueError(
                f"WindowAttention: the token grid {height} x {width} must be a multiple of the window {w} "
                f"(image side / patch size); use image sizes that are multiples of {w} x patch_size."
            )
        table = self.param(
            "relative_position_bias_table",
            nn.initializers.truncated_normal(0.02),
            ((2 * w - 1) ** 2, self.heads),
            self.param_dtype,
        )
        bias = table[relative_position_index(w).reshape(-1)].reshape(w * w, w * w, self.heads).transpose(2, 0, 1)
        h = gamma_norm("norm", self.dtype_kwargs)(x)
        n = x.shape[0]
        windows = h.reshape(n, height // w, w, width // w, w, self.dim).transpose(0, 1, 3, 2, 4, 5)
        windows = windows.reshape(-1, w * w, self.dim)
        out = MultiHeadAttention(
            self.dim,
            num_heads=self.heads,
            qkv_bias=False,
            attention_implementation=self.attention_implementation,
            name="attn",
            **self.dtype_kwargs,
        )(windows, bias=bias[None])
        out = out.reshape(n, height // w, width // w, w, w, self.dim).transpose(0, 1, 3, 2, 4, 5)
        return out.reshape(x.shape)


class GEGLUFeedForward(Module):
    """LayerNorm -> Linear(dim, 2 inner, no bias) -> x * GELU(gate) -> Linear(inner, dim, no bias);
    inner = int(ff_mult * 2 / 3 * dim) (official `FeedForward`; 1365 for dim 512, ff_mult 4)."""

    dim: int
    ff_mult: float = 4.0

    @nn.compact
    def __call__(self, x):
        inner = int(self.ff_mult * (2 / 3) * self.dim)
        h = LayerNorm(epsilon=TORCH_LN_EPS, name="norm", **self.dtype_kwargs)(x)
        h = dense(2 * inner, ("embed", "mlp"), use_bias=False, name="proj_in", **self.dtype_kwargs)(h)
        h = h[..., :inner] * nn.gelu(h[..., inner:], approximate=False)
        return dense(self.dim, ("mlp", "embed"), use_bias=False, name="proj_out", **self.dtype_kwargs)(h)


class OmniTransformer(Module):
    """The official `Transformer`: per layer (`blocks`, 't' or 'w') x += PEG(x) ('t'), x += attention(x),
    x += FF(x); then LN_gamma. x is [N, L, dim]; `video_shape` (B, T, H, W) gives the grid."""

    dim: int
    blocks: str = "tttt"
    heads: int = 8
    dim_head: int = 64
    ff_mult: float = 4.0
    causal: bool = False
    causal_peg: bool = True
    spatial: bool = True
    spatial_pos: str = "rel"
    window: int = 8
    num_null_kv: int = 0
    position_biases: bool = False
    per_location_peg: bool = False
    attention_implementation: str | None = None

    @nn.compact
    def __call__(self, x, video_shape):
        for i, kind in enumerate(self.blocks):
            if kind == "t":
                peg = PEG(self.dim, self.causal_peg, self.per_location_peg, name=f"layer_{i}_peg", **self.dtype_kwargs)
                x = x + peg(x, video_shape)
                x = x + OmniAttention(
                    self.dim,
                    self.heads,
                    self.dim_head,
                    causal=self.causal,
                    spatial=self.spatial,
                    spatial_pos=self.spatial_pos,
                    num_null_kv=self.num_null_kv,
                    position_biases=self.position_biases,
                    attention_implementation=self.attention_implementation,
                    name=f"layer_{i}_attn",
                    **self.dtype_kwargs,
                )(x, video_shape)
            elif kind == "w":
                x = x + WindowAttention(
                    self.dim,
                    self.heads,
                    self.window,
                    self.attention_implementation,
                    name=f"layer_{i}_attn",
                    **self.dtype_kwargs,
                )(x, video_shape)
            else:
                raise ValueError(f"block kind {kind!r} in {self.blocks!r}: valid kinds are 't' (global), 'w' (window).")
            x = x + GEGLUFeedForward(self.dim, self.ff_mult, name=f"layer_{i}_ff", **self.dtype_kwargs)(x)
        return gamma_norm("norm_out", self.dtype_kwargs)(x)
