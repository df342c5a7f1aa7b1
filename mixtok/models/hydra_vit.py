"""Hydra ViT: an isotropic ViT whose attention is Hydra's bidirectional SSD mixer (Hwang et al. 2024).

Paper: "Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers" (Hwang, Lahoti, Dao & Gu,
arXiv 2407.09941). Its abstract states that Hydra, "as a drop-in replacement for attention layers", outperforms
ViT by 2% top-1 on ImageNet; the comparison is against ViT-B (the paper's ImageNet table; [unverified here]
81.0 vs 78.8 top-1). The official repository (goombalab/hydra @ 55bef745) ships only the mixer
(hydra/modules/hydra.py) and a BERT/GLUE pipeline: no image model, no ImageNet config, no parameter count.
So this model is ViT-B/16's body with each attention replaced by `mixtok.mixers.Hydra` at the official
module's defaults, and everything the repository leaves open is a labelled choice:

    patch embed: conv 16x16 stride 16 (bias)  -> + learned position embedding [1, 14, 14, C] -> dropout
    block (x depth): x = x + drop_path(Hydra(LN(x)));  x = x + drop_path(Mlp(LN(x)))     pre-norm, as ViT
    head: mean over tokens -> LayerNorm -> [dropout] -> Linear          (timm's ViT with global_pool="avg")

- Stated: ViT-B's size (depth 12, width 768, MLP ratio 4, patch 16, 224 px) with Hydra in place of attention;
  Hydra's defaults d_state 64, d_conv 7, expand 2, headdim 64, ngroups 1 (goombalab/hydra: hydra.py, and the
  README's usage example).
- Open (mixtok's choice): no class token and average pooling (a class token's place in a sequence scan is a
  choice the paper does not fix in the code); tokens scanned in raster (row-major) order; LayerNorm eps 1e-6
  and GELU(erf) MLP with biases (timm's ViT); trunc-normal(0.02) Linear / position-embedding init; the position
  embedding resized bilinearly (timm's `resample_abs_pos_embed` without antialias) for other resolutions.
  Hydra's mixer makes each block larger than attention's (3.83 M vs 2.36 M parameters at width 768), so
  hydra_vit_b has 104.1 M parameters against ViT-B's 86.6 M; whether the paper matched counts is not stated
  in the code.

Resolution: any image whose sides are multiples of `patch_size`; the position embedding is shaped for
`image_size` and resized in the forward pass for other grids. `method="intermediates"` returns every block's
output as a [B, h, w, C] grid.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.drop import DropPath
from mixtok.layers.heads import ClassifierHead
from mixtok.layers.init import TRUNC_NORMAL_INIT
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.layers.stems import PatchEmbed, resize_pos_embed
from mixtok.mixers.hydra import Hydra
from mixtok.models.backbone import Backbone, PerStage, per_stage, stage_drop_path_rates
from mixtok.models.inputs import check_images

NORM_EPSILON = 1e-6


class HydraBlock(Module):
    """x + drop_path(hydra(norm1(x))), then x + drop_path(mlp(norm2(x))): a pre-norm ViT block, Hydra for attention."""

    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0
    d_state: int = 64
    d_conv: int = 7
    expand: int = 2
    headdim: int = 64
    chunk_size: int = 256
    impl: str = "auto"

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm1", **common)(x)
        y = Hydra(
            dim=x.shape[-1],
            d_state=self.d_state,
            d_conv=self.d_conv,
            expand=self.expand,
            headdim=self.headdim,
            chunk_size=self.chunk_size,
            impl=self.impl,
            name="mixer",
            **common,
        )(y, train=train)
        x = x + DropPath(self.drop_path)(y, train=train)
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm2", **common)(x)
        y = Mlp(self.mlp_ratio, activation="gelu", use_bias=True, dropout=self.dropout, name="mlp", **common)(
            y, train=train
        )
        return x + DropPath(self.drop_path)(y, train=train)


class HydraViT(Backbone):
    """Isotropic Hydra ViT: `apply(variables, images[B, H, W, 3]) -> logits[B, num_classes]` (float32)."""

    depths: Sequence[int] = (12,)
    dims: Sequence[int] = (768,)
    patch_size: int = 16
    image_size: int = 224  # the grid the position embedding is shaped for
    mlp_ratios: PerStage = 4.0
    num_classes: int = 1000
    dropout: float = 0.0  # after the position embedding and in every MLP (timm's ViT drop_rate)
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    d_state: int = 64
    d_conv: int = 7
    expand: int = 2
    headdim: int = 64
    chunk_size: int = 256
    impl: str = "auto"  # the SSD scan's implementation (mixtok.kernels.ssd_scan)

    def stage_maps(self, images, *, train: bool):
        if len(self.depths) != 1 or len(self.dims) != 1:
            raise ValueError(
                f"HydraViT is isotropic (one stage): give depths=(depth,) and dims=(width,); got depths "
                f"{tuple(self.depths)} and dims {tuple(self.dims)}."
            )
        check_images(images, self.patch_size, "HydraViT", f"patch size {self.patch_size}")
        (mlp_ratio,) = per_stage(self.mlp_ratios, 1, "mlp_ratios")
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = PatchEmbed(
            self.dims[0], self.patch_size, self.patch_size, padding=0, norm=None, name="patch_embed", **common
        )(x)
        grid = self.image_size // self.patch_size
        pos = self.param(
            "pos_embed",
            param_with_axes(TRUNC_NORMAL_INIT, (None, None, None, "embed")),
            (1, grid, grid, self.dims[0]),
            self.param_dtype,
        )
        x = x + resize_pos_embed(pos, x.shape[1], x.shape[2]).astype(x.dtype)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        maps = []
        for i, rate in enumerate(stage_drop_path_rates(self.drop_path_rate, self.depths)[0]):
            x = HydraBlock(
                mlp_ratio=mlp_ratio,
                dropout=self.dropout,
                drop_path=rate,
                d_state=self.d_state,
                d_conv=self.d_conv,
                expand=self.expand,
                headdim=self.headdim,
                chunk_size=self.chunk_size,
                impl=self.impl,
                name=f"blocks_{i}",
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
