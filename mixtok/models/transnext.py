"""TransNeXt: a four-stage pyramid of aggregated-attention + ConvGLU blocks.

Paper: "TransNeXt: Robust Foveal Visual Perception for Vision Transformers" (Shi, CVPR 2024). Official code:
DaiShiResearch/TransNeXt @ c8a99743: classification/transnext.py (`TransNeXt`, `Block`, `OverlapPatchEmbed`),
with the native AggregatedAttention of classification/attention_native.py. The mixers live in
`mixtok.mixers.transnext`.

    stage i: OverlapPatchEmbed (conv k x k stride s, padding k // 2, then LayerNorm eps 1e-5;
             stage 1: k = 2 p - 1, s = p (p = 4); later stages: k = 3, s = 2)
             -> depth_i blocks -> LayerNorm (eps 1e-6)
    block:   x = x + drop_path(attn(norm1(x)));  x = x + drop_path(ConvGLU(norm2(x)))   (norms eps 1e-6)
             attn = AggregatedAttention (sr_ratio > 1) or LengthScaledCosineAttention (sr_ratio 1, stage 4)
    head:    mean over the tokens of the last stage -> Linear

Initialisation as the official `_init_weights`: Linear trunc_normal(0.02) with zero bias, Conv
normal(0, sqrt(2 / fan_out)) (fan_out = k * k * out / groups) with zero bias, LayerNorm 1 / 0.
Drop path rates rise linearly from 0 to `drop_path_rate` over all blocks.

Parity: official checkpoints convert with `mixtok.interop.transnext`, whose docstring records the logit
agreement with the official model (native attention, every parameter random) for transnext_micro and
transnext_small at 224 and 384 px; tests/fixtures/transnext holds a tiny official model's outputs at 64 and 96 px.

Differences from the official code:
- The official model is built for one `img_size` (constants sized for it); here the constants follow the
  input, so any size whose sides the total stride 32 divides runs. `pretrain_size` (image pixels, default 224,
  the official checkpoints' value) sets the CPB coordinate scale per stage, pretrain_size // stride, as the
  official `pretrain_size` argument does; at 224 px this is exactly the official model. With
  `pretrain_size=None` the input's own size is used (the official default when `pretrain_size` is unset).
- No parameter depends on the resolution: `image_size` (default None) only checks that the images have it.
- Arguments use the backbones' shared names: `dims` (official `embed_dims`), `dropout` (the official
  `drop_rate`: projection and ConvGLU dropout), `attn_dropout` (`attn_drop_rate`); `head_dropout` (dropout
  before the classifier, default 0) is a mixtok addition.
- Images are NHWC. `method="features"` gives the stage-4 map [B, H/32, W/32, C4] after its LayerNorm (before
  the head's pooling), `method="intermediates"` the four stage maps; they are also sown into `intermediates`
  (`stage1` ... `stage4`, `pre_logits`).
"""

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.drop import DropPath
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.stems import PatchEmbed
from mixtok.mixers.transnext import AggregatedAttention, ConvGLU, LengthScaledCosineAttention
from mixtok.models.backbone import Backbone
from mixtok.models.inputs import check_images

NORM_EPSILON = 1e-6
EMBED_NORM_EPSILON = 1e-5  # OverlapPatchEmbed's nn.LayerNorm keeps PyTorch's default eps


def conv_fan_out_init(kernel_size: int, features: int, groups: int = 1) -> Callable:
    """The official conv init: normal(0, sqrt(2 / fan_out)), fan_out = k * k * out / groups."""
    fan_out = kernel_size * kernel_size * features // groups
    return jax.nn.initializers.normal(float(np.sqrt(2.0 / fan_out)))


