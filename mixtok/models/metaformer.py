"""The MetaFormer backbone: a four-stage pyramid whose token mixer is a per-stage choice.

Papers: "MetaFormer Is Actually What You Need for Vision" (PoolFormer, Yu et al., CVPR 2022) and
"MetaFormer Baselines for Vision" (IdentityFormer, RandFormer, PoolFormerV2, ConvFormer, CAFormer;
Yu et al., TPAMI 2024). Official code: sail-sg/poolformer: models/poolformer.py and
sail-sg/metaformer: metaformer_baselines.py. Parameter names and layout follow timm's port,
timm/models/metaformer.py, whose pretrained weights `mixtok.interop.timm` converts.

    stem:   conv 7x7 stride 4 padding 2 -> [norm]
    stage i (i > 0): [norm] -> conv 3x3 stride 2 padding 1
    block:  x = res_scale1(x) + layer_scale1(drop_path(mixer(norm1(x))))
            x = res_scale2(x) + layer_scale2(drop_path(mlp(norm2(x))))
    head:   global average pool -> LayerNorm (eps 1e-6, with bias) -> [dropout] -> Linear | MlpHead

Where timm and the official code differ, we follow timm (its weights are the ones users load):
- PoolFormer v1's final norm: the official code applies GroupNorm(1) to the feature map before
  pooling; timm applies LayerNorm (eps 1e-6) to the pooled vector.
- MlpHead's LayerNorm eps: official 1e-5, timm 1e-6 (`head_mlp_norm_epsilon`).
- Stochastic-depth rates rise linearly over all blocks, as in the official code.
- `head_dropout`: timm drops before an MlpHead and again inside it (before fc2); the official code
  drops only inside MlpHead. We follow timm by default (`head_dropout_before_mlp=True`; False is the
  official code, which the ImageNet configs set), and also drop before a Linear head, where timm
  does not (`head_dropout` means the dropout before the classifier in every mixtok backbone).
The model checks that the image size is a multiple of the total stride (32) and says so otherwise.

Resolution. Most mixers have no parameter that depends on the image size. Those that do take it from
`image_size` when it is set: a mixer with a `grid_size` field (GlobalFilter, DynamicSpectrumMixer)
gets its stage's token grid (image_size / 4, / 8, / 16, / 32), one with a `num_tokens` field
(RandFormer's RandomMixing) that grid's token count, unless `mixer_kwargs` sets them; with
`image_size=None` they size themselves from the input at initialisation. A MetaFormer none of whose
stages has such a mixer checks that its input is `image_size` pixels when it is set.

Precision. With `dtype=jnp.bfloat16` (and float32 parameters) matmuls and convolutions take bfloat16
operands, and what PyTorch's autocast keeps in float32 is float32 here too: norm statistics and affine,
the attention softmax, the depthwise convolution's accumulation, the pooling mean, ResScale / LayerScale
(a float32 scale, one rounding), StarReLU (float32 scalars) and the logits (the classifier accumulates
and returns float32). The residual stream between blocks stays bfloat16: keeping it in float32 (as
autocast does after a float32 ResScale) made the logit drift only about 2% smaller (RMS) for twice the
stream's memory. On CAFormer-S18 and ConvFormer-S18 the bf16-vs-fp32 logit drift is below timm's under
`torch.autocast` on the same weights and images (`benchmarks/bf16_drift.py`, benchmarks/RESULTS.md).
"""

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mixtok import mixers
from mixtok.layers.conv import conv2d
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import ClassifierHead
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import get_norm
from mixtok.layers.scale import LayerScale
from mixtok.models.backbone import Backbone, PerStage, per_stage, stage_drop_path_rates
from mixtok.models.inputs import check_image_size, check_images

__all__ = ["Downsampling", "MetaFormer", "MetaFormerBlock", "MetaFormerStage", "per_stage"]
STEM_STRIDE = 4


