"""Token-MLP mixers. RandomMixing: RandFormer's frozen random token-mixing matrix.

MetaFormer Baselines for Vision (Yu et al. 2022); official: sail-sg/metaformer:
metaformer_baselines.py `RandomMixing`:

    M = softmax(U(0, 1)^{N x N}, axis=-1)    frozen at initialisation (requires_grad=False)
    y[b, m, c] = sum_n M[m, n] x[b, n, c]    over the N = H * W tokens

The matrix lives in the `frozen` variable collection: it is saved and restored with the model and
counted in its parameter count (the official count includes it, since it is an nn.Parameter), but
the optimizer never sees it. Its size is fixed when the model is initialised, so a RandFormer
trained at 224 px only runs at 224 px, as in the paper.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register


@register("random_mixing")
class RandomMixing(Mixer):
    """y = M x over tokens with a frozen row-stochastic random N x N matrix M."""

    num_tokens: int | None = None  # None: taken from the H * W of the input at initialisation

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        batch, height, width, channels = x.shape
        tokens = height * width
        if self.num_tokens is not None and self.num_tokens != tokens:
            raise ValueError(
                f"RandomMixing was configured for num_tokens={self.num_tokens} but the input has "
                f"{height}x{width}={tokens} tokens; set num_tokens={tokens} or feed a {self.num_tokens}-token map."
            )

        def init():
            rng = self.make_rng("params")
            return jax.nn.softmax(jax.random.uniform(rng, (tokens, tokens), self.param_dtype), axis=-1)

        matrix = self.variable("frozen", "random_matrix", init).value
        if matrix.shape != (tokens, tokens):
            raise ValueError(
                f"RandomMixing's frozen matrix is {matrix.shape[0]}x{matrix.shape[1]} (built for "
                f"{matrix.shape[0]} tokens) but the input has {height}x{width}={tokens} tokens. A RandFormer "
                f"runs only at the resolution it was initialised at."
            )
        dtype = self.dtype or x.dtype
        y = jnp.einsum("mn,bnc->bmc", matrix.astype(dtype), x.reshape(batch, tokens, channels).astype(dtype))
        return y.reshape(batch, height, width, channels)
