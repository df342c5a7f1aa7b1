"""Global filtering of NHWC feature maps in the 2-D DCT domain: y = idctn(dctn(x) * filt), DCT-II, 'ortho'.

    y = dct_filter(x, filt)    # x [B, H, W, C]; filt real [H, W, C] (static) or [B, H, W, C] (per sample)

This is the token mixing of the Dynamic Spectrum Mixer (`mixtok.mixers.dsm`): every channel is
transformed over (H, W) by the orthonormal 2-D DCT-II, its coefficients are scaled by a real filter,
and the result is transformed back. With orthonormal matrices C_H [H, H] and C_W [W, W],

    C[k, n] = s_k cos(pi (2n + 1) k / (2N)),   s_0 = sqrt(1/N), s_k = sqrt(2/N) for k > 0,
    y_c = C_H^T (F_c * (C_H x_c C_W^T)) C_W                  (one H x W plane per channel c)

which is `scipy.fft.idctn(scipy.fft.dctn(x, type=2, norm="ortho") * F, type=2, norm="ortho")` over
axes (1, 2). Unlike the DFT's filter (`spectral_filter`), the spectrum and the filter are real, and
the op is a circular convolution of the mirror-extended 2H x 2W map with a real, even kernel (the
DFT of that kernel is F mirrored, zero at the Nyquist row and column), so the border reflects
instead of wrapping around.

Implementations (`impl=`), each with its own `jax.custom_vjp`:
- "fft": `jax.scipy.fft.dctn` / `idctn` (FFT-based) in float32: the reference path.
- "dct": the same transform as matrix products with constant real DCT-II matrices: the Kronecker
  form C_H (x) C_W [H*W, H*W] (one GEMM each way, channels as the GEMM's N dimension) up to
  KRONECKER_MAX_PIXELS = 256 pixels (16x16), and the separable form (C_W over W, then C_H over H)
  above. Float32 inputs use float32 matrices at precision=HIGHEST; bfloat16 inputs use bfloat16
  matrices and operands with float32 accumulation (`preferred_element_type`), the tensor-core path.
  The spectrum and the filter product between the two GEMMs are float32.
- "auto": on CPU the faster of the two for the grid (measurement below); on GPU/TPU "dct", since
  there is no Pallas kernel (`interpret=` is reserved for one).

Gradients. The operator x -> C^T diag(F) C x is symmetric, because C is orthogonal. So
dx = dct_filter(dy, F) with the same filter, and dF = dctn(x) * dctn(dy), summed over the batch for
a static filter; both reuse the forward transform of dy. This is exactly what `jax.grad` of
`dct_filter_reference` returns (tests/kernels/test_dct_filter.py).

Measured on the 2-core CPU (AMD EPYC, jax 0.10.2, 2026-11-21, shared with other jobs at load ~4, so
+-30% run to run): forward + backward of a sum-of-squares loss under jit, per-sample filter, B = 8,
C = 64, float32, median of 20 runs (ms):

    grid      7x7    14x14   16x16   28x28   32x32   56x56   | B = 2, C = 16:  128x128   256x256
    fft       3.6    14.3    6.6     22.0    31.3    140     |                 49        358
    dct       0.21   1.2     2.0     4.4     6.5     27      |                 25        156

"dct" is 2-17x faster on every grid measured, forward alone and forward + backward, float32 and
bfloat16, static and per-sample filters (jax's DCT interleaves, runs a complex FFT per axis and twiddles). The
Kronecker form beats the separable one up to 12x12 on this CPU and ties at 14x14 (16x16: 2.0 vs
1.3 ms); it stays up to 256 pixels as in `mixtok.kernels.dft`, where it is one tensor-core GEMM
on GPU/TPU. Hence "auto" on CPU: "dct" for H*W <= CPU_DCT_MAX_PIXELS = 256 * 256 (the largest grid
measured), "fft" above it, where the O(N log N) transform must eventually win.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from mixtok.kernels.dft import compute_dtype, matmul
from mixtok.registry import unknown_name_error

IMPLS = ("auto", "fft", "dct")
KRONECKER_MAX_PIXELS = 256       # "dct" uses one [H*W, H*W] GEMM each way up to this many pixels
CPU_DCT_MAX_PIXELS = 256 * 256  # "auto" on CPU: "dct" up to the largest grid measured, "fft" above


def check_shapes(x: jax.Array, filt: jax.Array) -> None:
    """Raises a ValueError that says which dimension or dtype of `x` or `filt` is wrong and why."""
    if x.ndim != 4:
        raise ValueError(f"dct_filter takes NHWC x [B, H, W, C]; got shape {x.shape}.")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be real floating point (float32 or bfloat16); got {x.dtype}.")
    batch, height, width, channels = x.shape
    static = (height, width, channels)
    if filt.shape not in (static, (batch,) + static):
        raise ValueError(
            f"filt must be [H, W, C] = {list(static)} (static) or [B, H, W, C] = {[batch, *static]} (per sample) "
            f"for x of shape {list(x.shape)}; got {list(filt.shape)}.")
    if not jnp.issubdtype(filt.dtype, jnp.floating):
        raise ValueError(f"filt must be real floating point (the DCT spectrum is real); got {filt.dtype}.")


# --------------------------------------------------------------------------- DCT-II matrices


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


@functools.lru_cache(maxsize=None)
def _kronecker_matrix(height: int, width: int) -> np.ndarray:
    """C_H (x) C_W [H*W, H*W] in float64: rows (k_h, k_w), columns (h, w), both row-major."""
    return np.kron(dct_matrix(height), dct_matrix(width))


@functools.lru_cache(maxsize=None)
def _separable_matrices(height: int, width: int) -> tuple:
    return dct_matrix(height), dct_matrix(width)


def _dct_forward(x: jax.Array) -> jax.Array:
    """dctn(x, type=2, axes=(1, 2), norm="ortho") as GEMMs; [B, H, W, C] -> float32."""
    batch, height, width, channels = x.shape
    dtype = compute_dtype(x.dtype)
    if uses_kronecker_form(height, width):
        z = matmul("nm,bmc->bnc", _kronecker_matrix(height, width), x.reshape(batch, height * width, channels),
                    dtype)
        return z.reshape(batch, height, width, channels)
    c_h, c_w = _separable_matrices(height, width)
    a = matmul("kw,bhwc->bhkc", c_w, x, dtype)
    return matmul("ph,bhkc->bpkc", c_h, a, dtype)


def _dct_inverse(z: jax.Array, out_dtype) -> jax.Array:
    """idctn(z, type=2, axes=(1, 2), norm="ortho") as GEMMs with the transposed matrices."""
    batch, height, width, channels = z.shape
    dtype = compute_dtype(out_dtype)
    if uses_kronecker_form(height, width):
        y = matmul("nm,bnc->bmc", _kronecker_matrix(height, width), z.reshape(batch, height * width, channels),
                    dtype)
        return y.reshape(batch, height, width, channels).astype(out_dtype)
    c_h, c_w = _separable_matrices(height, width)
    u = matmul("ph,bpkc->bhkc", c_h, z, dtype)
    return matmul("kw,bhkc->bhwc", c_w, u, dtype).astype(out_dtype)


# --------------------------------------------------------------------------- FFT-based DCT


def _fft_forward(x: jax.Array) -> jax.Array:
    return jax.scipy.fft.dctn(x.astype(jnp.float32), type=2, axes=(1, 2), norm="ortho")


def _fft_inverse(z: jax.Array, out_dtype) -> jax.Array:
    return jax.scipy.fft.idctn(z, type=2, axes=(1, 2), norm="ortho").astype(out_dtype)


def dct_filter_reference(x: jax.Array, filt: jax.Array) -> jax.Array:
    """The definition in float32, differentiated by JAX: idctn(dctn(x, ortho) * filt, ortho) over (H, W)."""
    check_shapes(x, filt)
    return _fft_inverse(_fft_forward(x) * filt.astype(jnp.float32), x.dtype)


# --------------------------------------------------------------------------- the op


def _with_vjp(forward, inverse):
    """The filter op for one (forward, inverse) transform pair, with its hand-written gradient."""

    @jax.custom_vjp
    def op(x, filt):
        return inverse(forward(x) * filt, x.dtype)

    def op_fwd(x, filt):
        return op(x, filt), (x, filt)

    def op_bwd(residuals, dy):
        x, filt = residuals
        g = forward(dy.astype(x.dtype))                 # the operator is symmetric: dx = op(dy)
        dx = inverse(g * filt, x.dtype)
        dfilt = forward(x) * g
        if filt.ndim == 3:  # a static filter gathers the gradient of every sample
            dfilt = dfilt.sum(0)
        return dx, dfilt.astype(filt.dtype)

    op.defvjp(op_fwd, op_bwd)
    return op


_OPS = {
    "fft": _with_vjp(_fft_forward, _fft_inverse),
    "dct": _with_vjp(_dct_forward, _dct_inverse),
}


def resolve_impl(impl: str, height: int, width: int) -> str:
    """The implementation `impl` stands for on this backend and grid ("auto" -> "fft" or "dct")."""
    if impl not in IMPLS:
        raise unknown_name_error("dct_filter impl", impl, IMPLS)
    if impl != "auto":
        return impl
    if jax.default_backend() == "cpu":
        return "dct" if height * width <= CPU_DCT_MAX_PIXELS else "fft"
    return "dct"  # GPU/TPU: the tensor-core GEMMs until a Pallas kernel exists


def dct_filter(x: jax.Array, filt: jax.Array, *, impl: str = "auto", interpret: bool = False) -> jax.Array:
    """Scales the 2-D DCT-II ('ortho') coefficients of every channel of `x` over (H, W) by `filt`.

    x: [B, H, W, C], float32 or bfloat16 (the output has x's dtype). filt: real, [H, W, C] shared by
    the batch or [B, H, W, C] per sample; used as float32, its gradient has filt's dtype. impl:
    "auto", "fft" or "dct" (module docstring). interpret: runs a Pallas kernel in interpret mode; it
    has no effect until a Pallas implementation exists (none yet).
    """
    del interpret  # only meaningful for a Pallas implementation, and there is none yet
    if impl not in IMPLS:
        raise unknown_name_error("dct_filter impl", impl, IMPLS)
    check_shapes(x, filt)
    name = resolve_impl(impl, x.shape[1], x.shape[2])
    return _OPS[name](x, filt.astype(jnp.float32))
