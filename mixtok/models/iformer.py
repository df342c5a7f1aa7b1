"""iFormer (Inception Transformer): a four-stage transformer whose token mixer is the Inception mixer.

Paper: "Inception Transformer" (Si et al., NeurIPS 2022). Official code: sail-sg/iFormer @ 725d8e7f,
models/inception_transformer.py (`InceptionTransformer`, `Block`, `FirstPatchEmbed`, `PatchEmbed`). The mixer
is `mixtok.mixers.inception.InceptionMixer`. This is that repository's architecture, not the mobile "iFormer"
of ChuanyangZheng/iFormer (a different model with the same name). Official checkpoints load with
`mixtok.interop.iformer`; with every weight and BatchNorm statistic random, iformer_s and iformer_b give the
official logits within 1.8e-6 (5.8e-7 of the largest logit) at 224 and 384 px, and with resized position
embeddings (figures and procedure in that module's docstring).

    patch_embed:   conv3x3 s2 (3 -> C1/2, bias) - BN - GELU - conv3x3 s2 (-> C1, bias) - BN      (stride 4)
    stage i:       [patch_embed{i}: conv3x3 s2 (bias) - BN, for i > 1]; x + pos_embed{i}; depths[i] Blocks
    Block:         x + dp(ls1 * Mixer(LN(x)));  x + dp(ls2 * Mlp(LN(x)))     (LN eps 1e-6, Mlp 4C, GELU)
    head:          LN - mean over tokens - Linear

- The mixer splits channels per block: attention_heads[j] of the stage's num_heads go to attention, the rest
  to the conv / max-pool branches (the "frequency ramp": the attention share grows with depth).
- The attention runs on 2x2 average-pooled tokens in stages 1-2 (pool_size 2) and on all tokens in 3-4.
- Layer scale (init 1e-6) exists only in stages 3-4; stages 1-2 have plain residuals.
- Absolute position embeddings per stage, of shape [1, S, S, C_i] with S = image_size / 4, / 8, / 16, / 32
  (so they are parameters whose count depends on `image_size`); another feature-map size interpolates them
  bilinearly (PyTorch `F.interpolate(mode="bilinear")`, align_corners False, no antialiasing).
- Drop path rises linearly from 0 to `drop_path_rate` over all blocks.
- Init as the official `_init_vit_weights` applied by `self.apply` (which passes no module names, so the
  head is initialised like every Linear): convs and linears trunc-normal(0.02) with zero biases, norms 1 / 0,
  position embeddings trunc-normal(0.02).

Differences from the official code:
- NHWC throughout; parameter names follow the official module paths with `_` for `.` (`blocks3_2/attn/proj`
  for `blocks3.2.attn.proj`; BatchNorm and LayerNorm `scale`/`bias` for `weight`/`bias`).
- BatchNorm (stem and downsampling layers, eps 1e-5, momentum 0.1) keeps running statistics in `batch_stats`;
  under a sharded `jit` its batch statistics are those of the global batch, and flax's running variance uses the
  biased batch variance where PyTorch uses the unbiased one (factor N / (N - 1)).
- The official LowMixer only runs on square maps; here any image whose sides are multiples of 16 runs (stages
  1-2 pool by 2). The official model also requires those multiples.
- Dropout inside the Mlp (`dropout`, the official `drop_rate`) and on the attention weights (`attn_dropout`,
  the official `attn_drop_rate`) are kept, default 0; `head_dropout` (dropout before the classifier, default
  0) is a mixtok addition shared by every backbone.
- Arguments use the backbones' shared names: `dims` (official `embed_dims`), `image_size` (`img_size`),
  `mlp_ratios` per stage (official: one `mlp_ratio` for all).
Features: `method="features"` gives the stage-4 map [B, H/32, W/32, C4] (before the head's LayerNorm),
`method="intermediates"` the four stage maps. Stage outputs are also sown into `intermediates` as `stage1` ...
`stage4` and `pre_logits`.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.conv import conv_norm_act
from mixtok.layers.drop import DropPath
from mixtok.layers.init import DEFAULT_KERNEL_INIT
from mixtok.layers.linear import dense
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.layers.stems import resize_pos_embed
from mixtok.mixers.inception import InceptionMixer
from mixtok.models.backbone import Backbone
from mixtok.models.inputs import check_images

LN_EPSILON = 1e-6
IMAGE_STRIDE = 16  # stages 1-2 (strides 4, 8) pool their attention tokens by 2
POOL_SIZES = (2, 2, 1, 1)
LAYER_SCALE_STAGES = (False, False, True, True)


class IFormerBlock(Module):
    """Pre-norm transformer block with the Inception mixer and optional layer scale."""

    num_heads: int
    attention_heads: int
    pool_size: int
    mlp_ratio: float = 4.0
    use_layer_scale: bool = False
    layer_scale_init: float = 1e-6
    drop_path: float = 0.0
    dropout: float = 0.0
    attn_dropout: float = 0.0

    def _layer_scale(self, y, name: str):
        if not self.use_layer_scale:
            return y
        init = param_with_axes(jax.nn.initializers.constant(self.layer_scale_init), ("embed",))
        return y * self.param(name, init, (y.shape[-1],), self.param_dtype)

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        drop_path = DropPath(self.drop_path)
        y = InceptionMixer(
            x.shape[-1], self.num_heads, self.attention_heads, self.pool_size, self.attn_dropout, name="attn", **common
        )(LayerNorm(LN_EPSILON, name="norm1", **common)(x), train=train)
        x = x + drop_path(self._layer_scale(y, "layer_scale_1"), train=train)
        y = Mlp(self.mlp_ratio, "gelu", use_bias=True, dropout=self.dropout, name="mlp", **common)(
            LayerNorm(LN_EPSILON, name="norm2", **common)(x), train=train
        )
        return x + drop_path(self._layer_scale(y, "layer_scale_2"), train=train)


class IFormer(Backbone):
    """Inception Transformer: 4 stages of Inception-mixer blocks with per-stage position embeddings."""

    depths: Sequence[int] = (3, 3, 9, 3)
    dims: Sequence[int] = (96, 192, 320, 384)
    num_heads: Sequence[int] = (3, 6, 10, 12)
    attention_heads: Sequence[int] = (1,) * 3 + (3,) * 3 + (7,) * 4 + (9,) * 5 + (11,) * 3  # one per block
    image_size: int = 224  # sets the position embeddings' size
    mlp_ratios: Sequence[float] = (4.0, 4.0, 4.0, 4.0)
    layer_scale_init: float = 1e-6
    dropout: float = 0.0
    attn_dropout: float = 0.0

    def _check_config(self):
        if not (len(self.depths) == len(self.dims) == len(self.num_heads) == len(self.mlp_ratios) == 4):
            raise ValueError(
                f"IFormer has 4 stages; got depths {tuple(self.depths)}, dims {tuple(self.dims)}, "
                f"num_heads {tuple(self.num_heads)}, mlp_ratios {tuple(self.mlp_ratios)}."
            )
        if len(self.attention_heads) != sum(self.depths):
            raise ValueError(
                f"IFormer: attention_heads needs one entry per block ({sum(self.depths)} for depths "
                f"{tuple(self.depths)}); got {len(self.attention_heads)}."
            )
        if self.image_size % 32:
            raise ValueError(
                f"IFormer: image_size={self.image_size} must be a multiple of 32 (position embeddings "
                f"of image_size / 4 ... image_size / 32)."
            )

    def _downsample(self, x, stage: int, dim: int, train: bool):
        """The stage's patch embedding: the official two-conv stem (stride 4) or one conv3x3 s2 - BN."""
        conv = dict(use_bias=True, train=train, **self.dtype_kwargs)
        if stage > 0:
            return conv_norm_act(
                x,
                dim,
                3,
                stride=2,
                conv_name=f"patch_embed{stage + 1}_proj",
                norm_name=f"patch_embed{stage + 1}_norm",
                **conv,
            )
        x = conv_norm_act(
            x,
            dim // 2,
            3,
            stride=2,
            activation="gelu",
            conv_name="patch_embed_proj1",
            norm_name="patch_embed_norm1",
            **conv,
        )
        return conv_norm_act(x, dim, 3, stride=2, conv_name="patch_embed_proj2", norm_name="patch_embed_norm2", **conv)

    def stage_maps(self, x, *, train: bool):
        self._check_config()
        check_images(x, IMAGE_STRIDE, "IFormer", "stages 1-2 pool their attention tokens by 2")
        common = self.dtype_kwargs
        total = sum(self.depths)
        rates = [self.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        x = x.astype(self.dtype or x.dtype)
        block_index, stages = 0, []
        for stage, (depth, dim, heads) in enumerate(zip(self.depths, self.dims, self.num_heads)):
            x = self._downsample(x, stage, dim, train)
            side = self.image_size // (4 * 2**stage)
            pos_embed = self.param(
                f"pos_embed{stage + 1}",
                param_with_axes(DEFAULT_KERNEL_INIT, (None, None, None, "embed")),
                (1, side, side, dim),
                self.param_dtype,
            )
            x = x + resize_pos_embed(pos_embed, x.shape[1], x.shape[2]).astype(x.dtype)
            for j in range(depth):
                x = IFormerBlock(
                    heads,
                    self.attention_heads[block_index],
                    POOL_SIZES[stage],
                    self.mlp_ratios[stage],
                    LAYER_SCALE_STAGES[stage],
                    self.layer_scale_init,
                    rates[block_index],
                    self.dropout,
                    self.attn_dropout,
                    name=f"blocks{stage + 1}_{j}",
                    **common,
                )(x, train=train)
                block_index += 1
            self.sow("intermediates", f"stage{stage + 1}", x)
            stages.append(x)
        return tuple(stages)

    def classify(self, x, *, train: bool):
        common = self.dtype_kwargs
        x = jnp.mean(LayerNorm(LN_EPSILON, name="norm", **common)(x), axis=(1, 2))
        self.sow("intermediates", "pre_logits", x)
        x = nn.Dropout(self.head_dropout, deterministic=not train)(x)
        return dense(self.num_classes, ("embed", None), name="head", **common)(x)
