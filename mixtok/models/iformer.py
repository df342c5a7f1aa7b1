"""iFormer (Inception Transformer): a four-stage transformer whose token mixer is the Inception mixer.

Paper: "Inception Transformer" (Si et al., NeurIPS 2022). Official code: sail-sg/iFormer @ 725d8e7f,
models/inception_transformer.py (`InceptionTransformer`, `Block`, `FirstPatchEmbed`, `PatchEmbed`). The mixer
is `mixtok.mixers.inception.InceptionMixer`.

    patch_embed:   conv3x3 s2 (3 -> C1/2, bias) - BN - GELU - conv3x3 s2 (-> C1, bias) - BN      (stride 4)
    stage i:       [patch_embed{i}: conv3x3 s2 (bias) - BN, for i > 1]; x + pos_embed{i}; depths[i] Blocks
    Block:         x + dp(ls1 * Mixer(LN(x)));  x + dp(ls2 * Mlp(LN(x)))     (LN eps 1e-6, Mlp 4C, GELU)
    head:          LN - mean over tokens - Linear

- The mixer splits channels per block: attention_heads[j] of the stage's num_heads go to attention, the rest
  to the conv / max-pool branches (the "frequency ramp": the attention share grows with depth).
- The attention runs on 2x2 average-pooled tokens in stages 1-2 (pool_size 2) and on all tokens in 3-4.
- Layer scale (init 1e-6) exists only in stages 3-4; stages 1-2 have plain residuals.
- Absolute position embeddings per stage, of shape [1, S, S, C_i] with S = img_size / 4, / 8, / 16, / 32
  (so they are parameters whose count depends on `img_size`); another feature-map size interpolates them
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
- Dropout inside the Mlp (`drop_rate`) and on the attention weights (`attn_drop_rate`) are kept, default 0.
Stage outputs are sown into `intermediates` as `stage1` ... `stage4` and `pre_logits`.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.conv_bn import batch_norm
from mixtok.layers.drop import DropPath
from mixtok.layers.mlp import Mlp
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import (DEFAULT_KERNEL_INIT, conv_kernel_init, dense_kernel_init, param_with_axes,
                                        zeros_with_axes)
from mixtok.mixers.inception import InceptionMixer
from mixtok.models.inputs import check_images

LN_EPSILON = 1e-6
IMAGE_STRIDE = 16  # stages 1-2 (strides 4, 8) pool their attention tokens by 2
POOL_SIZES = (2, 2, 1, 1)
LAYER_SCALE_STAGES = (False, False, True, True)


def _conv_with_bias(x, features, stride, name, dtype, param_dtype):
    return nn.Conv(features, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)), dtype=dtype,
                   param_dtype=param_dtype, kernel_init=conv_kernel_init(), bias_init=zeros_with_axes(("conv_out",)),
                   name=name)(x)


class IFormerBlock(nn.Module):
    """Pre-norm transformer block with the Inception mixer and optional layer scale."""

    num_heads: int
    attention_heads: int
    pool_size: int
    mlp_ratio: float = 4.0
    use_layer_scale: bool = False
    layer_scale_init_value: float = 1e-6
    drop_path: float = 0.0
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        dim = x.shape[-1]
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        drop_path = DropPath(self.drop_path)
        y = InceptionMixer(dim, self.num_heads, self.attention_heads, self.pool_size, self.attn_drop_rate,
                           name="attn", **common)(LayerNorm(LN_EPSILON, name="norm1", **common)(x), train=train)
        if self.use_layer_scale:
            init = param_with_axes(jax.nn.initializers.constant(self.layer_scale_init_value), ("embed",))
            y = y * self.param("layer_scale_1", init, (dim,), self.param_dtype)
        x = x + drop_path(y, train=train)
        y = Mlp(self.mlp_ratio, "gelu", use_bias=True, dropout=self.drop_rate, name="mlp", **common)(
            LayerNorm(LN_EPSILON, name="norm2", **common)(x), train=train)
        if self.use_layer_scale:
            init = param_with_axes(jax.nn.initializers.constant(self.layer_scale_init_value), ("embed",))
            y = y * self.param("layer_scale_2", init, (dim,), self.param_dtype)
        return x + drop_path(y, train=train)


def interpolate_pos_embed(pos_embed: jax.Array, height: int, width: int) -> jax.Array:
    """[1, S, S, C] -> [1, height, width, C] as PyTorch's bilinear F.interpolate (align_corners=False)."""
    if pos_embed.shape[1:3] == (height, width):
        return pos_embed
    shape = (pos_embed.shape[0], height, width, pos_embed.shape[3])
    return jax.image.resize(pos_embed, shape, method="bilinear", antialias=False)


