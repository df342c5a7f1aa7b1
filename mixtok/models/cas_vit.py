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

Drop path of block j of stage i: drop_path_rate * (j + sum(depths[:i])) / (sum(depths) - 1).
`distillation=True` adds the official `dist_head` (the constructor's default); the official
classification/main.py builds the models with `distillation=False`, which is the default here. With
it, evaluation returns the mean of both heads' logits and training returns the pair
`(head logits, dist_head logits)` for a distillation loss, as the official forward does.

Differences from the official code:
- NHWC layout; parameter names follow the official module paths (`network_0_1/attn/oper_q_0/block_0`
  for `network.0.1.attn.oper_q.0.block.0`; `kernel` for conv/linear `weight`, BN `scale` for `weight`).
- Init: Linear layers trunc-normal 0.02 with zero bias (official); convolutions PyTorch's default
  kernel distribution but zero biases (PyTorch draws conv biases from U(+-1/sqrt(fan_in))).
- BatchNorm statistics are those of the global batch under a sharded `jit` (SyncBatchNorm semantics),
  and flax's running variance averages the biased batch variance (PyTorch: unbiased).
- The dense-prediction mode (`fork_feat`) is not ported; stage outputs are sown into `intermediates`
  as `stage1` ... `stage4`, and the pooled features as `pre_logits`.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.activations import get_activation
from mixtok.layers.conv_bn import batch_norm
from mixtok.layers.drop import DropPath
from mixtok.layers.partitioning import dense_kernel_init, zeros_with_axes
from mixtok.mixers.cas_vit import AdditiveTokenMixer, torch_conv
from mixtok.models.inputs import check_images


class AdditiveBlock(nn.Module):
    """x + LocalIntegration(x), then + drop_path(CATM(BN(x))), then + drop_path(Mlp(BN(x))) (official)."""

    mlp_ratio: float = 4.0
    attn_bias: bool = False
    drop: float = 0.0
    drop_path: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        dim = x.shape[-1]
        gelu = get_activation("gelu")
        # LocalIntegration(ratio=1): `local_perception.network.{0,1,2,4}`.
        y = torch_conv(dim, 1, name="local_perception_network_0", **common)(x)
        y = batch_norm("local_perception_network_1", train=train, **common)(y)
        y = gelu(torch_conv(dim, 3, groups=dim, name="local_perception_network_2", **common)(y))
        x = x + torch_conv(dim, 1, name="local_perception_network_4", **common)(y)
        y = batch_norm("norm1", train=train, **common)(x)
        y = AdditiveTokenMixer(dim, self.attn_bias, self.drop, name="attn", **common)(y, train=train)
        x = x + DropPath(self.drop_path)(y, train=train)
        y = batch_norm("norm2", train=train, **common)(x)
        y = gelu(torch_conv(int(dim * self.mlp_ratio), 1, name="mlp_fc1", **common)(y))
        y = nn.Dropout(self.drop, deterministic=not train)(y)
        y = nn.Dropout(self.drop, deterministic=not train)(torch_conv(dim, 1, name="mlp_fc2", **common)(y))
        return x + DropPath(self.drop_path)(y, train=train)


class CASViT(nn.Module):
    """CAS-ViT: `apply(variables, images[B, H, W, 3], train=...) -> logits[B, num_classes]` (float32).

    Training needs `mutable=["batch_stats"]` and, with drop path or dropout, the `drop_path` / `dropout`
    rng streams.
    """

    depths: Sequence[int] = (2, 2, 4, 2)
    dims: Sequence[int] = (48, 56, 112, 220)
    mlp_ratio: float = 4.0
    attn_bias: bool = False
    num_classes: int = 1000
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    distillation: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        if len(self.depths) != len(self.dims) or not self.depths:
            raise ValueError(f"CASViT needs one depth per stage dim; got depths {tuple(self.depths)} and dims "
                             f"{tuple(self.dims)}.")
        if self.dims[0] % 2:
            raise ValueError(f"CASViT dims[0] must be even (the stem's first conv has dims[0] / 2 channels); "
                             f"got {self.dims[0]}.")
        check_images(images, 1, "CASViT", "any size")
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = torch_conv(self.dims[0] // 2, 3, stride=2, name="patch_embed_0", **common)(x)
        x = nn.relu(batch_norm("patch_embed_1", train=train, **common)(x))
        x = torch_conv(self.dims[0], 3, stride=2, name="patch_embed_3", **common)(x)
        x = nn.relu(batch_norm("patch_embed_4", train=train, **common)(x))
        total = sum(self.depths)
        for stage, (depth, dim) in enumerate(zip(self.depths, self.dims)):
            if stage > 0:  # the official Embedding at network index 2 * stage - 1
                x = torch_conv(dim, 3, stride=2, name=f"network_{2 * stage - 1}_proj", **common)(x)
                x = batch_norm(f"network_{2 * stage - 1}_norm", train=train, **common)(x)
            for block in range(depth):
                rate = self.drop_path_rate * (block + sum(self.depths[:stage])) / max(total - 1, 1)
                x = AdditiveBlock(self.mlp_ratio, self.attn_bias, self.drop_rate, rate,
                                  name=f"network_{2 * stage}_{block}", **common)(x, train=train)
            self.sow("intermediates", f"stage{stage + 1}", x)
        x = batch_norm("norm", train=train, **common)(x)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)
        self.sow("intermediates", "pre_logits", x)
        if self.num_classes <= 0:
            return x
        head = dict(kernel_init=dense_kernel_init(("embed", None)), bias_init=zeros_with_axes((None,)), **common)
        logits = nn.Dense(self.num_classes, name="head", **head)(x).astype(jnp.float32)
        if not self.distillation:
            return logits
        distilled = nn.Dense(self.num_classes, name="dist_head", **head)(x).astype(jnp.float32)
        return (logits, distilled) if train else (logits + distilled) / 2
