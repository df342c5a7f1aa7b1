"""PoNet models: the LRA sequence classifier of the official code, and a small isotropic grid model for images.

Paper: "PoNet: Pooling Network for Efficient Token Mixing in Long Sequences" (Tan et al., ICLR 2022, arXiv
2110.02442). Official LRA code: lxchtan/PoNet @ cc9a29a3, examples/LRA/code/model.py (`Embeddings`,
`Transformer`, `Model`), model_wrapper.py (`ModelForSC`, `SCHead`, `pooling`, `append_cls`), attention.py and
attention_ponet.py (the mixer: `mixtok.mixers.PoolingNetwork`). `PoNetForSequenceClassification` is
`ModelForSC` layer for layer, on token ids [B, L] (int):

    mask = (tokens != 0)                                    (examples/LRA/code/dataset.py: input_ids != 0)
    [pooling "cls": tokens = [vocab_size - 1, tokens[:-1]], mask likewise with a 1]        append_cls
    x = word_embeddings(tokens) + position_embeddings[:L]   -> dropout    (both N(0, 0.02), max_seq_len rows)
    block (x depth): x = dropout(ff(PoNet(LN(x), mask))) + x;  x = MLP(LN(x)) + x           PRE-LN, as model.py
        MLP: Linear(C -> hidden) -> GELU -> dropout -> Linear(-> C) -> dropout
    x = LN(x) * mask;  pooled = mean over all L positions ("mean", the padded ones as zeros) or x[:, 0] ("cls")
    logits = Linear(hidden -> classes)(ReLU(Linear(C -> hidden)(pooled)))                     SCHead

LayerNorms eps 1e-5 (PyTorch's default), GELU exact (erf). The official LRA hyperparameters
(examples/LRA/code/lra_config.py, the same model for every task): dim 64, hidden 128, 2 heads of 32, depth 2,
dropout 0.1, mean pooling, untied layers; per task vocab_size, max_seq_len (rounded up to a power of two by
run_tasks.py: 2000 -> 2048, 4000 -> 4096), segment_num, num_classes (see ponet_variants.py). Attention dropout
is in the config but PoNet has no attention matrix to drop. `drop_path_rate` and `head_dropout` are mixtok
additions, off by default. The LRA Retrieval task's dual-encoder model (`ModelForSCDual`) is not built.
Parameter names follow the official (`embeddings/word_embeddings`, `transformer_{i}/norm1|mha|norm2|mlpblock`,
`norm`, `seq_classifer_mlpblock_0|_2`); initialisation follows mixtok's Linear (trunc-normal 0.02).

Parity with the official code: `ModelForSC` of lxchtan/PoNet @ cc9a29a3 built on the CPU (torch 2.14, float32,
eval mode) with the ListOps, Text and Image configs of lra_config.py and with ListOps at pooling "CLS", every
parameter drawn at random, 3 sequences of lengths 97 to 700 with padded tails (ids 0), converted by
`mixtok.interop.ponet.convert`: the largest |difference| of the logits over 3 seeds and the 4 configurations is
5.7e-5, for logits up to 42 in magnitude (`PYTHONPATH=. python tools/make_ponet_fixtures.py --official-repo PoNet
--parity --seeds 3`, 2026-12-07; mean pooling at most 1.1e-5). The official parameter counts are equal
(ponet_variants.LRA_OFFICIAL_PARAMS).

`PoNetViT` (mixtok's, no official image model exists): a ViT-style isotropic model with the grid form of the
mixer (rows as segments, a square local window) in place of attention: patch embed (conv, bias) -> learned
position embedding (resized for other grids) -> pre-LN blocks as above (the LRA block, GELU MLP, LayerNorm eps
1e-5) -> mean over tokens -> LayerNorm (eps 1e-6) -> Linear (timm's ViT head with global_pool="avg"). Heads of
32 channels unless `num_heads` says otherwise; any image whose sides are multiples of `patch_size`.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.drop import DropPath
from mixtok.layers.heads import ClassifierHead, classifier
from mixtok.layers.init import TRUNC_NORMAL_INIT
from mixtok.layers.linear import dense
from mixtok.layers.mlp import Mlp
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.layers.stems import PatchEmbed, resize_pos_embed
from mixtok.mixers.pooling_network import PoolingNetwork
from mixtok.models.backbone import Backbone, PerStage, per_stage, stage_drop_path_rates
from mixtok.models.inputs import check_images

TORCH_LN_EPSILON = 1e-5  # nn.LayerNorm's default, used throughout the official LRA model
POOLINGS = ("mean", "cls")
EMBEDDING_INIT = jax.nn.initializers.normal(0.02)  # model.py: torch.nn.init.normal_(std=0.02), not truncated


class PoNetBlock(Module):
    """x + dropout(PoNet(LN(x))), then x + MLP(LN(x)): the official LRA `Transformer` block (pre-LN)."""

    num_heads: int | None = None
    segment_num: int = 64
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    drop_path: float = 0.0
    norm_epsilon: float = TORCH_LN_EPSILON

    @nn.compact
    def __call__(self, x, *, mask=None, train: bool = False):
        common = self.dtype_kwargs
        y = LayerNorm(epsilon=self.norm_epsilon, name="norm1", **common)(x)
        y = PoolingNetwork(
            dim=x.shape[-1], num_heads=self.num_heads, segment_num=self.segment_num, name="mha", **common
        )(y, mask=mask, train=train)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        x = x + DropPath(self.drop_path)(y, train=train)
        y = LayerNorm(epsilon=self.norm_epsilon, name="norm2", **common)(x)
        y = Mlp(self.mlp_ratio, activation="gelu", use_bias=True, dropout=self.dropout, name="mlpblock", **common)(
            y, train=train
        )
        return x + DropPath(self.drop_path)(y, train=train)


class PoNetForSequenceClassification(Module):
    """The official LRA `ModelForSC`: `apply(variables, tokens[B, L] int) -> logits[B, num_classes]` (float32).

    `method="features"` gives the final normalised, masked tokens [B, L, C] (the official `Model`'s output).
    """

    depths: Sequence[int] = (2,)
    dims: Sequence[int] = (64,)
    num_heads: PerStage = 2
    mlp_ratios: PerStage = 2.0
    vocab_size: int = 512
    max_seq_len: int = 4096
    segment_num: int = 64
    pooling: str = "mean"
    padding_id: int = 0
    head_hidden: int | None = None  # None: the blocks' MLP width (the official transformer_hidden_dim)
    num_classes: int = 2
    dropout: float = 0.1
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    image_size: None = None  # a sequence model: no image size (the shared vocabulary's argument, refused if set)

    def _check(self, tokens):
        if len(self.depths) != 1 or len(self.dims) != 1:
            raise ValueError(
                f"PoNetForSequenceClassification is isotropic (one stage): give depths=(depth,) and dims=(width,); "
                f"got depths {tuple(self.depths)} and dims {tuple(self.dims)}."
            )
        if self.image_size is not None:
            raise ValueError(
                f"PoNetForSequenceClassification takes token sequences: image_size must be None, got "
                f"{self.image_size!r}."
            )
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}; got {self.pooling!r}.")
        if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            raise ValueError(
                f"PoNetForSequenceClassification takes integer token ids [B, L]; got {tokens.dtype} {tokens.shape}."
            )
        if tokens.shape[1] > self.max_seq_len:
            raise ValueError(f"Sequence length {tokens.shape[1]} exceeds max_seq_len={self.max_seq_len}.")

    def __call__(self, tokens, *, train: bool = False):
        return self.forward(tokens, train=train, output="logits")

    def features(self, tokens, *, train: bool = False):
        """The final LayerNorm's tokens times the mask, [B, L, C]: the input of the pooling and head."""
        return self.forward(tokens, train=train, output="features")

    @nn.compact
    def forward(self, tokens, *, train: bool = False, output: str = "logits"):
        self._check(tokens)
        common = self.dtype_kwargs
        dim = self.dims[0]
        (num_heads,) = per_stage(self.num_heads, 1, "num_heads")
        (mlp_ratio,) = per_stage(self.mlp_ratios, 1, "mlp_ratios")
        mask = (tokens != self.padding_id).astype(jnp.float32)
        if self.pooling == "cls":  # append_cls: the class token is the vocabulary's last id; the last token goes
            tokens = jnp.concatenate([jnp.full_like(tokens[:, :1], self.vocab_size - 1), tokens[:, :-1]], axis=1)
            mask = jnp.concatenate([jnp.ones_like(mask[:, :1]), mask[:, :-1]], axis=1)
        length = tokens.shape[1]
        words = self.param(
            "word_embeddings",
            param_with_axes(EMBEDDING_INIT, (None, "embed")),
            (self.vocab_size, dim),
            self.param_dtype,
        )
        positions = self.param(
            "position_embeddings",
            param_with_axes(EMBEDDING_INIT, (None, "embed")),
            (self.max_seq_len, dim),
            self.param_dtype,
        )
        x = jnp.take(words, tokens, axis=0) + positions[None, :length]
        x = x.astype(self.dtype) if self.dtype is not None else x
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        for i, rate in enumerate(stage_drop_path_rates(self.drop_path_rate, self.depths)[0]):
            x = PoNetBlock(
                num_heads=num_heads,
                segment_num=self.segment_num,
                mlp_ratio=mlp_ratio,
                dropout=self.dropout,
                drop_path=rate,
                name=f"transformer_{i}",
                **common,
            )(x, mask=mask, train=train)
        x = LayerNorm(epsilon=TORCH_LN_EPSILON, name="norm", **common)(x) * mask[:, :, None].astype(x.dtype)
        if output == "features":
            return x
        pooled = x.mean(axis=1) if self.pooling == "mean" else x[:, 0]
        self.sow("intermediates", "pre_logits", pooled)
        if self.num_classes <= 0:
            return pooled
        pooled = nn.Dropout(self.head_dropout, deterministic=not train)(pooled)
        hidden = self.head_hidden or int(mlp_ratio * dim)
        y = jax.nn.relu(dense(hidden, ("embed", "mlp"), name="seq_classifer_mlpblock_0", **common)(pooled))
        y = classifier(self.num_classes, in_axis="mlp", name="seq_classifer_mlpblock_2", **common)(y)
        return y.astype(jnp.float32)


class PoNetViT(Backbone):
    """Isotropic PoNet on images (mixtok's): `apply(variables, images[B, H, W, 3]) -> logits` (float32)."""

    depths: Sequence[int] = (12,)
    dims: Sequence[int] = (192,)
    num_heads: PerStage = None  # None: dims // 32 (the LRA head width)
    patch_size: int = 16
    image_size: int = 224  # the grid the position embedding is shaped for
    mlp_ratios: PerStage = 4.0
    num_classes: int = 1000
    dropout: float = 0.0
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0

    def stage_maps(self, images, *, train: bool):
        if len(self.depths) != 1 or len(self.dims) != 1:
            raise ValueError(
                f"PoNetViT is isotropic (one stage): give depths=(depth,) and dims=(width,); got depths "
                f"{tuple(self.depths)} and dims {tuple(self.dims)}."
            )
        check_images(images, self.patch_size, "PoNetViT", f"patch size {self.patch_size}")
        (num_heads,) = per_stage(self.num_heads, 1, "num_heads")
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
            x = PoNetBlock(
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                dropout=self.dropout,
                drop_path=rate,
                name=f"blocks_{i}",
                **common,
            )(x, train=train)
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        logits = ClassifierHead(
            self.num_classes, norm_epsilon=1e-6, head_dropout=self.head_dropout, name="head", **self.dtype_kwargs
        )(features, train=train)
        return logits.astype(jnp.float32)
