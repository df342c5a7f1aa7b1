"""The S2AFormer backbone: a stem, four stages of Hybrid Perception Blocks, and a classifier.

Paper: "S2AFormer: Strip Self-Attention for Efficient Vision Transformer" (Xu, Huang, Jia, Li, Gao,
Qi; arXiv 2505.22195, IEEE TIP 2025). No official code is known, and only the abstract (v1, v2) and
secondary summaries (themoonlight.io, emergentmind.com) could be read here, not the method section
or the variant table. The summaries give (unverified against the paper's own text):

- four stages with output strides 4, 8, 16, 32; each stage = a patch embedding + L_i HPBs;
- a stem of three 3x3 convolutions, the first with stride 2;
- the Hybrid Perception Block, in this order (LN = LayerNorm):

      f_conv = DWConv(x) + x
      f_ssa  = SSA(LN(f_conv)) + f_conv
      f_lim  = LIM(LN(f_ssa))  + f_ssa
      f_mlp  = MLP(LN(f_lim))  + f_lim

SSA and the (stand-in) LIM are in `mixtok.mixers.s2aformer`. Every other choice is ours:

- stem: ConvBN(3 -> stem_dim, 3x3, stride 2) -> GELU -> ConvBN(3x3) -> GELU -> ConvBN(3x3) -> GELU
  (conv without bias, BatchNorm eps 1e-5, momentum 0.1 in PyTorch terms; `stem_dim` 32). CMT's stem
  (Guo et al. 2022), which the description matches, orders conv -> GELU -> BN; ours is conv -> BN -> GELU.
  BatchNorm state lives in `batch_stats`: apply with `mutable=["batch_stats"]` when `train=True`.
- patch embedding of every stage (stride 2, so the stem's 2 and stage 1's 2 give stride 4): a 2x2
  convolution with stride 2 and a bias, then LayerNorm (eps `norm_epsilon`), as CMT's.
- block: DWConv is depth-wise 3x3 with a bias; all LNs are LayerNorm with bias, eps 1e-6 (PVT v2's);
  the MLP is Linear(C -> mlp_ratio C) -> GELU (exact erf) -> Linear with biases; drop path (timm's,
  linear in depth from 0 to `drop_path_rate`) on the SSA, LIM and MLP branches, not on the DWConv one;
  no layer scale.
- head: global average pool -> LayerNorm (eps `norm_epsilon`) -> dropout -> Linear(num_classes).
- init: trunc-normal(0.02) for every conv / linear kernel, zero biases, BN and LN at identity.
- no parameter depends on the resolution: `image_size` (default None) only checks that the images have it.
- features: `method="features"` gives the stage-4 map [B, H/32, W/32, C4] (before the head's pooling),
  `method="intermediates"` the four stage maps; they are also sown into `intermediates` (`stage0` ...
  `stage3`, `pre_logits`).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mixtok.layers.conv import conv2d, conv_norm_act
from mixtok.layers.drop import DropPath
from mixtok.layers.linear import dense
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.stems import conv_stem
from mixtok.mixers.s2aformer import LocalInteractionModule, StripSelfAttention
from mixtok.models.backbone import Backbone
from mixtok.models.inputs import check_images

__all__ = ["HybridPerceptionBlock", "PAPER", "S2AFormer", "TOTAL_STRIDE"]

PAPER = "S2AFormer: Strip Self-Attention for Efficient Vision Transformer (Xu et al., arXiv 2505.22195, TIP 2025)"
TOTAL_STRIDE = 32  # stem 2, then four stride-2 patch embeddings


class HybridPerceptionBlock(Module):
    """x + DWConv(x), then pre-norm residual SSA, LIM and MLP branches, in the paper's order."""

    dim: int
    num_heads: int = 1
    reduction: int = 1
    qk_ratio: float = 0.25
    mlp_ratio: float = 4.0
    lim_kernel_size: int = 3
    drop_path: float = 0.0
    norm_epsilon: float = 1e-6

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        x = x + conv2d(self.dim, 3, groups=self.dim, name="local_conv", **common)(x)
        branches = (
            (
                "ssa",
                StripSelfAttention(
                    self.dim,
                    num_heads=self.num_heads,
                    reduction=self.reduction,
                    qk_ratio=self.qk_ratio,
                    name="ssa",
                    **common,
                ),
            ),
            ("lim", LocalInteractionModule(self.dim, kernel_size=self.lim_kernel_size, name="lim", **common)),
            ("mlp", Mlp(mlp_ratio=self.mlp_ratio, activation="gelu", use_bias=True, name="mlp", **common)),
        )
        for label, branch in branches:
            y = LayerNorm(epsilon=self.norm_epsilon, name=f"norm_{label}", **common)(x)
            x = x + DropPath(self.drop_path, name=f"drop_path_{label}")(branch(y, train=train), train=train)
        return x


