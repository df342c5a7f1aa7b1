"""The weight initialisers of the papers' PyTorch code, as jax initialisers with logical axis names.

Each official codebase initialises its layers one of a few ways; a model picks the one its official
code uses, so a model trained from scratch here starts from the same distribution:

- `TRUNC_NORMAL_INIT`: timm's `trunc_normal_(std=0.02)` for conv and linear weights (zero biases),
  the default of most modern backbones. jax's truncated normal cuts at +-2 standard deviations,
  which timm's absolute bounds (+-2.0) effectively never reach; the small difference in spread only
  matters for from-scratch training.
- `TORCH_DEFAULT_INIT`: PyTorch's own default for `nn.Conv2d` / `nn.Linear` weights,
  kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in)), for models whose official code keeps it.
- `torch_uniform_init(fan_in)`: U(+-1/sqrt(fan_in)) for any shape: PyTorch's default bias init
  (its weights too, when the fan-in cannot be read from the kernel's shape).
- `fan_out_normal_init`: normal(0, sqrt(2 / fan_out)), fan_out = k * k * out / groups, the conv
  init of the Swin / PVT lineage (`m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))`).
- `XAVIER_UNIFORM_INIT`: `nn.init.xavier_uniform_` (cvnets' linear layers).

The `*_init(axes)` helpers box an initialiser with the logical axis names of its parameter
(`mixtok.layers.partitioning`), so the sharding rules in the config can place it.
"""

import math
from collections.abc import Callable

import jax

from mixtok.layers.partitioning import Axes, param_with_axes

TRUNC_NORMAL_INIT = jax.nn.initializers.truncated_normal(stddev=0.02)
DEFAULT_KERNEL_INIT = TRUNC_NORMAL_INIT  # the name most of the package imports
TORCH_DEFAULT_INIT = jax.nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
XAVIER_UNIFORM_INIT = jax.nn.initializers.xavier_uniform()

CONV_AXES = (None, None, "conv_in", "conv_out")
DEPTHWISE_CONV_AXES = (None, None, None, "conv_out")  # a grouped kernel's input axis (C / groups) is never sharded


def torch_uniform_init(fan_in: int) -> Callable:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for any shape: PyTorch's default bias init (and weight init)."""
    if fan_in < 1:
        raise ValueError(f"torch_uniform_init: fan_in must be a positive number of inputs; got {fan_in}.")
    bound = fan_in**-0.5

    def init(key, shape, dtype=jax.numpy.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def conv_axes(groups: int = 1) -> Axes:
    """Logical axes of an NHWC conv kernel [kh, kw, in / groups, out]: a grouped input axis is never sharded."""
    return DEPTHWISE_CONV_AXES if groups > 1 else CONV_AXES


def dense_kernel_init(axes: Axes = ("embed", "mlp")) -> Callable:
    """timm's trunc-normal 0.02 for a Dense kernel with logical `axes`."""
    return param_with_axes(TRUNC_NORMAL_INIT, axes)


def conv_kernel_init(axes: Axes = CONV_AXES) -> Callable:
    """timm's trunc-normal 0.02 for a conv kernel with logical `axes`."""
    return param_with_axes(TRUNC_NORMAL_INIT, axes)


def torch_conv_init(fan_in: int, axes: Axes) -> Callable:
    """PyTorch's default Conv2d init of weights and biases alike, U(+-1/sqrt(fan_in)), with logical `axes`.

    For a bias (whose own shape says nothing of the fan-in) and for kernels whose `fan_in`
    (k * k * in / groups) the caller knows.
    """
    return param_with_axes(torch_uniform_init(fan_in), axes)


def fan_out_normal_init(kernel_size: int, features: int, groups: int = 1, axes: Axes = CONV_AXES) -> Callable:
    """normal(0, sqrt(2 / fan_out)), fan_out = k * k * features / groups: the Swin / PVT conv init."""
    fan_out = kernel_size * kernel_size * features // groups
    if fan_out < 1:
        raise ValueError(
            f"fan_out_normal_init: kernel_size={kernel_size}, features={features}, groups={groups} "
            f"give fan_out {fan_out}; it must be at least 1."
        )
    return param_with_axes(jax.nn.initializers.normal(math.sqrt(2.0 / fan_out)), axes)
