"""Stochastic depth (drop path): drops a residual branch per sample during training."""

import flax.linen as nn
import jax
import jax.numpy as jnp


class DropPath(nn.Module):
    """Zeroes the whole branch for a sample with probability `rate` and rescales the survivors.

    Matches timm's DropPath (scale_by_keep=True). Uses the `drop_path` rng stream.
    """

    rate: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        if not train or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(self.make_rng("drop_path"), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
        return jnp.where(mask, x / keep, jnp.zeros_like(x))
