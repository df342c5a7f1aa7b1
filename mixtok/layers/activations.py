"""Activations of the MetaFormer papers: StarReLU and SquaredReLU, plus a name lookup."""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.module import Module
from mixtok.layers.partitioning import param_with_axes
from mixtok.registry import unknown_name_error


class StarReLU(Module):
    """StarReLU(x) = s * relu(x)^2 + b with learnable scalars s (init 1) and b (init 0).

    MetaFormer Baselines for Vision (Yu et al., 2022), sail-sg/metaformer:
    metaformer_baselines.py `StarReLU`. The scalars have shape (1,) as in the official code so
    that checkpoints map one to one.

    With half-precision compute and float32 parameters it computes in float32 and rounds once to
    `dtype`; s and b stay float32, as under PyTorch's autocast (which promotes `s * x**2 + b`).
    Rounded to bfloat16, s and b would give every hidden unit of the MLP the same error of up to 2^-9.
    """

    scale_init: float = 1.0
    bias_init: float = 0.0

    @nn.compact
    def __call__(self, x):
        scale = self.param(
            "scale", param_with_axes(nn.initializers.constant(self.scale_init), (None,)), (1,), self.param_dtype
        )
        bias = self.param(
            "bias", param_with_axes(nn.initializers.constant(self.bias_init), (None,)), (1,), self.param_dtype
        )
        dtype = self.dtype or x.dtype
        x = x.astype(jnp.promote_types(dtype, self.param_dtype))  # float32 compute: see the class docstring
        return (scale * jnp.square(nn.relu(x)) + bias).astype(dtype)


class SquaredReLU(nn.Module):
    """SquaredReLU(x) = relu(x)^2 (So et al., 2021), used in the MetaFormer MLP head."""

    @nn.compact
    def __call__(self, x):
        return jnp.square(nn.relu(x))


class _Fn(nn.Module):
    """A parameter-free activation as a module, so every activation is called the same way."""

    fn: Callable

    def __call__(self, x):
        return self.fn(x)


# PyTorch's nn.GELU is the exact erf form; flax's default is the tanh approximation.
_PARAMETER_FREE = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "identity": lambda x: x,
}
ACTIVATIONS = ("star_relu", "squared_relu", *_PARAMETER_FREE)


def get_activation(kind: str, *, dtype: Any = None, param_dtype: Any = jnp.float32, **kwargs) -> nn.Module:
    """Returns an activation module of `kind` (one of ACTIVATIONS); kwargs go to the module (e.g. name)."""
    if kind == "star_relu":
        return StarReLU(dtype=dtype, param_dtype=param_dtype, **kwargs)
    if kind == "squared_relu":
        return SquaredReLU(**kwargs)
    if kind in _PARAMETER_FREE:
        return _Fn(_PARAMETER_FREE[kind], **kwargs)
    raise unknown_name_error("activation", kind, ACTIVATIONS)
