"""Global spectral filtering of NHWC feature maps: y = irfft2(rfft2(x, ortho) * filt, ortho).

    y = spectral_filter(x, filt)    # x [B, H, W, C]; filt complex [H, W//2+1, C] or [B, H, W//2+1, C]

This is the token mixing of GFNet (one static filter per channel, a global circular convolution
in O(N log N)) and of input-dependent spectral mixers (a filter per sample).

Implementations (`impl=`, the names of `mixtok.kernels.dispatch`), each with a custom VJP:
- "reference": `jnp.fft.rfft2` / `irfft2` in float32 (reference.py), with the gradient of xla.py.
- "xla": the same transform as matrix products with constant real DFT matrices (`mixtok.kernels.dft`:
  the Kronecker form up to 256 pixels (16x16), the separable form above), float32 accumulation; bf16
  inputs run the GEMMs in bf16, which is the tensor-core path on GPU/TPU (xla.py).
- "pallas": one fused kernel per (batch, channel block) and one for its gradient, as a Mosaic TPU
  `pl.pallas_call` (pallas_tpu.py; on TPU, and in Pallas's interpreter with `interpret=True` on any
  backend); on GPU the Mosaic GPU forward kernel (mosaic_gpu.py: bf16 x, C a multiple of 64) with
  the "xla" gradient. Block sizes: `SpectralFilterBlocks`. Grids up to 32x32.
- "auto": on CPU the faster XLA form for the grid (below); on GPU and TPU "xla" for now: neither
  Pallas kernel has been compiled on its accelerator (none was available), so "auto" does not pick
  them until a run on one has checked them (`impl="pallas"` asks for them explicitly).

Measured on a 2-core CPU (AMD EPYC, jax 0.10.2, 2026-11-21; table in benchmarks/RESULTS.md):
"xla" wins clearly on 7x7 and 8x8 (1.4-2.6x), 14x14 to 32x32 is a draw within the run-to-run
noise, and "reference" wins the fp32 forward at 56x56 (0.7x). Hence "auto" on CPU: "xla" for
H*W <= 64 (CPU_XLA_MAX_PIXELS), "reference" above, where the two are even or the FFT is ahead and
it is the exact definition.
"""

import jax
import jax.numpy as jnp

from mixtok.kernels import dispatch
from mixtok.kernels.spectral_filter.pallas_tpu import DEFAULT_BLOCKS, SpectralFilterBlocks, pallas_op
from mixtok.kernels.spectral_filter.reference import check_inputs, spectral_filter_reference
from mixtok.kernels.spectral_filter.xla import reference_op, xla_op

IMPLS = dispatch.IMPLS
CPU_XLA_MAX_PIXELS = 64  # measured: "auto" on CPU uses "xla" for H*W up to this, "reference" above
MOSAIC_GPU_MAX_BLOCK_CHANNELS = 64  # the Mosaic GPU kernel's safer SMEM plan at 14x14 (mosaic_gpu.py)

__all__ = [
    "DEFAULT_BLOCKS",
    "IMPLS",
    "SpectralFilterBlocks",
    "resolve_impl",
    "spectral_filter",
    "spectral_filter_reference",
]


def resolve_impl(impl: str, height: int, width: int) -> str:
    """The implementation `impl` stands for on this backend and grid ("auto" -> "reference" or "xla")."""

    def auto(backend: str) -> str:
        if backend == "cpu":
            return "xla" if height * width <= CPU_XLA_MAX_PIXELS else "reference"
        return "xla"  # GPU: the Mosaic GPU kernel is uncompiled; TPU: the Mosaic TPU lowering is unchecked

    return dispatch.resolve_impl("spectral_filter", impl, auto)


def spectral_filter(
    x: jax.Array,
    filt: jax.Array,
    *,
    impl: str = "auto",
    interpret: bool = False,
    blocks: SpectralFilterBlocks = DEFAULT_BLOCKS,
) -> jax.Array:
    """Filters every channel of `x` over (H, W) by `filt` in the 2-D Fourier domain.

    x: [B, H, W, C], float32 or bfloat16 (the output has x's dtype). filt: complex, [H, W//2+1, C]
    shared by the batch or [B, H, W//2+1, C] per sample; used as complex64. impl: "auto",
    "reference", "xla" or "pallas" (module docstring). interpret: runs the Pallas kernel in Pallas's
    interpreter (how the tests check it on CPU); only used by impl="pallas". blocks: the Pallas
    kernels' block sizes.
    """
    dispatch.check_impl("spectral_filter", impl)
    check_inputs(x, filt)
    height, width = x.shape[1:3]
    name = resolve_impl(impl, height, width)
    filt = filt.astype(jnp.complex64)
    if name == "reference":
        return reference_op(x, filt)
    if name == "xla":
        return xla_op(x, filt)
    blocks.check_grid(height, width)
    if dispatch.pallas_target("spectral_filter", interpret) == "mosaic_gpu":
        from mixtok.kernels.spectral_filter.mosaic_gpu import mosaic_gpu_op  # noqa: PLC0415 (imports Mosaic GPU)

        return mosaic_gpu_op(min(blocks.channels, MOSAIC_GPU_MAX_BLOCK_CHANNELS))(x, filt)
    return pallas_op(blocks, bool(interpret))(x, filt)
