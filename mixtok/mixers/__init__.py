"""Token mixers, one file per family, looked up by name.

    mixer_cls = mixtok.mixers.get("pooling")
    y = mixer_cls(dim=64).apply(variables, x)      # x: [B, H, W, C] -> [B, H, W, C]

Every mixer follows the contract of DESIGN.md: `Mixer(dim=C, **options)` and
`__call__(x, *, train=False)` on NHWC input; norms and residuals belong to the block around it.
"""

from mixtok.mixers.registry import MIXERS, get, list_mixers, register
from mixtok.mixers.identity import Identity
from mixtok.mixers.pooling import Pooling, avg_pool_exclude_padding
from mixtok.mixers.conv import SepConv
from mixtok.mixers.attention import Attention
from mixtok.mixers.mlp import RandomMixing
from mixtok.mixers.spectral import GlobalFilter
from mixtok.mixers.aff import AdaptiveFrequencyFilter
from mixtok.mixers.dsm import DynamicSpectrumMixer
from mixtok.mixers.cas_vit import AdditiveTokenMixer
from mixtok.mixers.ffnet import FFNifiedAttention
from mixtok.mixers.linear_attention import LinearAttention

__all__ = [
    "MIXERS", "AdaptiveFrequencyFilter", "AdditiveTokenMixer", "Attention", "DynamicSpectrumMixer",
    "FFNifiedAttention", "GlobalFilter", "Identity", "LinearAttention", "Pooling", "RandomMixing", "SepConv",
    "avg_pool_exclude_padding", "get", "list_mixers", "register",
]
