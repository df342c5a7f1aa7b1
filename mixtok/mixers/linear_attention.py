"""Linear attention over the H * W tokens of an NHWC map ("Transformers are RNNs", Katharopoulos et al. 2020).

Official: idiap/fast-transformers @ 2ad36b97: fast_transformers/attention/attention_layer.py
`AttentionLayer` (query/key/value/out projections) around fast_transformers/attention/linear_attention.py
`LinearAttention` (elu(x) + 1 feature map, eps = 1e-6). Per head, with phi = elu + 1:

    q, k, v = split(Linear(C -> 3 * heads * head_dim)(x))
    o_i = phi(q_i) (sum_j phi(k_j)^T v_j) / (phi(q_i) . sum_j phi(k_j) + eps)      O(N d^2), not O(N^2 d)
    y = Linear(heads * head_dim -> C)(o)

computed by `mixtok.kernels.linear_attention` (non-causal, over all H * W tokens). Differences from
the official code: the three input projections are one fused Linear (the same parameters, laid out
(3, heads, head_dim) on the output axis as `mixers.Attention` does); heads follow the channels
(C // head_dim, head_dim 32) unless `num_heads` is given, as in this repo's softmax `Attention`;
`feature_map` also offers "relu" and the unnormalised "identity" of the kernel. Biases on by default, as
the official `torch.nn.Linear`s have them. No 1/sqrt(d) scale (the official code has none).
"""

import flax.linen as nn

from mixtok.kernels.linear_attention import linear_attention
from mixtok.layers.linear import dense
from mixtok.layers.partitioning import constrain_channels_last
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register


@register("linear_attention")
class LinearAttention(Mixer):
    """Global linear (kernelised) self-attention over the H * W tokens of an NHWC feature map."""

    num_heads: int | None = None
    head_dim: int = 32
    feature_map: str = "elu1"
    qkv_bias: bool = True
    proj_bias: bool = True
    proj_dropout: float = 0.0
    eps: float = 1e-6
    impl: str = "auto"

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        batch, height, width, channels = x.shape
        heads = self.num_heads or max(self.dim // self.head_dim, 1)
        inner = heads * self.head_dim
        tokens = x.reshape(batch, height * width, channels)
        qkv = dense(
            3 * inner,
            ("embed", "heads"),
            use_bias=self.qkv_bias,
            **self.dtype_kwargs,
            name="qkv",
        )(tokens)
        qkv = qkv.reshape(batch, height * width, 3, heads, self.head_dim).transpose(2, 0, 3, 1, 4)
        out = linear_attention(qkv[0], qkv[1], qkv[2], feature_map=self.feature_map, eps=self.eps, impl=self.impl)
        out = out.transpose(0, 2, 1, 3).reshape(batch, height * width, inner)
        out = dense(
            channels,
            ("heads", "embed"),
            use_bias=self.proj_bias,
            **self.dtype_kwargs,
            name="proj",
        )(out)
        out = constrain_channels_last(out, "embed")  # tensor parallelism: the row-parallel projection's sum
        out = nn.Dropout(self.proj_dropout, deterministic=not train)(out)
        return out.reshape(batch, height, width, channels)
