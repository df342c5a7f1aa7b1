"""Strip-MLP's token mixer: cascade group strip mixing (rows, then columns) beside local strip mixing (LSMM).

"Strip-MLP: Efficient Token Interaction for Vision MLP" (Cao et al., ICCV 2023). Official code:
Med-Process/Strip_MLP @ 492d7050, models/strip_mlp.py (`TokenMixing`, `DepthWise_Conv`, `BN_Activ_Conv`,
`StripMLP_Block`, `RelativePosition`, `Mlp`). For x [B, H, W, C] (H == W), Ch = C / 2:

    x = dw3x3(GELU(BN(x)))                                        (DepthWise_Conv, no bias)
    x = GELU(BN(Conv1x1(x)))                                      (`mlp`, conv with bias)
    x1, x2 = x[..., :Ch], x[..., Ch:]
    out1 = strip_mlp(x1); out2 = LSMM(x2)
    y = Conv1x1(concat(out1, out2))                               (`fuse`, no bias)

Strip MLP (cascade group strip mixing with the adjacent-strip interaction). Channel c of x1 is (c1, c2) with
c = c1 * C2 + c2, p = C1 = 2 if C % 80 == 0 else 4, C2 = Ch / p: the p channel groups share one set of strip
weights per channel-in-group c2.

    pos_h[i, j] = T_h[clip(j - i, -H, H) + H]  (T_h, T_w: tables [2H + 1, Ch], `relate_pos_h/w`, same for pos_w)
    row mixing (`proj_h`, Conv2d(C2 W, C2 W, (1, 3), groups=C2) on a reshaped map):
        r[h, v, (c1, c2)] = b_h[c2, v] + sum_{t = -1..1} sum_w K_h[c2, v, w, t] * (x1 + pos_h)[h + t, w, (c1, c2)]
        each row's W tokens mixed fully, together with the rows above and below (zero beyond the border)
    x_h = GELU(BN(Conv1x1(concat(r, x1)))) + pos_w                (`fuse_h`, no bias; `BN`)
    column mixing (`proj_w`): s[v, w] = b_w[c2, v] + sum_t sum_h K_w[c2, v, h, t] * x_h[h, w + t]
    out1 = Conv1x1(concat(x1, s))                                 (`fuse_w`, no bias)

LSMM (local strip mixing module), depthwise convs without bias:

    a = dw(3 x 7)(x2) (`fc_h`), b = dw(7 x 3)(x2) (`fc_w`)
    w = softmax over 3 of Conv1x1(GELU(Conv1x1(mean_hw(a + b + x2))))   (`reweight`: Ch -> Ch / 2 -> 3 Ch, biases)
        output channel 3 d + k is weight k of channel d
    out2 = b * w_0 + a * w_1 + x2 * w_2

Resolution. The strip weights (`proj_h`, `proj_w`: [1, 3, W, C2 W]) and position tables ([2H + 1, Ch]) are
sized for one square token grid, as in the official code (`StripMLP_Block(channels, H, W)` asserts W == H).
`grid_size` (an int or (h, w) with h == w) fixes it; None takes the input's grid at initialisation. Any other
grid, or a non-square one, is one ValueError naming the expected size. In a MetaFormer (`token_mixers=
"strip_mlp"` with `image_size` set) every stage's mixer gets its grid; there `dim` must satisfy the group rule
(C even and Ch divisible by p: 64, 128, 320, 512 do).

Parameters (official names): `dwsc_bn`, `dwsc_conv` (`dwsc.conv_merge.BN`, `.Conv`); `mlp_conv`, `mlp_bn`
(`smlp_block.mlp.0`, `.1`); `proj_h`, `proj_w` (kernel [1, 3, W, C2 W], the official weight [C2 W, W, 1, 3] in
flax's conv layout; bias [C2 W]); `fuse_h`, `fuse_w`, `BN`, `fc_h`, `fc_w`, `reweight_fc1`, `reweight_fc2`,
`fuse`, `relate_pos_h`, `relate_pos_w` (`embeddings_table`). BatchNorms (eps 1e-5, momentum 0.1) keep running
statistics in `batch_stats`, updated with `train=True` (mutable batch_stats), as the zoo's other BatchNorm
families (LSNet, CAS-ViT).

Init: the official code has no init function, so every conv keeps PyTorch's default (weights and biases
U(+-1/sqrt(fan_in))), BatchNorm 1 / 0, and the position tables trunc_normal(std=0.02) (`RelativePosition`).

Differences from the official code:
- NHWC; the strip convolutions are written as einsums over the (row | column, adjacent-strip) axes instead of
  reshapes to Conv2d inputs (the same sums: tests/mixers/test_strip_mlp.py checks them against an explicit loop
  and a dense matrix).
- Under a sharded `jit` BatchNorm uses the global batch's statistics; flax's running variance uses the biased
  batch variance where PyTorch uses the unbiased one (a factor N / (N - 1)).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from mixtok.layers.conv import Conv2d, batch_norm, conv2d
from mixtok.layers.init import DEPTHWISE_CONV_AXES, TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.module import Module
from mixtok.layers.partitioning import param_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register


def group_count(dim: int) -> int:
    """p, the official `patch`: the number of channel groups (C1) that share the strip weights."""
    return 2 if dim % 80 == 0 else 4


def check_dim(dim: int, name: str = "StripMLP") -> tuple[int, int]:
    """(C1, C2) of a mixer with `dim` channels; one ValueError unless C is even and C / 2 divisible by p."""
    p = group_count(dim)
    if dim < 2 or dim % 2 or (dim // 2) % p:
        raise ValueError(
            f"{name}: dim={dim} does not fit the strip MLP's channel groups: dim must be even and dim / 2 "
            f"divisible by p = {p} (p = 2 if dim % 80 == 0 else 4), e.g. 64, 80, 96, 112, 160, 320."
        )
    return p, dim // 2 // p


def relative_position(table: jax.Array, size: int) -> jax.Array:
    """[size, size, Ch] map whose (i, j) entry is table[clip(j - i, -m, m) + m], m = (rows - 1) / 2 (official
    `RelativePosition.forward(size, size)`, permuted to (H, W, C))."""
    m = (table.shape[0] - 1) // 2
    index = jnp.clip(jnp.arange(size)[None, :] - jnp.arange(size)[:, None], -m, m) + m
    return table[index]


def strip_mix(x: jax.Array, kernel: jax.Array, bias: jax.Array, axis: int) -> jax.Array:
    """One strip MLP (`proj_h` for axis=2, `proj_w` for axis=1) on x [B, H, W, C1, C2].

    Tokens along `axis` (length n) are mixed fully by the weights of their channel-in-group c2, summed over the
    strip itself and its two neighbours along the other spatial axis (zero padded): the official Conv2d(C2 n,
    C2 n, (1, 3), groups=C2). kernel [1, 3, n, C2 n] (flax conv layout), bias [C2 n].
    """
    n, c2 = x.shape[axis], x.shape[-1]
    k = kernel.reshape(3, n, c2, n)  # [tap, input token, c2, output token]
    other = 3 - axis  # the axis along which the strip interacts with its neighbours
    pads = [(0, 0)] * x.ndim
    pads[other] = (1, 1)
    padded = jnp.pad(x, pads)
    size = x.shape[other]
    shifted = jnp.stack([jax.lax.slice_in_dim(padded, t, t + size, axis=other) for t in range(3)])
    if axis == 2:  # rows: mix along W
        y = jnp.einsum("tbhwpq,twqv->bhvpq", shifted, k)
    else:  # columns: mix along H
        y = jnp.einsum("tbhwpq,thqv->bvwpq", shifted, k)
    per_token = bias.reshape(c2, n).T  # [output token, c2]
    return y + (per_token[:, None, :] if axis == 2 else per_token[:, None, None, :])


class StripWeights(Module):
    """One strip MLP's conv weights as the official Conv2d holds them: kernel [1, 3, n, C2 n], bias [C2 n]."""

    tokens: int
    groups: int

    @nn.compact
    def __call__(self):
        n, c2 = self.tokens, self.groups
        fan_in = 3 * n  # Conv2d(C2 n, C2 n, (1, 3), groups=C2): in / groups * kh * kw
        kernel = self.param(
            "kernel", param_with_axes(TORCH_DEFAULT_INIT, DEPTHWISE_CONV_AXES), (1, 3, n, c2 * n), self.param_dtype
        )
        bias_init = param_with_axes(torch_uniform_init(fan_in), ("conv_out",))
        return kernel, self.param("bias", bias_init, (c2 * n,), self.param_dtype)