class MetaFormerBlock(Module):
    """norm -> token mixer -> residual; norm -> MLP -> residual (with optional layer/res scales)."""

    token_mixer: str
    mixer_kwargs: Mapping[str, Any]
    norm: str
    norm_epsilon: float
    mlp_activation: str
    mlp_bias: bool
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    layer_scale_init: float | None = None
    res_scale_init: float | None = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        dim = x.shape[-1]
        common = self.dtype_kwargs
        for i, branch in ((1, "mixer"), (2, "mlp")):
            y = get_norm(self.norm, epsilon=self.norm_epsilon, name=f"norm{i}", **common)(x)
            if branch == "mixer":
                y = mixers.get(self.token_mixer)(dim=dim, name="token_mixer", **common, **self.mixer_kwargs)(
                    y, train=train
                )
            else:
                y = Mlp(self.mlp_ratio, activation=self.mlp_activation, use_bias=self.mlp_bias, name="mlp", **common)(
                    y, train=train
                )
            y = DropPath(self.drop_path)(y, train=train)
            if self.layer_scale_init is not None:
                y = LayerScale(self.layer_scale_init, self.param_dtype, name=f"layer_scale{i}")(y)
            if self.res_scale_init is not None:
                x = LayerScale(self.res_scale_init, self.param_dtype, name=f"res_scale{i}")(x)
            x = x + y
        return x


class Downsampling(Module):
    """[norm] -> strided conv; the stem puts its norm after the conv instead."""

    features: int
    kernel_size: int
    stride: int
    padding: int
    norm: str | None = None
    norm_epsilon: float = 1e-6
    norm_after: bool = False

    @nn.compact
    def __call__(self, x):
        common = self.dtype_kwargs
        norm = get_norm(self.norm, epsilon=self.norm_epsilon, name="norm", **common) if self.norm else None
        if norm is not None and not self.norm_after:
            x = norm(x)
        x = conv2d(self.features, self.kernel_size, stride=self.stride, padding=self.padding, name="conv", **common)(x)
        if norm is not None and self.norm_after:
            x = norm(x)
        return x


class MetaFormerStage(Module):
    """[Downsampling] followed by len(drop_path_rates) MetaFormer blocks of the same options."""

    features: int
    downsample: bool
    downsample_norm: str | None
    downsample_norm_epsilon: float
    block: Mapping[str, Any]
    drop_path_rates: Sequence[float]

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        if self.downsample:
            x = Downsampling(
                self.features,
                3,
                2,
                1,
                norm=self.downsample_norm,
                norm_epsilon=self.downsample_norm_epsilon,
                name="downsample",
                **common,
            )(x)
        for j, rate in enumerate(self.drop_path_rates):
            x = MetaFormerBlock(**self.block, drop_path=rate, name=f"blocks_{j}", **common)(x, train=train)
        return x


def resolution_options(mixer: str, grid: int) -> dict:
    """The options that size `mixer`'s parameters for a grid x grid token map ({} when none do)."""
    fields = getattr(mixers.get(mixer), "__dataclass_fields__", {})
    if "grid_size" in fields:
        return {"grid_size": (grid, grid)}
    if "num_tokens" in fields:
        return {"num_tokens": grid * grid}
    return {}


