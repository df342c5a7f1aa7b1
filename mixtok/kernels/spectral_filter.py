"""Global spectral filtering of NHWC feature maps: y = irfft2(rfft2(x, ortho) * filt, ortho).

    y = spectral_filter(x, filt)    # x [B, H, W, C]; filt complex [H, W//2+1, C] or [B, H, W//2+1, C]

This is the token mixing of GFNet (one static filter per channel, a global circular convolution
in O(N log N)) and of input-dependent spectral mixers (a filter per sample).

Implementations (`impl=`), each with its own `jax.custom_vjp`:
- "fft": `jnp.fft.rfft2` / `irfft2` in float32, the reference.
- "dft": the same transform as matrix products with constant real DFT matrices (`mixtok.kernels.dft`:
  the Kronecker form up to 256 pixels (16x16), the separable form above), float32 accumulation; bf16
  inputs run the GEMMs in bf16, which is the tensor-core path on GPU/TPU.
- "pallas": one fused kernel per (batch, channel block), kernels.md 9.1: load the [H*W, Cb] tile of
  x once, Z = F x (F the real [2*H*Wf, H*W] Kronecker DFT matrix, one GEMM), multiply by the filter
  with the Hermitian weights m folded in, y = F^T Z' (one GEMM), store NHWC: one pass over HBM. The
  backward is one more kernel that computes dx (the same filter, conjugated) and dfilt together; for
  a filter shared by the batch the batch is the grid's inner axis and dfilt is summed in place, so
  it is written once per channel block. Block sizes: `SpectralFilterBlocks`. Grids up to 32x32.
- "auto": on CPU the faster XLA form for the grid (table below); on GPU and TPU "dft" for now (see
  below: the Pallas kernel has not been compiled on either yet).

Pallas backend. The kernel is a `pl.pallas_call` over a (B, C/Cb) grid with BlockSpecs and
`jnp.dot`, written within Mosaic TPU's rules (a block's last dimension is the full C or a multiple
of 128; grid semantics parallel/arbitrary) and run in Pallas's interpreter (`interpret=True`, how the
tests check it on CPU). It has not been compiled on a TPU: none was available, so "auto" does not
pick it there until a run on one has checked it (`impl="pallas"` asks for it explicitly). On GPU, `pl.pallas_call` is
not the way: Pallas's Triton lowering is deprecated since JAX 0.11 and needs power-of-two blocks
(196 pixels would pad to 256), and Mosaic GPU, the supported backend, does not lower `jnp.dot`
inside a kernel (its GEMMs are `plgpu.wgmma` on SMEM operands). So on GPU impl="pallas" runs the
forward pass as `mixtok.kernels.spectral_filter_mgpu` (`plgpu.kernel` + wgmma, bf16 x, C a multiple
of 64) and its gradient with the "dft" form: the backward kernel is not ported yet. That Mosaic GPU
kernel has run only in the Mosaic GPU CPU interpreter; it has not been compiled or timed on a GPU
(none was available), which is why "auto" does not pick it yet.

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

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl

from mixtok.kernels import dft
from mixtok.registry import unknown_name_error

IMPLS = ("auto", "fft", "dft", "pallas")
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


# --------------------------------------------------------------------------------------------------
# impl="pallas": the fused kernel of kernels.md 9.1 (DFT as a GEMM -> filter -> inverse GEMM, one
# pass over HBM), written with `pl.pallas_call` and BlockSpecs.


@dataclasses.dataclass(frozen=True)
class SpectralFilterBlocks:
    """Block sizes of the Pallas kernel.

    channels: channels per program (the GEMMs' N dimension). Each program holds one [H*W, channels]
      tile of x, the [2*H*Wf, channels] spectrum and the two constant DFT matrices. The block is this
      many channels when C is a multiple of it, else the largest multiple of 128 that divides C and
      is not larger, else all C channels (TPU needs a multiple of 128 or the full dimension).
    max_pixels: the largest grid (H*W) the kernel takes. It uses the Kronecker form only (one
      [2*H*Wf, H*W] GEMM each way, about 8*H*Wf flop per element), which kernels.md 9.1 shows stays
      under the memory bound up to ~16x16 and costs 2-11x the bound from 24x24 on; 32x32 is the
      largest grid whose two matrices (2 x 4.4 MB in float32) fit a TPU core's VMEM with room to spare.
      Larger grids need the separable or Monarch form, not implemented: use impl="dft" there.
    """

    channels: int = 128
    max_pixels: int = 1024

    def channel_block(self, channels: int) -> int:
        if channels <= self.channels:
            return channels
        if channels % self.channels == 0:
            return self.channels
        for block in range(self.channels - self.channels % 128, 0, -128):
            if channels % block == 0:
                return block
        return channels


DEFAULT_BLOCKS = SpectralFilterBlocks()


@functools.lru_cache(maxsize=None)
def _pallas_matrices(height: int, width: int) -> tuple:
    """(F [2*H*Wf, H*W], F^T, m [H*Wf, 1]) in float64: rows of F are the real parts of the half
    spectrum, ordered (p, k), then the imaginary parts; the inverse of a spectrum U whose columns
    are already scaled by the Hermitian weights m is exactly F^T U (kernels.md 9.1, step 3)."""
    forward, _ = dft._kronecker_matrices(height, width)  # rows (p, re/im, k)
    wf = width // 2 + 1
    forward = forward.reshape(height, 2, wf, height * width).transpose(1, 0, 2, 3).reshape(2 * height * wf, -1)
    weights = np.tile(dft.half_spectrum_weights(width), height)[:, None]
    return forward, np.ascontiguousarray(forward.T), weights


def _dot(a, b, dtype):
    """a @ b with float32 accumulation; exact (HIGHEST) for float32 operands, one pass for bf16."""
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else jax.lax.Precision.DEFAULT
    return jnp.dot(a.astype(dtype), b.astype(dtype), precision=precision, preferred_element_type=jnp.float32)


def _filter_kernel(x_ref, forward_ref, inverse_ref, filt_real_ref, filt_imag_ref, y_ref):
    """One (batch, channel-block) tile: y = F^T ((F x) * w), with w = m * filt (complex, split)."""
    dtype = forward_ref.dtype
    half = filt_real_ref.shape[0]                                   # H * Wf
    z = _dot(forward_ref[...], x_ref[...], dtype)                   # [2 H Wf, Cb] float32
    zr, zi = z[:half], z[half:]
    wr, wi = filt_real_ref[...], filt_imag_ref[...]
    u = jnp.concatenate([zr * wr - zi * wi, zr * wi + zi * wr], axis=0)
    y_ref[...] = _dot(inverse_ref[...], u, dtype).astype(y_ref.dtype)


def _gradient_kernel(x_ref, dy_ref, forward_ref, inverse_ref, weights_ref, filt_real_ref, filt_imag_ref,
                     dx_ref, dfilt_real_ref, dfilt_imag_ref, *, accumulate: bool):
    """dx = F^T (conj(w) * (F dy)) and dfilt = m * (F x) * conj(F dy) for one tile.

    With `accumulate` (a filter shared by the batch) the dfilt block is the same for every batch
    index, which is the grid's innermost axis: it is zeroed at b = 0 and summed into, so the
    filter gradient is written once per channel block instead of once per sample.
    """
    dtype = forward_ref.dtype
    half = filt_real_ref.shape[0]
    z = _dot(forward_ref[...], x_ref[...], dtype)
    g = _dot(forward_ref[...], dy_ref[...], dtype)
    zr, zi, gr, gi = z[:half], z[half:], g[:half], g[half:]
    wr, wi = filt_real_ref[...], filt_imag_ref[...]
    u = jnp.concatenate([gr * wr + gi * wi, gi * wr - gr * wi], axis=0)  # conj(w) * G
    dx_ref[...] = _dot(inverse_ref[...], u, dtype).astype(dx_ref.dtype)
    m = weights_ref[...]
    dfilt_real = m * (zr * gr + zi * gi)                            # m * Z * conj(G)
    dfilt_imag = m * (zi * gr - zr * gi)
    if accumulate:
        @pl.when(pl.program_id(1) == 0)
        def _():
            dfilt_real_ref[...] = jnp.zeros_like(dfilt_real_ref)
            dfilt_imag_ref[...] = jnp.zeros_like(dfilt_imag_ref)

        dfilt_real_ref[...] += dfilt_real
        dfilt_imag_ref[...] += dfilt_imag
    else:
        dfilt_real_ref[...] = dfilt_real
        dfilt_imag_ref[...] = dfilt_imag


def _compiler_params(interpret: bool, accumulate: bool):
    """Mosaic TPU grid semantics: the batch axis accumulates the static filter's gradient."""
    if interpret or jax.default_backend() != "tpu":
        return None
    from jax.experimental.pallas import tpu as pltpu  # noqa: PLC0415 (TPU-only module)

    return pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary" if accumulate else "parallel"))


def _pallas_call(kernel, grid, in_specs, out_specs, out_shape, interpret, accumulate=False):
    params = _compiler_params(interpret, accumulate)
    extra = {} if params is None else {"compiler_params": params}
    return pl.pallas_call(kernel, grid=grid, in_specs=in_specs, out_specs=out_specs, out_shape=out_shape,
                          interpret=interpret, **extra)


def _pallas_layout(x, filt, blocks):
    """x as [B, H*W, C], the filter as real and imaginary [(B,) H*Wf, C] float32 with m folded in."""
    batch, height, width, channels = x.shape
    forward, inverse, weights = _pallas_matrices(height, width)
    dtype = dft.compute_dtype(x.dtype)
    matrices = (jnp.asarray(forward, dtype), jnp.asarray(inverse, dtype), jnp.asarray(weights, jnp.float32))
    filt = filt.reshape(filt.shape[:-3] + (-1, channels))
    return x.reshape(batch, height * width, channels), filt, matrices, blocks.channel_block(channels)


def _tile_specs(pixels, half, cb, per_sample, grid_order):
    """BlockSpecs of a [B, pixels, C] activation, the constant matrices and a [(B,) half, C] filter.

    grid_order "bc": grid (B, C/cb); "cb": grid (C/cb, B), the batch innermost.
    """
    if grid_order == "bc":
        def index(fn):
            return lambda b, c: fn(b, c)
    else:
        def index(fn):
            return lambda c, b: fn(b, c)
    activation = pl.BlockSpec((None, pixels, cb), index(lambda b, c: (b, 0, c)))
    forward = pl.BlockSpec((2 * half, pixels), index(lambda b, c: (0, 0)))
    inverse = pl.BlockSpec((pixels, 2 * half), index(lambda b, c: (0, 0)))
    weights = pl.BlockSpec((half, 1), index(lambda b, c: (0, 0)))
    if per_sample:
        filt = pl.BlockSpec((None, half, cb), index(lambda b, c: (b, 0, c)))
    else:
        filt = pl.BlockSpec((half, cb), index(lambda b, c: (0, c)))
    return activation, forward, inverse, weights, filt


def _pallas_forward(x, filt_real, filt_imag, matrices, cb, interpret):
    batch, pixels, channels = x.shape
    half = filt_real.shape[-2]
    activation, forward, inverse, _, filt = _tile_specs(pixels, half, cb, filt_real.ndim == 3, "bc")
    return _pallas_call(
        _filter_kernel, (batch, channels // cb), [activation, forward, inverse, filt, filt], activation,
        jax.ShapeDtypeStruct(x.shape, x.dtype), interpret)(x, matrices[0], matrices[1], filt_real, filt_imag)


def _pallas_gradients(x, dy, filt_real, filt_imag, matrices, cb, interpret):
    batch, pixels, channels = x.shape
    half = filt_real.shape[-2]
    per_sample = filt_real.ndim == 3
    activation, forward, inverse, weights, filt = _tile_specs(pixels, half, cb, per_sample, "cb")
    kernel = functools.partial(_gradient_kernel, accumulate=not per_sample)
    dfilt_shape = jax.ShapeDtypeStruct(filt_real.shape, jnp.float32)
    return _pallas_call(
        kernel, (channels // cb, batch), [activation, activation, forward, inverse, weights, filt, filt],
        [activation, filt, filt], [jax.ShapeDtypeStruct(x.shape, x.dtype), dfilt_shape, dfilt_shape], interpret,
        accumulate=not per_sample)(x, dy, *matrices, filt_real, filt_imag)


@functools.lru_cache(maxsize=None)
def _pallas_op(blocks: SpectralFilterBlocks, interpret: bool):
    """The Pallas filter op with its custom VJP, for one block configuration and mode."""

    def folded(x, filt):
        x2, filt2, matrices, cb = _pallas_layout(x, filt, blocks)
        weights = matrices[2]                                       # m, folded into the filter
        return x2, weights * jnp.real(filt2), weights * jnp.imag(filt2), matrices, cb

    @jax.custom_vjp
    def op(x, filt):
        x2, filt_real, filt_imag, matrices, cb = folded(x, filt)
        return _pallas_forward(x2, filt_real, filt_imag, matrices, cb, interpret).reshape(x.shape)

    def op_fwd(x, filt):
        return op(x, filt), (x, filt)

    def op_bwd(residuals, dy):
        x, filt = residuals
        x2, filt_real, filt_imag, matrices, cb = folded(x, filt)
        dy2 = dy.astype(x.dtype).reshape(x2.shape)
        dx, dfilt_real, dfilt_imag = _pallas_gradients(x2, dy2, filt_real, filt_imag, matrices, cb, interpret)
        dfilt = jax.lax.complex(dfilt_real, dfilt_imag).reshape(filt.shape)
        return dx.reshape(x.shape), dfilt.astype(filt.dtype)

    op.defvjp(op_fwd, op_bwd)
    return op


@functools.lru_cache(maxsize=None)
def _mosaic_gpu_op(block_channels: int, interpret: bool = False):
    """GPU impl="pallas": the Mosaic GPU forward kernel, with the "dft" form's gradient.

    `interpret=True` runs the kernel in the Mosaic GPU CPU interpreter (how the tests check this op).
    Call it under `jax.jit` then: the interpreter's io_callbacks run eager JAX ops, and with eager
    (un-jitted) grad they can deadlock against the backward's ops on a small CPU (seen on 2 cores).
    """
    from mixtok.kernels import spectral_filter_mgpu as mgpu  # noqa: PLC0415 (imports Mosaic GPU)

    @jax.custom_vjp
    def op(x, filt):
        filt_real, filt_imag = mgpu.fold_filter(filt, x.shape[2])
        return mgpu.spectral_filter_forward_mgpu(x, filt_real, filt_imag, block_channels=block_channels,
                                                 interpret=interpret)

    def op_fwd(x, filt):
        return op(x, filt), (x, filt)

    def op_bwd(residuals, dy):
        return jax.vjp(_OPS["dft"], *residuals)[1](dy)

    op.defvjp(op_fwd, op_bwd)
    return op


_OPS = {
    "fft": _with_vjp(_fft_forward_spectrum, _fft_inverse_spectrum),
    "dft": _with_vjp(dft.forward_spectrum, dft.inverse_spectrum),
}


def _check_pallas(height: int, width: int, interpret: bool, blocks: SpectralFilterBlocks) -> None:
    if height * width > blocks.max_pixels:
        raise ValueError(
            f"impl='pallas' takes grids of at most {blocks.max_pixels} pixels (SpectralFilterBlocks.max_pixels, the "
            f"Kronecker form); got {height}x{width} = {height * width}. Use impl='dft' or 'fft' (or 'auto') there.")
    backend = jax.default_backend()
    if interpret or backend == "tpu":
        return
    if backend == "cpu":
        raise ValueError("impl='pallas' runs on CPU only in Pallas's interpreter: pass interpret=True "
                         "(or use impl='auto', which picks the faster XLA form on CPU).")
    if backend != "gpu":
        raise ValueError(f"impl='pallas' has no kernel for the {backend!r} backend; use impl='auto'.")


def resolve_impl(impl: str, height: int, width: int) -> str:
    """The implementation `impl` stands for on this backend and grid ("auto" -> "fft", "dft" or "pallas")."""
    if impl not in IMPLS:
        raise unknown_name_error("spectral_filter impl", impl, IMPLS)
    if impl != "auto":
        return impl
    backend = jax.default_backend()
    if backend == "cpu":
        return "dft" if height * width <= CPU_DFT_MAX_PIXELS else "fft"
    # GPU: no compiled Pallas GPU kernel yet; TPU: the kernel's Mosaic TPU lowering is unchecked.
    return "dft"


def spectral_filter(x: jax.Array, filt: jax.Array, *, impl: str = "auto", interpret: bool = False,
                    blocks: SpectralFilterBlocks = DEFAULT_BLOCKS) -> jax.Array:
    """Filters every channel of `x` over (H, W) by `filt` in the 2-D Fourier domain.

    x: [B, H, W, C], float32 or bfloat16 (the output has x's dtype). filt: complex, [H, W//2+1, C]
    shared by the batch or [B, H, W//2+1, C] per sample; used as complex64. impl: "auto", "fft",
    "dft" or "pallas" (module docstring). interpret: runs the Pallas kernel in Pallas's interpreter
    (how the tests check it on CPU); only used by impl="pallas". blocks: the Pallas kernel's block
    sizes.
    """
    if impl not in IMPLS:
        raise unknown_name_error("spectral_filter impl", impl, IMPLS)
    check_shapes(x, filt)
    height, width = x.shape[1:3]
    name = resolve_impl(impl, height, width)
    if name == "pallas":
        _check_pallas(height, width, interpret, blocks)
        if jax.default_backend() == "gpu" and not interpret:
            return _mosaic_gpu_op(min(blocks.channels, 64))(x, filt.astype(jnp.complex64))
        return _pallas_op(blocks, bool(interpret))(x, filt.astype(jnp.complex64))
    return _OPS[name](x, filt.astype(jnp.complex64))
