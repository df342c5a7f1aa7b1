"""RaftMLP: a four-level MLP backbone of raft token mixing, channel MLPs and cross-scale MLP embeddings.

Paper: "RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality?" (Tatsunami and Taki,
arXiv 2108.04384). Official code: okojoalg/raft-mlp @ 6060d5d9: libs/models.py (`RaftMLP`), libs/modules.py
(`SerialPermutedLevel`, `Level`, `CrossScaleMLPEmbedding`, `ChannelBlock`, `RaftShrink`, `RaftExpansion`),
built by libs/train.py `initialize` from configs/settings/imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml
(token_mixing_type ser_pm, embedding_type emb_cross_mlp, shortcut False, pretrained_image_size 224). The token
mixer is `mixtok.mixers.raft_token_mixing.RaftTokenMixing`.

    levels_{i}/embedding:          CrossScaleMLPEmbedding: concat over kernels k of Unfold(k, stride s = min
                                   kernels, padding (k - s) // 2) -> Linear (sum k^2 * C_in -> C_i)
    levels_{i}/blocks_{j}/mixer:   RaftTokenMixing (bicubic shrink to the trained grid, vertical and horizontal
                                   raft MLPs with their LN and residual, bicubic expansion back)
    levels_{i}/blocks_{j}/channel: x + dp(fc2(GELU(fc1(LN(x)))))   (C -> 4C -> C; the official ChannelBlock)
    head:                          LayerNorm on every token -> mean over (h, w) -> Linear (classifier)

A level whose input side is not a multiple of its patch size first resizes its input (bicubic, PyTorch's
kernel, `torch_bicubic_resize`) up to the next multiple, as `Level.forward` does. The trained grid of level i is
ceil(image_size / (p_0 ... p_i)) (the official `pretrained_image_size` divided level by level): 56, 28, 14, 7 at
224 px. Other input sizes run: each mixer resizes the token grid to its trained grid and back (official).

Every LayerNorm has PyTorch's default eps 1e-5. Drop path is the same `drop_path_rate` on every residual branch
(the official `DropPath(drop_path_rate)` in each `Block`), not a linear ramp; 0.1 in the released configs.

Parity: the official raftmlp_s / m / l with every parameter random, converted by `mixtok.interop.raft_mlp`, give
eval logits within 4.2e-6 of the official ones (1.9e-6 of the largest logit) at 224 px and at 256 px (through the
bicubic shrink / expansion) over three seeds; the procedure and the figures are in that module's docstring.

Differences from the official code:
- NHWC layout; parameter names `levels_{i}/...` for the official `levels.{i}.fn.{k}...`.
- Only the released configuration (ser_pm token mixing, emb_cross_mlp embedding, shortcut=False); the
  official `original_tm`, `emb_mixer` and multi-level `shortcut` head are not built.
- Init: PyTorch's defaults, which the official model keeps (Linear U(+-1/sqrt(fan_in)) kernels and biases,
  LayerNorm ones / zeros); the classifier is the shared head's (trunc-normal 0.02, zero bias).
- `head_dropout`, before the classifier, is a mixtok addition (0); `dropout` is the official in-MLP dropout.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from mixtok.layers.activations import get_activation
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import ClassifierHead
from mixtok.layers.init import TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.mixers.raft_token_mixing import NORM_EPSILON, RaftTokenMixing, torch_bicubic_resize, torch_dense
from mixtok.models.backbone import Backbone, PerStage, per_stage

# configs/settings/imagenet-raft-mlp-cross-mlp-emb-{s,m,l}.yaml (the same in all three)
PATCH_SIZES = (4, 2, 2, 2)
EMBEDDING_KERNELS = ((4, 8), (2, 4), (2, 4), (2,))


class CrossScaleMLPEmbedding(Module):
    """The official `CrossScaleMLPEmbedding`: fc(concat_k Unfold(k, stride s, padding (k - s) // 2)(x)).

    `fc/kernel` [sum_k k^2 * C_in, C_out] holds the rows in the official order (kernel after kernel, each
    Unfold's (c, kh, kw) with c slowest) and `fc/bias` [C_out]. Computed as one strided conv per kernel size
    (that kernel's rows as an HWIO kernel), summed: the same map without materialising the patches.
    """

    features: int
    kernels: Sequence[int]

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        stride = min(self.kernels)
        if any(k % stride for k in self.kernels):
            raise ValueError(
                f"CrossScaleMLPEmbedding: every kernel in {tuple(self.kernels)} must be a multiple of {stride}."
            )
        fan_in = channels * sum(k * k for k in self.kernels)
        init = param_with_axes(TORCH_DEFAULT_INIT, (None, None))
        kernel = self.param("kernel", init, (fan_in, self.features), self.param_dtype)
        bias_init = param_with_axes(torch_uniform_init(fan_in), (None,))
        bias = self.param("bias", bias_init, (self.features,), self.param_dtype)
        x, kernel, bias = promote_dtype(x, kernel, bias, dtype=self.dtype)
        out, start = None, 0
        for k in self.kernels:
            rows = kernel[start : start + channels * k * k].reshape(channels, k, k, self.features)
            start += channels * k * k
            pad = (k - stride) // 2
            y = jax.lax.conv_general_dilated(
                x,
                rows.transpose(1, 2, 0, 3),  # (c, kh, kw, out) -> HWIO
                (stride, stride),
                ((pad, pad), (pad, pad)),
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
            out = y if out is None else out + y
        return out + bias


class ChannelMlp(Module):
    """x + dp(fc2(GELU(fc1(LN(x))))): the official `ChannelBlock` (PyTorch Linear init, LN eps 1e-5)."""

    expansion: float = 4
    dropout: float = 0.0
    drop_path: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        dim = x.shape[-1]
        hidden = int(self.expansion * dim)
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm", **common)(x)
        y = torch_dense(hidden, dim, "fc1", **common)(y)
        y = get_activation("gelu", **common, name="act")(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        y = torch_dense(dim, hidden, "fc2", **common)(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        return x + DropPath(self.drop_path)(y, train=train)


class RaftBlock(Module):
    """One official block Sequential: RaftTokenMixing (shrink, vertical, horizontal, expansion) then ChannelBlock."""

    raft_size: int
    grid_size: tuple[int, int]
    token_expansion: int = 2
    mlp_ratio: float = 4
    dropout: float = 0.0
    drop_path: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        x = RaftTokenMixing(
            x.shape[-1],
            self.raft_size,
            self.grid_size,
            self.token_expansion,
            self.dropout,
            self.drop_path,
            name="mixer",
            **common,
        )(x, train=train)
        return ChannelMlp(self.mlp_ratio, self.dropout, self.drop_path, name="channel", **common)(x, train=train)


def trained_grids(image_size: int, patch_sizes: Sequence[int]) -> tuple[int, ...]:
    """The official `pretrained_image_size` of each level: ceil(size / p_0), then ceil(that / p_1), ..."""
    grids, size = [], image_size
    for patch in patch_sizes:
        size = -(-size // patch)
        grids.append(size)
    return tuple(grids)


class RaftMLP(Backbone):
    """RaftMLP: `apply(variables, images[B, H, W, 3], train=...) -> logits[B, num_classes]` (float32).

    `image_size` is the trained resolution (the official `pretrained_image_size`): it sizes the token MLPs.
    Any other image size runs through the official bicubic shrink / expansion of every token grid. With drop
    path or dropout training needs the `drop_path` / `dropout` rng streams.
    """

    depths: Sequence[int] = (2, 2, 6, 2)
    dims: Sequence[int] = (64, 128, 256, 512)
    patch_sizes: Sequence[int] = PATCH_SIZES
    raft_sizes: PerStage = 2
    embedding_kernels: Sequence[Sequence[int]] = EMBEDDING_KERNELS
    token_expansion: int = 2  # official token_expansion_factor
    mlp_ratios: PerStage = 4  # official channel_expansion_factor
    num_classes: int = 1000
    dropout: float = 0.0  # official `dropout`, inside every MLP
    drop_path_rate: float = 0.0  # the same rate on every residual branch (official); the configs use 0.1
    head_dropout: float = 0.0
    image_size: int = 224  # official pretrained_image_size

    def stage_maps(self, images, *, train: bool):
        stages = len(self.depths)
        if not stages or len(self.dims) != stages or len(self.patch_sizes) != stages:
            raise ValueError(
                f"RaftMLP needs one dim and one patch size per level; got depths {tuple(self.depths)}, dims "
                f"{tuple(self.dims)} and patch_sizes {tuple(self.patch_sizes)}."
            )
        kernels = tuple(map(tuple, self.embedding_kernels))
        if len(kernels) != stages or any(not ks or ks[0] != p for ks, p in zip(kernels, self.patch_sizes)):
            raise ValueError(
                f"RaftMLP needs one embedding kernel list per level starting with its patch size (official assert); "
                f"got embedding_kernels {kernels} for patch_sizes {tuple(self.patch_sizes)}."
            )
        if images.ndim != 4:
            raise ValueError(f"RaftMLP takes NHWC images [B, H, W, C]; got shape {images.shape}.")
        raft_sizes = per_stage(self.raft_sizes, stages, "raft_sizes")
        mlp_ratios = per_stage(self.mlp_ratios, stages, "mlp_ratios")
        for dim, r in zip(self.dims, raft_sizes):
            if r < 1 or dim % r:
                raise ValueError(f"RaftMLP: raft size {r} must divide the level's dim {dim} (raft_sizes {raft_sizes}).")
        grids = trained_grids(self.image_size, self.patch_sizes)
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images
        maps = []
        for i, (depth, dim, patch) in enumerate(zip(self.depths, self.dims, self.patch_sizes)):
            height, width = x.shape[1:3]
            if height % patch or width % patch:  # Level.forward: bicubic up to the next multiple of the patch
                x = torch_bicubic_resize(x, (-(-height // patch) * patch, -(-width // patch) * patch))
            x = CrossScaleMLPEmbedding(dim, tuple(self.embedding_kernels[i]), name=f"levels_{i}_embedding", **common)(x)
            for j in range(depth):
                x = RaftBlock(
                    raft_sizes[i],
                    (grids[i], grids[i]),
                    self.token_expansion,
                    mlp_ratios[i],
                    self.dropout,
                    self.drop_path_rate,
                    name=f"levels_{i}_blocks_{j}",
                    **common,
                )(x, train=train)
            maps.append(x)
        return maps

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
