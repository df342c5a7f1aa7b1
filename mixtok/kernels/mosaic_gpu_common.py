"""What the Mosaic GPU kernels share: the H100's SMEM budget, the bf16 SMEM layout, the interpreter switch.

The kernels (`spectral_filter/mosaic_gpu.py`, `linear_attention/mosaic_gpu.py`) are `plgpu.kernel`s
with `plgpu.wgmma` on SMEM operands, the GPU path of current JAX: Pallas's Triton lowering is
deprecated since JAX 0.11, and Mosaic GPU does not lower `jnp.dot` inside a `pl.pallas_call`
(docs/facts/kernels.md, "Pallas on GPU: backends"). With `interpret=True` they run in the Mosaic GPU
CPU interpreter, a private JAX module (`jax._src.pallas.mosaic_gpu.interpret`, with wgmma since
jax 0.10.2), which is how the tests check them without a GPU.
"""

import jax
from jax.experimental.pallas import mosaic_gpu as plgpu

SMEM_LIMIT = 227 * 1024  # H100 dynamic shared memory per CTA, bytes
WGMMA_ROWS = 64  # wgmma's M granularity: one warpgroup's accumulator rows
TILE_ROWS = 8  # row tiling of every SMEM operand: TMA boxes are multiples of 8 rows
SWIZZLE = 128  # bytes: a bf16 operand's 64 columns are one swizzle row
# Every bf16 wgmma operand: (8, 64) tiles, 128-byte swizzle (Mosaic requires equal lhs/rhs swizzles).
BF16_TRANSFORMS = (plgpu.TilingTransform((TILE_ROWS, SWIZZLE // 2)), plgpu.SwizzleTransform(SWIZZLE))
# float32 tiles loaded in the WGMMA register layout: (8, 32) tiles, the same 128-byte swizzle.
F32_TRANSFORMS = (plgpu.TilingTransform((TILE_ROWS, SWIZZLE // 4)), plgpu.SwizzleTransform(SWIZZLE))


def interpret_params(interpret, op: str):
    """None (compile with Mosaic GPU), or the Mosaic GPU interpreter's parameters for `interpret`.

    interpret: False / None, True (the interpreter's defaults), or an `InterpretGPUParams` (e.g.
    detect_races=True), passed through.
    """
    if interpret is False or interpret is None:
        return None
    try:
        from jax._src.pallas.mosaic_gpu.interpret.params import InterpretGPUParams  # noqa: PLC0415
    except ImportError as error:  # private module: only in JAX versions with the Mosaic GPU interpreter
        raise RuntimeError(
            f"{op}(interpret=True) needs the Mosaic GPU CPU interpreter (jax._src.pallas.mosaic_gpu.interpret, "
            f"with wgmma since jax 0.10.2); this JAX ({jax.__version__}) lacks it: {error}"
        ) from error
    if interpret is True:
        return InterpretGPUParams()
    if isinstance(interpret, InterpretGPUParams):
        return interpret
    raise TypeError(f"interpret must be a bool or an InterpretGPUParams; got {interpret!r}.")


def static_interpret(interpret, op: str):
    """`interpret` as a static jit argument: a bool, or a validated `InterpretGPUParams`."""
    if isinstance(interpret, (bool, int)) or interpret is None:
        return bool(interpret)
    interpret_params(interpret, op)  # validates it before it becomes a static jit argument
    return interpret
