"""Depthwise 2D convolution, one function for every family: each channel convolved with its own k x k filter.

    y = depthwise_conv2d(x, kernel, stride=1, padding=((3, 3), (3, 3)))      # x [B, H, W, C], kernel [7, 7, 1, C]

The maths is `lax.conv_general_dilated(x, kernel, (s, s), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
feature_group_count=C)`: y[b, o, p, c] = sum_{i, j} x_pad[b, s * o + i, s * p + j, c] * kernel[i, j, 0, c], with
the kernel in the layout flax's `nn.Conv` stores for `feature_group_count=C` ([kh, kw, 1, C]). `padding` is
((top, bottom), (left, right)), one int for all four sides, or "SAME" / "VALID" (`lax.padtype_to_pads`).

Implementations (`impl`), each computing the same function:

- "xla": `lax.conv_general_dilated` with `feature_group_count=C`, exactly what `nn.Conv` runs; its
  gradients are XLA's (the kernel gradient a convolution with `batch_group_count=C`).
- "shifted": the sum above written out as kh * kw strided slices of the zero-padded input, each times one
  kernel tap, which XLA fuses into one elementwise loop. It has its own VJP: the input gradient is the same
  shifted sum over the output gradient (dilated by the stride, padded by kh - 1 - top etc.) with the spatially
  flipped kernel; the kernel gradient is kh * kw sums of (input window) * (output gradient), taken as one
  fused variadic reduction (a row loop on maps under 64 positions; `_kernel_grad`). It computes in float32
  (or wider) whatever the input dtype and rounds the result once, as XLA:CPU's convolution does (bf16
  forwards agree exactly). No forward-mode differentiation (`jax.jvp`) through it: that takes "xla".
- "auto": "shifted" on CPU and "xla" on GPU / TPU, whose native (cuDNN / TPU) convolutions are kept until
  measured otherwise. `platform` names the platform a call is lowered for (default: the device of a concrete
  `x`, else `jax.default_backend()`).

Why "shifted" on CPU: XLA:CPU's grouped convolution (and the `batch_group_count` convolution of its kernel
gradient) takes a slow generic path, the bottleneck of ConvFormer / CAFormer and the other depthwise families
on CPU. Measured on a shared 2-core CPU (AMD EPYC, JAX 0.10.2, float32, jit, median of 3 after compilation;
other jobs ran beside it, so read the ratios rather than the times), `python benchmarks/depthwise_conv.py`:

    B x H x W x C    k, stride   xla fwd / fwd+bwd ms   shifted fwd / fwd+bwd ms
    16x56x56x128     7, 1        321 / 1353             15 / 94
    16x28x28x256     7, 1        196 / 812              8.1 / 50
    16x14x14x640     7, 1        99 / 666               5.2 / 29
    16x7x7x1024      7, 1        92 / 611               6.1 / 26
    16x28x28x128     3, 1        33 / 91                1.0 / 4.4
    16x56x56x64      3, 2        17 / 131               1.1 / 6.5

("fwd+bwd": the output and its VJP to x and the kernel.) One case is slower than these, though still faster
than "xla": when the output gradient is a cheap elementwise function of the conv's own output (a loss
sum(y ** 2) right on it), XLA:CPU fuses the forward into the kernel-gradient loop and computes it again
for every tap (29 ms instead of 7 at [4, 56, 56, 64]; "xla" 111 ms). Gradients arriving through a Dense
layer or a norm, as in the models, are materialised first.

Forms tried and left (same machine, minimum of 5 runs): the forward as a `fori_loop` over kernel rows is
4-6x slower than the unrolled slices, a row-block `scan` 2-3x, an einsum over a stacked im2col 40-65x (it
materialises kh * kw copies); the kernel gradient as kh * kw separate whole-array reductions is 10x slower
than the fused variadic one at [4, 56, 56, 64] (105 vs 8 ms), a per-output-row loop 2-3x (it wins only
on maps of 49 positions, hence the switch), a batched matmul with diagonal sums 3x. Without the custom
VJP (jax's own transpose of the slices: pads and adds) fwd+bwd at [4, 56, 56, 64] takes 53 ms, with it 13 ms
("xla" 118 ms, same run).

`benchmarks/depthwise_conv.py` prints the table for more shapes.
"""

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

IMPLEMENTATIONS = ("auto", "xla", "shifted")
DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")
ROW_LOOP_MAX_POSITIONS = 64  # "shifted" kernel gradient: a row loop below this many output positions per image

Padding = str | int | Sequence[tuple[int, int]]


