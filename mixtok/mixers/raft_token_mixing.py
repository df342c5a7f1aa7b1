"""RaftTokenMixing: RaftMLP's serial vertical-then-horizontal token mixing over "rafts" of channels.

Paper: "RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality?" (Tatsunami and Taki,
arXiv 2108.04384). Official code: okojoalg/raft-mlp @ 6060d5d9: libs/modules.py (`SerialPermutedLevel`,
`PermutedBlock`, `Block`, `RaftShrink`, `RaftExpansion`). For x [B, H, W, C] with C = r * c_o channels ordered
`(r c_o)` (raft index r major, the official einops pattern `(chw co)`), h x w the trained grid:

    x = RaftShrink(x)                             bicubic resize to h x w when H x W differs (else a no-op)
    x = x + dp(MLP_v(LN(x)))   vertical:   tokens `b (co w) (r h)`: one MLP over the r * h values of a column
                                           and its raft, shared by every (c_o, w)
    x = x + dp(MLP_h(LN(x)))   horizontal: tokens `b (co h) (r w)`: the same over the r * w values of a row
    y = RaftExpansion(x)                          bicubic resize back to H x W

MLP_v / MLP_h: Linear(r * h -> e * r * h) -> GELU (erf) -> Dropout -> Linear(-> r * h) -> Dropout, token
expansion e = 2 in every released config. LN is a LayerNorm over the C channels of each token (eps 1e-5,
PyTorch's default). dp is drop path (`drop_path`, the official constant `drop_path_rate`).

The paper puts the norms and residuals inside the token-mixing step (two `PermutedBlock`s, each
`x + dp(fn(norm(x)))`), so this mixer has them inside: its output already contains its input. In a
MetaFormer override (`token_mixers=("raft_token_mixing", ...)`) the block's own norm and residual wrap it.

Grid. The MLPs have one weight per position of a column / row, so the mixer is built for one grid
`grid_size` = (h, w) (None: the input's grid at initialisation; a MetaFormer with `image_size` sets it per stage).
Another input grid H x W is resized to h x w before the two steps and back after them, as the official
`RaftShrink` / `RaftExpansion` do: `F.interpolate(mode="bicubic", align_corners=False)`, which is NOT
`jax.image.resize(..., "bicubic")` (that is Keys' cubic with a = -0.5 and antialiasing when shrinking). Here
`torch_bicubic_resize` reproduces PyTorch's kernel: the cubic convolution with A = -0.75, source coordinate
(dst + 0.5) * in / out - 0.5 (unclamped), the 4 taps clamped to the border, no antialiasing; it is separable
and applied as two small resampling matrices built in numpy at trace time. With `resize=False` another grid is
one ValueError naming the grid the mixer was built for. (Parity of whole RaftMLPs against the official code at 224
and 256 px, where every mixer resizes: `mixtok.interop.raft_mlp`, within 1.9e-6 of the largest logit.)

Parameters: `vertical/norm/{scale,bias}` [C], `vertical/fc1/{kernel,bias}` [r*h, e*r*h], `vertical/fc2`,
and the same under `horizontal/` with w. The official LayerNorm sees the channels in `(co r)` order (its
einops `b (c1 o1) (c2 o2) -> b (o1 o2) (c1 c2)`), so its weight j = co * r + raft multiplies channel
raft * c_o + co; here `scale[c]` multiplies channel c (natural order), and `mixtok.interop.raft_mlp` permutes.

Differences from the official code:
- NHWC layout; the rearranges are reshapes / transposes of [B, H, W, r, c_o].
- Init: PyTorch's Linear default, U(+-1/sqrt(fan_in)) for kernels and biases (the official model has no init of
  its own); LayerNorm ones / zeros.
"""

import functools

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from flax.linen.dtypes import promote_dtype

from mixtok.layers.activations import get_activation
from mixtok.layers.drop import DropPath
from mixtok.layers.init import TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

TORCH_BICUBIC_A = -0.75  # aten/src/ATen/native/UpSample.h: upsample_bicubic2d's cubic convolution coefficient
NORM_EPSILON = 1e-5  # torch.nn.LayerNorm's default, used by the official model everywhere


def _cubic_weights(t: np.ndarray, a: float = TORCH_BICUBIC_A) -> np.ndarray:
    """The 4 tap weights of PyTorch's `get_cubic_upsample_coefficients` for fractional offsets t in [0, 1)."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


@functools.lru_cache(maxsize=256)
def bicubic_matrix(in_size: int, out_size: int) -> np.ndarray:
    """[out_size, in_size] matrix of PyTorch's 1-D bicubic resampling (align_corners=False, no antialias)."""
    scale = in_size / out_size
    src = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5  # area_pixel_compute_source_index, cubic
    floor = np.floor(src)
    weights = _cubic_weights(src - floor)
    matrix = np.zeros((out_size, in_size), np.float64)
    for tap in range(4):
        index = np.clip(floor.astype(np.int64) - 1 + tap, 0, in_size - 1)  # upsample_get_value_bounded
        np.add.at(matrix, (np.arange(out_size), index), weights[:, tap])
    return matrix


