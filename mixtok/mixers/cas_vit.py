"""AdditiveTokenMixer: CAS-ViT's convolutional additive token mixer (CATM), attention without a softmax.

"CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient Mobile Applications"
(Zhang et al., 2024). Official code: Tianfang-Zhang/CAS-ViT @ 041d2d68: classification/model/rcvit.py
(`AdditiveTokenMixer`, `SpatialOperation`, `ChannelOperation`). For x [B, H, W, C]:

    q, k, v = split(Conv1x1_{C -> 3C}(x), 3, channels)              (no bias: attn_bias=False)
    SpatialOp(z) = z * sigmoid(Conv1x1_{C -> 1, no bias}(ReLU(BN(dwConv3x3(z)))))     one gate per position
    ChannelOp(z) = z * sigmoid(Conv1x1_{C -> C, no bias}(mean_{H, W}(z)))                one gate per channel
    q' = ChannelOp_q(SpatialOp_q(q)),  k' = ChannelOp_k(SpatialOp_k(k))                 separate weights
    y = proj_dwConv3x3(dwc_dwConv3x3(q' + k') * v)                                       both with bias

The BatchNorm inside the spatial gate keeps running statistics in `batch_stats` (PyTorch defaults:
momentum 0.1, i.e. flax 0.9, eps 1e-5); apply with `mutable=["batch_stats"]` when `train=True`.
Parameter names follow the official module paths (`oper_q_0/block_0` for `oper_q.0.block.0`), with
`kernel` [kh, kw, in / groups, out] for `weight` and BatchNorm `scale` for `weight`.

Differences from the official code:
- NHWC layout.
- Convolutions are initialised with PyTorch's default kernel distribution (U(+-1/sqrt(fan_in))) but
  zero biases (PyTorch draws biases from the same uniform); the official model applies no other init.
- BatchNorm running variance: flax averages the biased batch variance, PyTorch the unbiased one.
"""

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.conv import batch_norm, conv2d
from mixtok.layers.init import TORCH_DEFAULT_INIT
from mixtok.layers.module import Module
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register


def torch_conv(features: int, kernel_size: int, **kwargs) -> nn.Conv:
    """A Conv2d as PyTorch builds it, with PyTorch's default kernel init (CAS-ViT keeps it)."""
    return conv2d(features, kernel_size, kernel_init=TORCH_DEFAULT_INIT, **kwargs)


class SpatialOperation(Module):
    """z * sigmoid(Conv1x1_{C->1}(ReLU(BN(dwConv3x3(z))))): the official `SpatialOperation` (block.0/1/3)."""

    @nn.compact
    def __call__(self, z, *, train: bool = False):
        common = self.dtype_kwargs
        dim = z.shape[-1]
        gate = torch_conv(dim, 3, groups=dim, name="block_0", **common)(z)
        gate = nn.relu(batch_norm("block_1", train=train, **common)(gate))
        gate = torch_conv(1, 1, use_bias=False, name="block_3", **common)(gate)
        return z * nn.sigmoid(gate)


class ChannelOperation(Module):
    """z * sigmoid(Conv1x1_{C->C}(mean_{H,W}(z))): the official `ChannelOperation` (block.1)."""

    @nn.compact
    def __call__(self, z):
        pooled = jnp.mean(z.astype(jnp.float32), axis=(1, 2), keepdims=True).astype(z.dtype)
        gate = torch_conv(z.shape[-1], 1, use_bias=False, name="block_1", **self.dtype_kwargs)(pooled)
        return z * nn.sigmoid(gate)


@register("additive_token_mixer")
class AdditiveTokenMixer(Mixer):
    """CATM: y = proj(dwc(ChannelOp(SpatialOp(q)) + ChannelOp(SpatialOp(k))) * v), no softmax (CAS-ViT)."""

    attn_bias: bool = False  # bias of the q/k/v 1x1 conv (official default False)
    proj_drop: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        common = self.dtype_kwargs
        dim = self.dim
        qkv = torch_conv(3 * dim, 1, use_bias=self.attn_bias, name="qkv", **common)(x)
        q, k, v = qkv[..., :dim], qkv[..., dim : 2 * dim], qkv[..., 2 * dim :]
        q = ChannelOperation(name="oper_q_1", **common)(SpatialOperation(name="oper_q_0", **common)(q, train=train))
        k = ChannelOperation(name="oper_k_1", **common)(SpatialOperation(name="oper_k_0", **common)(k, train=train))
        y = torch_conv(dim, 3, groups=dim, name="dwc", **common)(q + k) * v
        y = torch_conv(dim, 3, groups=dim, name="proj", **common)(y)
        return nn.Dropout(self.proj_drop, deterministic=not train)(y)
