"""Building blocks shared by mixers and models: attention, norms, activations, MLPs, drop path."""

from mixtok.layers.attention import MultiHeadAttention, dot_product_attention
from mixtok.layers.activations import SquaredReLU, StarReLU, get_activation
from mixtok.layers.drop import DropPath
from mixtok.layers.mlp import Mlp, MlpHead
from mixtok.layers.norms import GroupNorm1, LayerNorm, get_norm
from mixtok.layers.partitioning import conv_kernel_init, dense_kernel_init, param_with_axes, zeros_with_axes

__all__ = [
    "DropPath", "GroupNorm1", "LayerNorm", "Mlp", "MlpHead", "MultiHeadAttention", "SquaredReLU", "StarReLU",
    "conv_kernel_init", "dense_kernel_init", "dot_product_attention", "get_activation", "get_norm", "param_with_axes",
    "zeros_with_axes",
]
