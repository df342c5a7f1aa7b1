"""MixShift: MS-MLP's mix-shift token mixer, channel groups rolled along H and W, each then a depthwise conv.

"Mixing and Shifting: Exploiting Global and Local Dependencies in Vision MLPs" (Zheng et al., arXiv
2202.06510). Official code: JegZheng/MS-MLP @ a10d34d9: models/ms_mlp.py (`MixShiftBlock.forward`, the part
before its norm). For x [B, H, W, C], with G = len(shift_dist) groups (official `shift_size`, 5):

    x_1 ... x_G = torch.chunk(x, G, channels)        group sizes ceil(C / G), the last one what is left
    lr_g = dwconv_lr_g(roll(x_g, shift_dist[g], W))  circular shift along W, then a k_g x k_g depthwise conv
    td_g = dwconv_td_g(roll(x_g, shift_dist[g], H))  the same along H, with its own conv
    y = concat(lr_1 ... lr_G) + concat(td_1 ... td_G)

`roll` is `torch.roll` (= `jnp.roll`: element i moves to i + shift, wrapping around), so a token mixes with
tokens up to |shift| away in one direction (the shift) plus k_g // 2 around it (the conv). The convs are
PyTorch `Conv2d(c_g, c_g, k_g, padding=k_g // 2, groups=c_g)` with a bias: zero padding, so the conv does
not wrap while the shift does. `mix_sizes[g]` is k_g (official `mix_size`, one list per stage; the
released configs configs/msmlp_*_patch4_shift5_224.yaml use (1, 1, 3, 5, 7), (1, 3, 3, 5, 7),
(1, 5, 5, 5, 7), (1, 7, 7, 7, 7) for stages 1-4 with shift_dist (-2, -1, 0, 1, 2)). No norm or activation
is inside: in MS-MLP the block normalises the mixer's output (LayerNorm -> MLP), see
`mixtok.models.ms_mlp`. No parameter depends on the resolution: any H, W (the roll wraps on any size).

Parameters: `dwconv_lr_{g}` / `dwconv_td_{g}` with `kernel` [k_g, k_g, 1, c_g] (the official
`dwconv_lr.{g}.weight` [c_g, 1, k_g, k_g]) and `bias` [c_g].

Computation: the G convs of a branch run as one depthwise conv over all C channels (the shared core's
`depthwise_conv2d`), each group's k_g x k_g kernel centred in a k_max x k_max one whose other taps are zero, with
padding k_max // 2: the same numbers as G zero-padded convs (the extra taps add exact zeros), in one op instead of
G. It computes more multiply-adds (k_max^2 per channel instead of k_g^2: 49 against 17 on average for the first
stage's (1, 1, 3, 5, 7), which adds about 8% to an ms_mlp_t first-stage block's multiply-adds, less in later
stages) but traces and compiles far fewer operations: `jax.eval_shape` of ms_mlp_b's init took 7.7 s instead of
19.9 s (2-core CPU shared with other jobs, 2026-12-07), and accelerators launch one kernel per branch.

Differences from the official code:
- NHWC layout.
- `torch.chunk` returns fewer than G chunks when ceil(C / G) * (G - 1) >= C (C = 8, G = 5 gives four of 2),
  and the official block then fails (its loop indexes G convs); here that C is one ValueError naming the
  sizes that work. Even kernel sizes (whose padding k // 2 grows the map) are rejected the same way.
- Init: PyTorch's Conv2d default for kernels and biases, U(+-1/sqrt(k * k)), which the official model keeps.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from mixtok.layers.depthwise import depthwise_conv2d
from mixtok.layers.init import DEPTHWISE_CONV_AXES, TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.module import Module
from mixtok.layers.partitioning import param_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

SHIFT_DIST = (-2, -1, 0, 1, 2)  # official default and every released config
MIX_SIZES = (1, 1, 3, 5, 7)  # configs/msmlp_*_patch4_shift5_224.yaml, stage 1


def chunk_sizes(dim: int, groups: int) -> tuple[int, ...]:
    """Channel counts of `torch.chunk(x, groups, channels)` for `dim` channels: ceil(dim / groups) each, the last
    what is left (fewer than `groups` chunks when the rest runs out early)."""
    size = -(-dim // groups)
    return tuple(min(size, dim - start) for start in range(0, dim, size))


@register("mix_shift")
class MixShift(Mixer):
    """y = concat_g dwconv_lr_g(roll_W(x_g, d_g)) + concat_g dwconv_td_g(roll_H(x_g, d_g)) (MS-MLP)."""

    shift_dist: Sequence[int] = SHIFT_DIST  # one shift per channel group (official `shift_dist`)
    mix_sizes: Sequence[int] = MIX_SIZES  # one odd depthwise kernel size per group (official `mix_size`)

    def group_sizes(self) -> tuple[int, ...]:
        """The channels of each group; one ValueError when `dim`, `shift_dist` and `mix_sizes` do not fit."""
        name = type(self).__name__
        groups = len(self.shift_dist)
        if groups < 1 or len(self.mix_sizes) != groups:
            raise ValueError(
                f"{name}: mix_sizes {tuple(self.mix_sizes)} needs one kernel size per shift in shift_dist "
                f"{tuple(self.shift_dist)} (at least one)."
            )
        if any(k < 1 or k % 2 == 0 for k in self.mix_sizes):
            raise ValueError(f"{name}: mix_sizes {tuple(self.mix_sizes)} must be odd positive kernel sizes.")
        sizes = chunk_sizes(self.dim, groups)
        if len(sizes) != groups:
            valid = [c for c in range(groups, groups * 8 + 1) if len(chunk_sizes(c, groups)) == groups]
            raise ValueError(
                f"{name}: dim={self.dim} splits into {len(sizes)} torch.chunk groups {sizes}, not "
                f"{groups} (one per shift); use a dim with ceil(dim / {groups}) * {groups - 1} < dim, "
                f"e.g. {', '.join(map(str, valid[:8]))}, ..."
            )
        return sizes

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        sizes = self.group_sizes()
        largest = max(self.mix_sizes)
        starts = [sum(sizes[:g]) for g in range(len(sizes))]
        groups = [x[..., start : start + size] for start, size in zip(starts, sizes)]
        branches = []
        for branch, axis in (("lr", 2), ("td", 1)):  # lr: shifts along W, td: along H
            kernels, biases = [], []
            for g, (size, k) in enumerate(zip(sizes, self.mix_sizes)):
                kernel, bias = DepthwiseWeights(size, k, name=f"dwconv_{branch}_{g}", **self.dtype_kwargs)()
                pad = (largest - k) // 2  # centred in the largest kernel: the same zero-padded convolution
                kernels.append(jnp.pad(kernel, ((pad, pad), (pad, pad), (0, 0), (0, 0))))
                biases.append(bias)
            shifted = jnp.concatenate(
                [jnp.roll(x_g, shift, axis=axis) for x_g, shift in zip(groups, self.shift_dist)], axis=-1
            )
            shifted, kernel, bias = promote_dtype(
                shifted, jnp.concatenate(kernels, axis=-1), jnp.concatenate(biases), dtype=self.dtype
            )
            branches.append(depthwise_conv2d(shifted, kernel, padding=largest // 2) + bias)
        return branches[0] + branches[1]


class DepthwiseWeights(Module):
    """One group's depthwise conv weights, as a `Conv2d(c, c, k, groups=c)` holds them: `kernel` [k, k, 1, c]
    (PyTorch's default init, U(+-1/sqrt(k * k))) and `bias` [c] (the same distribution)."""

    channels: int
    kernel_size: int

    @nn.compact
    def __call__(self):
        k = self.kernel_size
        kernel_init = param_with_axes(TORCH_DEFAULT_INIT, DEPTHWISE_CONV_AXES)
        kernel = self.param("kernel", kernel_init, (k, k, 1, self.channels), self.param_dtype)
        bias_init = param_with_axes(torch_uniform_init(k * k), ("conv_out",))
        return kernel, self.param("bias", bias_init, (self.channels,), self.param_dtype)
