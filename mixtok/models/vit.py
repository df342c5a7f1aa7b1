"""ViT and DeiT: the plain isotropic vision transformer, with token merging and pruning (`mixtok.reduction`).

Papers: "An Image is Worth 16x16 Words" (Dosovitskiy et al., ICLR 2021) and "Training data-efficient image
transformers & distillation through attention" (Touvron et al., ICML 2021). Parameter names, layout and
initialisation follow timm's port, timm/models/vision_transformer.py (timm 1.0.31: `VisionTransformer`,
`Block`, `Attention`) and timm/models/deit.py (`VisionTransformerDistilled`), whose weights
(`deit_small_patch16_224.fb_in1k`, `vit_base_patch16_224.augreg2_in21k_ft_in1k` ...) `mixtok.interop.timm`
converts; the DeiT models are those of facebookresearch/deit (models.py, which builds them on timm).

    patch embed: conv p x p stride p (bias)              `patch_embed.proj`
    tokens:      [class token, (distillation token,) patches] + position embedding -> dropout
    block (x depth): x = x + drop_path(attn(norm1(x)))   `blocks.i.norm1`, `attn.qkv`, `attn.proj`
                     [token reduction, where the rule acts: between attention and MLP]
                     x = x + drop_path(mlp(norm2(x)))    `blocks.i.norm2`, `mlp.fc1`, `mlp.fc2` (GELU, erf)
    head:        norm -> class token (global_pool "token") or the mean of the other tokens ("avg")
                 -> [dropout] -> Linear `head`; distilled: `head` on the class token and `head_dist` on the
                 distillation token, averaged (timm's eval output; `VisionTransformerDistilled`)

LayerNorm eps 1e-6; attention with a fused qkv Linear (bias), head width dim / num_heads, scale
head_width ** -0.5, through `mixtok.layers.attention` (`jax.nn.dot_product_attention` unless a reduction
rule needs the attention probabilities, then the explicit softmax form). The position embedding covers the
prefix tokens too (timm's `no_embed_class=False`). Initialisation (timm's `init_weights` "" mode): Linear
weights trunc-normal(0.02), biases zero; position embedding trunc-normal(0.02); class and distillation
tokens normal(1e-6) (timm: `nn.init.normal_(self.cls_token, std=1e-6)`); patch conv trunc-normal(0.02) as
the zoo's convs (timm: lecun-normal of its fan-in, a training-from-scratch detail only).

Training: the distilled variants return the average of the two heads in training too; DeiT's hard
distillation loss against a teacher (facebookresearch/deit losses.py `DistillationLoss`) is not part of
the trainer.

Parity with timm (measured 2026-12-07, timm 1.0.31, torch 2.14 CPU, JAX 0.10.2; every timm weight randomised
as in tests/interop/test_timm.py, two N(0, 1) 224-px images): converted weights give timm's logits to 3.0e-6
(deit_small_patch16_224, logit std 1.09) and 1.7e-6 (deit_tiny_distilled_patch16_224). The suite checks a tiny
timm DeiT and its distilled form to 1e-5 (tests/reduction/test_tome.py, the fixtures' unreduced logits).

`features` and `intermediates` are token sequences [B, L, C] (prefix tokens first), timm's
`forward_features`, not NHWC maps: after a token reduction there is no grid. `tokens_to_grid` turns the
patch tokens of an unreduced sequence back into [B, h, w, C].

Token reduction: `token_reduction=TokenReduction(...)` (`mixtok.reduction`) applies a rule at the layers
its schedule names, where the rule acts (`Rule.place`), with proportional attention (log of the token sizes
added to the attention logits) after the first reduction when `prop_attn`; the token counts are static
(`mixtok.reduction.token_counts`). `return_sources=True` with `mutable=["reduction"]` sows each reducing
layer's transform as ("reduction", "transform_<layer>") for `unmerge` / `compose`.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.attention import MultiHeadAttention, softmax_weights
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import classifier
from mixtok.layers.init import TRUNC_NORMAL_INIT
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.layers.stems import PatchEmbed
from mixtok.models.backbone import Backbone, PerStage, per_stage, stage_drop_path_rates
from mixtok.models.inputs import check_images
from mixtok.reduction.base import Signals, TokenReduction, apply_rule, token_counts

NORM_EPSILON = 1e-6
PREFIX_TOKEN_INIT = jax.nn.initializers.normal(1e-6)
GLOBAL_POOLS = ("token", "avg")


class ViTAttention(MultiHeadAttention):
    """timm's ViT `Attention` (fused qkv, projection), also handing out what reduction rules read.

    Returns (output [B, N, C] or None, keys [B, N, heads, d], probabilities [B, heads, N, N] or None):
    `probabilities=True` computes the attention in the explicit softmax form and returns its weights (the
    rules that read attention need them); `weights` [B, heads, N, N] are used instead of computing any
    (MCTF's one-step-ahead attention); `signals_only` stops after the weights (no values, no output).
    """

    @nn.compact
    def __call__(self, x, *, bias=None, probabilities=False, weights=None, signals_only=False, train=False):
        q, k, v = self.project_qkv(x)
        if signals_only:
            return None, k, self.weights(q, k, bias, train=False)
        probs = None
        if weights is not None:
            probs = weights
            if train and self.attn_dropout > 0.0:
                keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - self.attn_dropout, probs.shape)
                probs = jnp.where(keep, probs / np.float32(1.0 - self.attn_dropout), 0.0)
            out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
        elif probabilities:
            probs = self.weights(q, k, bias, train=train)
            out = jnp.einsum("bhqk,bkhd->bqhd", probs.astype(v.dtype), v)
        else:
            out = self.attend(q, k, v, bias=bias, train=train)
        return self.project_out(out, train=train), k, probs

    @nn.nowrap
    def weights(self, q, k, bias, *, train: bool):
        """Attention probabilities [B, heads, N, N] in float32, as the reference form computes them."""
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        logits = logits * np.float32(q.shape[-1] ** -0.5)
        rng = self.make_rng("dropout") if train and self.attn_dropout > 0.0 else None
        return softmax_weights(logits, bias=bias, dropout_rate=self.attn_dropout, dropout_rng=rng)


class ViTBlock(Module):
    """Pre-norm transformer block; with a reduction, the rule runs where its `place` says."""

    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0
    attention_implementation: str | None = None
    reduction: TokenReduction | None = None
    layer: int = 0
    num_out: int | None = None  # tokens after this block's reduction (static); None: no reduction here
    num_protected: int = 1
    return_sources: bool = False

    @nn.compact
    def __call__(self, x, sizes, *, train: bool = False):
        common = self.dtype_kwargs
        norm1 = LayerNorm(epsilon=NORM_EPSILON, name="norm1", **common)
        attn = ViTAttention(
            x.shape[-1],
            num_heads=self.num_heads,
            qkv_bias=self.qkv_bias,
            attn_dropout=self.attn_dropout,
            proj_dropout=self.dropout,
            attention_implementation=self.attention_implementation,
            name="attn",
            **common,
        )
        active = self.num_out is not None and self.num_out < x.shape[1]
        rule = self.reduction.spec if active else None
        wants_probs = active and bool(set(rule.signals) & {"cls_attention", "attention"})
        weights = None
        if active and rule.place == "before_attention":
            _, k, probs = attn(norm1(x), bias=self._size_bias(sizes), signals_only=True)
            reduced = self._reduce(x, sizes, k, probs)
            x, sizes, weights = reduced.tokens, reduced.sizes, reduced.attention
        after = active and rule.place == "after_attention"
        at_end = active and rule.place == "after_block"
        out, k, probs = attn(
            norm1(x),
            bias=self._size_bias(sizes),
            probabilities=(after or at_end) and wants_probs,
            weights=weights,
            train=train,
        )
        x = x + DropPath(self.drop_path)(out, train=train)
        if after:
            reduced = self._reduce(x, sizes, k, probs)
            x, sizes = reduced.tokens, reduced.sizes
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm2", **common)(x)
        y = Mlp(self.mlp_ratio, activation="gelu", use_bias=True, dropout=self.dropout, name="mlp", **common)(
            y, train=train
        )
        x = x + DropPath(self.drop_path)(y, train=train)
        if at_end:
            reduced = self._reduce(x, sizes, k, probs)
            x, sizes = reduced.tokens, reduced.sizes
        return x, sizes

    @nn.nowrap
    def _size_bias(self, sizes):
        """Proportional attention: log(size) on every key's logit, once sizes exist (after a reduction)."""
        if sizes is None or self.reduction is None or not self.reduction.proportional:
            return None
        return jnp.log(sizes)[:, None, None, :]

    @nn.nowrap
    def _reduce(self, x, sizes, k, probs):
        needs = set(self.reduction.spec.signals)
        signals = Signals(
            keys=jnp.mean(k, axis=2) if "keys" in needs else None,
            cls_attention=jnp.mean(probs[:, :, 0, :], axis=1) if "cls_attention" in needs else None,
            attention=probs if "attention" in needs else None,
        )
        if sizes is None:
            sizes = jnp.ones(x.shape[:2], jnp.float32)
        reduced = apply_rule(
            self.reduction, x, sizes, signals, num_out=self.num_out, num_protected=self.num_protected, layer=self.layer
        )
        if self.return_sources and not self.is_initializing():  # init returns parameters only
            self.sow("reduction", f"transform_{self.layer}", reduced.transform)
        return reduced


class VisionTransformer(Backbone):
    """ViT / DeiT: `apply(variables, images[B, H, W, 3]) -> logits[B, num_classes]` (float32)."""

    depths: Sequence[int] = (12,)
    dims: Sequence[int] = (768,)
    num_heads: int = 12
    patch_size: int = 16
    image_size: int = 224  # the grid the position embedding is shaped for; images must have this size
    mlp_ratios: PerStage = 4.0
    qkv_bias: bool = True
    class_token: bool = True
    distilled: bool = False  # DeiT's distillation token and second head
    global_pool: str = "token"  # "token": the class token; "avg": the mean of the non-prefix tokens
    num_classes: int = 1000
    dropout: float = 0.0  # after the position embedding, after attention's projection and in every MLP
    attn_dropout: float = 0.0
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    attention_implementation: str | None = None
    token_reduction: TokenReduction | str | None = None  # a TokenReduction, its one-line form ("tome:r=8"), "" none
    return_sources: bool = False

    @property
    def reduction_schedule(self) -> TokenReduction | None:
        """`token_reduction` as a TokenReduction (a string is parsed by `TokenReduction.parse`)."""
        if isinstance(self.token_reduction, str):
            if not self.token_reduction.strip():
                return None  # configs spell "no reduction" as the empty string
            return TokenReduction.parse(self.token_reduction, self.depths[0])
        return self.token_reduction

    @property
    def num_prefix_tokens(self) -> int:
        return int(self.class_token) + int(self.distilled)

    @property
    def grid(self) -> tuple[int, int]:
        return self.image_size // self.patch_size, self.image_size // self.patch_size

    def token_counts(self) -> tuple[int, ...]:
        """Tokens after each block (static): the schedule of `token_reduction` on this model's sequence."""
        h, w = self.grid
        return token_counts(
            self.reduction_schedule, h * w + self.num_prefix_tokens, self.num_prefix_tokens, self.depths[0]
        )

    @nn.nowrap
    def embed(self, images, *, train: bool):
        """Checked images [B, H, W, 3] -> the first block's tokens [B, prefix + h * w, C]: patch embedding, the
        class (and distillation) token, the position embedding, dropout. Called inside the compact `forward`."""
        self._check_arguments()
        name = type(self).__name__
        check_images(images, self.patch_size, name, f"patch size {self.patch_size}")
        if tuple(images.shape[1:3]) != (self.image_size, self.image_size):
            raise ValueError(
                f"{name} was built for {self.image_size}x{self.image_size} images (image_size="
                f"{self.image_size}, its position embedding has a {self.grid[0]}x{self.grid[1]} grid) but got "
                f"{images.shape[1]}x{images.shape[2]} images; build the model with image_size={images.shape[1]} "
                f"(the importer resamples a pretrained position embedding)."
            )
        common = self.dtype_kwargs
        dim = self.dims[0]
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = PatchEmbed(dim, self.patch_size, self.patch_size, padding=0, norm=None, name="patch_embed", **common)(x)
        x = x.reshape(x.shape[0], -1, dim)
        prefix = []
        for token_name, present in (("cls_token", self.class_token), ("dist_token", self.distilled)):
            if present:
                token = self.param(token_name, param_with_axes(PREFIX_TOKEN_INIT, (None, None, "embed")), (1, 1, dim))
                prefix.append(jnp.broadcast_to(token.astype(x.dtype), (x.shape[0], 1, dim)))
        x = jnp.concatenate(prefix + [x], axis=1)
        pos = self.param(
            "pos_embed",
            param_with_axes(TRUNC_NORMAL_INIT, (None, None, "embed")),
            (1, x.shape[1], dim),
            self.param_dtype,
        )
        return nn.Dropout(self.dropout, deterministic=not train)(x + pos.astype(x.dtype))

    def stage_maps(self, images, *, train: bool):
        (mlp_ratio,) = per_stage(self.mlp_ratios, 1, "mlp_ratios")
        common = self.dtype_kwargs
        x = self.embed(images, train=train)
        counts = self.token_counts()
        sizes, maps, n = None, [], x.shape[1]
        for i, rate in enumerate(stage_drop_path_rates(self.drop_path_rate, self.depths)[0]):
            x, sizes = ViTBlock(
                num_heads=self.num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=self.qkv_bias,
                dropout=self.dropout,
                attn_dropout=self.attn_dropout,
                drop_path=rate,
                attention_implementation=self.attention_implementation,
                reduction=self.reduction_schedule,
                layer=i,
                num_out=counts[i] if counts[i] < n else None,
                num_protected=self.num_prefix_tokens,
                return_sources=self.return_sources,
                name=f"blocks_{i}",
                **common,
            )(x, sizes, train=train)
            n = counts[i]
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        common = self.dtype_kwargs
        x = LayerNorm(epsilon=NORM_EPSILON, name="norm", **common)(features)
        prefix = self.num_prefix_tokens
        if self.distilled:
            pooled = (x[:, 0], x[:, 1])
        elif self.global_pool == "avg":
            pooled = (jnp.mean(x[:, prefix:], axis=1),)
        else:
            pooled = (x[:, 0],)
        self.sow("intermediates", "pre_logits", pooled[0])
        if self.num_classes <= 0:
            return pooled[0]
        logits = []
        for name, p in zip(("head", "head_dist"), pooled, strict=False):
            p = nn.Dropout(self.head_dropout, deterministic=not train)(p)
            logits.append(classifier(self.num_classes, name=name, **common)(p).astype(jnp.float32))
        return sum(logits) / len(logits)

    def _check_arguments(self):
        name = type(self).__name__
        if len(self.depths) != 1 or len(self.dims) != 1:
            raise ValueError(
                f"{name} is isotropic (one stage): give depths=(depth,) and dims=(width,); got depths "
                f"{tuple(self.depths)} and dims {tuple(self.dims)}."
            )
        if self.dims[0] % self.num_heads:
            raise ValueError(f"{name}: dims[0] {self.dims[0]} must be a multiple of num_heads {self.num_heads}.")
        if self.global_pool not in GLOBAL_POOLS:
            raise ValueError(f"{name}: global_pool {self.global_pool!r} is not one of {GLOBAL_POOLS}.")
        if self.global_pool == "token" and not self.class_token:
            raise ValueError(f"{name}: global_pool 'token' needs class_token=True; use global_pool='avg'.")
        if self.distilled and not self.class_token:
            raise ValueError(f"{name}: a distilled model needs its class token (class_token=True).")
        if self.image_size % self.patch_size:
            raise ValueError(f"{name}: image_size {self.image_size} is not a multiple of patch_size {self.patch_size}.")
        if self.token_reduction is not None and not isinstance(self.token_reduction, TokenReduction | str):
            raise ValueError(
                f"{name}: token_reduction must be a mixtok.reduction.TokenReduction, its one-line form "
                f"('tome:r=8') or None; got {type(self.token_reduction).__name__}."
            )


def tokens_to_grid(tokens: jax.Array, grid: tuple[int, int], num_prefix_tokens: int) -> jax.Array:
    """[B, prefix + h * w, C] tokens of an unreduced sequence -> the patch tokens as [B, h, w, C]."""
    patches = tokens[:, num_prefix_tokens:]
    if patches.shape[1] != grid[0] * grid[1]:
        raise ValueError(
            f"{patches.shape[1]} patch tokens do not fill a {grid[0]}x{grid[1]} grid (a reduced sequence has no "
            f"grid: `mixtok.reduction.unmerge` the tokens back first)."
        )
    return patches.reshape(tokens.shape[0], grid[0], grid[1], tokens.shape[-1])
