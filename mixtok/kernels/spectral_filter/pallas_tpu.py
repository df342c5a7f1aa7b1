"""The spectral filter as one fused Pallas kernel (`pl.pallas_call`, Mosaic TPU), and its gradient kernel.

    op = pallas_op(SpectralFilterBlocks(), interpret=False)
    y = op(x, filt)       # what spectral_filter(x, filt, impl="pallas") runs on TPU (and interpreted)

One program per (batch, channel block), docs/facts/kernels.md, "Spectral filter: DFT-as-GEMM, one
fused pass": load the [H*W, Cb] tile of x once, Z = F x (F the real [2*H*Wf, H*W] Kronecker DFT
matrix, one GEMM), multiply by the filter with the Hermitian weights m folded in, y = F^T Z' (one
GEMM), store NHWC: one pass over HBM. The backward is one more kernel that computes dx (the same
filter, conjugated) and dfilt together; for a filter shared by the batch the batch is the grid's
inner axis and dfilt is summed in place, so it is written once per channel block. Grids up to 32x32
(`SpectralFilterBlocks.max_pixels`).

The kernels follow Mosaic TPU's rules (a block's last dimension is the full C or a multiple of 128;
grid semantics parallel/arbitrary) and run in Pallas's interpreter with `interpret=True`, how the
tests check them on CPU. They have not been compiled on a TPU (none was available), so
impl="auto" does not pick them there.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from mixtok.kernels import dft
from mixtok.kernels.pallas_tpu_common import pallas_tpu_call


@dataclasses.dataclass(frozen=True)
class SpectralFilterBlocks:
    """Block sizes of the spectral filter's Pallas kernels.

    channels: channels per program (the GEMMs' N dimension). Each program holds one [H*W, channels]
      tile of x, the [2*H*Wf, channels] spectrum and the two constant DFT matrices. The block is this
      many channels when C is a multiple of it, else the largest multiple of 128 that divides C and
      is not larger, else all C channels (TPU needs a multiple of 128 or the full dimension). The
      Mosaic GPU forward kernel takes min(channels, 64).
    max_pixels: the largest grid (H*W) the kernel takes. It uses the Kronecker form only (one
      [2*H*Wf, H*W] GEMM each way, about 8*H*Wf flop per element), which stays under the memory
      bound up to ~16x16 and costs 2-11x the bound from 24x24 on (docs/facts/kernels.md, "Spectral
      filter: DFT-as-GEMM"); 32x32 is the largest grid whose two matrices (2 x 4.4 MB in float32) fit
      a TPU core's VMEM with room to spare. Larger grids need the separable or Monarch form, not
      implemented: use impl="xla" there.
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

    def check_grid(self, height: int, width: int) -> None:
        """Raises a ValueError for a grid past the Kronecker form, naming the impls that take it."""
        if height * width > self.max_pixels:
            raise ValueError(
                f"spectral_filter(impl='pallas') takes grids of at most {self.max_pixels} pixels "
                f"(SpectralFilterBlocks.max_pixels, the Kronecker form); got {height}x{width} = {height * width}. "
                "Use impl='xla' or 'reference' (or 'auto') there."
            )


DEFAULT_BLOCKS = SpectralFilterBlocks()


def _dot(a, b, dtype):
    """a @ b with float32 accumulation; exact (HIGHEST) for float32 operands, one pass for bf16."""
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else jax.lax.Precision.DEFAULT
    return jnp.dot(a.astype(dtype), b.astype(dtype), precision=precision, preferred_element_type=jnp.float32)


def _filter_kernel(x_ref, forward_ref, inverse_ref, filt_real_ref, filt_imag_ref, y_ref):
    """One (batch, channel-block) tile: y = F^T ((F x) * w), with w = m * filt (complex, split)."""
    dtype = forward_ref.dtype
    half = filt_real_ref.shape[0]  # H * Wf
    z = _dot(forward_ref[...], x_ref[...], dtype)  # [2 H Wf, Cb] float32
    zr, zi = z[:half], z[half:]
    wr, wi = filt_real_ref[...], filt_imag_ref[...]
    u = jnp.concatenate([zr * wr - zi * wi, zr * wi + zi * wr], axis=0)
    y_ref[...] = _dot(inverse_ref[...], u, dtype).astype(y_ref.dtype)


def _gradient_kernel(
    x_ref,
    dy_ref,
    forward_ref,
    inverse_ref,
    weights_ref,
    filt_real_ref,
    filt_imag_ref,
    dx_ref,
    dfilt_real_ref,
    dfilt_imag_ref,
    *,
    accumulate: bool,
):
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
    dfilt_real = m * (zr * gr + zi * gi)  # m * Z * conj(G)
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


def _layout(x, filt, blocks):
    """x as [B, H*W, C], the filter as real and imaginary [(B,) H*Wf, C] float32 with m folded in."""
    batch, height, width, channels = x.shape
    forward, inverse, weights = dft.split_kronecker_matrices(height, width)
    dtype = dft.compute_dtype(x.dtype)
    matrices = (jnp.asarray(forward, dtype), jnp.asarray(inverse, dtype), jnp.asarray(weights, jnp.float32))
    filt = filt.reshape(filt.shape[:-3] + (-1, channels))
    filt_real, filt_imag = matrices[2] * jnp.real(filt), matrices[2] * jnp.imag(filt)
    return x.reshape(batch, height * width, channels), filt_real, filt_imag, matrices, blocks.channel_block(channels)


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


def _forward(x, filt_real, filt_imag, matrices, cb, interpret):
    batch, pixels, channels = x.shape
    half = filt_real.shape[-2]
    activation, forward, inverse, _, filt = _tile_specs(pixels, half, cb, filt_real.ndim == 3, "bc")
    call = pallas_tpu_call(
        _filter_kernel,
        grid=(batch, channels // cb),
        in_specs=[activation, forward, inverse, filt, filt],
        out_specs=activation,
        out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
        interpret=interpret,
        semantics=("parallel", "parallel"),
    )
    return call(x, matrices[0], matrices[1], filt_real, filt_imag)


def _gradients(x, dy, filt_real, filt_imag, matrices, cb, interpret):
    batch, pixels, channels = x.shape
    half = filt_real.shape[-2]
    per_sample = filt_real.ndim == 3
    activation, forward, inverse, weights, filt = _tile_specs(pixels, half, cb, per_sample, "cb")
    dfilt_shape = jax.ShapeDtypeStruct(filt_real.shape, jnp.float32)
    call = pallas_tpu_call(
        functools.partial(_gradient_kernel, accumulate=not per_sample),
        grid=(channels // cb, batch),
        in_specs=[activation, activation, forward, inverse, weights, filt, filt],
        out_specs=[activation, filt, filt],
        out_shape=[jax.ShapeDtypeStruct(x.shape, x.dtype), dfilt_shape, dfilt_shape],
        interpret=interpret,
        semantics=("parallel", "parallel" if per_sample else "arbitrary"),
    )  # the batch sums a static dfilt
    return call(x, dy, *matrices, filt_real, filt_imag)


@functools.cache
def pallas_op(blocks: SpectralFilterBlocks, interpret: bool):
    """The Pallas filter op with its custom VJP, for one block configuration and mode."""

    @jax.custom_vjp
    def op(x, filt):
        x2, filt_real, filt_imag, matrices, cb = _layout(x, filt, blocks)
        return _forward(x2, filt_real, filt_imag, matrices, cb, interpret).reshape(x.shape)

    def op_fwd(x, filt):
        return op(x, filt), (x, filt)

    def op_bwd(residuals, dy):
        x, filt = residuals
        x2, filt_real, filt_imag, matrices, cb = _layout(x, filt, blocks)
        dy2 = dy.astype(x.dtype).reshape(x2.shape)
        dx, dfilt_real, dfilt_imag = _gradients(x2, dy2, filt_real, filt_imag, matrices, cb, interpret)
        dfilt = jax.lax.complex(dfilt_real, dfilt_imag).reshape(filt.shape)
        return dx.reshape(x.shape), dfilt.astype(filt.dtype)

    op.defvjp(op_fwd, op_bwd)
    return op
