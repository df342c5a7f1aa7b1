"""TransNeXt's token and channel mixers: aggregated (pixel-focused) attention, its full-attention form, ConvGLU.

Paper: "TransNeXt: Robust Foveal Visual Perception for Vision Transformers" (Shi, CVPR 2024). Official code:
DaiShiResearch/TransNeXt @ c8a99743: classification/attention_native.py (`AggregatedAttention`, the native
PyTorch path, not the swattention CUDA extension) and classification/transnext.py (`Attention`,
`ConvolutionalGLU`, `get_relative_position_cpb`).

AggregatedAttention, per head (head width d, N = H W queries, a 3x3 window, P = h_p w_p pooled tokens):

    q = l2norm(W_q x);  k, v = split(W_kv x), k = l2norm(k)
    q_s = (q + query_embedding) * softplus(temperature) * log(n_valid(i) + P)   (n_valid: window pixels inside)
    local:  s_ij = q_s_i . k_j + rel_bias_local[j - i]   for j in the 3x3 window of i; zero-padded j -> -inf
    pooled: x_p = LN(AdaptiveAvgPool_{h_p x w_p}(GELU(Conv1x1(x)))), k_p, v_p = split(W_kv x_p), k_p = l2norm(k_p)
            s_ip = q_s_i . k_p + CPB(rel(i, p)),  CPB = Linear(512 -> heads)(ReLU(Linear(2 -> 512)))
    a = softmax([s_local, s_pool])              (one softmax over the 9 + P keys)
    y_i = sum_j (q_i . learnable_tokens_j + learnable_bias_j + a_ij) v_j + sum_p a_ip v_p;   out = proj(y)

The window's learnable tokens are scored against the *unscaled* normalised query, as in the official code.
`LengthScaledCosineAttention` is the stage-4 (sr_ratio 1) form: full attention with the same query
embedding, temperature, log(N) scale and CPB bias, and no pooling branch.
ConvGLU: hidden = int(2 * int(C * mlp_ratio) / 3); x, g = split(Linear(C -> 2 hidden)); y = Linear(GELU(dw3x3(x)) g).

Differences from the official code:
- Constants (the window's padding mask and length scale, the CPB coordinate table and index) are computed
  from the input's H, W at trace time, not from a fixed `input_resolution`, so one set of weights runs at any
  size; `pretrain_size` (the feature-map size the CPB coordinates are normalised by, the official
  `pretrain_size // stride`) defaults to the input's own size, as the official code does with img_size.
- The pooled grid is (H // sr_ratio, W // sr_ratio) of the input, or `fixed_pool_size`; AdaptiveAvgPool uses
  PyTorch's rule (bin i covers floor(i L / n) .. ceil((i + 1) L / n)), also for non-divisible sizes.
- The 1x1 conv `sr` is a Dense (kernel = torch weight[:, :, 0, 0].T); the other weights keep the official shapes.
- Softmax runs in float32 whatever the compute dtype. `LengthScaledCosineAttention` is one call of the shared
  `mixtok.layers.dot_product_attention` (q_scaled, the normalised keys, scale 1, the CPB table as its bias).
  `AggregatedAttention` is the one exception: its local keys are a different 3 x 3 window for every query, so
  its scores are not q K^T over one key set. As one call it would need either N x N logits with a
  neighbourhood mask (O(N^2): 3136^2 per head at 224^2, what the window avoids) or the P pooled keys and
  values copied to every query (B N (9 + P) C for each, 58 / 9 = 6.4x the window's memory at P = 49). It
  builds its [9 + P] scores itself and takes the shared softmax step, `mixtok.layers.attention.softmax_weights`
  (float32, the same dropout), so its softmax and the function's are one piece of code.
- Initialisation follows the official `_init_weights` (Linear trunc_normal 0.02, zero bias; convs
  normal(0, sqrt(2 / fan_out))); jax's truncated normals cut at +-2 std where torch's trunc_normal_ cuts at
  +-2 absolute (only the spread of from-scratch init differs).
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.attention import dot_product_attention, softmax_weights
from mixtok.layers.conv import Conv2d
from mixtok.layers.init import DEFAULT_KERNEL_INIT, dense_kernel_init
from mixtok.layers.linear import Dense, dense
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import constrain_channels_last, param_with_axes, zeros_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

SOFTPLUS_TEMPERATURE_INIT = 1 / 0.24  # the official init makes softplus(temperature) = 1 / 0.24
CPB_HIDDEN = 512


def adaptive_pool_matrix(length: int, out: int) -> np.ndarray:
    """[out, length] averaging matrix of PyTorch's AdaptiveAvgPool1d (bins may overlap when out does not divide)."""
    if not 0 < out <= length:
        raise ValueError(f"Adaptive pooling needs 0 < output size <= input size; got output {out} for input {length}.")
    matrix = np.zeros((out, length), np.float32)
    for i in range(out):
        start, end = (i * length) // out, -((-(i + 1) * length) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def relative_position_cpb(
    query_size: tuple[int, int], key_size: tuple[int, int], pretrain_size: tuple[int, int] | None = None
):
    """(index [Nq * Nk], log-spaced table [U, 2]) of query-to-key offsets; official `get_relative_position_cpb`.

    Keys sit at the adaptive-average-pooled pixel coordinates; offsets are scaled by 8 / (pretrain - 1) and
    mapped by sign(x) log2(|x| + 1) / 3. Computed in float32 numpy, as the official code does in torch, and
    cached per size (the blocks of a stage share them; the arrays are read-only).
    """
    return _relative_position_cpb(
        tuple(query_size), tuple(key_size), None if pretrain_size is None else tuple(pretrain_size)
    )


