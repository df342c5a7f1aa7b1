"""DaViT: a four-stage pyramid whose blocks alternate window (spatial) attention and channel attention.

Paper: "DaViT: Dual Attention Vision Transformers" (Ding et al., ECCV 2022), https://arxiv.org/abs/2204.03645.
Official code: dingmyu/davit @ fc79470d: timm/models/davit.py (`DaViT`, `SpatialBlock`, `ChannelBlock`,
`PatchEmbed`, `ConvPosEnc`). Structure and parameter names follow timm's port (huggingface/
pytorch-image-models: timm/models/davit.py, `DaVit`, timm 1.0.31), whose converted weights
`mixtok.interop.timm` loads; the mixers are `mixtok.mixers.davit`.

    stem:        zero-pad bottom/right to a multiple of 4 -> conv 7x7 stride 4 padding 3 -> LayerNorm
    stage i > 0: LayerNorm -> zero-pad bottom/right to even -> conv 2x2 stride 2
    unit:        spatial block, then channel block (timm `blocks.j.0`, `blocks.j.1`); `depths` counts units
    block:       x = x + dwconv3x3(x)                                   (cpe1, ConvPosEnc, with bias, no act)
                 x = x + drop_path(mixer(LayerNorm(x)))                  (window or channel attention)
                 x = x + dwconv3x3(x)                                   (cpe2)
                 x = x + drop_path(Mlp(LayerNorm(x)))                    (C -> 4C -> C, exact GELU, biases)
    head:        global average pool -> LayerNorm -> [dropout] -> Linear

Every LayerNorm has eps 1e-5 and a bias; qkv projections have biases (`qkv_bias=True`). The model
takes images of any size, as the official one does (the stem, the downsamplings and the windows pad).
Parameter paths mirror timm's module paths: timm `stages.2.blocks.1.0.attn.qkv.weight` is
`params['stages_2']['blocks_1']['0']['attn']['qkv']['kernel']`.

`mixers` names the mixer of each block of a unit (default `("window_attention", "channel_attention")`),
so "DaViT with global attention instead of windows" is `create_model("davit_tiny",
mixers=("multi_head_attention", "channel_attention"))`; the three DaViT mixers get `num_heads`,
`qkv_bias` (and `window_size`) from the model, any other registered mixer only `mixer_kwargs[name]`.

Initialisation as in timm / the official code: Linear weights truncated normal (std 0.02) with zero
biases; convolutions keep PyTorch's default, weight and bias U(+-1/sqrt(fan_in)); LayerNorm 1 / 0.

Differences from the official code and timm:
- Stochastic depth follows the official code: rates rise linearly from 0 to `drop_path_rate` over all
  2 * sum(depths) blocks, each block its own rate. timm instead gives both blocks of unit u the rate
  linspace(0, drop_path_rate, sum(depths))[u]. (Only training differs; the default rate is 0.)
- NHWC layout; the official code keeps tokens [B, N, C] and timm NCHW between blocks (the same maths).
- The official head (`norms`, `head`) and patch embeddings (`patch_embeds`) are timm's `head.norm`,
  `head.fc`, `stem` and `stages.i.downsample`, as timm's checkpoint filter renames them.
`method="features"` / `"intermediates"` return the last / every stage's map (`mixtok.models.backbone`); the
pooled and normalised features are sown into `intermediates` as `head/pre_logits`.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mixtok import mixers as mixer_registry
from mixtok.layers.conv import Conv2d
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import ClassifierHead
from mixtok.layers.init import conv_axes, torch_conv_init
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.mixers.davit import ChannelAttention, MultiHeadAttention, WindowAttention
from mixtok.models.backbone import Backbone, PerStage, per_stage
from mixtok.models.inputs import check_image_size, check_images

NORM_EPSILON = 1e-5  # timm DaVit norm_eps; the official nn.LayerNorm default
DAVIT_MIXERS = ("window_attention", "channel_attention")


def _conv(
    features: int,
    kernel: int,
    stride: int,
    padding: int,
    fan_in: int,
    groups: int,
    name: str,
    dtype: Any,
    param_dtype: Any,
) -> Conv2d:
    return Conv2d(
        features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((padding, padding),) * 2,
        feature_group_count=groups,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=torch_conv_init(fan_in, conv_axes(groups)),
        bias_init=torch_conv_init(fan_in, ("conv_out",)),
        name=name,
    )


def _pad_bottom_right(x, multiple: int):
    return jnp.pad(x, ((0, 0), (0, -x.shape[1] % multiple), (0, -x.shape[2] % multiple), (0, 0)))


def block_drop_path_rates(drop_path_rate: float, depths: Sequence[int], blocks_per_unit: int = 2):
    """Stochastic-depth rate of every block, [stage][unit][block]: the official schedule, rising linearly from
    0 to `drop_path_rate` over all blocks in order (dingmyu/davit `DaViT.__init__`, `dpr`)."""
    rates = np.linspace(0.0, drop_path_rate, blocks_per_unit * sum(depths)).tolist()
    nested, start = [], 0
    for depth in depths:
        nested.append([rates[start + blocks_per_unit * j : start + blocks_per_unit * (j + 1)] for j in range(depth)])
        start += blocks_per_unit * depth
    return nested


class ConvPosEnc(Module):
    """x + depthwise conv3x3(x) (with bias, no activation): DaViT's convolutional position encoding."""

    kernel_size: int = 3

    @nn.compact
    def __call__(self, x):
        channels, k = x.shape[-1], self.kernel_size
        return x + _conv(channels, k, 1, k // 2, k * k, channels, "proj", self.dtype, self.param_dtype)(x)


class DaViTBlock(Module):
    """cpe1 -> pre-norm mixer with residual -> cpe2 -> pre-norm MLP with residual (`SpatialBlock` /
    `ChannelBlock`, which differ only in their mixer)."""

    mixer: str
    mixer_kwargs: Mapping[str, Any]
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    norm_epsilon: float = NORM_EPSILON

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        x = ConvPosEnc(name="cpe1", **common)(x)
        y = LayerNorm(epsilon=self.norm_epsilon, name="norm1", **common)(x)
        y = mixer_registry.get(self.mixer)(dim=x.shape[-1], name="attn", **common, **self.mixer_kwargs)(y, train=train)
        x = x + DropPath(self.drop_path)(y, train=train)
        x = ConvPosEnc(name="cpe2", **common)(x)
        y = LayerNorm(epsilon=self.norm_epsilon, name="norm2", **common)(x)
        y = Mlp(mlp_ratio=self.mlp_ratio, activation="gelu", use_bias=True, name="mlp", **common)(y, train=train)
        return x + DropPath(self.drop_path)(y, train=train)


class DualAttentionUnit(Module):
    """One unit of a stage: a block per entry of `blocks` (block options), named "0", "1", ... as in timm."""

    blocks: Sequence[Mapping[str, Any]]

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        for k, options in enumerate(self.blocks):
            x = DaViTBlock(**options, name=str(k), **self.dtype_kwargs)(x, train=train)
        return x


class PatchEmbed(Module):
    """[LayerNorm] -> zero-pad bottom/right to a multiple of the stride -> conv -> [LayerNorm] (official `PatchEmbed`).

    The stem is conv 7x7 stride 4 padding 3 with the norm after (`norm_first=False`); each downsampling
    (timm `Downsample`) is a 2x2 stride-2 conv with the norm before.
    """

    features: int
    kernel_size: int
    stride: int
    padding: int = 0
    norm_first: bool = True
    norm_epsilon: float = NORM_EPSILON

    @nn.compact
    def __call__(self, x):
        common = self.dtype_kwargs
        norm = LayerNorm(epsilon=self.norm_epsilon, name="norm", **common)
        if self.norm_first:
            x = norm(x)
        x = _pad_bottom_right(x, self.stride)
        k = self.kernel_size
        x = _conv(self.features, k, self.stride, self.padding, k * k * x.shape[-1], 1, "conv", **common)(x)
        return x if self.norm_first else norm(x)


class DaViTStage(Module):
    """[Downsample] followed by one `DualAttentionUnit` per entry of `units` (each a tuple of block options)."""

    features: int
    downsample: bool
    units: Sequence[Sequence[Mapping[str, Any]]]
    norm_epsilon: float = NORM_EPSILON

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        if self.downsample:
            x = PatchEmbed(self.features, 2, 2, norm_epsilon=self.norm_epsilon, name="downsample", **common)(x)
        for j, blocks in enumerate(self.units):
            x = DualAttentionUnit(blocks, name=f"blocks_{j}", **common)(x, train=train)
        return x


class DaViT(Backbone):
    """A DaViT classifier: `apply(variables, images[B, H, W, 3]) -> logits[B, num_classes]`, any H and W
    (`image_size`, when set, is checked: no parameter depends on the resolution)."""

    depths: Sequence[int] = (1, 1, 3, 1)
    dims: Sequence[int] = (96, 192, 384, 768)
    num_heads: Sequence[int] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratios: PerStage = 4.0
    qkv_bias: bool = True
    mixers: Sequence[str] = DAVIT_MIXERS
    mixer_kwargs: Mapping[str, Mapping[str, Any]] | None = None
    norm_epsilon: float = NORM_EPSILON
    attention_implementation: str | None = None
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    image_size: int | None = None

    @property
    def reduction(self) -> int:
        """The total stride: the stem's 4 times 2 for every further stage."""
        return 4 * 2 ** (len(self.depths) - 1)

    def _mixer_options(self, mixer: str, stage: int) -> dict:
        """The keyword arguments of `mixer` in stage `stage`."""
        cls = mixer_registry.get(mixer)
        options = {}
        if cls in (WindowAttention, ChannelAttention, MultiHeadAttention):
            options = dict(num_heads=self.num_heads[stage], qkv_bias=self.qkv_bias)
        if cls is WindowAttention:
            options["window_size"] = self.window_size
        if cls in (WindowAttention, MultiHeadAttention):
            options["attention_implementation"] = self.attention_implementation
        return {**options, **dict((self.mixer_kwargs or {}).get(mixer, {}))}

    def _check_options(self) -> None:
        n = len(self.depths)
        if not (len(self.dims) == len(self.num_heads) == n):
            raise ValueError(
                f"depths {tuple(self.depths)}, dims {tuple(self.dims)} and num_heads "
                f"{tuple(self.num_heads)} must have one entry per stage (the same length)."
            )
        for dim, heads in zip(self.dims, self.num_heads):
            if heads < 1 or dim % heads:
                raise ValueError(
                    f"dims {tuple(self.dims)} must be multiples of num_heads {tuple(self.num_heads)} "
                    f"stage by stage; {dim} is not a multiple of {heads}."
                )
        if not self.mixers:
            raise ValueError(
                "mixers must name at least one mixer per unit, e.g. "
                f"{DAVIT_MIXERS} (DaViT's spatial then channel block)."
            )
        for name in self.mixers:
            mixer_registry.get(name)  # fail before building anything, with the close matches

    def stage_maps(self, images, *, train: bool):
        check_images(images, 1, "DaViT", "any size works")
        check_image_size(images, self.image_size, "DaViT")
        self._check_options()
        mlp_ratios = per_stage(self.mlp_ratios, len(self.depths), "mlp_ratios")
        common = self.dtype_kwargs
        drop_rates = block_drop_path_rates(self.drop_path_rate, self.depths, len(self.mixers))

        x = images.astype(self.dtype) if self.dtype is not None else images
        x = PatchEmbed(self.dims[0], 7, 4, 3, norm_first=False, norm_epsilon=self.norm_epsilon, name="stem", **common)(
            x
        )
        maps = []
        for i, depth in enumerate(self.depths):
            units = tuple(
                tuple(
                    dict(
                        mixer=mixer,
                        mixer_kwargs=self._mixer_options(mixer, i),
                        mlp_ratio=mlp_ratios[i],
                        drop_path=drop_rates[i][j][k],
                        norm_epsilon=self.norm_epsilon,
                    )
                    for k, mixer in enumerate(self.mixers)
                )
                for j in range(depth)
            )
            x = DaViTStage(self.dims[i], i > 0, units, self.norm_epsilon, name=f"stages_{i}", **common)(x, train=train)
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        logits = ClassifierHead(
            self.num_classes,
            norm_epsilon=self.norm_epsilon,
            head_dropout=self.head_dropout,
            name="head",
            **self.dtype_kwargs,
        )(features, train=train)
        return logits.astype(jnp.float32)
