"""AFFNet: a MobileViT-shaped lightweight backbone whose global token mixer is the adaptive frequency filter.

Paper: "Adaptive Frequency Filters As Efficient Global Token Mixers" (Huang et al., ICCV 2023). Official
code: microsoft/TokenMixers @ 99dbe38c, Adaptive Frequency Filters/affnet/: models/classification/affnet.py
(`AffNet`), models/classification/config/affnet.py (the variant tables), modules/aff_block.py (`Block`,
`AFFBlock`), modules/mobilenetv2.py (`InvertedResidual`) and the cvnets layers they use
(layers/conv_layer.py `ConvLayer`, layers/normalization/*). The mixer is
`mixtok.mixers.aff.AdaptiveFrequencyFilter`.

    conv_1:     conv 3x3 stride 2 (3 -> 16) - BN - act
    layer_1:    MobileNetV2 inverted residuals (stride 1)
    layer_2:    inverted residuals, the first with stride 2
    layer_3..5: inverted residual stride 2 (expand `expand_ratio`) -> AFFBlock
    conv_1x1_exp: conv 1x1 -> min(4 C, 960) - BN - act;  mean over (H, W);  [dropout];  Linear

    inverted residual (cvnets `InvertedResidual`): [conv1x1 - BN - act] (absent when expand = 1) ->
        depthwise conv3x3 (stride s) - BN - act -> conv1x1 - BN; + x when stride 1 and C_in = C_out.
        Hidden width make_divisible(round(C_in * expand), 8).
    AFFBlock (`AFFBlock`, MobileViT's block without unfolding):
        x -> n x Block -> norm -> conv_proj (conv1x1 - BN, no act) -> fusion (conv1x1 - BN - act) on
        concat(x, that) -> out. Every official variant (xx_small, x_small, small) has the fusion; only
        the unreleased "base"/"large" tables drop it in layers 4-5 (`no_fuse`), which `fuse` mirrors.
    Block (`Block`, double_skip=False):
        r = x; x = norm1(x); x = InvertedResidual(x, expand = ffn_dim / C) (with its own residual);
        x = norm2(x); x = AFF(x) (with its own residual); out = r + drop_path(x)
        i.e. the MobileNetV2 "MLP" runs before the filter.

Norms and activations. Convolutions have no bias and are followed by BatchNorm (PyTorch defaults as
cvnets uses them: momentum 0.1, i.e. flax momentum 0.9, eps 1e-5; running statistics live in the
`batch_stats` collection and are not parameters, as in PyTorch). The Block norms are `attn_norm`:
"layer_norm_2d" (default), cvnets' `LayerNorm2D_NCHW`, which is `nn.GroupNorm(num_groups=1, eps=1e-5)`:
statistics over (H, W, C) of each sample and a per-channel affine (not a per-position channel
LayerNorm); or "layer_norm", cvnets' channel-first `LayerNorm`, (x - mean_C) / (std_C + 1e-5) per
position, eps added to the standard deviation. The activation is "swish" (SiLU) everywhere, including
inside the AFF mask MLP, because the official filter reads the run's global activation.

Facts about the official configuration. Its yaml files are not in the repository (README: OneDrive
links), so normalization, activation and attn_norm are those used for the official parameter counts
(docs/facts/official_counts.md): batch_norm, swish, layer_norm_2d; any parameter-free
activation and any of the norms give the same counts. The argparse default of attn_norm is
"layer_norm" while the code's fallback is "layer_norm_2d"; which one the released models used is
unverified. Weight init: the official `reset_parameters` passes a generator to cvnets'
`initialize_weights`, which then initialises nothing, so the effective init is PyTorch's default
(conv: U(+-1/sqrt(fan_in)); the classifier `LinearLayer`: Xavier uniform, zero bias; norms 1 / 0); we use
the same distributions. The AFF weights are 0.02 * N(0, 1).

Differences from the official code:
- NHWC layout; parameter names follow the official module paths (`layer_3_1/global_rep_0/filter/w1`
  for `layer_3.1.global_rep.0.filter.w1`, BatchNorm `scale`/`bias` for `weight`/`bias`).
- Dropout. The official AFFBlock takes `dropout`, `attn_dropout`, `ffn_dropout` but never applies them
  and builds its Blocks with drop_path 0, so the only dropout is the classifier's (official
  `classifier_dropout`, argparse default 0.0; `head_dropout` here). `drop_path_rate` is an addition
  (default 0, the official behaviour): if set, the AFF Blocks get rates rising linearly from 0 to it
  over all of them, in stage order.
- BatchNorm statistics: under `jit` with the batch sharded over devices they are those of the global
  batch (SyncBatchNorm semantics); PyTorch's BatchNorm2d uses each GPU's batch (cvnets also offers
  sync_batch_norm; which one the off-repo configs chose is not known).
- BatchNorm running variance: flax averages the biased batch variance, PyTorch the unbiased one
  (factor N / (N - 1), N = batch x H x W values per channel). Normalisation in training and evaluation is
  otherwise identical; the difference is below 1e-4 relative once N > 10^4 (e.g. 256 images at 8x8).
- Images must have sides that are multiples of 32 (the total stride), as the official multi-scale
  sampler produces them (`check_scale` 32); the official convolutions would accept other sizes.
- Not ported: segmentation dilation (`output_stride`), the neural augmentor, gradient checkpointing,
  the CoreML variant of the filter, the unreleased "base"/"large" tables.
Arguments use the zoo's vocabulary (`mixtok.models`): `depths` and `dims` have one entry per layer
1-5, the MobileNetV2 blocks of layers 1-2 and the AFF Blocks of layers 3-5 (each after its stride-2
inverted residual); `ffn_dims` and `fuse` one per layer 3-5. `method="intermediates"` returns the
five layer outputs (the official `out_l1` ... `out_l5`) and `method="features"` layer 5's; the head
is conv_1x1_exp, the pooling, the dropout and the classifier. The pooled features are sown into
`intermediates` as `pre_logits`.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.activations import get_activation
from mixtok.layers.conv import batch_norm, conv2d
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import pooled_classifier
from mixtok.layers.init import TORCH_DEFAULT_INIT, XAVIER_UNIFORM_INIT
from mixtok.layers.module import Module
from mixtok.layers.norms import GroupNorm1
from mixtok.layers.partitioning import ones_with_axes, param_with_axes, zeros_with_axes
from mixtok.mixers.aff import ACTIVATION_ALIASES, AdaptiveFrequencyFilter
from mixtok.models.backbone import Backbone, stage_drop_path_rates
from mixtok.models.inputs import check_image_size, check_images
from mixtok.registry import unknown_name_error

STEM_CHANNELS = 16
TOTAL_STRIDE = 32  # the stem and layers 2-5 each halve the resolution
NUM_LAYERS = 5  # layers 1-2 MobileNetV2, layers 3-5 AFF
LAST_CHANNELS_CAP = 960
NORM_EPSILON = 1e-5  # cvnets' BatchNorm2d, LayerNorm2D_NCHW and LayerNorm default
ATTN_NORMS = ("layer_norm_2d", "layer_norm")


def make_divisible(value: float, divisor: int = 8) -> int:
    """The channel rounding of MobileNet (cvnets `make_divisible`): nearest multiple, at most 10% down."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


