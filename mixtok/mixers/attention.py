"""Multi-head self-attention as CAFormer uses it (MetaFormer Baselines for Vision, Yu et al. 2022).

Official: sail-sg/metaformer: metaformer_baselines.py `Attention`; timm:
timm/models/metaformer.py `Attention`. Heads have a fixed width (`head_dim`, 32) and their number
follows the channels (C // 32); qkv and the output projection have no biases by default:

    q, k, v = split(Linear(C -> 3 * heads * head_dim)(x));  a = softmax(q k^T / sqrt(head_dim))
    y = Linear(heads * head_dim -> C)(a v)

Takes NHWC and attends over all H * W tokens; softmax runs in float32 whatever the compute dtype.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.partitioning import dense_kernel_init, zeros_with_axes
from mixtok.mixers.registry import register


@register("attention")
class Attention(nn.Module):
    """Global softmax self-attention over the H * W tokens of an NHWC feature map."""

    dim: int
    head_dim: int = 32
    num_heads: Optional[int] = None
    qkv_bias: bool = False
    proj_bias: bool = False
    attn_dropout: float = 0.0
    proj_dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        batch, height, width, channels = x.shape
        heads = self.num_heads or max(self.dim // self.head_dim, 1)
        inner = heads * self.head_dim
        tokens = x.reshape(batch, height * width, channels)
        qkv = nn.Dense(3 * inner, use_bias=self.qkv_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                       kernel_init=dense_kernel_init(("embed", "heads")), bias_init=zeros_with_axes(("heads",)),
                       name="qkv")(tokens)
        # The fused projection's output is ordered (3, heads, head_dim), as in the official code.
        q, k, v = jnp.moveaxis(qkv.reshape(batch, height * width, 3, heads, self.head_dim), 2, 0)
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (self.head_dim ** -0.5)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        weights = nn.Dropout(self.attn_dropout, deterministic=not train)(weights)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(batch, height * width, inner)
        out = nn.Dense(channels, use_bias=self.proj_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                       kernel_init=dense_kernel_init(("heads", "embed")), bias_init=zeros_with_axes(("embed",)),
                       name="proj")(out)
        out = nn.Dropout(self.proj_dropout, deterministic=not train)(out)
        return out.reshape(batch, height, width, channels)
