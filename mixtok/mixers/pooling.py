"""PoolFormer's pooling token mixer (MetaFormer Is Actually What You Need for Vision, Yu et al. 2022).

Official: sail-sg/poolformer: models/poolformer.py `Pooling` and sail-sg/metaformer:
metaformer_baselines.py `Pooling`; timm: timm/models/metaformer.py `Pooling`:

    y = AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)(x) - x

`count_include_pad=False` means a border position averages only the positions that exist: a corner
of a 3x3 window divides by 4, an edge by 6, the interior by 9. The subtraction of x is there
because the block adds the input back through its residual.
"""

import jax
import jax.numpy as jnp
import numpy as np

from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register


def valid_counts(size: int, pool_size: int) -> np.ndarray:
    """How many real positions a centred window of `pool_size` covers at each of `size` positions."""
    pad = pool_size // 2
    index = np.arange(size)
    return np.minimum(index + pad, size - 1) - np.maximum(index - pad, 0) + 1


def avg_pool_exclude_padding(x: jax.Array, pool_size: int) -> jax.Array:
    """Stride-1 'same' average pooling over H, W of NHWC `x` whose divisor counts real positions only."""
    if pool_size % 2 != 1:
        raise ValueError(f"pool_size must be odd so the output keeps the input size; got {pool_size}.")
    pad = pool_size // 2
    summed = jax.lax.reduce_window(
        x, 0.0, jax.lax.add, (1, pool_size, pool_size, 1), (1, 1, 1, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0))
    )
    # The divisor depends only on the position and is separable: count(h, w) = count(h) * count(w).
    count = np.outer(valid_counts(x.shape[1], pool_size), valid_counts(x.shape[2], pool_size))
    return summed / jnp.asarray(count[None, :, :, None], x.dtype)


@register("pooling")
class Pooling(Mixer):
    """y = AvgPool(pool_size, stride 1, padding excluded from the divisor)(x) - x. No parameters."""

    pool_size: int = 3

    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        return avg_pool_exclude_padding(x, self.pool_size) - x