class TransNeXtBlock(Module):
    """Pre-norm residual block: aggregated (or, with sr_ratio 1, full) attention, then ConvGLU."""

    dim: int
    num_heads: int
    sr_ratio: int
    mlp_ratio: float
    window_size: int = 3
    pretrain_size: Sequence[int] | None = None  # feature-map size for the CPB scale
    fixed_pool_size: int | None = None
    qkv_bias: bool = True
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = dict(
            dim=self.dim,
            num_heads=self.num_heads,
            pretrain_size=self.pretrain_size,
            qkv_bias=self.qkv_bias,
            attn_dropout=self.attn_dropout,
            proj_dropout=self.dropout,
            **self.dtype_kwargs,
            name="attn",
        )
        if self.sr_ratio == 1:
            attn = LengthScaledCosineAttention(**common)
        else:
            attn = AggregatedAttention(
                window_size=self.window_size, sr_ratio=self.sr_ratio, fixed_pool_size=self.fixed_pool_size, **common
            )
        norm = dict(epsilon=NORM_EPSILON, **self.dtype_kwargs)
        drop_path = DropPath(self.drop_path)
        x = x + drop_path(attn(LayerNorm(name="norm1", **norm)(x), train=train), train=train)
        mlp = ConvGLU(self.dim, self.mlp_ratio, dropout=self.dropout, **self.dtype_kwargs, name="mlp")
        return x + drop_path(mlp(LayerNorm(name="norm2", **norm)(x), train=train), train=train)


class TransNeXt(Backbone):
    """The TransNeXt classifier (official `TransNeXt`) on NHWC images; returns logits [B, num_classes]."""

    dims: Sequence[int] = (48, 96, 192, 384)
    depths: Sequence[int] = (2, 2, 15, 2)
    num_heads: Sequence[int] = (2, 4, 8, 16)
    mlp_ratios: Sequence[float] = (8, 8, 4, 4)
    sr_ratios: Sequence[int] = (8, 4, 2, 1)
    window_size: int = 3
    patch_size: int = 4
    pretrain_size: int | None = 224
    fixed_pool_size: int | None = None
    qkv_bias: bool = True
    dropout: float = 0.0
    attn_dropout: float = 0.0
    image_size: int | None = None  # no parameter depends on it; when set, images must have this size

    def stage_maps(self, images, *, train: bool):
        lengths = {len(self.dims), len(self.depths), len(self.num_heads), len(self.mlp_ratios), len(self.sr_ratios)}
        if lengths != {4}:
            raise ValueError(
                f"dims, depths, num_heads, mlp_ratios and sr_ratios need 4 entries (one per stage); "
                f"got {self.dims}, {self.depths}, {self.num_heads}, {self.mlp_ratios}, "
                f"{self.sr_ratios}."
            )
        total_stride = self.patch_size * 8
        check_images(
            images, total_stride, "TransNeXt", "the patch embedding then three stride-2 downsamplings", self.image_size
        )
        common = self.dtype_kwargs
        rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths))
        x, cursor, stages = images, 0, []
        for stage in range(4):
            stride = self.patch_size * 2**stage
            kernel = 2 * self.patch_size - 1 if stage == 0 else 3  # odd, so padding (k - 1) // 2 = the official k // 2
            x = PatchEmbed(
                self.dims[stage],
                kernel,
                self.patch_size if stage == 0 else 2,
                norm_epsilon=EMBED_NORM_EPSILON,
                kernel_init=conv_fan_out_init(kernel, self.dims[stage]),
                name=f"patch_embed{stage + 1}",
                **common,
            )(x)
            pretrain = None if self.pretrain_size is None else (self.pretrain_size // stride,) * 2
            for index in range(self.depths[stage]):
                x = TransNeXtBlock(
                    self.dims[stage],
                    self.num_heads[stage],
                    self.sr_ratios[stage],
                    self.mlp_ratios[stage],
                    window_size=self.window_size,
                    pretrain_size=pretrain,
                    fixed_pool_size=self.fixed_pool_size,
                    qkv_bias=self.qkv_bias,
                    dropout=self.dropout,
                    attn_dropout=self.attn_dropout,
                    drop_path=float(rates[cursor + index]),
                    name=f"block{stage + 1}_{index}",
                    **common,
                )(x, train=train)
            cursor += self.depths[stage]
            x = LayerNorm(epsilon=NORM_EPSILON, name=f"norm{stage + 1}", **common)(x)
            self.sow("intermediates", f"stage{stage + 1}", x)
            stages.append(x)
        return tuple(stages)

    def classify(self, x, *, train: bool):
        common = self.dtype_kwargs
        features = jnp.mean(x, axis=(1, 2))
        self.sow("intermediates", "pre_logits", features)
        features = nn.Dropout(self.head_dropout, deterministic=not train)(features)
        return dense(self.num_classes, ("embed", None), name="head", **common)(features)
