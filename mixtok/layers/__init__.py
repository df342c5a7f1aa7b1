"""The shared core that mixers and models compose: attention, norms, activations, MLPs, heads, scales,
drop path, initialisers, convolutions (depthwise too), conv-norm-act, squeeze-excite, stems and patch embeddings."""

from mixtok.layers.activations import SquaredReLU, StarReLU, get_activation
from mixtok.layers.attention import MultiHeadAttention, dot_product_attention
from mixtok.layers.conv import Conv2d, ConvBN, ConvNormAct, batch_norm, conv2d, conv_norm_act, fuse_conv_bn
from mixtok.layers.depthwise import depthwise_conv2d
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import Classifier, ClassifierHead, MlpHead, classifier, global_avg_pool, pooled_classifier
from mixtok.layers.init import (
    DEFAULT_KERNEL_INIT,
    TORCH_DEFAULT_INIT,
    TRUNC_NORMAL_INIT,
    XAVIER_UNIFORM_INIT,
    conv_axes,
    conv_kernel_init,
    dense_kernel_init,
    fan_out_normal_init,
    torch_conv_init,
    torch_uniform_init,
)
from mixtok.layers.mlp import Mlp
from mixtok.layers.norms import GroupNorm1, LayerNorm, get_norm
from mixtok.layers.partitioning import param_with_axes, zeros_with_axes
from mixtok.layers.scale import LayerScale, layer_scale_param, scale_by_param
from mixtok.layers.se import SqueezeExcite, make_divisible
from mixtok.layers.stems import PatchEmbed, conv_stem, patch_embed, resize_pos_embed

__all__ = [
    "Classifier",
    "ClassifierHead",
    "Conv2d",
    "ConvBN",
    "ConvNormAct",
    "DEFAULT_KERNEL_INIT",
    "DropPath",
    "GroupNorm1",
    "LayerNorm",
    "LayerScale",
    "Mlp",
    "MlpHead",
    "MultiHeadAttention",
    "PatchEmbed",
    "SquaredReLU",
    "SqueezeExcite",
    "StarReLU",
    "TORCH_DEFAULT_INIT",
    "TRUNC_NORMAL_INIT",
    "XAVIER_UNIFORM_INIT",
    "batch_norm",
    "classifier",
    "conv2d",
    "conv_axes",
    "conv_kernel_init",
    "conv_norm_act",
    "conv_stem",
    "dense_kernel_init",
    "depthwise_conv2d",
    "dot_product_attention",
    "fan_out_normal_init",
    "fuse_conv_bn",
    "get_activation",
    "get_norm",
    "global_avg_pool",
    "layer_scale_param",
    "scale_by_param",
    "make_divisible",
    "param_with_axes",
    "patch_embed",
    "pooled_classifier",
    "resize_pos_embed",
    "torch_conv_init",
    "torch_uniform_init",
    "zeros_with_axes",
]
