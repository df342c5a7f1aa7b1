"""AdaptiveFrequencyFilter: AFFNet's token mixer, a global filter whose frequency mask depends on the input.

"Adaptive Frequency Filters As Efficient Global Token Mixers" (Huang et al., ICCV 2023); official:
microsoft/TokenMixers @ 99dbe38c: Adaptive Frequency Filters/affnet/modules/aff_block.py
`AFNO2D_channelfirst`. For x [B, H, W, C], in float32:

    X = rfft2(x, ortho) over (H, W)                      [B, H, W//2+1, C] complex
    channels split into `num_blocks` contiguous blocks of bs = C / num_blocks (channel c = k * bs + i)
    per frequency and block k, a complex 2-layer MLP over the block's channels (real and imaginary
    parts carried separately, the official "grouped complex 1x1 conv"):
        o1_r = act(X_r W1_r - X_i W1_i + b1_r)     o1_i = act(X_i W1_r + X_r W1_i + b1_i)
        o2_r = o1_r W2_r - o1_i W2_i + b2_r        o2_i = o1_i W2_r + o1_r W2_i + b2_i
    M = softshrink(o2_r, lambda) + i softshrink(o2_i, lambda)          (lambda = sparsity_threshold)
    y = irfft2(X * M, s=(H, W), ortho) + x                             (the filter's own residual)

i.e. a circular convolution of each channel with a kernel as large as the feature map, inferred from
the input. Parameters, as the official stores them (so weights convert without reshaping):
w1 [2, num_blocks, bs, bs * f], b1 [2, num_blocks, bs * f], w2 [2, num_blocks, bs * f, bs],
b2 [2, num_blocks, bs], index 0 the real and 1 the imaginary part, f = `hidden_size_factor`; all
initialised 0.02 * N(0, 1) (`torch.randn`, not truncated). 4 C^2 f / num_blocks + 2 C (f + 1) weights.

Differences from the official code:
- Layout NHWC instead of NCHW. The channel blocks are the same contiguous slices, so the
  parameters are the official tensors unchanged.
- The filtering runs through `mixtok.kernels.spectral_filter(x, M)` with the per-sample mask M, the
  fused kernel path (its "xla" tensor-core form on GPU/TPU, a Pallas kernel later). The mask needs
  the spectrum X first, so X is computed twice: once here by `jnp.fft.rfft2` in float32 for the mask
  MLP, and once inside the op for the product. The op does not return its spectrum (its custom VJP
  and a fused kernel keep it internal), so the price is one extra forward transform beside the op's
  forward and inverse ones; the result and its gradient are mathematically the official ones.
- `sparsity_threshold` and `activation` are fields. The official constructor ignores its
  `sparsity_threshold` argument and reads `model.activation.sparsity_threshold` (default 0.01) and
  the activation from the run's global `model.activation.name` (code default "relu"), so inside
  AFFNet the filter uses the network's activation (AFFNet passes it; swish in the configuration
  used for the official counts). "swish" is accepted as a name for SiLU.
- The official `hard_thresholding_fraction` argument is unused there and absent here.
- The mask MLP's contractions run with float32 precision "highest" (on GPUs XLA would otherwise
  use TF32, which PyTorch does not for matmuls).
- The output has `dtype` (or the input's dtype): the float32 result is cast, then the input is
  added, as the official casts to the input dtype before its residual.
"""

import jax
import jax.numpy as jnp

from mixtok.kernels.spectral_filter import spectral_filter
from mixtok.layers.activations import get_activation
from mixtok.layers.partitioning import param_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

ACTIVATION_ALIASES = {"swish": "silu"}  # cvnets' names for the same functions
INIT_STDDEV = 0.02


def softshrink(x: jax.Array, threshold: float) -> jax.Array:
    """PyTorch's F.softshrink: x - t above t, x + t below -t, else 0."""
    return jnp.where(x > threshold, x - threshold, jnp.where(x < -threshold, x + threshold, jnp.zeros_like(x)))


