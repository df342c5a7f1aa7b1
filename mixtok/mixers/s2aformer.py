"""Strip Self-Attention (SSA) and the Local Interaction Module (LIM) of S2AFormer.

Paper: "S2AFormer: Strip Self-Attention for Efficient Vision Transformer" (Guoan Xu, Wenfeng Huang,
Wenjing Jia, Jiamao Li, Guangwei Gao, Guo-Jun Qi; arXiv 2505.22195 v1/v2, IEEE TIP 2025). No
official code is known. What could be read here is the abstract (v1 and v2) and secondary summaries
of the method; the method section, the equations and the variant table could not be retrieved, so
every detail below that is not in this list is our choice, marked as such.

What the sources say (quoted from the abstract, v2): "The core innovation of SSA lies in
simultaneously reducing the spatial resolution of the key (K) and value (V) tensors while
compressing the channel dimension of the query (Q) and key (K) tensors." (v1: "A key innovation of
SSA lies in its reducing the spatial dimensions of K and V while compressing the channel dimensions
of Q and K.") Secondary summaries (unverified: themoonlight.io review, emergentmind.com) add that the
spatial reduction is a depth-wise convolution and the channel compression a 1x1 convolution, with
softmax attention over the reduced tokens.

The SSA implemented here, for x [B, H, W, C] flattened to N = H * W tokens:

    x_r = LN(DWConv_{r x r, stride r}(x))                 # N' = (H / r) (W / r) tokens, C channels
    Q = x W_q          [N,  d]                            # d = compressed query/key channels, d << C
    K = x_r W_k        [N', d]
    V = x_r W_v        [N', C]                            # values keep all C channels
    A_h = softmax(Q_h K_h^T / sqrt(d / h))                # per head h: Q_h, K_h have d / h channels
    SSA(x) = concat_h(A_h V_h) W_o                        # V_h has C / h channels

Choices the paper (as read here) leaves open, and ours:

- reduction: a depth-wise r x r convolution with stride r and a bias, no padding (PyTorch's floor
  for sizes r does not divide), then LayerNorm (eps 1e-5, PyTorch's default), as PVT v2 / CMT
  follow their spatial reduction with a norm; `reduction=1` skips both (full-resolution K, V).
- compressed width d: `qk_dim` if given, else `max(num_heads, round(qk_ratio * C))` rounded up to a
  multiple of `num_heads`, with `qk_ratio = 0.25` by default (the paper's value is unknown).
- projections W_q, W_k, W_v, W_o are 1x1 convolutions = Dense layers on NHWC, with biases
  (`qkv_bias=True`, `proj_bias=True`); no relative position bias; scale (d / h) ** -0.5.
- init: trunc-normal(0.02) kernels, zero biases (timm's convention, as in the rest of mixtok).
- the attention runs through the shared `mixtok.layers.dot_product_attention` (softmax in float32 whatever
  the compute dtype); its values are wider than its queries and keys (C / h against d / h), which "auto"
  computes in the reference form (the fused paths take one width).

The LIM is described only as a module that keeps local detail (boundaries) next to the global SSA;
its structure could not be read. `LocalInteractionModule` is a stand-in, ours entirely:
1x1 conv -> depth-wise k x k conv (k = 3) -> GELU (exact erf) -> 1x1 conv, all with biases.
"""

import math

import flax.linen as nn
import jax

from mixtok.layers.attention import dot_product_attention
from mixtok.layers.conv import Conv2d
from mixtok.layers.init import conv_kernel_init, dense_kernel_init
from mixtok.layers.linear import Dense, dense
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import constrain_channels_last, zeros_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

__all__ = ["LocalInteractionModule", "StripSelfAttention", "compressed_qk_dim"]


def compressed_qk_dim(dim: int, num_heads: int, qk_ratio: float) -> int:
    """The compressed query/key width: `qk_ratio * dim`, at least one channel a head, a multiple of the heads."""
    if not 0.0 < qk_ratio <= 1.0:
        raise ValueError(f"qk_ratio must be in (0, 1]; got {qk_ratio}.")
    width = max(num_heads, int(round(qk_ratio * dim)))
    return int(math.ceil(width / num_heads) * num_heads)