class ConvNormAct(Module):
    """conv (no bias, PyTorch padding (k-1)//2) -> BatchNorm -> [activation]: cvnets' `ConvLayer`."""

    features: int
    kernel_size: int = 1
    stride: int = 1
    groups: int = 1
    use_act: bool = True
    activation: str = "swish"

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        x = conv2d(
            self.features,
            self.kernel_size,
            stride=self.stride,
            groups=self.groups,
            use_bias=False,
            kernel_init=TORCH_DEFAULT_INIT,
            name="conv",
            **common,
        )(x)
        x = batch_norm("norm", train=train, epsilon=NORM_EPSILON, **common)(x)
        if self.use_act:
            x = get_activation(ACTIVATION_ALIASES.get(self.activation, self.activation), name="act")(x)
        return x


class InvertedResidual(Module):
    """MobileNetV2's block (cvnets `InvertedResidual`): expand 1x1, depthwise 3x3, project 1x1, residual."""

    features: int
    stride: int = 1
    expand_ratio: float = 4.0
    activation: str = "swish"

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = dict(activation=self.activation, **self.dtype_kwargs)
        in_channels = x.shape[-1]
        hidden = make_divisible(int(round(in_channels * self.expand_ratio)), 8)
        y = x
        if self.expand_ratio != 1:
            y = ConvNormAct(hidden, 1, name="exp_1x1", **common)(y, train=train)
        y = ConvNormAct(hidden, 3, self.stride, groups=hidden, name="conv_3x3", **common)(y, train=train)
        y = ConvNormAct(self.features, 1, use_act=False, name="red_1x1", **common)(y, train=train)
        return x + y if self.stride == 1 and in_channels == self.features else y


