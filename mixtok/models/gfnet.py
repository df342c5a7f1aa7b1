"""GFNet: isotropic and hierarchical backbones whose token mixer is a global Fourier filter.

Paper: "Global Filter Networks for Image Classification" (Rao et al., NeurIPS 2021). Official code:
raoyongming/GFNet: gfnet.py (`GFNet`, `GFNetPyramid`, `Block`, `BlockLayerScale`), with the
architectures of main_gfnet.py. The mixer is `mixtok.mixers.GlobalFilter`.

    isotropic (GFNet):     conv p x p stride p (p = 16) -> + pos_embed -> dropout -> depth blocks
    pyramid (GFNetPyramid): conv 4x4 stride 4 -> + pos_embed -> stage 0 blocks;
                           stage i > 0: conv 2x2 stride 2 (no norm) -> blocks
    block:  x = x + drop_path(layer_scale(mlp(norm2(filter(norm1(x))))))
            one residual around filter and MLP together, none after the filter alone; the
            pyramid scales the branch by a learned per-channel gamma (`BlockLayerScale`),
            the isotropic model does not (`layer_scale_init=None`)
    head:   LayerNorm on every token -> mean over tokens -> [dropout] -> Linear

Norms are LayerNorm (eps 1e-6, with bias), the MLP is Linear-GELU(erf)-Linear with biases, drop
path rates rise linearly over all blocks (the official `uniform_drop=False`). The default
`drop_path_rate` is 0, as the official model constructors default it; main_gfnet.py's training
rates are in the recipes, experiments/configs/imagenet/gfnet_*.py.

Resolution. The official model is built for one `img_size` (mixtok: `image_size`; its PatchEmbed
asserts the input size); filters are (img_size / stride) x (that // 2 + 1) per stage and the position embedding has
one entry per token of that grid. To run at another resolution, its fine-tuning code resizes the
weights of the checkpoint (main_gfnet.py, `--finetune`): position embedding bicubic with
align_corners=False, filters bicubic with align_corners=True. Here the parameters always have the
shapes of `image_size` (so a checkpoint does not depend on the image used at init), and an input of
another size gets both resized in the forward pass by those same maps, so
`create_model("gfnet_ti")` applied to 384-px images computes what the official 384-px model
computes with the official converted weights. Image sides must be multiples of the total stride
(16 isotropic, 32 pyramid); non-square images are allowed.

Arguments use the zoo's vocabulary (`mixtok.models`): the isotropic model's official `depth` and
`embed_dim` are `depths=(depth,)` and `dims=(embed_dim,)`, one stage; `mlp_ratios` is one MLP
ratio per stage (or one for all). `method="intermediates"` returns every block's output for the
isotropic model (its tokens as a [B, h, w, C] grid) and every stage's for the pyramid.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.conv import conv2d
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import ClassifierHead
from mixtok.layers.init import TRUNC_NORMAL_INIT
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.layers.scale import LayerScale
from mixtok.mixers.spectral import GlobalFilter, resize_bicubic
from mixtok.models.backbone import Backbone, PerStage, per_stage, stage_drop_path_rates
from mixtok.models.inputs import check_images

NORM_EPSILON = 1e-6
PYRAMID_STRIDES = (4, 8, 16, 32)  # of the four stages, with the official patch size 4


class GFNetBlock(Module):
    """x + drop_path([gamma *] mlp(norm2(filter(norm1(x))))): GFNet's `Block` / `BlockLayerScale`."""

    grid_size: Sequence[int]
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0
    layer_scale_init: float | None = None

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm1", **common)(x)
        y = GlobalFilter(dim=x.shape[-1], grid_size=tuple(self.grid_size), name="filter", **common)(y, train=train)
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm2", **common)(y)
        y = Mlp(self.mlp_ratio, activation="gelu", use_bias=True, dropout=self.dropout, name="mlp", **common)(
            y, train=train
        )
        if self.layer_scale_init is not None:
            y = LayerScale(self.layer_scale_init, self.param_dtype, name="layer_scale")(y)
        return x + DropPath(self.drop_path)(y, train=train)


class PatchConv(Module):
    """A conv with kernel = stride = `patch_size` and no padding: patch embedding or downsampling."""

    features: int
    patch_size: int

    @nn.compact
    def __call__(self, x):
        return conv2d(
            self.features,
            self.patch_size,
            stride=self.patch_size,
            padding=0,
            **self.dtype_kwargs,
            name="conv",
        )(x)