def _divisors(n: int) -> list:
    return [d for d in range(1, n + 1) if n % d == 0]


@register("adaptive_frequency_filter")
class AdaptiveFrequencyFilter(Mixer):
    """y = irfft2(rfft2(x) * M(rfft2(x))) + x with M an input-dependent complex mask (AFFNet's AFF)."""

    num_blocks: int = 8
    sparsity_threshold: float = 0.01
    hidden_size_factor: int = 1
    activation: str = "relu"

    def setup(self):
        if self.dim % self.num_blocks:
            raise ValueError(
                f"AdaptiveFrequencyFilter: dim={self.dim} is not divisible by num_blocks={self.num_blocks}; "
                f"use a num_blocks among the divisors of {self.dim}: {_divisors(self.dim)}."
            )
        if self.hidden_size_factor < 1:
            raise ValueError(
                f"AdaptiveFrequencyFilter: hidden_size_factor must be >= 1; got {self.hidden_size_factor}."
            )
        blocks, size = self.num_blocks, self.dim // self.num_blocks
        hidden = size * self.hidden_size_factor
        init = jax.nn.initializers.normal(stddev=INIT_STDDEV)
        # The block axis is never sharded: these weights are small (4 C^2 f / num_blocks).
        self.w1 = self.param(
            "w1", param_with_axes(init, (None, None, None, None)), (2, blocks, size, hidden), self.param_dtype
        )
        self.b1 = self.param("b1", param_with_axes(init, (None, None, None)), (2, blocks, hidden), self.param_dtype)
        self.w2 = self.param(
            "w2", param_with_axes(init, (None, None, None, None)), (2, blocks, hidden, size), self.param_dtype
        )
        self.b2 = self.param("b2", param_with_axes(init, (None, None, None)), (2, blocks, size), self.param_dtype)
        kind = ACTIVATION_ALIASES.get(self.activation, self.activation)
        # Two activations as the official has (`act`, `act2`): one for each part of the hidden layer.
        self.act = get_activation(kind, dtype=jnp.float32, param_dtype=self.param_dtype)
        self.act2 = get_activation(kind, dtype=jnp.float32, param_dtype=self.param_dtype)

    def mask(self, x: jax.Array) -> jax.Array:
        """The complex mask M [B, H, W//2+1, C] (complex64) that `__call__` multiplies the spectrum by."""
        self.check_input(x)
        batch, height, width, channels = x.shape
        blocks, size = self.num_blocks, channels // self.num_blocks
        spectrum = jnp.fft.rfft2(x.astype(jnp.float32), axes=(1, 2), norm="ortho")
        spectrum = spectrum.reshape(batch, height, width // 2 + 1, blocks, size)
        real, imag = jnp.real(spectrum), jnp.imag(spectrum)
        w1, b1, w2, b2 = (p.astype(jnp.float32) for p in (self.w1, self.b1, self.w2, self.b2))

        def mix(a, w):  # per frequency and block: [..., k, i] x [k, i, o] -> [..., k, o]
            return jnp.einsum("bhwki,kio->bhwko", a, w, precision=jax.lax.Precision.HIGHEST)

        hidden_real = self.act(mix(real, w1[0]) - mix(imag, w1[1]) + b1[0])
        hidden_imag = self.act2(mix(imag, w1[0]) + mix(real, w1[1]) + b1[1])
        out_real = mix(hidden_real, w2[0]) - mix(hidden_imag, w2[1]) + b2[0]
        out_imag = mix(hidden_imag, w2[0]) + mix(hidden_real, w2[1]) + b2[1]
        mask = jax.lax.complex(
            softshrink(out_real, self.sparsity_threshold), softshrink(out_imag, self.sparsity_threshold)
        )
        return mask.reshape(batch, height, width // 2 + 1, channels)

    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        filtered = spectral_filter(x.astype(jnp.float32), self.mask(x))
        out_dtype = self.dtype or x.dtype
        return filtered.astype(out_dtype) + x.astype(out_dtype)
