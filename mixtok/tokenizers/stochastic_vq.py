"""LARP's stochastic vector quantizer: the code is sampled from softmax(cos(z, e) / temperature) in training.

Follows hywang66/LARP @ 8aaed63: models/bottleneck.py (`SimpleVectorQuantizer` with `stochastic=True`,
`l2_normalized=True`), configured by cfgs/larp_tokenizer.yaml (`stochastic_temperature: 0.03`, 8192 x 16 codes,
`commitment_loss_weight: 0.25`, `codebook_loss_weight: 1.0`, `entropy_loss_weight: 0.0`):

    z, e <- z / |z|, e / |e|                      (the L2-normalised, cosine VQ)
    p = softmax(z . e^T / temperature)            over the K codes, per token
    index ~ Categorical(p)   (train=True)         official torch.multinomial(probs, 1)
    index = argmax p         (train=False)        official eval with set_vq_eval_deterministic(True)
    loss = beta * mean((sg[q] - z)^2) + codebook_weight * mean((q - sg[z])^2),  q = e[index]

with straight-through gradients to z, as `VectorQuantizer` (whose codebook, loss, statistics and exact forward
value this class reuses). Randomness: the sample is drawn from the `noise` rng stream (the contract's stream for
stochastic codes, mixtok/tokenizers/base.py), only when `train=True`; `apply(..., rngs={"noise": key})`.

Differences from the official code:
- the official module samples whenever its `eval_deterministic` flag is off, in eval mode too (the default;
  eval/eval_larp_tokenizer.py takes the argmax only with `--det`); here eval (`train=False`) always takes the
  argmax, and sampling is what `train=True` means.
- the codebook is initialised as the official `nn.init.kaiming_uniform_` of the [K, d] embedding,
  U(-sqrt(6 / d), sqrt(6 / d)) (fan-in d), instead of `VectorQuantizer`'s U(-1/K, 1/K): after the L2
  normalisation both give the same distribution of directions, but the raw scale sets how far an optimizer
  step turns a code.
- no learnable temperature (the official `stochastic_temperature < 0` option) and no entropy loss (weight 0 in
  every official config).
"""

import math

import jax
import jax.numpy as jnp

from mixtok.layers.partitioning import param_with_axes
from mixtok.tokenizers.base import QuantizerOutput
from mixtok.tokenizers.quantizers import (
    HIGHEST,
    QUANTIZERS,
    VectorQuantizer,
    _check_last_dim,
    _exact_forward,
    code_usage_stats,
    normalize_last_axis,
)


class StochasticVectorQuantizer(VectorQuantizer):
    """Cosine VQ whose training codes are sampled from softmax(cos / temperature) (LARP); eval takes the argmax.

    temperature: the softmax temperature of the cosine similarities (LARP: 0.03).
    codebook_weight: weight of the codebook term mean((q - sg[z])^2) (LARP: 1.0).
    """

    l2_normalize: bool = True
    temperature: float = 0.03
    codebook_weight: float = 1.0

    def __post_init__(self):
        if not self.l2_normalize:
            raise ValueError("StochasticVectorQuantizer: l2_normalize must be True (it samples by cosine similarity).")
        if not self.temperature > 0:
            raise ValueError(f"StochasticVectorQuantizer: temperature={self.temperature} must be > 0.")
        if self.ema_decay is not None or self.dead_code_threshold > 0 or self.gradient != "ste":
            raise ValueError(
                "StochasticVectorQuantizer: ema_decay, dead_code_threshold and gradient='rotation' are not "
                "supported (LARP's quantizer has a learned codebook and straight-through gradients)."
            )
        super().__post_init__()

    def setup(self):
        bound = math.sqrt(6.0 / self.code_dim)  # torch kaiming_uniform_ (a = 0) of a [K, d] weight: fan-in d

        def kaiming_uniform(key, shape, dtype=jnp.float32):
            return jax.random.uniform(key, shape, dtype, -bound, bound)

        self.learned_codebook = self.param(
            "codebook",
            param_with_axes(kaiming_uniform, ("codebook", None)),
            (self.codebook_size, self.code_dim),
            self.param_dtype,
        )

    def code_logits(self, z: jax.Array) -> jax.Array:
        """cos(z, e) / temperature, [..., K] float32: the logits of the code distribution (z normalised here)."""
        z = normalize_last_axis(z.astype(jnp.float32))
        return jnp.matmul(z, self.codebook().T, precision=HIGHEST) / jnp.float32(self.temperature)

    def __call__(self, z: jax.Array, *, train: bool = False) -> QuantizerOutput:
        _check_last_dim("StochasticVectorQuantizer", z, self.code_dim)
        z = normalize_last_axis(z.astype(jnp.float32))
        codebook = self.codebook()
        logits = jax.lax.stop_gradient(self.code_logits(z))
        if train:
            indices = jax.random.categorical(self.make_rng("noise"), logits, axis=-1)
        else:
            indices = jnp.argmax(logits, axis=-1)
        indices = indices.astype(jnp.int32)
        code = jnp.take(codebook, indices, axis=0)
        commitment_loss = self.beta * jnp.mean(jnp.square(jax.lax.stop_gradient(code) - z))
        codebook_loss = self.codebook_weight * jnp.mean(jnp.square(code - jax.lax.stop_gradient(z)))
        stats = {
            "commitment_loss": commitment_loss,
            "codebook_loss": codebook_loss,
            "quantization_error": jnp.mean(jnp.square(code - z)),
            **code_usage_stats(indices, self.codebook_size),
        }
        return QuantizerOutput(
            quantized=_exact_forward(code, z),
            indices=indices,
            loss=commitment_loss + codebook_loss,
            stats=jax.lax.stop_gradient(stats),
        )


QUANTIZERS.register("stochastic_vq", StochasticVectorQuantizer)
