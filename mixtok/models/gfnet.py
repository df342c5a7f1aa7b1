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

Resolution. The official model is built for one `img_size` (its PatchEmbed asserts the input
size); filters are (img_size / stride) x (that // 2 + 1) per stage and the position embedding has
one entry per token of that grid. To run at another resolution, its fine-tuning code resizes the
weights of the checkpoint (main_gfnet.py, `--finetune`): position embedding bicubic with
align_corners=False, filters bicubic with align_corners=True. Here the parameters always have the
shapes of `img_size` (so a checkpoint does not depend on the image used at init), and an input of
another size gets both resized in the forward pass by those same maps, so
`create_model("gfnet_ti")` applied to 384-px images computes what the official 384-px model
computes with the official converted weights. Image sides must be multiples of the total stride
(16 isotropic, 32 pyramid); non-square images are allowed.
Stage outputs are sown into `intermediates` (`stage0` ... for the pyramid, `pre_logits`).
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mixtok.layers.drop import DropPath
from mixtok.layers.mlp import Mlp
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import (DEFAULT_KERNEL_INIT, conv_kernel_init, dense_kernel_init, param_with_axes,
                                        zeros_with_axes)
from mixtok.mixers.spectral import GlobalFilter, resize_bicubic
from mixtok.models.inputs import check_images
from mixtok.models.metaformer import Scale

NORM_EPSILON = 1e-6
PYRAMID_STRIDES = (4, 8, 16, 32)  # of the four stages, with the official patch size 4


class GFNetBlock(nn.Module):
    """x + drop_path([gamma *] mlp(norm2(filter(norm1(x))))): GFNet's `Block` / `BlockLayerScale`."""

    grid_size: Sequence[int]
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0
    layer_scale_init: Optional[float] = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm1", **common)(x)
        y = GlobalFilter(dim=x.shape[-1], grid_size=tuple(self.grid_size), name="filter", **common)(y, train=train)
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm2", **common)(y)
        y = Mlp(self.mlp_ratio, activation="gelu", use_bias=True, dropout=self.dropout, name="mlp", **common)(
            y, train=train)
        if self.layer_scale_init is not None:
            y = Scale(self.layer_scale_init, self.param_dtype, name="layer_scale")(y)
        return x + DropPath(self.drop_path)(y, train=train)


class PatchConv(nn.Module):
    """A conv with kernel = stride = `patch_size` and no padding: patch embedding or downsampling."""

    features: int
    patch_size: int
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        p = self.patch_size
        return nn.Conv(self.features, (p, p), strides=(p, p), padding="VALID", kernel_init=conv_kernel_init(),
                       bias_init=zeros_with_axes(("conv_out",)), dtype=self.dtype, param_dtype=self.param_dtype,
                       name="conv")(x)


class PositionEmbedding(nn.Module):
    """Adds a learned [1, h, w, C] embedding, resized (bicubic) when the token grid differs."""

    grid_size: Sequence[int]
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        embedding = self.param("pos_embed", param_with_axes(DEFAULT_KERNEL_INIT, (None, None, None, "embed")),
                               (1, *self.grid_size, x.shape[-1]), self.param_dtype)
        embedding = resize_bicubic(embedding, x.shape[1:3], align_corners=False, axes=(1, 2))
        return x + embedding.astype(x.dtype)


class TokenMeanHead(nn.Module):
    """LayerNorm on every token -> mean over tokens -> dropout -> Linear (GFNet's head)."""

    num_classes: int
    dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        x = LayerNorm(epsilon=NORM_EPSILON, name="norm", dtype=self.dtype, param_dtype=self.param_dtype)(x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)
        self.sow("intermediates", "pre_logits", x)
        if self.num_classes <= 0:
            return x
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, kernel_init=dense_kernel_init(("embed", None)),
                        bias_init=zeros_with_axes((None,)), dtype=self.dtype, param_dtype=self.param_dtype,
                        name="fc")(x)


class GFNet(nn.Module):
    """Isotropic GFNet: `apply(variables, images[B, H, W, 3]) -> logits[B, num_classes]` (float32)."""

    depth: int = 12
    embed_dim: int = 384
    patch_size: int = 16
    img_size: int = 224  # the resolution the parameters are shaped for (filters, position embedding)
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    dropout: float = 0.0  # the official `drop_rate`: after the position embedding and in every MLP
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0  # the official `dropcls`
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        check_images(images, self.patch_size, "GFNet", f"patch size {self.patch_size}")
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        grid = (self.img_size // self.patch_size,) * 2
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = PatchConv(self.embed_dim, self.patch_size, name="patch_embed", **common)(x)
        x = PositionEmbedding(grid, self.param_dtype, name="pos_embed")(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        for i, rate in enumerate(np.linspace(0.0, self.drop_path_rate, self.depth).tolist()):
            x = GFNetBlock(grid, mlp_ratio=self.mlp_ratio, dropout=self.dropout, drop_path=rate, name=f"blocks_{i}",
                           **common)(x, train=train)
        logits = TokenMeanHead(self.num_classes, self.head_dropout, name="head", **common)(x, train=train)
        return logits.astype(jnp.float32)


class GFNetPyramid(nn.Module):
    """Hierarchical GFNet (GFNet-H): four stages at strides 4, 8, 16, 32, layer-scaled blocks."""

    depths: Sequence[int] = (3, 3, 10, 3)
    dims: Sequence[int] = (64, 128, 256, 512)
    img_size: int = 224  # the resolution the parameters are shaped for: grids 56, 28, 14, 7 at 224
    mlp_ratio: float = 4.0
    layer_scale_init: Optional[float] = 1e-3  # None: plain blocks (the official `no_layerscale=True`)
    num_classes: int = 1000
    dropout: float = 0.0  # in every MLP only: the official pyramid never applies its `pos_drop`
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        if len(self.depths) != 4 or len(self.dims) != 4:
            raise ValueError(f"GFNetPyramid has 4 stages; got depths {tuple(self.depths)} and dims {tuple(self.dims)}.")
        check_images(images, PYRAMID_STRIDES[-1], "GFNetPyramid", "patch 4 x three stride-2 downsamplings")
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        drop_rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()
        x = images.astype(self.dtype) if self.dtype is not None else images
        block_index = 0
        for i, stride in enumerate(PYRAMID_STRIDES):
            grid = (self.img_size // stride,) * 2
            if i == 0:
                x = PatchConv(self.dims[0], stride, name="patch_embed", **common)(x)
                x = PositionEmbedding(grid, self.param_dtype, name="pos_embed")(x)
            else:
                x = PatchConv(self.dims[i], 2, name=f"downsample_{i}", **common)(x)
            for j in range(self.depths[i]):
                x = GFNetBlock(grid, mlp_ratio=self.mlp_ratio, dropout=self.dropout, drop_path=drop_rates[block_index],
                               layer_scale_init=self.layer_scale_init, name=f"stages_{i}_blocks_{j}", **common)(
                                   x, train=train)
                block_index += 1
            self.sow("intermediates", f"stage{i}", x)
        logits = TokenMeanHead(self.num_classes, self.head_dropout, name="head", **common)(x, train=train)
        return logits.astype(jnp.float32)