def _grid(grid_size: int | Sequence[int] | None) -> int | None:
    if grid_size is None:
        return None
    if isinstance(grid_size, int):
        return grid_size
    height, width = grid_size
    if height != width:
        raise ValueError(f"StripMLP: grid_size {tuple(grid_size)} must be square (the strip MLP needs H == W).")
    return height


@register("strip_mlp")
class StripMLP(Mixer):
    """Strip-MLP's `TokenMixing`: dw3x3(GELU(BN(x))), then the strip MLP on one half of the channels and LSMM on
    the other, fused by a 1x1 conv. Needs a square grid of the size it was built for (`grid_size`)."""

    grid_size: int | Sequence[int] | None = None  # None: the input's grid at initialisation

    def check_grid(self, x: jax.Array) -> int:
        height, width = x.shape[1:3]
        expected = _grid(self.grid_size)
        if expected is None and not self.is_initializing():  # the grid of the weights it was initialised with
            table = self.variables.get("params", {}).get("relate_pos_h", {}).get("embeddings_table")
            expected = None if table is None else (nn.meta.unbox(table).shape[0] - 1) // 2
        if height != width or (expected is not None and height != expected):
            size = f"{expected}x{expected}" if expected is not None else "a square"
            raise ValueError(
                f"StripMLP(dim={self.dim}) mixes a fixed square token grid: expected {size} grid, got {height}x"
                f"{width} (its strip weights and position tables are sized for one grid, H == W)."
            )
        return height

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        c1, c2 = check_dim(self.dim)
        size = self.check_grid(x)
        common = self.dtype_kwargs
        dim, half = self.dim, self.dim // 2

        def depthwise(channels, kernel, name):
            return Conv2d(
                channels,
                kernel,
                padding=tuple((k // 2, k // 2) for k in kernel),
                feature_group_count=channels,
                use_bias=False,
                kernel_init=param_with_axes(TORCH_DEFAULT_INIT, DEPTHWISE_CONV_AXES),
                name=name,
                **common,
            )

        gelu = lambda u: jax.nn.gelu(u, approximate=False)  # noqa: E731  nn.GELU()
        # DepthWise_Conv: BN -> GELU -> dw3x3 (no bias)
        x = gelu(batch_norm("dwsc_bn", train=train, **common)(x))
        x = depthwise(dim, (3, 3), "dwsc_conv")(x)
        # StripMLP_Block.mlp: Conv1x1 (bias) -> BN -> GELU
        x = conv2d(
            dim, 1, kernel_init=TORCH_DEFAULT_INIT, bias_init=torch_uniform_init(dim), name="mlp_conv", **common
        )(x)
        x = gelu(batch_norm("mlp_bn", train=train, **common)(x))
        x1, x2 = x[..., :half], x[..., half:]

        # Strip MLP on x1.
        table_init = param_with_axes(jax.nn.initializers.truncated_normal(0.02), (None, "embed"))
        tables = []
        for name in ("relate_pos_h", "relate_pos_w"):
            tables.append(relative_position(StripTable(2 * size + 1, half, table_init, name=name, **common)(), size))
        x1, pos_h, pos_w = promote_dtype(x1, *tables, dtype=self.dtype)
        batch = x1.shape[0]
        kernel, bias = StripWeights(size, c2, name="proj_h", **common)()
        grouped = (x1 + pos_h).reshape(batch, size, size, c1, c2)
        rows = strip_mix(*promote_dtype(grouped, kernel, bias, dtype=self.dtype), axis=2).reshape(x1.shape)
        x_h = conv2d(half, 1, use_bias=False, kernel_init=TORCH_DEFAULT_INIT, name="fuse_h", **common)(
            jnp.concatenate([rows, x1], axis=-1)
        )
        x_h = gelu(batch_norm("BN", train=train, **common)(x_h)) + pos_w
        kernel, bias = StripWeights(size, c2, name="proj_w", **common)()
        grouped = x_h.reshape(batch, size, size, c1, c2)
        cols = strip_mix(*promote_dtype(grouped, kernel, bias, dtype=self.dtype), axis=1).reshape(x1.shape)
        out1 = conv2d(half, 1, use_bias=False, kernel_init=TORCH_DEFAULT_INIT, name="fuse_w", **common)(
            jnp.concatenate([x1, cols], axis=-1)
        )

        # LSMM on x2.
        a = depthwise(half, (3, 7), "fc_h")(x2)
        b = depthwise(half, (7, 3), "fc_w")(x2)
        pooled = jnp.mean((a + b + x2).astype(jnp.float32), axis=(1, 2), keepdims=True).astype(a.dtype)
        hidden = half // 2
        w = conv2d(
            hidden, 1, kernel_init=TORCH_DEFAULT_INIT, bias_init=torch_uniform_init(half), name="reweight_fc1", **common
        )(pooled)
        w = conv2d(
            3 * half,
            1,
            kernel_init=TORCH_DEFAULT_INIT,
            bias_init=torch_uniform_init(hidden),
            name="reweight_fc2",
            **common,
        )(gelu(w))
        w = jax.nn.softmax(w.reshape(*w.shape[:3], half, 3).astype(jnp.float32), axis=-1).astype(a.dtype)
        out2 = b * w[..., 0] + a * w[..., 1] + x2 * w[..., 2]
        return conv2d(dim, 1, use_bias=False, kernel_init=TORCH_DEFAULT_INIT, name="fuse", **common)(
            jnp.concatenate([out1, out2], axis=-1)
        )


class StripTable(Module):
    """A relative position table [rows, Ch] (official `RelativePosition.embeddings_table`)."""

    rows: int
    channels: int
    init: object

    @nn.compact
    def __call__(self):
        return self.param("embeddings_table", self.init, (self.rows, self.channels), self.param_dtype)