class PositionEmbedding(nn.Module):
    """Adds a learned [1, h, w, C] embedding, resized (bicubic) when the token grid differs."""

    grid_size: Sequence[int]
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        embedding = self.param(
            "pos_embed",
            param_with_axes(TRUNC_NORMAL_INIT, (None, None, None, "embed")),
            (1, *self.grid_size, x.shape[-1]),
            self.param_dtype,
        )
        embedding = resize_bicubic(embedding, x.shape[1:3], align_corners=False, axes=(1, 2))
        return x + embedding.astype(x.dtype)


class _GFNetHead(Backbone):
    """What both GFNets share: the head (LayerNorm on every token -> mean -> dropout -> Linear)."""

    def classify(self, features, *, train: bool):
        logits = ClassifierHead(
            self.num_classes,
            norm_epsilon=NORM_EPSILON,
            norm_before_pool=True,
            head_dropout=self.head_dropout,
            name="head",
            **self.dtype_kwargs,
        )(features, train=train)
        return logits.astype(jnp.float32)


class GFNet(_GFNetHead):
    """Isotropic GFNet: `apply(variables, images[B, H, W, 3]) -> logits[B, num_classes]` (float32)."""

    depths: Sequence[int] = (12,)  # one stage: the official `depth`
    dims: Sequence[int] = (384,)  # the official `embed_dim`
    patch_size: int = 16
    image_size: int = 224  # the resolution the parameters are shaped for (filters, position embedding)
    mlp_ratios: PerStage = 4.0
    num_classes: int = 1000
    dropout: float = 0.0  # the official `drop_rate`: after the position embedding and in every MLP
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0  # the official `dropcls`

    def stage_maps(self, images, *, train: bool):
        if len(self.depths) != 1 or len(self.dims) != 1:
            raise ValueError(
                f"GFNet is isotropic (one stage): give depths=(depth,) and dims=(width,); got depths "
                f"{tuple(self.depths)} and dims {tuple(self.dims)}."
            )
        check_images(images, self.patch_size, "GFNet", f"patch size {self.patch_size}")
        (mlp_ratio,) = per_stage(self.mlp_ratios, 1, "mlp_ratios")
        common = self.dtype_kwargs
        grid = (self.image_size // self.patch_size,) * 2
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = PatchConv(self.dims[0], self.patch_size, name="patch_embed", **common)(x)
        x = PositionEmbedding(grid, self.param_dtype, name="pos_embed")(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        maps = []
        for i, rate in enumerate(stage_drop_path_rates(self.drop_path_rate, self.depths)[0]):
            x = GFNetBlock(
                grid, mlp_ratio=mlp_ratio, dropout=self.dropout, drop_path=rate, name=f"blocks_{i}", **common
            )(x, train=train)
            maps.append(x)
        return maps


class GFNetPyramid(_GFNetHead):
    """Hierarchical GFNet (GFNet-H): four stages at strides 4, 8, 16, 32, layer-scaled blocks."""

    depths: Sequence[int] = (3, 3, 10, 3)
    dims: Sequence[int] = (64, 128, 256, 512)
    image_size: int = 224  # the resolution the parameters are shaped for: grids 56, 28, 14, 7 at 224
    mlp_ratios: PerStage = 4.0
    layer_scale_init: float | None = 1e-3  # None: plain blocks (the official `no_layerscale=True`)
    num_classes: int = 1000
    dropout: float = 0.0  # in every MLP only: the official pyramid never applies its `pos_drop`
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0

    def stage_maps(self, images, *, train: bool):
        if len(self.depths) != 4 or len(self.dims) != 4:
            raise ValueError(f"GFNetPyramid has 4 stages; got depths {tuple(self.depths)} and dims {tuple(self.dims)}.")
        check_images(images, PYRAMID_STRIDES[-1], "GFNetPyramid", "patch 4 x three stride-2 downsamplings")
        mlp_ratios = per_stage(self.mlp_ratios, 4, "mlp_ratios")
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images
        maps = []
        for i, (stride, rates) in enumerate(
            zip(PYRAMID_STRIDES, stage_drop_path_rates(self.drop_path_rate, self.depths))
        ):
            grid = (self.image_size // stride,) * 2
            if i == 0:
                x = PatchConv(self.dims[0], stride, name="patch_embed", **common)(x)
                x = PositionEmbedding(grid, self.param_dtype, name="pos_embed")(x)
            else:
                x = PatchConv(self.dims[i], 2, name=f"downsample_{i}", **common)(x)
            for j, rate in enumerate(rates):
                x = GFNetBlock(
                    grid,
                    mlp_ratio=mlp_ratios[i],
                    dropout=self.dropout,
                    drop_path=rate,
                    layer_scale_init=self.layer_scale_init,
                    name=f"stages_{i}_blocks_{j}",
                    **common,
                )(x, train=train)
            maps.append(x)
        return maps