@functools.lru_cache(maxsize=64)
def _relative_position_cpb(query_size, key_size, pretrain_size):
    pretrain_size = tuple(pretrain_size or query_size)
    if min(pretrain_size) < 2:
        raise ValueError(
            f"pretrain_size must be at least 2 per side (offsets are divided by size - 1); got {pretrain_size}."
        )
    axes = []
    for q_len, k_len, p_len in zip(query_size, key_size, pretrain_size):
        axis_q = np.arange(q_len, dtype=np.float32)
        axis_k = (adaptive_pool_matrix(q_len, k_len) @ axis_q).astype(np.float32)
        axes.append((axis_q, axis_k, np.float32(p_len - 1)))
    (qh, kh, ph), (qw, kw, pw) = axes
    qh, qw = [a.reshape(-1) for a in np.meshgrid(qh, qw, indexing="ij")]
    kh, kw = [a.reshape(-1) for a in np.meshgrid(kh, kw, indexing="ij")]
    rel_h = (qh[:, None] - kh[None, :]) / ph * np.float32(8)
    rel_w = (qw[:, None] - kw[None, :]) / pw * np.float32(8)
    table, index = np.unique(np.stack([rel_h, rel_w], -1).reshape(-1, 2), axis=0, return_inverse=True)
    table = (np.sign(table) * np.log2(np.abs(table) + np.float32(1)) / np.float32(3)).astype(np.float32)
    index = index.reshape(-1)
    index.flags.writeable = table.flags.writeable = False
    return index, table


@functools.lru_cache(maxsize=64)
def local_window_constants(height: int, width: int, window_size: int):
    """(valid [N, k*k] bool, n_valid [N]) of a zero-padded k x k window, taps in row-major (dy, dx) order (cached)."""
    pad = window_size // 2
    ones = np.pad(np.ones((height, width), bool), pad)
    valid = np.stack(
        [ones[dy : dy + height, dx : dx + width].reshape(-1) for dy in range(window_size) for dx in range(window_size)],
        -1,
    )
    n_valid = valid.sum(-1).astype(np.float32)
    valid.flags.writeable = n_valid.flags.writeable = False
    return valid, n_valid


