"""The `pl.pallas_call` every Mosaic TPU kernel of mixtok makes: grid semantics on TPU, none when interpreted.

The kernels are written within Mosaic TPU's rules (a block's last dimension is the full array
dimension or a multiple of 128, its second-to-last a multiple of 8, 16 for bf16) and run, with
`interpret=True`, in Pallas's interpreter on any backend, which is how the tests check them on CPU.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl


def pallas_tpu_call(
    kernel,
    *,
    grid,
    in_specs,
    out_specs,
    out_shape,
    interpret: bool,
    semantics: Sequence[str],
    scratch: Sequence[tuple] = (),
):
    """`pl.pallas_call` with float32 VMEM `scratch` shapes and, compiled on TPU, the grid's `semantics`.

    semantics: one of "parallel" / "arbitrary" per grid axis; an axis that carries state (an
    accumulator in scratch or in an output block revisited along it) must be "arbitrary".
    """
    # The VMEM scratch type comes from the TPU module, which imports on any backend and whose
    # scratch the interpreter runs.
    from jax.experimental.pallas import tpu as pltpu  # noqa: PLC0415

    extra = {}
    if not interpret and jax.default_backend() == "tpu":
        extra["compiler_params"] = pltpu.CompilerParams(dimension_semantics=tuple(semantics))
    if scratch:
        extra["scratch_shapes"] = [pltpu.VMEM(shape, jnp.float32) for shape in scratch]
    return pl.pallas_call(
        kernel, grid=grid, in_specs=in_specs, out_specs=out_specs, out_shape=out_shape, interpret=interpret, **extra
    )
