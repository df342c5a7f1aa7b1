"""The spectral filter's definition with jnp.fft: y = irfft2(rfft2(x, ortho) * filt, s=(H, W), ortho).

`spectral_filter_reference` is the definition, differentiated by JAX: the ground truth the tests
hold every impl (and its gradients) against. `forward_spectrum` / `inverse_spectrum` are the same
transforms split apart, the pair impl="reference" runs under the op's hand-written gradient (xla.py).
"""

import jax
import jax.numpy as jnp

from mixtok.kernels.dispatch import check_image_and_filter


def check_inputs(x: jax.Array, filt: jax.Array) -> None:
    """Raises a ValueError that says which dimension or dtype of `x` or `filt` is wrong and why."""
    check_image_and_filter("spectral_filter", x, filt, x.shape[2] // 2 + 1 if x.ndim == 4 else 0, complex_filter=True)


def spectral_filter_reference(x: jax.Array, filt: jax.Array) -> jax.Array:
    """The definition, with jnp.fft in float32: irfft2(rfft2(x, ortho) * filt, s=(H, W), ortho)."""
    check_inputs(x, filt)
    height, width = x.shape[1:3]
    spectrum = jnp.fft.rfft2(x.astype(jnp.float32), axes=(1, 2), norm="ortho")
    y = jnp.fft.irfft2(spectrum * filt.astype(jnp.complex64), s=(height, width), axes=(1, 2), norm="ortho")
    return y.astype(x.dtype)


def forward_spectrum(x: jax.Array) -> tuple:
    """rfft2(x, axes=(1, 2), norm="ortho") as (real, imag), each [B, H, W//2+1, C] float32."""
    z = jnp.fft.rfft2(x.astype(jnp.float32), axes=(1, 2), norm="ortho")
    return jnp.real(z), jnp.imag(z)


def inverse_spectrum(real: jax.Array, imag: jax.Array, width: int, out_dtype) -> jax.Array:
    """irfft2(real + i imag, s=(H, width), axes=(1, 2), norm="ortho") in `out_dtype`."""
    y = jnp.fft.irfft2(jax.lax.complex(real, imag), s=(real.shape[1], width), axes=(1, 2), norm="ortho")
    return y.astype(out_dtype)