class ChannelLayerNorm(Module):
    """cvnets' `LayerNorm` on channel-first maps: (x - mean_C) / (std_C + eps) * w + b at every position."""

    epsilon: float = NORM_EPSILON

    @nn.compact
    def __call__(self, x):
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        std = jnp.sqrt(jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True))
        y = (x32 - mean) / (std + self.epsilon)
        y = y * self.param("scale", ones_with_axes(("embed",)), (x.shape[-1],), self.param_dtype)
        y = y + self.param("bias", zeros_with_axes(("embed",)), (x.shape[-1],), self.param_dtype)
        return y.astype(self.dtype or x.dtype)


def attn_norm_layer(kind: str, dtype: Any, param_dtype: Any, name: str) -> nn.Module:
    """The Block norm `kind` (one of ATTN_NORMS), eps 1e-5 as cvnets builds it."""
    if kind == "layer_norm_2d":
        return GroupNorm1(epsilon=NORM_EPSILON, use_bias=True, dtype=dtype, param_dtype=param_dtype, name=name)
    if kind == "layer_norm":
        return ChannelLayerNorm(epsilon=NORM_EPSILON, dtype=dtype, param_dtype=param_dtype, name=name)
    raise unknown_name_error("AFFNet attn_norm", kind, ATTN_NORMS)


class AFFTransformerBlock(Module):
    """r + drop_path(AFF(norm2(IR(norm1(x))))), IR and AFF each with their own residual (official `Block`)."""

    ffn_dim: int
    attn_norm: str = "layer_norm_2d"
    activation: str = "swish"
    drop_path: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        dim = x.shape[-1]
        y = attn_norm_layer(self.attn_norm, name="norm1", **common)(x)
        y = InvertedResidual(dim, 1, self.ffn_dim / dim, self.activation, name="mlp", **common)(y, train=train)
        y = attn_norm_layer(self.attn_norm, name="norm2", **common)(y)
        y = AdaptiveFrequencyFilter(
            dim, num_blocks=8, sparsity_threshold=0.01, activation=self.activation, name="filter", **common
        )(y, train=train)
        return x + DropPath(self.drop_path)(y, train=train)


class AFFBlock(Module):
    """Blocks -> norm -> conv_proj -> [fusion of concat(input, projection)]: the official `AFFBlock`."""

    ffn_dim: int
    depth: int
    fuse: bool = True
    attn_norm: str = "layer_norm_2d"
    activation: str = "swish"
    drop_paths: Sequence[float] = ()

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        channels = x.shape[-1]
        rates = tuple(self.drop_paths) or (0.0,) * self.depth
        y = x
        for i in range(self.depth):  # global_rep.0 ... global_rep.{depth-1}, then the norm global_rep.{depth}
            y = AFFTransformerBlock(
                self.ffn_dim, self.attn_norm, self.activation, rates[i], name=f"global_rep_{i}", **common
            )(y, train=train)
        y = attn_norm_layer(self.attn_norm, name=f"global_rep_{self.depth}", **common)(y)
        y = ConvNormAct(channels, 1, use_act=False, activation=self.activation, name="conv_proj", **common)(
            y, train=train
        )
        if self.fuse:
            y = ConvNormAct(channels, 1, activation=self.activation, name="fusion", **common)(
                jnp.concatenate([x, y.astype(x.dtype)], axis=-1), train=train
            )
        return y


