"""The feature interface every backbone shares: logits, the final feature map, and the per-stage maps.

    logits = model.apply(variables, images)                              # [B, num_classes]
    features = model.apply(variables, images, method="features")         # [B, h, w, C] NHWC, before the head
    stages = model.apply(variables, images, method="intermediates")      # tuple of NHWC maps, one per stage

timm's `forward_features` / `forward_intermediates`, for linen: a backbone subclasses `Backbone` and writes
one `@nn.compact` method `forward(x, *, train, output)` that returns the logits, the final feature map or
the tuple of stage maps as `output` asks. One compact method keeps the parameter paths the same whichever
output is asked for, and `features` then feeds the head exactly as `__call__` does.

`Backbone` also holds the arguments every backbone takes with the same meaning and default (the rest of the
shared vocabulary, `depths`, `dims`, `image_size`, `num_heads`, `mlp_ratios`, ..., has family defaults and is
declared by each family).
"""

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

OUTPUTS = ("logits", "features", "intermediates")


class Backbone(nn.Module):
    """`__call__`, `features` and `intermediates` of a backbone, all from its `forward(x, train=, output=)`."""

    num_classes: int = 1000
    drop_path_rate: float = 0.0  # stochastic depth of the last block, rising linearly from 0 at the first
    head_dropout: float = 0.0  # dropout on the pooled features, right before the classifier
    dtype: Any = None  # computation dtype; None: the inputs'
    param_dtype: Any = jnp.float32

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Class logits [B, num_classes] of NHWC images [B, H, W, 3]."""
        return self.forward(x, train=train, output="logits")

    def features(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """The final feature map [B, h, w, C] (NHWC, after the last stage, before the head's pooling and norm)."""
        return self.forward(x, train=train, output="features")

    def intermediates(self, x: jax.Array, *, train: bool = False) -> Tuple[jax.Array, ...]:
        """The output of every stage, NHWC, first to last (the last is `features`)."""
        return self.forward(x, train=train, output="intermediates")

    def forward(self, x: jax.Array, *, train: bool, output: str):
        raise NotImplementedError(f"{type(self).__name__} must define forward(x, *, train, output).")


def check_output(output: str) -> None:
    """Raises a ValueError naming `output` unless it is one of OUTPUTS."""
    if output not in OUTPUTS:
        raise ValueError(f"output={output!r} is not one of {OUTPUTS}.")
