"""The interface every backbone shares: logits, the final feature map, per-stage maps, and the head alone.

    model = create_model("caformer_s18")
    logits = model.apply(variables, images)                              # [B, num_classes], float32
    features = model.apply(variables, images, method="features")         # [B, h, w, C] NHWC
    maps = model.apply(variables, images, method="intermediates")        # one NHWC map per stage
    logits = model.apply(variables, features, method="forward_head")     # the head on given features

(timm's `forward_features`, `forward_intermediates` and `forward_head`.) A backbone subclasses
`Backbone` and writes two plain methods, which the one compact method `forward` calls, so every
output comes from the same modules and parameter paths:

    stage_maps(images, train) -> tuple of NHWC maps, one per stage (isotropic models: one per block)
    classify(features, train) -> logits (the head: pooling, norms, dropout, classifier)

`features` is the last stage's map, before any head pooling or norm; `__call__` is
`classify(features)`. The helpers below are what the backbones' argument vocabulary shares (see
`mixtok.models`): per-stage options, stochastic-depth schedules, and the `image_size` check of
models whose parameters do not depend on the resolution.
"""

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import numpy as np

from mixtok.layers.module import Module
from mixtok.layers.partitioning import constrain_channels_last

OUTPUTS = ("logits", "features", "intermediates", "head")
PerStage = Any | Sequence[Any]


class Backbone(Module):
    """Base of the zoo's backbones: `__call__`, `features`, `intermediates`, `forward_head` on one `forward`.

    It declares the arguments every backbone takes with the same meaning; a family may restate one to
    change its default (FFNet's official drop path is 0.1). The rest of the vocabulary (`depths`, `dims`,
    `image_size`, `num_heads`, `mlp_ratios`, `token_mixers`) has family defaults and is declared by each family.
    """

    num_classes: int = 1000
    drop_path_rate: float = 0.0  # stochastic depth of the last block, rising linearly from 0 at the first
    head_dropout: float = 0.0  # dropout on the pooled features, right before the classifier

    def __call__(self, images, *, train: bool = False):
        return self.forward(images, train=train, output="logits")

    def features(self, images, *, train: bool = False):
        """The last stage's feature map [B, h, w, C] (NHWC), the input of the head."""
        return self.forward(images, train=train, output="features")

    def intermediates(self, images, *, train: bool = False):
        """Every stage's output map, NHWC, in order (isotropic models: every block's); the last is `features`."""
        return self.forward(images, train=train, output="intermediates")

    def forward_head(self, features, *, train: bool = False):
        """The head alone on a feature map from `features`: logits as `__call__` returns them."""
        return self.forward(features, train=train, output="head")

    @nn.compact
    def forward(self, x, *, train: bool = False, output: str = "logits"):
        """`output` of the model for `x` (images, or features when output="head"); one of OUTPUTS."""
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}; got {output!r}.")
        if output == "head":
            return self.classify(x, train=train)
        # Stage boundaries: batch split over the data-parallel devices, channels as the rules say (whole by
        # default). A no-op outside mixtok.parallel.sharding_context (mixtok.layers.partitioning.constrain).
        maps = tuple(constrain_channels_last(m, "embed") for m in self.stage_maps(x, train=train))
        if output == "intermediates":
            return maps
        if output == "features":
            return maps[-1]
        return self.classify(maps[-1], train=train)

    def stage_maps(self, images, *, train: bool):
        raise NotImplementedError(f"{type(self).__name__} must define stage_maps(images, train).")

    def classify(self, features, *, train: bool):
        raise NotImplementedError(f"{type(self).__name__} must define classify(features, train).")


def per_stage(value: PerStage, num_stages: int, field: str) -> tuple:
    """Broadcasts a scalar option to every stage, or checks a per-stage list has one entry per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise ValueError(
                f"{field} has {len(value)} entries {tuple(value)!r} but the model has {num_stages} "
                f"stages; give one value per stage or a single value for all."
            )
        return tuple(value)
    return (value,) * num_stages


def stage_drop_path_rates(drop_path_rate: float, depths: Sequence[int]) -> tuple[tuple[float, ...], ...]:
    """Stochastic-depth rate of every block, per stage: linear from 0 to `drop_path_rate` over all blocks.

    The schedule of DeiT and most of the zoo's official code (`torch.linspace(0, rate, sum(depths))`).
    """
    rates = np.linspace(0.0, drop_path_rate, sum(depths)).tolist()
    starts = np.cumsum((0, *depths)).tolist()
    return tuple(tuple(rates[start : start + depth]) for start, depth in zip(starts, depths))