class MetaFormer(Backbone):
    """A MetaFormer classifier: `apply(variables, images[B, H, W, 3]) -> logits[B, num_classes]`.

    Per-stage options (`token_mixers`, `mixer_kwargs`, `mlp_ratios`, `norms`, `layer_scale_init`,
    `res_scale_init`) take one value for all stages or a list with one per stage, so
    "PoolFormer-S12 with attention in stage 4" is
    `create_model("poolformer_s12", token_mixers=("pooling",) * 3 + ("attention",))`.
    `method="features"` / `"intermediates"` return the last / every stage's map (`mixtok.models.backbone`).
    """

    depths: Sequence[int] = (2, 2, 6, 2)
    dims: Sequence[int] = (64, 128, 320, 512)
    token_mixers: PerStage = "pooling"
    mixer_kwargs: PerStage = None
    mlp_ratios: PerStage = 4.0
    norms: PerStage = "groupnorm1_nobias"
    norm_epsilon: float = 1e-6
    downsample_norm: str | None = "layernorm_nobias"
    downsample_norm_epsilon: float = 1e-6
    mlp_activation: str = "star_relu"
    mlp_bias: bool = False
    layer_scale_init: PerStage = None
    res_scale_init: PerStage = (None, None, 1.0, 1.0)
    use_mlp_head: bool = False
    head_norm_epsilon: float = 1e-6
    head_mlp_norm_epsilon: float = 1e-6
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    head_dropout_before_mlp: bool = True  # timm's double dropout around an MlpHead; False: the official code's
    image_size: int | None = None  # sizes resolution-dependent mixers; otherwise the input size is checked

    @property
    def reduction(self) -> int:
        """The total stride: the stem's 4 times 2 for every further stage."""
        return STEM_STRIDE * 2 ** (len(self.depths) - 1)

    def _stage_mixer_kwargs(self, token_mixers: Sequence[str]) -> list:
        """Each stage's mixer options: `mixer_kwargs`, plus the grid `image_size` gives resolution-dependent mixers."""
        stage_kwargs = per_stage(self.mixer_kwargs, len(self.depths), "mixer_kwargs")
        result = []
        for i, (mixer, kwargs) in enumerate(zip(token_mixers, stage_kwargs)):
            grid = None if self.image_size is None else self.image_size // (STEM_STRIDE * 2**i)
            sizing = {} if grid is None else resolution_options(mixer, grid)
            result.append({**sizing, **dict(kwargs or {})})
        return result

    def stage_maps(self, images, *, train: bool):
        check_images(images, self.reduction, "MetaFormer", f"stem 4 x {len(self.depths) - 1} stride-2 downsamplings")
        n = len(self.depths)
        if len(self.dims) != n:
            raise ValueError(f"depths {tuple(self.depths)} and dims {tuple(self.dims)} must have the same length.")
        token_mixers = per_stage(self.token_mixers, n, "token_mixers")
        for name in token_mixers:
            mixers.get(name)  # fail before building anything, with the close matches
        if self.image_size is not None and (self.image_size <= 0 or self.image_size % self.reduction):
            raise ValueError(
                f"image_size must be a positive multiple of the total stride {self.reduction} (or None); "
                f"got {self.image_size}."
            )
        if not any(resolution_options(name, 1) for name in token_mixers):
            check_image_size(images, self.image_size, "MetaFormer")
        mixer_kwargs = self._stage_mixer_kwargs(token_mixers)
        mlp_ratios = per_stage(self.mlp_ratios, n, "mlp_ratios")
        norms = per_stage(self.norms, n, "norms")
        layer_scales = per_stage(self.layer_scale_init, n, "layer_scale_init")
        res_scales = per_stage(self.res_scale_init, n, "res_scale_init")
        drop_rates = stage_drop_path_rates(self.drop_path_rate, self.depths)
        common = self.dtype_kwargs

        x = images.astype(self.dtype) if self.dtype is not None else images
        x = Downsampling(
            self.dims[0],
            7,
            STEM_STRIDE,
            2,
            norm=self.downsample_norm,
            norm_after=True,
            norm_epsilon=self.downsample_norm_epsilon,
            name="stem",
            **common,
        )(x)
        maps = []
        for i in range(n):
            x = MetaFormerStage(
                features=self.dims[i],
                downsample=i > 0,
                downsample_norm=self.downsample_norm,
                downsample_norm_epsilon=self.downsample_norm_epsilon,
                block=dict(
                    token_mixer=token_mixers[i],
                    mixer_kwargs=mixer_kwargs[i],
                    norm=norms[i],
                    norm_epsilon=self.norm_epsilon,
                    mlp_activation=self.mlp_activation,
                    mlp_bias=self.mlp_bias,
                    mlp_ratio=mlp_ratios[i],
                    layer_scale_init=layer_scales[i],
                    res_scale_init=res_scales[i],
                ),
                drop_path_rates=drop_rates[i],
                name=f"stages_{i}",
                **common,
            )(x, train=train)
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        logits = ClassifierHead(
            self.num_classes,
            norm_epsilon=self.head_norm_epsilon,
            mlp_ratio=4.0 if self.use_mlp_head else None,
            mlp_norm_epsilon=self.head_mlp_norm_epsilon,
            head_dropout=self.head_dropout,
            dropout_before_mlp=self.head_dropout_before_mlp,
            name="head",
            **self.dtype_kwargs,
        )(features, train=train)
        return logits.astype(jnp.float32)
