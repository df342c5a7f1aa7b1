"""Global spectral filtering of NHWC feature maps: y = irfft2(rfft2(x, ortho) * filt, ortho).

    y = spectral_filter(x, filt)    # x [B, H, W, C]; filt complex [H, W//2+1, C] or [B, H, W//2+1, C]

This is the token mixing of GFNet (one static filter per channel, a global circular convolution
in O(N log N)) and of input-dependent spectral mixers (a filter per sample).

Implementations (`impl=`), each with its own `jax.custom_vjp`:
- "fft": `jnp.fft.rfft2` / `irfft2` in float32, the reference.
- "dft": the same transform as matrix products with constant real DFT matrices (`mixtok.kernels.dft`:
  the Kronecker form up to 256 pixels (16x16), the separable form above), float32 accumulation; bf16
  inputs run the GEMMs in bf16, which is the tensor-core path on GPU/TPU.
- "auto": on CPU the faster of the two for the grid (table below); on GPU/TPU "dft", since there is
  no Pallas kernel yet (kernels.md 9.1 plans one; `interpret=` is reserved for it).

Gradients. With Z = rfft2(x), G = rfft2(dy) and the Hermitian weights m_k of the half spectrum
(1 at k = 0 and k = W/2, else 2): dx is the same filter applied to dy with conj(filt), and
dfilt = m * Z * conj(G) (summed over the batch for a static filter). That is JAX's convention for
a complex parameter of a real loss (the conjugate of dL/dRe + i dL/dIm), i.e. exactly what
`jax.grad` of `spectral_filter_reference` returns.

Measured on a 2-core CPU (AMD EPYC, jax 0.10.2, 2026-11-21; table in benchmarks/RESULTS.md):
"dft" wins clearly on 7x7 and 8x8 (1.4-2.6x), 14x14 to 32x32 is a draw within the run-to-run
noise, and "fft" wins the fp32 forward at 56x56 (0.7x). Hence "auto" on CPU: "dft" for
H*W <= 64 (CPU_DFT_MAX_PIXELS), "fft" above, where the two are even or fft is ahead and fft is
the exact reference.
"""

import jax
import jax.numpy as jnp

from mixtok.kernels import dft
from mixtok.registry import unknown_name_error

IMPLS = ("auto", "fft", "dft")
CPU_DFT_MAX_PIXELS = 64  # measured: "auto" on CPU uses "dft" for H*W up to this, "fft" above