class AFFNet(Backbone):
    """AFFNet: `apply(variables, images[B, H, W, 3], train=...) -> logits[B, num_classes]` (float32).

    Training needs `mutable=["batch_stats"]` (BatchNorm) and, with dropout or drop path, the `dropout` /
    `drop_path` rng streams. `image_size`, when set, is checked: no parameter depends on the resolution.
    """

    depths: Sequence[int] = (1, 3, 2, 4, 3)  # MobileNetV2 blocks of layers 1-2, AFF Blocks of layers 3-5
    dims: Sequence[int] = (32, 64, 128, 256, 320)  # layers 1-5 (layers 3-5: their transformer_channels)
    ffn_dims: Sequence[int] = (256, 512, 640)  # layers 3-5
    fuse: Sequence[bool] = (True, True, True)  # layers 3-5
    expand_ratio: float = 4.0  # the official mv2_exp_mult: layers 1-2 and the stride-2 block of layers 3-5
    last_layer_exp_factor: int = 4
    attn_norm: str = "layer_norm_2d"
    activation: str = "swish"
    num_classes: int = 1000
    head_dropout: float = 0.0  # the official classifier_dropout
    drop_path_rate: float = 0.0
    image_size: int | None = None

    def _check_config(self):
        if len(self.depths) != NUM_LAYERS or len(self.dims) != NUM_LAYERS:
            raise ValueError(
                f"AFFNet has {NUM_LAYERS} layers (2 MobileNetV2, 3 AFF): give 5 depths and 5 dims; got "
                f"depths {tuple(self.depths)} and dims {tuple(self.dims)}."
            )
        if {len(self.ffn_dims), len(self.fuse)} != {3}:
            raise ValueError(
                f"AFFNet has 3 AFF layers (3-5): give 3 ffn_dims and 3 fuse flags; got ffn_dims "
                f"{tuple(self.ffn_dims)}, fuse {tuple(self.fuse)}."
            )
        for channels in self.dims[2:]:
            if channels % 8:
                raise ValueError(
                    f"AFFNet dims of layers 3-5 must be multiples of 8 (the filter's 8 channel blocks); "
                    f"got dims {tuple(self.dims)}."
                )
        if self.attn_norm not in ATTN_NORMS:
            raise unknown_name_error("AFFNet attn_norm", self.attn_norm, ATTN_NORMS)

    def stage_maps(self, images, *, train: bool):
        self._check_config()
        check_images(images, TOTAL_STRIDE, "AFFNet", "a stride-2 stem and four stride-2 layers")
        check_image_size(images, self.image_size, "AFFNet")
        common = dict(activation=self.activation, **self.dtype_kwargs)
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = ConvNormAct(STEM_CHANNELS, 3, 2, name="conv_1", **common)(x, train=train)
        maps = []
        for layer in (1, 2):
            for i in range(self.depths[layer - 1]):
                stride = 2 if layer == 2 and i == 0 else 1
                x = InvertedResidual(
                    self.dims[layer - 1], stride, self.expand_ratio, name=f"layer_{layer}_{i}", **common
                )(x, train=train)
            maps.append(x)
        rates = stage_drop_path_rates(self.drop_path_rate, self.depths[2:])
        for layer, (channels, depth, ffn_dim, fuse, drop_paths) in enumerate(
            zip(self.dims[2:], self.depths[2:], self.ffn_dims, self.fuse, rates), start=3
        ):
            x = InvertedResidual(channels, 2, self.expand_ratio, name=f"layer_{layer}_0", **common)(x, train=train)
            x = AFFBlock(
                ffn_dim, depth, bool(fuse), self.attn_norm, drop_paths=drop_paths, name=f"layer_{layer}_1", **common
            )(x, train=train)
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        exp_channels = min(self.last_layer_exp_factor * features.shape[-1], LAST_CHANNELS_CAP)
        x = ConvNormAct(
            exp_channels,
            1,
            activation=self.activation,
            name="conv_1x1_exp",
            **self.dtype_kwargs,
        )(features, train=train)
        return pooled_classifier(
            self,
            x,
            num_classes=self.num_classes,
            head_dropout=self.head_dropout,
            train=train,
            name="classifier_fc",
            kernel_init=param_with_axes(XAVIER_UNIFORM_INIT, ("embed", None)),
            **self.dtype_kwargs,
        )