def depthwise_conv2d(
    x: jax.Array,
    kernel: jax.Array,
    *,
    stride: int | tuple[int, int] = 1,
    padding: Padding = 0,
    impl: str = "auto",
    precision: Any = None,
    platform: str | None = None,
) -> jax.Array:
    """Depthwise conv of NHWC `x` with a [kh, kw, 1, C * m] `kernel` by the implementation `impl` names.

    A channel multiplier m > 1 (C * m outputs, output channel o from input channel o // m: the grouped
    conv with C groups and C * m features, FFNet's downsampling) repeats each input channel m times for
    "shifted"; "xla" runs the grouped conv as it is.

    x and kernel are promoted to one dtype (jnp's rules), the result's. `precision` goes to the "xla"
    implementation (nn.Conv's `precision`); "shifted" computes in float32 or wider.
    """
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"depthwise_conv2d: impl {impl!r} is not one of {IMPLEMENTATIONS}.")
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[2] != 1 or kernel.shape[3] % x.shape[3]:
        raise ValueError(
            f"depthwise_conv2d takes x [B, H, W, C] and kernel [kh, kw, 1, C * m]; got x {x.shape}, "
            f"kernel {kernel.shape}."
        )
    strides = pair(stride, "stride")
    pads = explicit_padding(padding, x.shape[1:3], kernel.shape[:2], strides)
    for axis, (size, k, (low, high)) in enumerate(zip(x.shape[1:3], kernel.shape[:2], pads, strict=True)):
        if size + low + high < k:
            raise ValueError(
                f"depthwise_conv2d: spatial axis {axis + 1} of size {size} padded by ({low}, {high}) is smaller than "
                f"the kernel ({k}); got x {x.shape}, kernel {kernel.shape}."
            )
    dtype = jnp.result_type(x, kernel)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if impl == "auto":
        impl = "shifted" if _platform(x, platform) == "cpu" else "xla"
    if impl == "xla":
        return lax.conv_general_dilated(
            x,
            kernel,
            strides,
            pads,
            dimension_numbers=DIMENSION_NUMBERS,
            feature_group_count=x.shape[-1],
            precision=precision,
        )
    multiplier = kernel.shape[3] // x.shape[3]
    if multiplier > 1:  # output channel o reads input channel o // m, as in the grouped conv
        x = jnp.repeat(x, multiplier, axis=-1)
    return _shifted(x, kernel, strides, pads)


def pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """(value, value) for an int, else the two values; raises one line unless both are positive ints."""
    values = (value, value) if isinstance(value, int) else tuple(value)
    if len(values) != 2 or not all(isinstance(v, int) and v >= 1 for v in values):
        raise ValueError(f"{name} must be a positive int or a pair of them; got {value!r}.")
    return values


