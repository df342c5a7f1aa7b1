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

from mixtok.layers.conv import conv2d
from mixtok.layers.init import TORCH_DEFAULT_INIT, torch_uniform_init
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
        common = self.dtype_kwargs
        starts = [sum(sizes[:g]) for g in range(len(sizes))]
        lr, td = [], []
        for g, (size, shift, k) in enumerate(zip(sizes, self.shift_dist, self.mix_sizes)):
            x_g = x[..., starts[g] : starts[g] + size]
            for branch, axis, out in (("lr", 2, lr), ("td", 1, td)):
                conv = conv2d(
                    size,
                    k,
                    groups=size,
                    padding=k // 2,
                    kernel_init=TORCH_DEFAULT_INIT,
                    bias_init=torch_uniform_init(k * k),
                    name=f"dwconv_{branch}_{g}",
                    **common,
                )
                out.append(conv(jnp.roll(x_g, shift, axis=axis)))
        return jnp.concatenate(lr, axis=-1) + jnp.concatenate(td, axis=-1)
