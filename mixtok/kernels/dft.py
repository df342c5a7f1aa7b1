"""The 2-D real DFT of NHWC maps as matrix products: the transforms of spectral_filter's "xla" and "pallas".

    zr, zi = forward_spectrum(x)          # x [B, H, W, C] -> half spectrum, 2 x [B, H, W//2+1, C] f32
    y = inverse_spectrum(zr, zi, dtype)   # -> [B, H, W, C], what irfft2(zr + i zi, s=(H, W)) gives

Both use the 'ortho' scale 1/sqrt(H W), so they match `jnp.fft.rfft2` / `irfft2` with norm="ortho".

The inverse from the half spectrum (k < Wf = W//2 + 1) is

    y[h, w] = 1/sqrt(HW) sum_{p, k} m_k Re(Z[p, k] exp(2 pi i (p h / H + k w / W)))

with the Hermitian weights m_k = 1 at k = 0 and at k = W/2 (even W), else 2: the columns k >= 1
stand for themselves and their mirror image. Taking the real part of the whole sum is exactly
what irfft2 does to a spectrum that is not Hermitian-consistent (it drops the imaginary part of
the k = 0 and Nyquist columns *after* the inverse transform over H), so the two agree for any
complex filter. With m folded in, the inverse matrix is the transpose of the forward one with its
columns scaled by m (docs/facts/kernels.md, "Spectral filter: DFT-as-GEMM, one fused pass").

Two forms, chosen per grid (`uses_kronecker_form`):
- **Kronecker** (H*W <= KRONECKER_MAX_PIXELS = 256): one GEMM each way with the real matrix
  F [H*2*Wf, H*W] (rows cos and -sin of 2 pi (p h / H + k w / W)); channels are the GEMM's N
  dimension, so no transposes. About 8*H*Wf flop per element: cheap up to ~16x16.
- **Separable** (larger grids): a real DFT over W ([W, 2, Wf]) and then a complex DFT over H as a
  real [2H, 2H] matrix, and the reverse; 8*H*W*Wf + 16*H^2*Wf flop per plane.

Precision: float32 inputs use float32 matrices with precision=HIGHEST; bfloat16 inputs use
bfloat16 matrices and bfloat16 operands with float32 accumulation (`preferred_element_type`),
which is the tensor-core path. The spectrum between the GEMMs is float32.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

KRONECKER_MAX_PIXELS = 256


def half_spectrum_weights(width: int) -> np.ndarray:
    """m_k for k < W//2 + 1: 1 at k = 0 and at the Nyquist column k = W/2 (even W), else 2."""
    weights = np.full(width // 2 + 1, 2.0)
    weights[0] = 1.0
    if width % 2 == 0:
        weights[-1] = 1.0
    return weights


def uses_kronecker_form(height: int, width: int) -> bool:
    return height * width <= KRONECKER_MAX_PIXELS


def _angles(n_out: int, n_in: int, period: int) -> np.ndarray:
    """2 pi (a b mod period) / period for a < n_out, b < n_in; the mod keeps large products exact."""
    a = np.arange(n_out)[:, None]
    b = np.arange(n_in)[None, :]
    return 2.0 * np.pi * ((a * b) % period) / period


@functools.cache
def _kronecker_matrices(height: int, width: int) -> tuple:
    """(forward [H*2*Wf, H*W], inverse [H*W, H*2*Wf]) in float64; rows ordered (p, re/im, k)."""
    wf = width // 2 + 1
    theta = (
        _angles(height, height, height)[:, None, :, None] + _angles(wf, width, width)[None, :, None, :]
    )  # [p, k, h, w]
    scale = 1.0 / np.sqrt(height * width)
    forward = scale * np.stack([np.cos(theta), -np.sin(theta)], axis=1)  # [p, 2, k, h, w]
    weighted = forward * half_spectrum_weights(width)[None, None, :, None, None]
    forward = forward.reshape(height * 2 * wf, height * width)
    inverse = weighted.reshape(height * 2 * wf, height * width).T
    return forward, inverse


@functools.cache
def _separable_matrices(height: int, width: int) -> tuple:
    """(W forward [W, 2, Wf], H forward [H, 2, H, 2], H inverse [H, 2, H, 2], W inverse [2, Wf, W])."""
    tw = _angles(width, width // 2 + 1, width)  # [w, k]
    w_forward = np.stack([np.cos(tw), -np.sin(tw)], axis=1) / np.sqrt(width)
    weights = half_spectrum_weights(width)[:, None]
    w_inverse = np.stack([weights * np.cos(tw.T), -weights * np.sin(tw.T)], axis=0) / np.sqrt(width)
    th = _angles(height, height, height)  # [p, h], symmetric
    cos, sin = np.cos(th) / np.sqrt(height), np.sin(th) / np.sqrt(height)
    # (Ar + i Ai)(cos - i sin) forward, (Zr + i Zi)(cos + i sin) inverse; index [out, re/im, in, re/im].
    h_forward = np.stack([np.stack([cos, sin], -1), np.stack([-sin, cos], -1)], axis=1)
    h_inverse = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], axis=1)
    return w_forward, h_forward, h_inverse, w_inverse