def _l2_normalize(x, eps=1e-12):
    """F.normalize: x / max(||x||, eps)."""
    return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class _TransNeXtAttention(Mixer):
    """What both attention forms share: their options, the temperature, query embedding and the CPB MLP."""

    num_heads: int = 8
    pretrain_size: Sequence[int] | None = None  # feature-map (h, w) the CPB offsets are normalised by
    qkv_bias: bool = True
    attn_dropout: float = 0.0
    proj_dropout: float = 0.0

    def _temperature(self, heads):
        init = float(np.log(np.expm1(SOFTPLUS_TEMPERATURE_INIT)))
        return self.param(
            "temperature",
            param_with_axes(jax.nn.initializers.constant(init), ("heads", None, None)),
            (heads, 1, 1),
            self.param_dtype,
        )

    def _query_embedding(self, heads, head_dim):
        return self.param(
            "query_embedding",
            param_with_axes(DEFAULT_KERNEL_INIT, ("heads", None, "kv")),
            (heads, 1, head_dim),
            self.param_dtype,
        )

    def _cpb_bias(self, index, table, heads, query_len, key_len):
        """[heads, Nq, Nk] continuous relative position bias from the official two-layer CPB MLP."""
        common = dict(**self.dtype_kwargs, bias_init=zeros_with_axes(("mlp",)))
        hidden = nn.relu(
            Dense(CPB_HIDDEN, kernel_init=dense_kernel_init((None, "mlp")), name="cpb_fc1", **common)(
                jnp.asarray(table)
            )
        )
        common["bias_init"] = zeros_with_axes(("heads",))
        per_entry = Dense(heads, kernel_init=dense_kernel_init(("mlp", "heads")), name="cpb_fc2", **common)(hidden)
        return per_entry.T[:, index].reshape(heads, query_len, key_len)


