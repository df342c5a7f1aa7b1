"""CAS-ViT (official name RCViT): a four-stage BatchNorm backbone around the convolutional additive token mixer.

Paper: "CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient Mobile
Applications" (Zhang et al., arXiv 2408.03703). Official code: Tianfang-Zhang/CAS-ViT @ 041d2d68:
classification/model/rcvit.py (`RCViT`, `AdditiveBlock`, `LocalIntegration`, `Mlp`, `Embedding`, `stem`).
The mixer is `mixtok.mixers.cas_vit.AdditiveTokenMixer`.

    stem (patch_embed):  conv3x3 s2 (3 -> C0/2) - BN - ReLU - conv3x3 s2 (-> C0) - BN - ReLU
    network_{2i}_{j}:    AdditiveBlock j of stage i
    network_{2i+1}:      Embedding: conv3x3 s2 (C_i -> C_{i+1}, bias) - BN          (between stages)
    head:                BN (norm) - mean over (H, W) - Linear (head) [+ Linear (dist_head)]

    AdditiveBlock (BatchNorm everywhere, GELU):
        x = x + LocalIntegration(x)       conv1x1 (C -> C) - BN - dwconv3x3 - GELU - conv1x1 (all with bias)
        x = x + drop_path(CATM(BN(x)))
        x = x + drop_path(Mlp(BN(x)))     conv1x1 (C -> 4C) - GELU - conv1x1 (-> C), with bias

Drop path of block j of stage i: drop_path_rate * (j + sum(depths[:i])) / (sum(depths) - 1). `dropout` is the
official `drop_rate` (inside the MLP and after the mixer's projection); `head_dropout`, before the
classifier, is a mixtok addition (default 0, the official behaviour).
`distillation=True` adds the official `dist_head` (the constructor's default); the official
classification/main.py builds the models with `distillation=False`, which is the default here. With
it, evaluation returns the mean of both heads' logits and training returns the pair
`(head logits, dist_head logits)` for a distillation loss, as the official forward does.

Parity: the official rcvit_xs and rcvit_m with every parameter and BatchNorm buffer random, converted by
`mixtok.interop.cas_vit`, give eval logits within 3.1e-6 of the official ones (2.3e-6 of the largest logit)
at 224 and 384 px over three seeds; the procedure and the figures are in that module's docstring.

Differences from the official code:
- NHWC layout; parameter names follow the official module paths (`network_0_1/attn/oper_q_0/block_0`
  for `network.0.1.attn.oper_q.0.block.0`; `kernel` for conv/linear `weight`, BN `scale` for `weight`).
- Init: Linear layers trunc-normal 0.02 with zero bias (official); convolutions PyTorch's default
  kernel distribution but zero biases (PyTorch draws conv biases from U(+-1/sqrt(fan_in))).
- BatchNorm statistics are those of the global batch under a sharded `jit` (SyncBatchNorm semantics),
  and flax's running variance averages the biased batch variance (PyTorch: unbiased).
- The dense-prediction mode (`fork_feat`) is not ported; `method="intermediates"` returns the four
  stage outputs (what it feeds its detection necks) and `method="features"` the last; the pooled
  features are sown into `intermediates` as `pre_logits`.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.activations import get_activation
from mixtok.layers.conv import batch_norm
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import classifier, global_avg_pool, pooled_classifier
from mixtok.layers.module import Module
from mixtok.mixers.cas_vit import AdditiveTokenMixer, torch_conv
from mixtok.models.backbone import Backbone, PerStage, per_stage, stage_drop_path_rates
from mixtok.models.inputs import check_image_size, check_images


class AdditiveBlock(Module):
    """x + LocalIntegration(x), then + drop_path(CATM(BN(x))), then + drop_path(Mlp(BN(x))) (official)."""

    mlp_ratio: float = 4.0
    attn_bias: bool = False
    dropout: float = 0.0
    drop_path: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        dim = x.shape[-1]
        gelu = get_activation("gelu")
        # LocalIntegration(ratio=1): `local_perception.network.{0,1,2,4}`.
        y = torch_conv(dim, 1, name="local_perception_network_0", **common)(x)
        y = batch_norm("local_perception_network_1", train=train, **common)(y)
        y = gelu(torch_conv(dim, 3, groups=dim, name="local_perception_network_2", **common)(y))
        x = x + torch_conv(dim, 1, name="local_perception_network_4", **common)(y)
        y = batch_norm("norm1", train=train, **common)(x)
        y = AdditiveTokenMixer(dim, self.attn_bias, self.dropout, name="attn", **common)(y, train=train)
        x = x + DropPath(self.drop_path)(y, train=train)
        y = batch_norm("norm2", train=train, **common)(x)
        y = gelu(torch_conv(int(dim * self.mlp_ratio), 1, name="mlp_fc1", **common)(y))
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(torch_conv(dim, 1, name="mlp_fc2", **common)(y))
        return x + DropPath(self.drop_path)(y, train=train)


class CASViT(Backbone):
    """CAS-ViT: `apply(variables, images[B, H, W, 3], train=...) -> logits[B, num_classes]` (float32).

    Training needs `mutable=["batch_stats"]` and, with drop path or dropout, the `drop_path` / `dropout`
    rng streams. `image_size`, when set, is checked: no parameter depends on the resolution.
    """

    depths: Sequence[int] = (2, 2, 4, 2)
    dims: Sequence[int] = (48, 56, 112, 220)
    mlp_ratios: PerStage = 4.0
    attn_bias: bool = False
    num_classes: int = 1000
    dropout: float = 0.0  # the official drop_rate: in the MLP and after the mixer
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    distillation: bool = False
    image_size: int | None = None

    def stage_maps(self, images, *, train: bool):
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ValueError(
                f"CASViT needs one depth per stage dim; got depths {tuple(self.depths)} and dims {tuple(self.dims)}."
            )
        if self.dims[0] % 2:
            raise ValueError(
                f"CASViT dims[0] must be even (the stem's first conv has dims[0] / 2 channels); got {self.dims[0]}."
            )
        check_images(images, 1, "CASViT", "any size")
        check_image_size(images, self.image_size, "CASViT")
        mlp_ratios = per_stage(self.mlp_ratios, len(self.depths), "mlp_ratios")
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = torch_conv(self.dims[0] // 2, 3, stride=2, name="patch_embed_0", **common)(x)
        x = nn.relu(batch_norm("patch_embed_1", train=train, **common)(x))
        x = torch_conv(self.dims[0], 3, stride=2, name="patch_embed_3", **common)(x)
        x = nn.relu(batch_norm("patch_embed_4", train=train, **common)(x))
        maps = []
        for stage, (dim, rates) in enumerate(zip(self.dims, stage_drop_path_rates(self.drop_path_rate, self.depths))):
            if stage > 0:  # the official Embedding at network index 2 * stage - 1
                x = torch_conv(dim, 3, stride=2, name=f"network_{2 * stage - 1}_proj", **common)(x)
                x = batch_norm(f"network_{2 * stage - 1}_norm", train=train, **common)(x)
            for block, rate in enumerate(rates):
                x = AdditiveBlock(
                    mlp_ratios[stage], self.attn_bias, self.dropout, rate, name=f"network_{2 * stage}_{block}", **common
                )(x, train=train)
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        common = self.dtype_kwargs
        normed = batch_norm("norm", train=train, **common)(features)
        logits = pooled_classifier(
            self,
            normed,
            num_classes=self.num_classes,
            head_dropout=self.head_dropout,
            train=train,
            name="head",
            **common,
        )
        if not self.distillation or self.num_classes <= 0:
            return logits
        pooled = nn.Dropout(self.head_dropout, deterministic=not train)(global_avg_pool(normed))
        distilled = classifier(self.num_classes, name="dist_head", **common)(pooled).astype(jnp.float32)
        return (logits, distilled) if train else (logits + distilled) / 2
