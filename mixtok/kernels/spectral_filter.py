"""Global spectral filtering of NHWC feature maps: y = irfft2(rfft2(x, ortho) * filt, ortho).

    y = spectral_filter(x, filt)    # x [B, H, W, C]; filt complex [H, W//2+1, C] or [B, H, W//2+1, C]

This is the token mixing of GFNet (one static filter per channel, a global circular convolution
in O(N log N)) and of input-dependent spectral mixers (a filter per sample).
"""

import jax
import jax.numpy as jnp


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


def spectral_filter(x: jax.Array, filt: jax.Array, *, impl: str = "auto", interpret: bool = False) -> jax.Array:
    """Filters every channel of `x` over (H, W) by `filt` in the 2-D Fourier domain."""
    del impl, interpret  # one implementation so far: the jnp.fft reference
    return spectral_filter_reference(x, filt)