@register("aggregated_attention")
class AggregatedAttention(_TransNeXtAttention):
    """TransNeXt's pixel-focused attention: a 3x3 sliding window plus pooled tokens under one softmax."""

    window_size: int = 3
    sr_ratio: int = 8
    fixed_pool_size: int | None = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x, num_heads=self.num_heads)
        if self.window_size % 2 != 1 or self.window_size < 1:
            raise ValueError(f"window_size must be a positive odd number; got {self.window_size}.")
        if self.sr_ratio < 1:
            raise ValueError(f"sr_ratio must be >= 1; got {self.sr_ratio}.")
        batch, height, width, channels = x.shape
        heads, head_dim, taps = self.num_heads, channels // self.num_heads, self.window_size**2
        pool_h, pool_w = (
            (height // self.sr_ratio, width // self.sr_ratio)
            if self.fixed_pool_size is None
            else (self.fixed_pool_size,) * 2
        )
        if pool_h < 1 or pool_w < 1 or pool_h > height or pool_w > width:
            raise ValueError(
                f"Pooled grid {pool_h}x{pool_w} (sr_ratio={self.sr_ratio}, fixed_pool_size="
                f"{self.fixed_pool_size}) must be between 1x1 and the input grid {height}x{width}."
            )
        tokens, pooled = height * width, pool_h * pool_w
        common = self.dtype_kwargs
        valid, n_valid = local_window_constants(height, width, self.window_size)
        length_scale = jnp.asarray(np.log(n_valid + pooled).astype(np.float32))  # [N]

        q = dense(channels, ("embed", "heads"), use_bias=self.qkv_bias, name="q", **common)(x)
        q_norm = _l2_normalize(q.reshape(batch, tokens, heads, head_dim))
        temperature = jax.nn.softplus(self._temperature(heads))[:, 0, 0]
        query_embedding = self._query_embedding(heads, head_dim)[:, 0]
        q_scaled = (q_norm + query_embedding) * temperature[:, None] * length_scale[:, None, None]

        kv_layer = dense(2 * channels, ("embed", "heads"), use_bias=self.qkv_bias, name="kv", **common)
        k_local, v_local = jnp.split(kv_layer(x), 2, axis=-1)
        k_local = _l2_normalize(k_local.reshape(batch, height, width, heads, head_dim))
        v_local = v_local.reshape(batch, height, width, heads, head_dim)
        k_win, v_win = self._windows(k_local), self._windows(v_local)  # [B, N, taps, heads, d]

        bias_local = self.param(
            "relative_pos_bias_local",
            param_with_axes(jax.nn.initializers.truncated_normal(stddev=0.0004), ("heads", None)),
            (heads, taps),
            self.param_dtype,
        )
        scores_local = jnp.einsum("bnhd,bnthd->bhnt", q_scaled, k_win) + bias_local[:, None, :]
        scores_local = jnp.where(jnp.asarray(valid)[None, None], scores_local, -jnp.inf)

        # Pooled branch: LN(AdaptiveAvgPool(GELU(Conv1x1(x)))) -> the same kv projection.
        # `sr` is the official 1x1 Conv2d, initialised as its convs are: normal(0, sqrt(2 / fan_out)), fan_out = C.
        sr_init = param_with_axes(jax.nn.initializers.normal(float(np.sqrt(2.0 / channels))), ("embed", "heads"))
        reduced = nn.gelu(
            Dense(channels, kernel_init=sr_init, bias_init=zeros_with_axes(("heads",)), name="sr", **common)(x),
            approximate=False,
        )
        reduced = jnp.einsum(
            "ph,bhwc,qw->bpqc",
            jnp.asarray(adaptive_pool_matrix(height, pool_h)),
            reduced,
            jnp.asarray(adaptive_pool_matrix(width, pool_w)),
        )
        reduced = LayerNorm(epsilon=1e-5, name="norm", **common)(reduced.reshape(batch, pooled, channels))
        k_pool, v_pool = jnp.split(kv_layer(reduced), 2, axis=-1)
        k_pool = _l2_normalize(k_pool.reshape(batch, pooled, heads, head_dim))
        v_pool = v_pool.reshape(batch, pooled, heads, head_dim)
        index, table = relative_position_cpb((height, width), (pool_h, pool_w), self.pretrain_size)
        scores_pool = jnp.einsum("bnhd,bphd->bhnp", q_scaled, k_pool) + self._cpb_bias(
            index, table, heads, tokens, pooled
        )

        # The one softmax over the 9 window keys (their own for every pixel) and the P pooled keys; see the
        # module docstring for why this is not a `dot_product_attention` call.
        rng = self.make_rng("dropout") if train and self.attn_dropout > 0.0 else None
        weights = softmax_weights(
            jnp.concatenate([scores_local, scores_pool], axis=-1), dropout_rate=self.attn_dropout, dropout_rng=rng
        ).astype(v_pool.dtype)
        attn_local, attn_pool = weights[..., :taps], weights[..., taps:]

        learnable_tokens = self.param(
            "learnable_tokens",
            param_with_axes(DEFAULT_KERNEL_INIT, ("heads", "kv", None)),
            (heads, head_dim, taps),
            self.param_dtype,
        )
        learnable_bias = self.param(
            "learnable_bias", zeros_with_axes(("heads", None, None)), (heads, 1, taps), self.param_dtype
        )
        local_weights = jnp.einsum("bnhd,hdt->bhnt", q_norm, learnable_tokens) + learnable_bias + attn_local
        out = (
            jnp.einsum("bhnt,bnthd->bnhd", local_weights, v_win) + jnp.einsum("bhnp,bphd->bnhd", attn_pool, v_pool)
        ).reshape(batch, height, width, channels)
        out = constrain_channels_last(dense(channels, ("heads", "embed"), name="proj", **common)(out), "embed")
        return nn.Dropout(self.proj_dropout, deterministic=not train)(out)

    def _windows(self, x):
        """[B, H, W, h, d] -> [B, H W, taps, h, d]: the zero-padded k x k neighbourhood of every pixel."""
        batch, height, width = x.shape[:3]
        pad = self.window_size // 2
        padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0), (0, 0)))
        taps = [
            padded[:, dy : dy + height, dx : dx + width]
            for dy in range(self.window_size)
            for dx in range(self.window_size)
        ]
        return jnp.stack(taps, axis=3).reshape(batch, height * width, len(taps), *x.shape[3:])


