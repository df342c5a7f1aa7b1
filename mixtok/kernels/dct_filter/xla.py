"""The DCT filter as constant-matrix GEMMs, and the hand-written gradient both XLA forms share.

    op = transform_filter_op(forward, inverse)    # y = inverse(forward(x) * filt)
    xla_op(x, filt), reference_op(x, filt)        # the GEMM form, and jax.scipy's DCT (reference.py)

impl="xla" runs the orthonormal 2-D DCT-II as matrix products with constant real matrices: the
Kronecker form C_H (x) C_W [H*W, H*W] (one GEMM each way, channels as the GEMM's N dimension) up to
KRONECKER_MAX_PIXELS = 256 pixels (16x16), and the separable form (C_W over W, then C_H over H)
above. Float32 inputs use float32 matrices at precision=HIGHEST; bfloat16 inputs use bfloat16
matrices and operands with float32 accumulation (`preferred_element_type`), the tensor-core path.
The spectrum and the filter product between the two GEMMs are float32.

Gradients. The operator x -> C^T diag(F) C x is symmetric, because C is orthogonal. So
dx = dct_filter(dy, F) with the same filter, and dF = dctn(x) * dctn(dy), summed over the batch for
a static filter; both reuse the forward transform of dy. This is exactly what `jax.grad` of
`dct_filter_reference` returns (tests/kernels/test_dct_filter.py).
"""

import functools

import jax
import numpy as np

from mixtok.kernels.dct_filter.reference import forward as reference_forward
from mixtok.kernels.dct_filter.reference import inverse as reference_inverse
from mixtok.kernels.dft import compute_dtype, matmul

KRONECKER_MAX_PIXELS = 256  # "xla" uses one [H*W, H*W] GEMM each way up to this many pixels


def dct_matrix(size: int) -> np.ndarray:
    """The orthonormal DCT-II matrix [size, size] in float64: row k is s_k cos(pi (2n + 1) k / (2 size))."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    # The angle mod 2 pi, taken on integers, keeps the cosines exact for large products.
    matrix = np.cos(np.pi * (((2 * n + 1) * k) % (4 * size)) / (2 * size))
    scale = np.full((size, 1), np.sqrt(2.0 / size))
    scale[0] = np.sqrt(1.0 / size)
    return scale * matrix


def uses_kronecker_form(height: int, width: int) -> bool:
    return height * width <= KRONECKER_MAX_PIXELS


@functools.cache
def kronecker_matrix(height: int, width: int) -> np.ndarray:
    """C_H (x) C_W [H*W, H*W] in float64: rows (k_h, k_w), columns (h, w), both row-major."""
    return np.kron(dct_matrix(height), dct_matrix(width))


@functools.cache
def _separable_matrices(height: int, width: int) -> tuple:
    return dct_matrix(height), dct_matrix(width)


def forward(x: jax.Array) -> jax.Array:
    """dctn(x, type=2, axes=(1, 2), norm="ortho") as GEMMs; [B, H, W, C] -> float32."""
    batch, height, width, channels = x.shape
    dtype = compute_dtype(x.dtype)
    if uses_kronecker_form(height, width):
        z = matmul("nm,bmc->bnc", kronecker_matrix(height, width), x.reshape(batch, height * width, channels), dtype)
        return z.reshape(batch, height, width, channels)
    c_h, c_w = _separable_matrices(height, width)
    a = matmul("kw,bhwc->bhkc", c_w, x, dtype)
    return matmul("ph,bhkc->bpkc", c_h, a, dtype)


def inverse(z: jax.Array, out_dtype) -> jax.Array:
    """idctn(z, type=2, axes=(1, 2), norm="ortho") as GEMMs with the transposed matrices."""
    batch, height, width, channels = z.shape
    dtype = compute_dtype(out_dtype)
    if uses_kronecker_form(height, width):
        y = matmul("nm,bnc->bmc", kronecker_matrix(height, width), z.reshape(batch, height * width, channels), dtype)
        return y.reshape(batch, height, width, channels).astype(out_dtype)
    c_h, c_w = _separable_matrices(height, width)
    u = matmul("ph,bpkc->bhkc", c_h, z, dtype)
    return matmul("kw,bhkc->bhwc", c_w, u, dtype).astype(out_dtype)


def transform_filter_op(forward_transform, inverse_transform):
    """The filter op for one (forward, inverse) transform pair, with its hand-written gradient."""

    @jax.custom_vjp
    def op(x, filt):
        return inverse_transform(forward_transform(x) * filt, x.dtype)

    def op_fwd(x, filt):
        return op(x, filt), (x, filt)

    def op_bwd(residuals, dy):
        x, filt = residuals
        g = forward_transform(dy.astype(x.dtype))  # the operator is symmetric: dx = op(dy)
        dx = inverse_transform(g * filt, x.dtype)
        dfilt = forward_transform(x) * g
        if filt.ndim == 3:  # a static filter gathers the gradient of every sample
            dfilt = dfilt.sum(0)
        return dx, dfilt.astype(filt.dtype)

    op.defvjp(op_fwd, op_bwd)
    return op


reference_op = transform_filter_op(reference_forward, reference_inverse)
xla_op = transform_filter_op(forward, inverse)
