"""MS-MLP: a four-stage (Swin-like) MLP backbone around the mix-shift token mixer.

Paper: "Mixing and Shifting: Exploiting Global and Local Dependencies in Vision MLPs" (Zheng et al., arXiv
2202.06510). Official code: JegZheng/MS-MLP @ a10d34d9: models/ms_mlp.py (`MS_MLP`, `BasicLayer`,
`MixShiftBlock`, `PatchEmbed`, `LayerNorm`), built by models/build.py from config.py and
configs/msmlp_{tiny,small,base}_patch4_shift5_224.yaml. The mixer is `mixtok.mixers.mix_shift.MixShift`.

    patch_embed:             conv4x4 s4 (3 -> C0, bias) - LayerNorm (eps 1e-6)        (then `dropout`, drop_rate)
    layers_{i}_blocks_{j}:   MixShiftBlock j of stage i
    layers_{i}_downsample:   conv2x2 s2 (C_i -> 2 C_i, bias) - LayerNorm               (after stages 0-2)
    head:                    mean over (H, W) - LayerNorm (norm) - Linear (head)

    MixShiftBlock (one residual, no norm before the mixer):
        x = x + drop_path(gamma * pwconv2(GELU(pwconv1(LayerNorm(MixShift(x))))))
        pwconv1: Linear C -> mlp_ratio * C, pwconv2: back to C (with bias); gamma [C] init 1e-6 (LayerScale)

Every LayerNorm is the official `LayerNorm` class (eps 1e-6, weight and bias; `patch_norm=True`). Drop path
of block j of stage i: linspace(0, drop_path_rate, sum(depths))[sum(depths[:i]) + j] (official). `mix_sizes`
has one tuple of kernel sizes per stage; `shift_dist` is shared by all stages (official `SHIFT_DIST`).

Parity: the official ms_mlp_t and ms_mlp_s with every parameter random, converted by `mixtok.interop.ms_mlp`,
give eval logits within 3.0e-6 of the official ones (8.8e-7 of the largest logit) at 224 and 256 px over three
seeds; the procedure and the figures are in that module's docstring.

Differences from the official code:
- NHWC layout; parameter names follow the official module paths (`layers_2_blocks_5/mixer/dwconv_lr_3` for
  `layers.2.blocks.5.dwconv_lr.3`; `mlp/fc1` for `pwconv1`; `head/norm`, `head/fc` for `norm`, `head`).
- The official `PatchEmbed` asserts the image is the configured `img_size`; here `image_size=None` takes any
  multiple of 32 (no parameter depends on the resolution) and `image_size` set is checked.
- Init: Linear layers trunc-normal 0.02 with zero bias, LayerNorm ones / zeros, gamma 1e-6 (official);
  convolutions PyTorch's default kernel distribution, with zero biases for the patch embeddings (PyTorch
  draws them from U(+-1/sqrt(fan_in)), which the mixer's depthwise convs keep).
- `dropout` is the official `drop_rate`, which only the dropout after the patch embedding uses (`drop` reaches
  `MixShiftBlock` but is unused there); `head_dropout`, before the classifier, is a mixtok addition.
- The official `use_checkpoint` (activation checkpointing) is not a model argument here.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.drop import DropPath
from mixtok.layers.heads import ClassifierHead
from mixtok.layers.init import TORCH_DEFAULT_INIT
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.scale import scale_by_param
from mixtok.layers.stems import PatchEmbed
from mixtok.mixers.mix_shift import SHIFT_DIST, MixShift
from mixtok.models.backbone import Backbone, PerStage, per_stage, stage_drop_path_rates
from mixtok.models.inputs import check_images

NORM_EPSILON = 1e-6  # the official LayerNorm class's default, used everywhere
# configs/msmlp_{tiny,small,base}_patch4_shift5_224.yaml MIX_SIZE (config.py's default differs; no release uses it).
MIX_SIZES = ((1, 1, 3, 5, 7), (1, 3, 3, 5, 7), (1, 5, 5, 5, 7), (1, 7, 7, 7, 7))


class MixShiftBlock(Module):
    """x + drop_path(gamma * MLP(LayerNorm(MixShift(x)))): the official `MixShiftBlock`."""

    shift_dist: Sequence[int] = SHIFT_DIST
    mix_sizes: Sequence[int] = MIX_SIZES[0]
    mlp_ratio: float = 4.0
    layer_scale_init: float = 1e-6
    drop_path: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        dim = x.shape[-1]
        y = MixShift(dim, self.shift_dist, self.mix_sizes, name="mixer", **common)(x)
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm", **common)(y)
        y = Mlp(self.mlp_ratio, activation="gelu", use_bias=True, name="mlp", **common)(y, train=train)
        y = scale_by_param(self, "gamma", self.layer_scale_init, y, self.param_dtype)  # float32 scale, one rounding
        return x + DropPath(self.drop_path)(y, train=train)


class MSMLP(Backbone):
    """MS-MLP: `apply(variables, images[B, H, W, 3], train=...) -> logits[B, num_classes]` (float32).

    Images of any size that is a multiple of 32; `image_size`, when set, is checked. With drop path or dropout
    training needs the `drop_path` / `dropout` rng streams.
    """

    depths: Sequence[int] = (3, 3, 9, 3)
    dims: Sequence[int] = (96, 192, 384, 768)
    mlp_ratios: PerStage = 4.0
    shift_dist: Sequence[int] = SHIFT_DIST
    mix_sizes: Sequence[Sequence[int]] = MIX_SIZES  # one tuple of kernel sizes per stage
    patch_size: int = 4
    layer_scale_init: float = 1e-6
    num_classes: int = 1000
    dropout: float = 0.0  # the official drop_rate: after the patch embedding
    drop_path_rate: float = 0.1  # official default (config.py MODEL.DROP_PATH_RATE; the tiny yaml's)
    head_dropout: float = 0.0
    image_size: int | None = None

    def stage_maps(self, images, *, train: bool):
        stages = len(self.depths)
        if len(self.dims) != stages or not stages or len(self.mix_sizes) != stages:
            raise ValueError(
                f"MSMLP needs one dim and one mix_sizes tuple per stage; got depths {tuple(self.depths)}, dims "
                f"{tuple(self.dims)} and {len(self.mix_sizes)} mix_sizes tuples."
            )
        stride = self.patch_size * 2 ** (stages - 1)
        check_images(images, stride, "MSMLP", "a patch embedding and stride-2 downsamplings", self.image_size)
        mlp_ratios = per_stage(self.mlp_ratios, stages, "mlp_ratios")
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images
        embed = dict(padding=0, norm="layernorm", norm_epsilon=NORM_EPSILON, kernel_init=TORCH_DEFAULT_INIT)
        x = PatchEmbed(self.dims[0], self.patch_size, self.patch_size, name="patch_embed", **embed, **common)(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        maps = []
        for i, rates in enumerate(stage_drop_path_rates(self.drop_path_rate, self.depths)):
            if i > 0:  # the official downsample of layer i - 1 (a PatchEmbed, patch 2), counted here as stage i
                x = PatchEmbed(self.dims[i], 2, 2, name=f"layers_{i - 1}_downsample", **embed, **common)(x)
            for j, rate in enumerate(rates):
                x = MixShiftBlock(
                    tuple(self.shift_dist),
                    tuple(self.mix_sizes[i]),
                    mlp_ratios[i],
                    self.layer_scale_init,
                    rate,
                    name=f"layers_{i}_blocks_{j}",
                    **common,
                )(x, train=train)
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        logits = ClassifierHead(
            self.num_classes,
            norm_epsilon=NORM_EPSILON,
            head_dropout=self.head_dropout,
            name="head",
            **self.dtype_kwargs,
        )(features, train=train)
        return logits.astype(jnp.float32)