@register("length_scaled_cosine_attention")
class LengthScaledCosineAttention(_TransNeXtAttention):
    """TransNeXt's full attention (stage 4, sr_ratio 1): cosine scores scaled by softplus(t) log N, plus CPB bias."""

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x, num_heads=self.num_heads)
        batch, height, width, channels = x.shape
        heads, head_dim, tokens = self.num_heads, channels // self.num_heads, height * width
        common = self.dtype_kwargs
        qkv = dense(3 * channels, ("embed", "heads"), use_bias=self.qkv_bias, name="qkv", **common)(x)
        q, k, v = jnp.moveaxis(qkv.reshape(batch, tokens, 3, heads, head_dim), 2, 0)
        temperature = jax.nn.softplus(self._temperature(heads))[:, 0, 0]
        q_scaled = (
            (_l2_normalize(q) + self._query_embedding(heads, head_dim)[:, 0])
            * temperature[:, None]
            * np.float32(np.log(tokens))
        )
        index, table = relative_position_cpb((height, width), (height, width), self.pretrain_size)
        # The scale is in q_scaled already; the CPB table is the attention bias.
        rng = self.make_rng("dropout") if train and self.attn_dropout > 0.0 else None
        out = dot_product_attention(
            q_scaled.astype(k.dtype),
            _l2_normalize(k),
            v,
            bias=self._cpb_bias(index, table, heads, tokens, tokens)[None],
            scale=1.0,
            dropout_rate=self.attn_dropout,
            dropout_rng=rng,
        )
        out = out.reshape(batch, height, width, channels)
        out = constrain_channels_last(dense(channels, ("heads", "embed"), name="proj", **common)(out), "embed")
        return nn.Dropout(self.proj_dropout, deterministic=not train)(out)


class ConvGLU(Mixer):
    """TransNeXt's channel mixer on NHWC: Linear(GELU(dw3x3(x)) * g) with x, g = split(Linear(C -> 2 hidden)).

    hidden = int(2 * int(dim * mlp_ratio) / 3), as the official Block and ConvolutionalGLU compute it.
    The depthwise conv's kernel is [3, 3, 1, hidden] (torch weight [hidden, 1, 3, 3] transposed).
    """

    mlp_ratio: float = 4.0
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        hidden = int(2 * int(self.dim * self.mlp_ratio) / 3)
        common = self.dtype_kwargs
        x, gate = jnp.split(
            dense(2 * hidden, ("embed", "mlp"), name="fc1", **common)(x),
            2,
            axis=-1,
        )
        fan_out = 3 * 3 * hidden // hidden  # the official conv init: normal(0, sqrt(2 / fan_out)), fan_out / groups
        x = Conv2d(
            hidden,
            (3, 3),
            padding=1,
            feature_group_count=hidden,
            name="dwconv",
            kernel_init=param_with_axes(jax.nn.initializers.normal(np.sqrt(2.0 / fan_out)), (None, None, None, "mlp")),
            bias_init=zeros_with_axes(("mlp",)),
            **common,
        )(x)
        x = constrain_channels_last(nn.gelu(x, approximate=False) * gate, "mlp")  # tensor parallelism's split
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = constrain_channels_last(dense(self.dim, ("mlp", "embed"), name="fc2", **common)(x), "embed")
        return nn.Dropout(self.dropout, deterministic=not train)(x)
