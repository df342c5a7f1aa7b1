"""The Dense layer of mixtok's modules: timm's initialisation, with logical axis names on its weights."""

from typing import Any

import flax.linen as nn
import jax
from jax import lax

from mixtok.layers.init import dense_kernel_init
from mixtok.layers.partitioning import Axes, zeros_with_axes


def flattening_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """`lax.dot_general` that, on CPU, contracts a rank > 2 `lhs`'s last axis as a matrix product.

    A Dense layer's dot (`lhs[..., C_in]` contracted with `rhs[C_in, C_out]`) is computed on
    `lhs.reshape(-1, C_in)` (free for a contiguous array) and reshaped back: the same numbers. Any
    other contraction, and every contraction on GPU / TPU, is `lax.dot_general` itself.
    """
    (lhs_contracting, rhs_contracting), batch = dimension_numbers
    flat = (
        jax.default_backend() == "cpu"
        and lhs.ndim > 2
        and rhs.ndim == 2
        and tuple(lhs_contracting) == (lhs.ndim - 1,)
        and tuple(rhs_contracting) == (0,)
        and not any(batch)
    )
    if not flat:
        return lax.dot_general(
            lhs, rhs, dimension_numbers, precision=precision, preferred_element_type=preferred_element_type, **kwargs
        )
    y = lax.dot_general(
        lhs.reshape(-1, lhs.shape[-1]),
        rhs,
        (((1,), (0,)), ((), ())),
        precision=precision,
        preferred_element_type=preferred_element_type,
        **kwargs,
    )
    return y.reshape(*lhs.shape[:-1], rhs.shape[1])


class Dense(nn.Dense):
    """`nn.Dense` (the same parameters, names and numerics) whose dot, on CPU, sees a rank > 2 input as a matrix.

    flax's `nn.Dense` contracts the last axis of an input `[..., C_in]` directly. Its kernel gradient is
    then a dot contracting every leading axis at once, which XLA:CPU (JAX 0.10) runs as a transpose of the
    output gradient to memory followed by a slow dot: a Linear(64 -> 128) on [8, 56, 56, 64] followed by
    StarReLU takes 18 ms forward + backward, the same on `[25088, 64]` 5 ms (2-core AMD EPYC, float32).
    So its default `dot_general` is `flattening_dot_general`, which on CPU computes the product on
    `[prod(leading), C_in]` and reshapes the result back; the module's output (and what
    `capture_intermediates` records) keeps the input's leading axes. GPU and TPU keep the rank-N dot: on a
    TPU merging a leading axis that is not a multiple of its tile (197 tokens) would copy the array to a
    new layout. `dot_general=lax.dot_general` restores flax's form everywhere.
    """

    dot_general: Any = flattening_dot_general


def dense(features: int, axes: Axes = ("embed", "mlp"), **kwargs) -> Dense:
    """`nn.Dense(features)` with a trunc-normal(0.02) kernel and a zero bias (timm's `_init_weights`),
    named by the logical `axes` (input, output) that a config's sharding rules map to mesh axes.

    Other keyword arguments go to `nn.Dense` (`name`, `use_bias`, `dtype`, `param_dtype`, or another
    `kernel_init`). Called inside a module's compact method, the layer belongs to that module, so its
    parameter path is the same as `nn.Dense(...)` written there.
    """
    kwargs.setdefault("kernel_init", dense_kernel_init(axes))
    kwargs.setdefault("bias_init", zeros_with_axes((axes[-1],)))
    return Dense(features, **kwargs)
