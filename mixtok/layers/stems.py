"""Where images become feature maps: conv stems, (overlapping) patch embeddings, position-embedding resizing.

    x = conv_stem(x, (16, 32, 64), strides=(2, 2, 2), activation="relu", names=("stem_0", "stem_1", "stem_2"),
                  train=train)                                  # ConvBN - ReLU - ConvBN - ReLU - ConvBN
    x = PatchEmbed(64, kernel_size=7, stride=4, name="patch_embed1")(x)   # conv (padding 3) -> LayerNorm
    pos = resize_pos_embed(pos, height, width)                  # PyTorch's bilinear F.interpolate

Parameter names follow the official code of each family: `conv_stem` layers and `patch_embed` are
created in the calling module's scope under the names given (a flat `Sequential` keeps its flat paths),
`PatchEmbed` nests its conv and norm in a module of its own (timm's `proj`, `norm`).
"""

from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.activations import get_activation
from mixtok.layers.conv import ConvBN, conv_norm_act
from mixtok.layers.module import Module
from mixtok.layers.norms import get_norm

# One layer's parameter names: a module name (a ConvBN holding `conv` and `bn`, PyTorch's Conv2d_BN) or a
# (conv, norm) pair of names in the caller's scope (a Sequential of Conv2d and BatchNorm2d).
LayerNames = str | tuple[str, str]


def conv_stem(
    x: jax.Array,
    widths: Sequence[int],
    *,
    strides: Sequence[int],
    names: Sequence[LayerNames],
    activation: str,
    final_activation: bool = False,
    kernel_size: int = 3,
    use_bias: bool = False,
    kernel_init: Callable | None = None,
    train: bool = False,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> jax.Array:
    """A stack of conv -> BatchNorm layers with `activation` between them (and after the last if
    `final_activation`): the convolutional stems of LeViT-style and hybrid backbones.

    Each layer i has `widths[i]` channels, `strides[i]`, PyTorch padding (k - 1) // 2 and the names
    `names[i]` (see `LayerNames`); `use_bias` gives the convs a bias, which only flat layers can have.
    """
    if not len(widths) == len(strides) == len(names) > 0:
        raise ValueError(
            f"conv_stem: widths {tuple(widths)}, strides {tuple(strides)} and names {tuple(names)} "
            "need one entry per layer (at least one)."
        )
    common = dict(dtype=dtype, param_dtype=param_dtype)
    for i, (width, stride, name) in enumerate(zip(widths, strides, names)):
        last = i == len(widths) - 1
        activate = activation if final_activation or not last else None
        if isinstance(name, str):
            if use_bias:
                raise ValueError(
                    f"conv_stem: layer {name!r} is a ConvBN, whose conv has no bias; name it by a "
                    "(conv, norm) pair for a conv with a bias."
                )
            x = ConvBN(width, kernel_size, stride, kernel_init=kernel_init, name=name, **common)(x, train=train)
            x = x if activate is None else get_activation(activate, **common)(x)
        else:
            conv_name, norm_name = name
            x = conv_norm_act(
                x,
                width,
                kernel_size,
                stride=stride,
                use_bias=use_bias,
                activation=activate,
                kernel_init=kernel_init,
                conv_name=conv_name,
                norm_name=norm_name,
                train=train,
                **common,
            )
    return x


def patch_embed(
    x: jax.Array,
    features: int,
    kernel_size: int,
    stride: int,
    *,
    padding: int | None = None,
    norm: str | None = "layernorm",
    norm_epsilon: float = 1e-6,
    norm_first: bool = False,
    kernel_init: Callable | None = None,
    conv_name: str = "proj",
    norm_name: str = "norm",
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> jax.Array:
    """A strided conv with a bias (padding (k - 1) // 2 unless given), then (or, `norm_first`, before it) a norm.

    Patch embedding (kernel = stride, padding 0), overlapping patch embedding (kernel > stride) and
    downsampling between stages are all this layer; created in the calling module's scope.
    """
    common = dict(dtype=dtype, param_dtype=param_dtype)
    if norm is not None and norm_first:
        x = get_norm(norm, epsilon=norm_epsilon, name=norm_name, **common)(x)
        norm = None
    return conv_norm_act(
        x,
        features,
        kernel_size,
        stride=stride,
        padding=padding,
        use_bias=True,
        norm=norm,
        norm_epsilon=norm_epsilon,
        kernel_init=kernel_init,
        conv_name=conv_name,
        norm_name=norm_name,
        **common,
    )


class PatchEmbed(Module):
    """`patch_embed` as a module holding `proj` (the conv) and `norm`: timm's PatchEmbed / PVT v2's
    OverlapPatchEmbed when kernel_size > stride."""

    features: int
    kernel_size: int
    stride: int
    padding: int | None = None  # per side; None: (kernel_size - 1) // 2
    norm: str | None = "layernorm"
    norm_epsilon: float = 1e-6
    norm_first: bool = False
    kernel_init: Callable | None = None  # None: trunc-normal 0.02

    @nn.compact
    def __call__(self, x):
        return patch_embed(
            x,
            self.features,
            self.kernel_size,
            self.stride,
            padding=self.padding,
            norm=self.norm,
            norm_epsilon=self.norm_epsilon,
            norm_first=self.norm_first,
            kernel_init=self.kernel_init,
            **self.dtype_kwargs,
        )


def resize_pos_embed(pos_embed: jax.Array, height: int, width: int) -> jax.Array:
    """[1, h, w, C] -> [1, height, width, C] as PyTorch's bilinear F.interpolate (align_corners=False, no
    antialiasing), the resizing of position embeddings to another feature-map size."""
    if pos_embed.shape[1:3] == (height, width):
        return pos_embed
    shape = (pos_embed.shape[0], height, width, pos_embed.shape[3])
    return jax.image.resize(pos_embed, shape, method="bilinear", antialias=False)
