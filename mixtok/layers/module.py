"""The base of mixtok's modules: the compute and parameter dtypes that every module takes.

    class Mixer(Module):
        dim: int

        @nn.compact
        def __call__(self, x, *, train: bool = False):
            return nn.Dense(self.dim, **self.dtype_kwargs)(x)

`dtype` is the computation dtype (None: the inputs'), `param_dtype` the dtype the parameters are
stored in. Both are keyword-only, so a subclass's own fields keep their positions and may be
declared without defaults.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp


class Module(nn.Module):
    """A flax linen module with mixtok's `dtype` and `param_dtype` (keyword-only)."""

    _: dataclasses.KW_ONLY
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @property
    def dtype_kwargs(self) -> dict:
        """`dtype` and `param_dtype` as keyword arguments, for the submodules a module builds."""
        return dict(dtype=self.dtype, param_dtype=self.param_dtype)


def check_channels(module: nn.Module, x: Any, *, nhwc: bool = False) -> None:
    """Raises one ValueError line unless `x` ends in `module.dim` channels (and is [B, H, W, C] if `nhwc`)."""
    if x.shape[-1:] != (module.dim,) or (nhwc and x.ndim != 4):
        layout = f"NHWC input [B, H, W, {module.dim}]" if nhwc else f"input [..., {module.dim}]"
        raise ValueError(f"{type(module).__name__}(dim={module.dim}) takes {layout}; got shape {x.shape}.")
