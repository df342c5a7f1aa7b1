"""The shared core that mixers and models compose: norms, activations, MLPs, heads, scales, drop path, inits."""

from mixtok.layers.activations import SquaredReLU, StarReLU, get_activation
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import ClassifierHead, MlpHead, classifier, global_avg_pool, pooled_classifier
from mixtok.layers.init import (DEFAULT_KERNEL_INIT, TORCH_DEFAULT_INIT, TRUNC_NORMAL_INIT, XAVIER_UNIFORM_INIT,
                                conv_axes, conv_kernel_init, dense_kernel_init, fan_out_normal_init, torch_conv_init,
                                torch_uniform_init)
from mixtok.layers.mlp import Mlp
from mixtok.layers.norms import GroupNorm1, LayerNorm, get_norm
from mixtok.layers.partitioning import param_with_axes, zeros_with_axes
from mixtok.layers.scale import LayerScale, layer_scale_param

__all__ = [
    "ClassifierHead", "DEFAULT_KERNEL_INIT", "DropPath", "GroupNorm1", "LayerNorm", "LayerScale", "Mlp", "MlpHead",
    "SquaredReLU", "StarReLU", "TORCH_DEFAULT_INIT", "TRUNC_NORMAL_INIT", "XAVIER_UNIFORM_INIT", "classifier",
    "conv_axes", "conv_kernel_init", "dense_kernel_init", "fan_out_normal_init", "get_activation", "get_norm",
    "global_avg_pool", "layer_scale_param", "param_with_axes", "pooled_classifier", "torch_conv_init", "torch_uniform_init",
    "zeros_with_axes",
]