class S2AFormer(Backbone):
    """Four-stage S2AFormer-layout backbone: `apply(variables, images[B, H, W, 3]) -> logits[B, num_classes]`."""

    dims: Sequence[int] = (64, 128, 320, 512)
    depths: Sequence[int] = (2, 2, 2, 2)
    num_heads: Sequence[int] = (1, 2, 5, 8)
    reductions: Sequence[int] = (8, 4, 2, 1)
    mlp_ratios: Sequence[float] = (4.0, 4.0, 4.0, 4.0)
    qk_ratio: float = 0.25
    stem_dim: int = 32
    lim_kernel_size: int = 3
    norm_epsilon: float = 1e-6
    image_size: int | None = None  # no parameter depends on it; when set, images must have this size

    def _check_config(self) -> None:
        per_stage = dict(
            dims=self.dims,
            depths=self.depths,
            num_heads=self.num_heads,
            reductions=self.reductions,
            mlp_ratios=self.mlp_ratios,
        )
        for field, values in per_stage.items():
            if len(values) != 4:
                raise ValueError(f"S2AFormer has 4 stages; {field} has {len(values)} entries: {tuple(values)}.")
        for dim, heads in zip(self.dims, self.num_heads):
            if heads <= 0 or dim % heads:
                raise ValueError(
                    f"num_heads {tuple(self.num_heads)} must divide dims {tuple(self.dims)} stage by stage."
                )

    def stage_maps(self, images, *, train: bool):
        self._check_config()
        check_images(
            images, TOTAL_STRIDE, "S2AFormer", "stem stride 2 and four stride-2 patch embeddings", self.image_size
        )
        common = self.dtype_kwargs
        x = conv_stem(
            images.astype(self.dtype or images.dtype),
            (self.stem_dim,) * 3,
            strides=(2, 1, 1),
            names=("stem_0", "stem_1", "stem_2"),
            activation="gelu",
            final_activation=True,
            train=train,
            **common,
        )
        drop_rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()
        block_index, stages = 0, []
        for i, (dim, depth) in enumerate(zip(self.dims, self.depths)):
            x = conv_norm_act(
                x,
                dim,
                2,
                stride=2,
                padding=0,
                use_bias=True,
                norm="layernorm",
                norm_epsilon=self.norm_epsilon,
                conv_name=f"patch_embed_{i}",
                norm_name=f"patch_embed_norm_{i}",
                **common,
            )
            for j in range(depth):
                x = HybridPerceptionBlock(
                    dim,
                    num_heads=self.num_heads[i],
                    reduction=self.reductions[i],
                    qk_ratio=self.qk_ratio,
                    mlp_ratio=self.mlp_ratios[i],
                    lim_kernel_size=self.lim_kernel_size,
                    drop_path=drop_rates[block_index],
                    norm_epsilon=self.norm_epsilon,
                    name=f"stage{i}_block{j}",
                    **common,
                )(x, train=train)
                block_index += 1
            self.sow("intermediates", f"stage{i}", x)
            stages.append(x)
        return tuple(stages)

    def classify(self, x, *, train: bool):
        common = self.dtype_kwargs
        x = LayerNorm(epsilon=self.norm_epsilon, name="head_norm", **common)(jnp.mean(x, axis=(1, 2)))
        self.sow("intermediates", "pre_logits", x)
        if self.num_classes <= 0:
            return x
        x = nn.Dropout(self.head_dropout, deterministic=not train)(x)
        logits = dense(self.num_classes, ("embed", None), name="head", **common)(x)
        return logits.astype(jnp.float32)
