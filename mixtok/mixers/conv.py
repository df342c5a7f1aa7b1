"""ConvFormer's separable-convolution token mixer (MetaFormer Baselines for Vision, Yu et al. 2022).

Official: sail-sg/metaformer: metaformer_baselines.py `SepConv`; timm: timm/models/metaformer.py
`SepConv` (which writes the pointwise layers as 1x1 Conv2d on NCHW; the map is the same Linear):

    pwconv1: Linear(C -> 2C, no bias) -> StarReLU -> dwconv 7x7, padding 3 (2C, no bias)
    -> Identity -> pwconv2: Linear(2C -> C, no bias)

The inverted-bottleneck layout is MobileNetV2's.
"""

import flax.linen as nn

from mixtok.layers.activations import get_activation
from mixtok.layers.conv import Conv2d
from mixtok.layers.init import conv_kernel_init
from mixtok.layers.linear import dense
from mixtok.layers.partitioning import constrain_channels_last, zeros_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register


@register("sepconv")
class SepConv(Mixer):
    """Pointwise expand -> activation -> depthwise k x k -> activation -> pointwise project."""

    expansion_ratio: float = 2.0
    kernel_size: int = 7
    activation1: str = "star_relu"
    activation2: str = "identity"
    use_bias: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        hidden = int(self.expansion_ratio * self.dim)
        common = dict(use_bias=self.use_bias, **self.dtype_kwargs)
        x = dense(hidden, ("embed", "mlp"), name="pwconv1", **common)(x)
        x = get_activation(self.activation1, **self.dtype_kwargs, name="act1")(x)
        x = constrain_channels_last(x, "mlp")  # tensor parallelism: hidden channels split (a no-op elsewhere)
        pad = self.kernel_size // 2
        x = Conv2d(
            hidden,
            (self.kernel_size, self.kernel_size),
            padding=((pad, pad), (pad, pad)),
            feature_group_count=hidden,
            kernel_init=conv_kernel_init((None, None, None, "conv_out")),
            bias_init=zeros_with_axes(("conv_out",)),
            name="dwconv",
            **common,
        )(x)
        x = get_activation(self.activation2, **self.dtype_kwargs, name="act2")(x)
        return constrain_channels_last(dense(self.dim, ("mlp", "embed"), name="pwconv2", **common)(x), "embed")
