"""Building blocks shared by mixers and models: norms, activations, MLPs, drop path."""

from mixtok.layers.activations import SquaredReLU, StarReLU, get_activation
from mixtok.layers.drop import DropPath
from mixtok.layers.mlp import Mlp, MlpHead
from mixtok.layers.norms import GroupNorm1, LayerNorm, get_norm
from mixtok.layers.partitioning import conv_kernel_init, dense_kernel_init, param_with_axes, zeros_with_axes

__all__ = [
    "DropPath", "GroupNorm1", "LayerNorm", "Mlp", "MlpHead", "SquaredReLU", "StarReLU",
    "conv_kernel_init", "dense_kernel_init", "get_activation", "get_norm", "param_with_axes",
    "zeros_with_axes",
]
