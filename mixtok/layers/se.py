"""Squeeze-and-excitation: per-channel gates computed from the globally pooled feature map.

Paper: "Squeeze-and-Excitation Networks" (Hu et al., CVPR 2018). Follows timm's `SEModule`
(huggingface/pytorch-image-models: timm/layers/squeeze_excite.py) and its channel rounding
`make_divisible` (timm/layers/helpers.py), the form LSNet and many MobileNet-style models import.
"""

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.activations import get_activation
from mixtok.layers.conv import conv2d
from mixtok.layers.init import TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.module import Module


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Rounds a channel count to the nearest multiple of `divisor` (at least `min_value`, default `divisor`).

    timm's `make_divisible`: if rounding lost more than 1 - round_limit of `value`, one `divisor` is added
    back. round_limit 0.9 is also MobileNet's (and cvnets') rule; timm's SEModule calls it with 0.
    """
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < round_limit * value else rounded


class SqueezeExcite(Module):
    """x * sigmoid(fc2(act(fc1(mean_hw(x))))) with 1x1 convs (biases): timm's SEModule on NHWC maps.

    The reduced width is make_divisible(C * rd_ratio, rd_divisor, round_limit=0), as timm's. With
    `kernel_init=None` both convs keep PyTorch's default init (weights and biases U(+-1/sqrt(fan_in))),
    which is what a timm SEModule gets from a model that does not re-initialise it; a given
    `kernel_init` comes with zero biases.
    """

    rd_ratio: float = 1.0 / 16
    rd_divisor: int = 8
    activation: str = "relu"
    kernel_init: Callable | None = None

    @nn.compact
    def __call__(self, x):
        dim = x.shape[-1]
        reduced = make_divisible(dim * self.rd_ratio, self.rd_divisor, round_limit=0.0)
        common = self.dtype_kwargs

        def fc(features, fan_in, name):
            if self.kernel_init is None:
                return conv2d(
                    features,
                    1,
                    kernel_init=TORCH_DEFAULT_INIT,
                    bias_init=torch_uniform_init(fan_in),
                    name=name,
                    **common,
                )
            return conv2d(features, 1, kernel_init=self.kernel_init, name=name, **common)

        s = jnp.mean(x, axis=(1, 2), keepdims=True)
        s = get_activation(self.activation, **common)(fc(reduced, dim, "fc1")(s))
        return x * jax.nn.sigmoid(fc(dim, reduced, "fc2")(s))
