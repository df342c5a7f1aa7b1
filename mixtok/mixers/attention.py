"""Multi-head self-attention as CAFormer uses it (MetaFormer Baselines for Vision, Yu et al. 2022).

Official: sail-sg/metaformer: metaformer_baselines.py `Attention`; timm:
timm/models/metaformer.py `Attention`. Heads have a fixed width (`head_dim`, 32) and their number
follows the channels (C // 32); qkv and the output projection have no biases by default:

    q, k, v = split(Linear(C -> 3 * heads * head_dim)(x));  a = softmax(q k^T / sqrt(head_dim))
    y = Linear(heads * head_dim -> C)(a v)

Takes NHWC and attends over all H * W tokens through `mixtok.layers.MultiHeadAttention` (the shared
attention function: softmax in float32 whatever the compute dtype, cuDNN / TPU flash attention where they
apply); parameters `qkv`, `proj` as in the official code.
"""

from mixtok.layers.attention import MultiHeadAttention
from mixtok.mixers.registry import register


@register("attention")
class Attention(MultiHeadAttention):
    """Global softmax self-attention over the H * W tokens of an NHWC feature map, heads of width 32."""

    num_heads: int | None = None
    head_dim: int | None = 32
    qkv_bias: bool = False
    proj_bias: bool = False