def check_shapes(x: jax.Array, filt: jax.Array) -> None:
    """Raises a ValueError that says which dimension of `x` or `filt` is wrong and why."""
    if x.ndim != 4:
        raise ValueError(f"spectral_filter takes NHWC x [B, H, W, C]; got shape {x.shape}.")
    batch, height, width, channels = x.shape
    half = (height, width // 2 + 1, channels)
    if filt.shape not in (half, (batch,) + half):
        raise ValueError(
            f"filt must be [H, W//2+1, C] = {list(half)} (static) or [B, H, W//2+1, C] = {[batch, *half]} "
            f"(per sample) for x of shape {list(x.shape)}; got {list(filt.shape)}.")
    if not jnp.issubdtype(filt.dtype, jnp.complexfloating):
        raise ValueError(f"filt must be complex (complex64); got {filt.dtype}.")


def spectral_filter_reference(x: jax.Array, filt: jax.Array) -> jax.Array:
    """The definition, with jnp.fft in float32: irfft2(rfft2(x, ortho) * filt, s=(H, W), ortho)."""
    check_shapes(x, filt)
    height, width = x.shape[1:3]
    spectrum = jnp.fft.rfft2(x.astype(jnp.float32), axes=(1, 2), norm="ortho")
    y = jnp.fft.irfft2(spectrum * filt.astype(jnp.complex64), s=(height, width), axes=(1, 2), norm="ortho")
    return y.astype(x.dtype)


def _fft_forward_spectrum(x: jax.Array) -> tuple:
    z = jnp.fft.rfft2(x.astype(jnp.float32), axes=(1, 2), norm="ortho")
    return jnp.real(z), jnp.imag(z)


def _fft_inverse_spectrum(real: jax.Array, imag: jax.Array, width: int, out_dtype) -> jax.Array:
    y = jnp.fft.irfft2(jax.lax.complex(real, imag), s=(real.shape[1], width), axes=(1, 2), norm="ortho")
    return y.astype(out_dtype)


def _filtered(forward, inverse, x, filt_real, filt_imag):
    """inverse(forward(x) * (filt_real + i filt_imag)): the op, for either transform pair."""
    zr, zi = forward(x)
    return inverse(zr * filt_real - zi * filt_imag, zr * filt_imag + zi * filt_real, x.shape[2], x.dtype)


def _with_vjp(forward, inverse):
    """The filter op for one (forward, inverse) transform pair, with its hand-written gradient."""

    @jax.custom_vjp
    def op(x, filt):
        return _filtered(forward, inverse, x, jnp.real(filt), jnp.imag(filt))

    def op_fwd(x, filt):
        return op(x, filt), (x, filt)

    def op_bwd(residuals, dy):
        x, filt = residuals
        filt_real, filt_imag = jnp.real(filt), jnp.imag(filt)
        dx = _filtered(forward, inverse, dy.astype(x.dtype), filt_real, -filt_imag)
        zr, zi = forward(x)
        gr, gi = forward(dy)
        weights = jnp.asarray(dft.half_spectrum_weights(x.shape[2])[:, None], jnp.float32)  # [Wf, 1]
        dfilt_real = weights * (zr * gr + zi * gi)                 # m * Z * conj(G)
        dfilt_imag = weights * (zi * gr - zr * gi)
        if filt.ndim == 3:  # a static filter gathers the gradient of every sample
            dfilt_real, dfilt_imag = dfilt_real.sum(0), dfilt_imag.sum(0)
        return dx, jax.lax.complex(dfilt_real, dfilt_imag).astype(filt.dtype)

    op.defvjp(op_fwd, op_bwd)
    return op


_OPS = {
    "fft": _with_vjp(_fft_forward_spectrum, _fft_inverse_spectrum),
    "dft": _with_vjp(dft.forward_spectrum, dft.inverse_spectrum),
}


def resolve_impl(impl: str, height: int, width: int) -> str:
    """The implementation `impl` stands for on this backend and grid ("auto" -> "fft" or "dft")."""
    if impl not in IMPLS:
        raise unknown_name_error("spectral_filter impl", impl, IMPLS)
    if impl != "auto":
        return impl
    if jax.default_backend() == "cpu":
        return "dft" if height * width <= CPU_DFT_MAX_PIXELS else "fft"
    return "dft"  # GPU/TPU: the tensor-core DFT until a Pallas kernel exists


def spectral_filter(x: jax.Array, filt: jax.Array, *, impl: str = "auto", interpret: bool = False) -> jax.Array:
    """Filters every channel of `x` over (H, W) by `filt` in the 2-D Fourier domain.

    x: [B, H, W, C], float32 or bfloat16 (the output has x's dtype). filt: complex, [H, W//2+1, C]
    shared by the batch or [B, H, W//2+1, C] per sample; used as complex64. impl: "auto", "fft" or
    "dft" (module docstring). interpret: runs a Pallas kernel in interpret mode; it has no effect
    until a Pallas implementation exists (none yet).
    """
    del interpret  # only meaningful for a Pallas implementation, and there is none yet
    if impl not in IMPLS:
        raise unknown_name_error("spectral_filter impl", impl, IMPLS)
    check_shapes(x, filt)
    name = resolve_impl(impl, x.shape[1], x.shape[2])
    return _OPS[name](x, filt.astype(jnp.complex64))
