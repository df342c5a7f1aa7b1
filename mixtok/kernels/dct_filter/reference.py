"""The DCT filter's definition with jax.scipy's DCT: y = idctn(dctn(x, type 2, ortho) * filt, type 2, ortho).

`dct_filter_reference` is the definition, differentiated by JAX: the ground truth the tests hold
every impl (and its gradients) against. `forward` / `inverse` are the same transforms split apart,
the pair impl="reference" runs under the op's hand-written gradient (xla.py).
"""

import jax
import jax.numpy as jnp

from mixtok.kernels.dispatch import check_image_and_filter


def check_inputs(x: jax.Array, filt: jax.Array) -> None:
    """Raises a ValueError that says which dimension or dtype of `x` or `filt` is wrong and why."""
    check_image_and_filter("dct_filter", x, filt, x.shape[2] if x.ndim == 4 else 0, complex_filter=False)


def forward(x: jax.Array) -> jax.Array:
    """dctn(x, type=2, axes=(1, 2), norm="ortho") in float32 (jax's FFT-based DCT)."""
    return jax.scipy.fft.dctn(x.astype(jnp.float32), type=2, axes=(1, 2), norm="ortho")


def inverse(z: jax.Array, out_dtype) -> jax.Array:
    """idctn(z, type=2, axes=(1, 2), norm="ortho") in `out_dtype`."""
    return jax.scipy.fft.idctn(z, type=2, axes=(1, 2), norm="ortho").astype(out_dtype)


def dct_filter_reference(x: jax.Array, filt: jax.Array) -> jax.Array:
    """The definition in float32, differentiated by JAX: idctn(dctn(x, ortho) * filt, ortho) over (H, W)."""
    check_inputs(x, filt)
    return inverse(forward(x) * filt.astype(jnp.float32), x.dtype)