def torch_bicubic_resize(x, size: tuple[int, int]):
    """`F.interpolate(x, size, mode="bicubic", align_corners=False)` for NHWC `x` [B, H, W, C] (any float dtype)."""
    height, width = x.shape[1:3]
    if (height, width) == tuple(size):
        return x
    rows = jnp.asarray(bicubic_matrix(height, size[0]), x.dtype)
    cols = jnp.asarray(bicubic_matrix(width, size[1]), x.dtype)
    x = jnp.einsum("oh,bhwc->bowc", rows, x)
    return jnp.einsum("pw,bowc->bopc", cols, x)


def torch_dense(features: int, fan_in: int, name: str, **kwargs):
    """A Linear with PyTorch's default init: kernel and bias U(+-1/sqrt(fan_in))."""
    return dense(
        features,
        (None, None),
        kernel_init=param_with_axes(TORCH_DEFAULT_INIT, (None, None)),
        bias_init=param_with_axes(torch_uniform_init(fan_in), (None,)),
        name=name,
        **kwargs,
    )


class PermutedMlp(Module):
    """x + dp(MLP(LN(x))) with the MLP over the (raft, position) vector of every column (`axis=1`, vertical) or
    row (`axis=2`, horizontal) of x [B, H, W, C]: the official `PermutedBlock` between its rearranges."""

    raft_size: int
    axis: int  # 1: mix along H (vertical), 2: along W (horizontal)
    expansion: int = 2
    dropout: float = 0.0
    drop_path: float = 0.0
    norm_epsilon: float = NORM_EPSILON

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        batch, height, width, channels = x.shape
        r, co = self.raft_size, channels // self.raft_size
        y = LayerNorm(epsilon=self.norm_epsilon, name="norm", **common)(x)
        y = y.reshape(batch, height, width, r, co)
        if self.axis == 1:  # b (co w) (r h)
            y = y.transpose(0, 4, 2, 3, 1).reshape(batch, co, width, r * height)
        else:  # b (co h) (r w)
            y = y.transpose(0, 4, 1, 3, 2).reshape(batch, co, height, r * width)
        features = y.shape[-1]
        hidden = self.expansion * features
        y = torch_dense(hidden, features, "fc1", **common)(y)
        y = get_activation("gelu", **common, name="act")(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        y = torch_dense(features, hidden, "fc2", **common)(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        if self.axis == 1:
            y = y.reshape(batch, co, width, r, height).transpose(0, 4, 2, 3, 1)
        else:
            y = y.reshape(batch, co, height, r, width).transpose(0, 2, 4, 3, 1)
        y = y.reshape(batch, height, width, channels)
        return x + DropPath(self.drop_path)(y, train=train)


@register("raft_token_mixing")
class RaftTokenMixing(Mixer):
    """Resize to the trained grid, vertical then horizontal raft MLPs (each with its LN and residual), resize back."""

    raft_size: int = 2  # r: channels mixed jointly with a column / row (every released config: 2)
    grid_size: tuple[int, int] | None = None  # the trained (h, w); None: the input's grid at initialisation
    token_expansion: int = 2  # the official token_expansion_factor
    dropout: float = 0.0  # inside the MLPs (official `dropout`)
    drop_path: float = 0.0  # on each of the two residual branches (official drop_path_rate)
    norm_epsilon: float = NORM_EPSILON
    resize: bool = True  # False: an input grid other than grid_size is a ValueError instead of a bicubic resize

    def trained_grid(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) the MLPs were built for: `grid_size`, else the built weights' sizes, else the input's grid."""
        if self.grid_size is not None:
            return tuple(self.grid_size)
        if self.has_variable("params", "vertical") and self.has_variable("params", "horizontal"):
            params = nn.meta.unbox(self.variables["params"])
            rows = params["vertical"]["fc1"]["kernel"].shape[0] // self.raft_size
            return rows, params["horizontal"]["fc1"]["kernel"].shape[0] // self.raft_size
        return height, width

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        name = type(self).__name__
        if self.raft_size < 1 or self.dim % self.raft_size:
            raise ValueError(f"{name}: raft_size={self.raft_size} must be >= 1 and divide dim={self.dim}.")
        height, width = x.shape[1:3]
        grid = self.trained_grid(height, width)
        if grid != (height, width) and not self.resize:
            raise ValueError(
                f"{name} was built for a {grid[0]}x{grid[1]} token grid (its MLPs have one weight per row / column "
                f"position) but got {height}x{width}; feed that grid or use resize=True (the official bicubic "
                f"RaftShrink / RaftExpansion)."
            )
        if self.dtype is not None:
            (x,) = promote_dtype(x, dtype=self.dtype)
        y = torch_bicubic_resize(x, grid)
        options = dict(expansion=self.token_expansion, dropout=self.dropout, drop_path=self.drop_path)
        options.update(norm_epsilon=self.norm_epsilon, **self.dtype_kwargs)
        y = PermutedMlp(self.raft_size, 1, name="vertical", **options)(y, train=train)
        y = PermutedMlp(self.raft_size, 2, name="horizontal", **options)(y, train=train)
        return torch_bicubic_resize(y, (height, width))