@functools.cache
def split_kronecker_matrices(height: int, width: int) -> tuple:
    """(F [2*H*Wf, H*W], F^T, m [H*Wf, 1]) in float64, the fused kernels' layout of the Kronecker form.

    Rows of F are the real parts of the half spectrum, ordered (p, k), then the imaginary parts, so
    a kernel splits Z = F x into real and imaginary halves by rows; the inverse of a spectrum U whose
    rows are already scaled by the Hermitian weights m is exactly F^T U.
    """
    forward, _ = _kronecker_matrices(height, width)  # rows (p, re/im, k)
    wf = width // 2 + 1
    forward = forward.reshape(height, 2, wf, height * width).transpose(1, 0, 2, 3).reshape(2 * height * wf, -1)
    weights = np.tile(half_spectrum_weights(width), height)[:, None]
    return forward, np.ascontiguousarray(forward.T), weights


def compute_dtype(dtype) -> jnp.dtype:
    return jnp.bfloat16 if jnp.dtype(dtype) == jnp.bfloat16 else jnp.float32


def matmul(subscripts: str, matrix: np.ndarray, operand: jax.Array, dtype) -> jax.Array:
    """einsum in `dtype` (bf16 or f32) with float32 accumulation; exact float32 for float32."""
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else jax.lax.Precision.DEFAULT
    return jnp.einsum(
        subscripts,
        jnp.asarray(matrix, dtype),
        operand.astype(dtype),
        precision=precision,
        preferred_element_type=jnp.float32,
    )


def forward_spectrum(x: jax.Array) -> tuple:
    """rfft2(x, axes=(1, 2), norm="ortho") as (real, imag), each [B, H, W//2+1, C] float32."""
    batch, height, width, channels = x.shape
    dtype = compute_dtype(x.dtype)
    if uses_kronecker_form(height, width):
        forward, _ = _kronecker_matrices(height, width)
        z = matmul("nm,bmc->bnc", forward, x.reshape(batch, height * width, channels), dtype)
        z = z.reshape(batch, height, 2, width // 2 + 1, channels)
    else:
        w_forward, h_forward, _, _ = _separable_matrices(height, width)
        a = matmul("wrk,bhwc->bhrkc", w_forward, x, dtype)
        z = matmul("pqhr,bhrkc->bpqkc", h_forward, a, dtype)
    return z[:, :, 0], z[:, :, 1]


def inverse_spectrum(real: jax.Array, imag: jax.Array, width: int, out_dtype) -> jax.Array:
    """irfft2(real + i imag, s=(H, width), axes=(1, 2), norm="ortho") for [B, H, width//2+1, C] parts."""
    batch, height, wf, channels = real.shape
    dtype = compute_dtype(out_dtype)
    z = jnp.stack([real, imag], axis=2)  # [B, H, 2, Wf, C]
    if uses_kronecker_form(height, width):
        _, inverse = _kronecker_matrices(height, width)
        y = matmul("mn,bnc->bmc", inverse, z.reshape(batch, height * 2 * wf, channels), dtype)
        y = y.reshape(batch, height, width, channels)
    else:
        _, _, h_inverse, w_inverse = _separable_matrices(height, width)
        u = matmul("hqpr,bprkc->bhqkc", h_inverse, z, dtype)
        y = matmul("rkw,bhrkc->bhwc", w_inverse, u, dtype)
    return y.astype(out_dtype)