@register("strip_self_attention")
class StripSelfAttention(Mixer):
    """Softmax attention of full-resolution queries over r-fold reduced keys/values, Q and K compressed to d << C."""

    num_heads: int = 1
    reduction: int = 1  # spatial reduction ratio r of K and V (stride of the depth-wise conv)
    qk_dim: int | None = None  # compressed query/key width d; None: from qk_ratio
    qk_ratio: float = 0.25
    qkv_bias: bool = True
    proj_bias: bool = True
    norm_epsilon: float = 1e-5
    attn_dropout: float = 0.0
    proj_dropout: float = 0.0

    def resolved_qk_dim(self) -> int:
        return self.qk_dim if self.qk_dim is not None else compressed_qk_dim(self.dim, self.num_heads, self.qk_ratio)

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x, num_heads=self.num_heads)
        heads, r, d = self.num_heads, self.reduction, self.resolved_qk_dim()
        if d <= 0 or d % heads:
            raise ValueError(f"qk_dim={d} must be positive and divisible by num_heads={heads}.")
        if r < 1:
            raise ValueError(f"reduction must be a positive integer; got {r}.")
        batch, height, width, channels = x.shape
        if height < r or width < r:
            raise ValueError(f"StripSelfAttention with reduction={r} needs H, W >= {r}; got {height}x{width}.")
        common = self.dtype_kwargs

        def dense(features, name, use_bias, axes):
            return Dense(
                features,
                use_bias=use_bias,
                kernel_init=dense_kernel_init(axes),
                bias_init=zeros_with_axes(axes[-1:]),
                name=name,
                **common,
            )

        reduced = x
        if r > 1:
            reduced = Conv2d(
                channels,
                (r, r),
                strides=(r, r),
                padding="VALID",
                feature_group_count=channels,
                kernel_init=conv_kernel_init((None, None, None, "conv_out")),
                bias_init=zeros_with_axes(("conv_out",)),
                name="reduce",
                **common,
            )(x)
            reduced = LayerNorm(epsilon=self.norm_epsilon, name="reduce_norm", **common)(reduced)
        kv_tokens = reduced.shape[1] * reduced.shape[2]
        q = dense(d, "query", self.qkv_bias, ("embed", "kv"))(x).reshape(batch, height * width, heads, d // heads)
        reduced = reduced.reshape(batch, kv_tokens, channels)
        k = dense(d, "key", self.qkv_bias, ("embed", "kv"))(reduced).reshape(batch, kv_tokens, heads, d // heads)
        v = dense(channels, "value", self.qkv_bias, ("embed", "heads"))(reduced)
        v = v.reshape(batch, kv_tokens, heads, channels // heads)
        rng = self.make_rng("dropout") if train and self.attn_dropout > 0.0 else None
        out = dot_product_attention(q, k, v, dropout_rate=self.attn_dropout, dropout_rng=rng)
        out = out.reshape(batch, height * width, channels)
        out = constrain_channels_last(dense(channels, "proj", self.proj_bias, ("heads", "embed"))(out), "embed")
        out = nn.Dropout(self.proj_dropout, deterministic=not train)(out)
        return out.reshape(batch, height, width, channels)


class LocalInteractionModule(Mixer):
    """Stand-in LIM (structure unknown): 1x1 conv -> depth-wise k x k conv -> GELU -> 1x1 conv."""

    kernel_size: int = 3

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer; got {self.kernel_size}.")
        common = self.dtype_kwargs
        pad = self.kernel_size // 2
        x = dense(self.dim, ("embed", "mlp"), name="pw1", **common)(x)
        x = Conv2d(
            self.dim,
            (self.kernel_size,) * 2,
            padding=((pad, pad), (pad, pad)),
            feature_group_count=self.dim,
            kernel_init=conv_kernel_init((None, None, None, "conv_out")),
            bias_init=zeros_with_axes(("conv_out",)),
            name="dw",
            **common,
        )(x)
        x = jax.nn.gelu(x, approximate=False)
        return dense(self.dim, ("mlp", "embed"), name="pw2", **common)(x)