def explicit_padding(padding: Padding, spatial, window, strides) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) of a 2D conv's `padding`: "SAME" / "VALID" as `lax.conv_general_dilated`
    resolves them (`lax.padtype_to_pads`), an int for every side, or the pairs themselves."""
    error = f"padding {padding!r} is not 'SAME', 'VALID', an int or ((top, bottom), (left, right))."
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(error)
        return tuple(tuple(p) for p in lax.padtype_to_pads(spatial, window, strides, padding.upper()))
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    try:
        pads = tuple(tuple(p) for p in padding)
    except TypeError:
        raise ValueError(error) from None
    if len(pads) != 2 or any(len(p) != 2 or not all(isinstance(v, int) for v in p) for p in pads):
        raise ValueError(error)
    return pads


def _platform(x: jax.Array, platform: str | None) -> str:
    if platform is not None:
        return "gpu" if platform in ("cuda", "rocm") else platform
    if isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer):
        devices = x.devices()
        if len(devices) == 1:
            return next(iter(devices)).platform
    return jax.default_backend()


# ---- "shifted": strided slices of the padded input, with its own VJP ----------------------------------------------


def _accumulation_dtype(dtype) -> jnp.dtype:
    return jnp.promote_types(dtype, jnp.float32)


def _pad_spatial(x: jax.Array, pads, interior: tuple[int, int] = (0, 0)) -> jax.Array:
    (top, bottom), (left, right) = pads
    config = ((0, 0, 0), (top, bottom, interior[0]), (left, right, interior[1]), (0, 0, 0))
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def _output_size(size: int, k: int, stride: int, pad: tuple[int, int]) -> int:
    return (size + pad[0] + pad[1] - k) // stride + 1


def _window(xp: jax.Array, row: int, col: int, out_hw: tuple[int, int], strides: tuple[int, int]) -> jax.Array:
    """xp[:, row + s * o, col + s * p, :] for every output position (o, p)."""
    (sh, sw), (ho, wo) = strides, out_hw
    start = (0, row, col, 0)
    limit = (xp.shape[0], row + sh * (ho - 1) + 1, col + sw * (wo - 1) + 1, xp.shape[3])
    return lax.slice(xp, start, limit, (1, sh, sw, 1))


def _shifted_forward(x: jax.Array, kernel: jax.Array, strides, pads) -> jax.Array:
    kh, kw = kernel.shape[:2]
    acc_dtype = _accumulation_dtype(x.dtype)
    xp = _pad_spatial(x.astype(acc_dtype), pads)
    taps = kernel[:, :, 0, :].astype(acc_dtype)
    out_hw = tuple(_output_size(x.shape[1 + a], kernel.shape[a], strides[a], pads[a]) for a in range(2))
    y = None
    for i in range(kh):
        for j in range(kw):
            term = _window(xp, i, j, out_hw, strides) * taps[i, j]
            y = term if y is None else y + term
    return y.astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _shifted(x: jax.Array, kernel: jax.Array, strides, pads) -> jax.Array:
    return _shifted_forward(x, kernel, strides, pads)


def _shifted_fwd(x, kernel, strides, pads):
    return _shifted(x, kernel, strides, pads), (x, kernel)


def _shifted_bwd(strides, pads, residuals, grad):
    x, kernel = residuals
    return _input_grad(grad, kernel, x.shape, strides, pads).astype(x.dtype), _kernel_grad(
        x, grad, kernel.shape, strides, pads
    ).astype(kernel.dtype)


_shifted.defvjp(_shifted_fwd, _shifted_bwd)


def _input_grad(grad: jax.Array, kernel: jax.Array, x_shape, strides, pads) -> jax.Array:
    """dL/dx: the output gradient, dilated by the stride, convolved with the flipped kernel.

    x_pad[q] meets grad[o] through tap q - s * o, so dx[h] = sum_i grad_dilated[h + top - i] * kernel[i]:
    a stride-1 shifted sum over grad_dilated padded by (kh - 1 - top) before and by whatever makes the
    result H long after (negative where padding or a stride's remainder never reached the input).
    """
    dilated = _pad_spatial(grad, ((0, 0), (0, 0)), interior=(strides[0] - 1, strides[1] - 1))
    grad_pads = tuple(
        (k - 1 - pad[0], size + pad[0] - dilated.shape[1 + a])
        for a, (size, k, pad) in enumerate(zip(x_shape[1:3], kernel.shape[:2], pads, strict=True))
    )
    return _shifted(dilated, kernel[::-1, ::-1], (1, 1), grad_pads)


def _kernel_grad(x: jax.Array, grad: jax.Array, kernel_shape, strides, pads) -> jax.Array:
    """dL/dkernel[i, j] = sum over batch and output positions of (the input window of tap (i, j)) * grad.

    XLA:CPU copies every window out to memory before a reduction of it, so kh * kw plain reductions are slow
    (5-8x); two forms avoid that, each faster on its side of about 64 output positions per image (measured):
    - maps of at least `ROW_LOOP_MAX_POSITIONS` positions: one variadic `lax.reduce` of the kh * kw products
      over each image's positions, which XLA fuses with the windows into one loop, then a sum over the batch
      (the per-image partial sums also keep float32 rounding small);
    - smaller maps (a 7x7 stage), where that loop's per-output set-up dominates: one output row per
      `fori_loop` step, its kh input rows in cache for the kh * kw reductions.

    This is the slowest part of the helper (about 8 GMAC/s on the 2-core development CPU, against 20-30
    for the forward): XLA:CPU (JAX 0.10) emits the fused variadic reduction as a scalar loop, one output
    (image, channel) at a time, its kh * kw accumulators in registers and its reduction loop striding by C
    (read from the LLVM IR of `--xla_dump_to`). Forms that would vectorise over channels (kh * kw
    separate reductions offloaded to XNNPACK, a stacked reduction, FFT correlation, channel-major
    transposes) were each as slow or slower at [8, 56, 56, 128] (20-31 ms against 21 ms).
    """
    kh, kw = kernel_shape[:2]
    acc_dtype = _accumulation_dtype(jnp.result_type(x, grad))
    xp = _pad_spatial(x.astype(acc_dtype), pads)
    grad = grad.astype(acc_dtype)
    ho, wo, channels = grad.shape[1:]
    if ho * wo >= ROW_LOOP_MAX_POSITIONS:
        products = [_window(xp, i, j, (ho, wo), strides) * grad for i in range(kh) for j in range(kw)]
        zeros = [jnp.zeros((), acc_dtype)] * len(products)
        sums = lax.reduce(products, zeros, lambda a, b: tuple(u + v for u, v in zip(a, b, strict=True)), (1, 2))
        return jnp.sum(jnp.stack(sums), axis=1).reshape(kh, kw, 1, channels)

    def row(o, total):
        rows = lax.dynamic_slice_in_dim(xp, o * strides[0], kh, axis=1)
        grad_row = lax.dynamic_slice_in_dim(grad, o, 1, axis=1)
        windows = [_window(rows, i, j, (1, wo), (1, strides[1])) for i in range(kh) for j in range(kw)]
        return total + jnp.stack([jnp.sum(window * grad_row, axis=(0, 1, 2)) for window in windows])

    total = lax.fori_loop(0, ho, row, jnp.zeros((kh * kw, channels), acc_dtype))
    return total.reshape(kh, kw, 1, channels)
