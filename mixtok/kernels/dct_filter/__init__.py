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

Implementations (`impl=`, the names of `mixtok.kernels.dispatch`), with one hand-written VJP (xla.py):
- "reference": `jax.scipy.fft.dctn` / `idctn` (FFT-based) in float32 (reference.py).
- "xla": the same transform as GEMMs with constant real DCT-II matrices, Kronecker form up to 16x16
  and separable above, bf16 GEMMs with float32 accumulation for bf16 inputs (xla.py).
- "auto": on CPU the faster of the two for the grid (measurement below); on GPU/TPU "xla", the
  tensor-core GEMMs.
There is no Pallas kernel for this op yet, so impl="pallas" raises and there is no `interpret=`.

Measured on the 2-core CPU (AMD EPYC, jax 0.10.2, 2026-11-21, shared with other jobs at load ~4, so
+-30% run to run): forward + backward of a sum-of-squares loss under jit, per-sample filter, B = 8,
C = 64, float32, median of 20 runs (ms):

    grid        7x7    14x14   16x16   28x28   32x32   56x56   | B = 2, C = 16:  128x128   256x256
    reference   3.6    14.3    6.6     22.0    31.3    140     |                 49        358
    xla         0.21   1.2     2.0     4.4     6.5     27      |                 25        156

"xla" is 2-17x faster on every grid measured, forward alone and forward + backward, float32 and
bfloat16, static and per-sample filters (jax's DCT interleaves, runs a complex FFT per axis and
twiddles). The Kronecker form beats the separable one up to 12x12 on this CPU and ties at 14x14
(16x16: 2.0 vs 1.3 ms); it stays up to 256 pixels as in `mixtok.kernels.dft`, where it is one
tensor-core GEMM on GPU/TPU. Hence "auto" on CPU: "xla" for H*W <= CPU_XLA_MAX_PIXELS = 256 * 256
(the largest grid measured), "reference" above it, where the O(N log N) transform must eventually win.
"""

import jax
import jax.numpy as jnp

from mixtok.kernels import dispatch
from mixtok.kernels.dct_filter.reference import check_inputs, dct_filter_reference
from mixtok.kernels.dct_filter.xla import dct_matrix, reference_op, xla_op

IMPLS = ("auto", "reference", "xla")  # dispatch.IMPLS but "pallas": no kernel yet
CPU_XLA_MAX_PIXELS = 256 * 256  # "auto" on CPU: "xla" up to the largest grid measured, "reference" above

__all__ = ["IMPLS", "dct_filter", "dct_filter_reference", "dct_matrix", "resolve_impl"]


def resolve_impl(impl: str, height: int, width: int) -> str:
    """The implementation `impl` stands for on this backend and grid ("auto" -> "reference" or "xla")."""

    def auto(backend: str) -> str:
        if backend == "cpu":
            return "xla" if height * width <= CPU_XLA_MAX_PIXELS else "reference"
        return "xla"  # GPU/TPU: the tensor-core GEMMs until a Pallas kernel exists

    return dispatch.resolve_impl("dct_filter", impl, auto, IMPLS)


def dct_filter(x: jax.Array, filt: jax.Array, *, impl: str = "auto") -> jax.Array:
    """Scales the 2-D DCT-II ('ortho') coefficients of every channel of `x` over (H, W) by `filt`.

    x: [B, H, W, C], float32 or bfloat16 (the output has x's dtype). filt: real, [H, W, C] shared by
    the batch or [B, H, W, C] per sample; used as float32, its gradient has filt's dtype. impl:
    "auto", "reference" or "xla" (module docstring).
    """
    dispatch.check_impl("dct_filter", impl, IMPLS)
    check_inputs(x, filt)
    name = resolve_impl(impl, x.shape[1], x.shape[2])
    op = reference_op if name == "reference" else xla_op
    return op(x, filt.astype(jnp.float32))
