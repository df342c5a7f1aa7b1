"""Conv + BatchNorm's earlier import path, kept for its importers: the code lives in `mixtok.layers.conv`.

New code imports from `mixtok.layers` (or `mixtok.layers.conv`); this module re-exports the same objects.
"""

from mixtok.layers.conv import (
    BN_EPSILON,
    BN_MOMENTUM,
    ConvBN,
    batch_norm,
    conv2d,
    conv_bn_variables,
    fuse_conv_bn,
    pad_kernel,
)

__all__ = [
    "BN_EPSILON",
    "BN_MOMENTUM",
    "ConvBN",
    "batch_norm",
    "conv2d",
    "conv_bn_variables",
    "fuse_conv_bn",
    "pad_kernel",
]
