"""Token mixers, one file per family, looked up by name.

    mixer_cls = mixtok.mixers.get("pooling")
    y = mixer_cls(dim=64).apply(variables, x)      # x: [B, H, W, C] -> [B, H, W, C]

Every mixer follows the contract of docs/contracts.md, "Mixer": `Mixer(dim=C, **options)` and
`__call__(x, *, train=False)` on NHWC input; norms and residuals belong to the block around it.
"""

from mixtok.mixers.aff import AdaptiveFrequencyFilter
from mixtok.mixers.attention import Attention
from mixtok.mixers.base import Mixer
from mixtok.mixers.cas_vit import AdditiveTokenMixer
from mixtok.mixers.conv import SepConv
from mixtok.mixers.davit import ChannelAttention, MultiHeadAttention, WindowAttention
from mixtok.mixers.dsm import DynamicSpectrumMixer
from mixtok.mixers.ffnet import FFNifiedAttention
from mixtok.mixers.hydra import Hydra
from mixtok.mixers.identity import Identity
from mixtok.mixers.inception import InceptionMixer
from mixtok.mixers.linear_attention import LinearAttention
from mixtok.mixers.lsnet import LSConv
from mixtok.mixers.mamba_mixer import SelectiveChannelMixer, SelectiveTokenMixer
from mixtok.mixers.mix_shift import MixShift
from mixtok.mixers.mlp import RandomMixing
from mixtok.mixers.mlp_mixer import TokenMixingMLP
from mixtok.mixers.pooling import Pooling, avg_pool_exclude_padding
from mixtok.mixers.pooling_network import PoolingNetwork
from mixtok.mixers.raft_token_mixing import RaftTokenMixing
from mixtok.mixers.registry import MIXERS, get, list_mixers, register
from mixtok.mixers.s2aformer import StripSelfAttention
from mixtok.mixers.spectral import GlobalFilter
from mixtok.mixers.strip_mlp import StripMLP
from mixtok.mixers.transnext import AggregatedAttention, ConvGLU, LengthScaledCosineAttention
from mixtok.mixers.wavelet import WaveletMixer

__all__ = [
    "AdaptiveFrequencyFilter",
    "AdditiveTokenMixer",
    "AggregatedAttention",
    "Attention",
    "ChannelAttention",
    "ConvGLU",
    "DynamicSpectrumMixer",
    "FFNifiedAttention",
    "GlobalFilter",
    "Hydra",
    "Identity",
    "InceptionMixer",
    "LSConv",
    "LengthScaledCosineAttention",
    "LinearAttention",
    "MIXERS",
    "MixShift",
    "Mixer",
    "MultiHeadAttention",
    "Pooling",
    "RaftTokenMixing",
    "PoolingNetwork",
    "RandomMixing",
    "SelectiveChannelMixer",
    "SelectiveTokenMixer",
    "SepConv",
    "StripMLP",
    "StripSelfAttention",
    "TokenMixingMLP",
    "WaveletMixer",
    "WindowAttention",
    "avg_pool_exclude_padding",
    "get",
    "list_mixers",
    "register",
]
