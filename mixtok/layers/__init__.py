"""Building blocks shared by mixers and models: norms, activations, MLPs, drop path, conv-norm-act,
squeeze-excite, stems and patch embeddings."""

from mixtok.layers.activations import SquaredReLU, StarReLU, get_activation
from mixtok.layers.conv import ConvBN, ConvNormAct, batch_norm, conv2d, conv_norm_act, fuse_conv_bn
from mixtok.layers.drop import DropPath
from mixtok.layers.mlp import Mlp, MlpHead
from mixtok.layers.norms import GroupNorm1, LayerNorm, get_norm
from mixtok.layers.partitioning import conv_kernel_init, dense_kernel_init, param_with_axes, zeros_with_axes
from mixtok.layers.se import SqueezeExcite, make_divisible
from mixtok.layers.stems import PatchEmbed, conv_stem, patch_embed, resize_pos_embed

__all__ = [
    "ConvBN", "ConvNormAct", "DropPath", "GroupNorm1", "LayerNorm", "Mlp", "MlpHead", "PatchEmbed", "SquaredReLU",
    "SqueezeExcite", "StarReLU", "batch_norm", "conv2d", "conv_kernel_init", "conv_norm_act", "conv_stem",
    "dense_kernel_init", "fuse_conv_bn", "get_activation", "get_norm", "make_divisible", "param_with_axes",
    "patch_embed", "resize_pos_embed", "zeros_with_axes",
]
