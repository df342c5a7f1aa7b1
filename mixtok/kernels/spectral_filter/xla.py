"""The spectral filter as two transforms around the filter product, with its hand-written gradient.

    op = transform_filter_op(forward, inverse)   # forward: x -> (Re, Im) of the half spectrum
    y = op(x, filt)                              # inverse(forward(x) * filt)

One custom VJP serves both XLA forms: impl="reference" with jnp.fft's transforms (reference.py)
and impl="xla" with the real DFT as GEMMs (`mixtok.kernels.dft`: the Kronecker form up to 256
pixels, the separable form above; bf16 inputs run bf16 GEMMs with float32 accumulation, the
tensor-core path on GPU/TPU).

Gradients. With Z = rfft2(x), G = rfft2(dy) and the Hermitian weights m_k of the half spectrum
(1 at k = 0 and k = W/2, else 2): dx is the same filter applied to dy with conj(filt), and
dfilt = m * Z * conj(G) (summed over the batch for a static filter). That is JAX's convention for
a complex parameter of a real loss (the conjugate of dL/dRe + i dL/dIm), i.e. exactly what
`jax.grad` of `spectral_filter_reference` returns.
"""

import jax
import jax.numpy as jnp

from mixtok.kernels import dft
from mixtok.kernels.spectral_filter.reference import forward_spectrum, inverse_spectrum


def _filtered(forward, inverse, x, filt_real, filt_imag):
    """inverse(forward(x) * (filt_real + i filt_imag)): the op, for either transform pair."""
    zr, zi = forward(x)
    return inverse(zr * filt_real - zi * filt_imag, zr * filt_imag + zi * filt_real, x.shape[2], x.dtype)


def transform_filter_op(forward, inverse):
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
        dfilt_real = weights * (zr * gr + zi * gi)  # m * Z * conj(G)
        dfilt_imag = weights * (zi * gr - zr * gi)
        if filt.ndim == 3:  # a static filter gathers the gradient of every sample
            dfilt_real, dfilt_imag = dfilt_real.sum(0), dfilt_imag.sum(0)
        return dx, jax.lax.complex(dfilt_real, dfilt_imag).astype(filt.dtype)

    op.defvjp(op_fwd, op_bwd)
    return op


reference_op = transform_filter_op(forward_spectrum, inverse_spectrum)
xla_op = transform_filter_op(dft.forward_spectrum, dft.inverse_spectrum)
