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