class IFormer(nn.Module):
    """Inception Transformer: 4 stages of Inception-mixer blocks with per-stage position embeddings."""

    depths: Sequence[int] = (3, 3, 9, 3)
    embed_dims: Sequence[int] = (96, 192, 320, 384)
    num_heads: Sequence[int] = (3, 6, 10, 12)
    attention_heads: Sequence[int] = (1,) * 3 + (3,) * 3 + (7,) * 4 + (9,) * 5 + (11,) * 3  # one per block
    img_size: int = 224  # sets the position embeddings' size
    num_classes: int = 1000
    mlp_ratio: float = 4.0
    layer_scale_init_value: float = 1e-6
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    def _check_config(self):
        if not (len(self.depths) == len(self.embed_dims) == len(self.num_heads) == 4):
            raise ValueError(f"IFormer has 4 stages; got depths {tuple(self.depths)}, embed_dims "
                             f"{tuple(self.embed_dims)}, num_heads {tuple(self.num_heads)}.")
        if len(self.attention_heads) != sum(self.depths):
            raise ValueError(f"IFormer: attention_heads needs one entry per block ({sum(self.depths)} for depths "
                             f"{tuple(self.depths)}); got {len(self.attention_heads)}.")
        if self.img_size % 32:
            raise ValueError(f"IFormer: img_size={self.img_size} must be a multiple of 32 (position embeddings of "
                             f"img_size / 4 ... img_size / 32).")

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self._check_config()
        check_images(x, IMAGE_STRIDE, "IFormer", "stages 1-2 pool their attention tokens by 2")
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        total = sum(self.depths)
        rates = [self.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        x = x.astype(self.dtype or x.dtype)
        block_index = 0
        for stage, (depth, dim, heads) in enumerate(zip(self.depths, self.embed_dims, self.num_heads)):
            if stage == 0:
                x = _conv_with_bias(x, dim // 2, 2, "patch_embed_proj1", **common)
                x = batch_norm("patch_embed_norm1", train=train, **common)(x)
                x = jax.nn.gelu(x, approximate=False)
                x = _conv_with_bias(x, dim, 2, "patch_embed_proj2", **common)
                x = batch_norm("patch_embed_norm2", train=train, **common)(x)
            else:
                x = _conv_with_bias(x, dim, 2, f"patch_embed{stage + 1}_proj", **common)
                x = batch_norm(f"patch_embed{stage + 1}_norm", train=train, **common)(x)
            side = self.img_size // (4 * 2 ** stage)
            pos_embed = self.param(f"pos_embed{stage + 1}", param_with_axes(DEFAULT_KERNEL_INIT, (None, None, None,
                                                                                                   "embed")),
                                   (1, side, side, dim), self.param_dtype)
            x = x + interpolate_pos_embed(pos_embed, x.shape[1], x.shape[2]).astype(x.dtype)
            for j in range(depth):
                x = IFormerBlock(heads, self.attention_heads[block_index], POOL_SIZES[stage], self.mlp_ratio,
                                 LAYER_SCALE_STAGES[stage], self.layer_scale_init_value, rates[block_index],
                                 self.drop_rate, self.attn_drop_rate, name=f"blocks{stage + 1}_{j}", **common)(
                                     x, train=train)
                block_index += 1
            self.sow("intermediates", f"stage{stage + 1}", x)
        x = LayerNorm(LN_EPSILON, name="norm", **common)(x)
        x = jnp.mean(x, axis=(1, 2))
        self.sow("intermediates", "pre_logits", x)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                        kernel_init=dense_kernel_init(("embed", None)), bias_init=zeros_with_axes((None,)),
                        name="head")(x)
