"""Strip-MLP: a four-stage BatchNorm MLP backbone around the strip token mixer, with cross-stage shortcut paths.

Paper: "Strip-MLP: Efficient Token Interaction for Vision MLP" (Cao et al., ICCV 2023). Official code:
Med-Process/Strip_MLP @ 492d7050, models/strip_mlp.py (`StripMLPNet`, `BasicBlock`, `ChannelMixing`, `GRN`),
built by models/build.py from config.py + configs/smlp_*_imagenet1k.yaml. The token mixer is
`mixtok.mixers.strip_mlp.StripMLP` (the official `TokenMixing`). With E = dims[0] (official `embed_dim`):

    patch_embed:     conv4x4 s4 (3 -> E, no bias, no norm)
    blocks1_j        BasicBlock on the H/4 grid (E channels)
    merging1:        conv2x2 s2 (no bias)                        -> x (2E)
    conv_s1_28:      conv2x2 s2, groups 2E (2E -> 4E, no bias)   -> s1_14 = conv_s1_28(x)
    conv_s1_14:      conv2x2 s2, groups 4E (4E -> 8E)            -> s1_7 = conv_s1_14(s1_14)
    blocks2_j, merging2 (-> 4E), s2_7 = conv_s2_14(x) (groups 4E, 4E -> 8E)
    blocks3_j on x + s1_14, merging3 (-> 8E), blocks4_j on x + s1_7 + s2_7
    head:            BatchNorm (`norm`) -> mean over (H, W) -> Linear (`head`)

    BasicBlock:      x = x + drop_path(TokenMixing(x)); x = x + drop_path(ChannelMixing(x))
    ChannelMixing:   dw7x7 (no bias) -> LayerNorm (eps 1e-5) -> Linear C -> alpha C -> GELU -> GRN -> Linear -> C
    GRN:             g = ||x||_2 over (H, W); x + gamma * x * g / (mean_C g + 1e-6) + beta   (gamma, beta init 0)

The grouped cross-stage convs have a channel multiplier of 2 (output channel o reads input channel o // 2).
Stage i mixes an (image_size / 4 / 2^i)-square token grid, so `image_size` (default 224, the official
`img_size`) sizes every stage's strip weights and position tables; images of another size, or non-square ones,
are one ValueError. `image_size=None` sizes them from the images at initialisation (square, a multiple of 32).

Drop path. The official `BasicBlock` ignores its drop-rate argument for stochastic depth and hard-codes
`DropPath(0.1)` for every block (`drop_rate = 0.1` before building `self.drop_path`), and config.py's
DROP_PATH_RATE never reaches the model. Here `drop_path_rate` (default 0.1) is that one rate, the same for
every block: no linear schedule, unlike most of the zoo. The yaml's DROP_RATE (0.2) and `use_dropout` reach
`ChannelMixing.drop`, which its forward never calls, so there is no in-block dropout; `head_dropout` (before
the classifier) is a mixtok addition, 0 by default.

Parity: the official strip_mlp_tiny_light and strip_mlp_small at 224 px with every parameter and BatchNorm
statistic random, converted by `mixtok.interop.strip_mlp`, give eval logits within 1.2e-6 of the official ones
(1.0e-6 of the largest logit) over three seeds; the procedure and figures are in that module's docstring, and a
tiny model matches the golden fixture made by the official code (tests/fixtures/strip_mlp).

Differences from the official code:
- NHWC; parameter names follow the official module paths with `_` for `.` at the model level (`blocks3_4` for
  `blocks3.4`); inside the mixer see `mixtok.mixers.strip_mlp`.
- BatchNorm under a sharded `jit` uses the global batch's statistics; flax's running variance uses the biased
  batch variance where PyTorch uses the unbiased one (factor N / (N - 1)).
- `dims` are the shared vocabulary's; the official model has only `embed_dim` (dims = E, 2E, 4E, 8E). Other
  dims work where the cross-stage convs' groups divide (dims[2] a multiple of dims[1], dims[3] of dims[2]) and
  every width fits the strip MLP's channel groups. Exactly four stages (the cross-stage paths are fixed).
- Init: the official code keeps PyTorch's defaults (convs and Linears U(+-1/sqrt(fan_in)) for weights and
  biases, norms 1 / 0, GRN 0), which this model keeps, except the classifier's bias, which starts at 0 (the
  shared classifier's; PyTorch draws it from U(+-1/sqrt(C))).
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.conv import batch_norm, conv2d
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import pooled_classifier
from mixtok.layers.init import TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import zeros_with_axes
from mixtok.mixers.strip_mlp import StripMLP, check_dim
from mixtok.models.backbone import Backbone
from mixtok.models.inputs import check_images

PATCH_SIZE = 4
LAYER_NORM_EPSILON = 1e-5  # nn.LayerNorm's default (ChannelMixing.layer_norm)
GRN_EPSILON = 1e-6


class GRN(Module):
    """ConvNeXt-V2's global response normalisation on NHWC maps, as the official `GRN`: gamma, beta [1, 1, 1, C]
    (the official shapes), init 0; L2 norms over (H, W), computed in float32.

    mixtok.layers has no GRN; this is a private copy of the official class's forward.
    """

    @nn.compact
    def __call__(self, x):
        channels = x.shape[-1]
        axes = (None, None, None, "mlp")
        gamma = self.param("gamma", zeros_with_axes(axes), (1, 1, 1, channels), self.param_dtype)
        beta = self.param("beta", zeros_with_axes(axes), (1, 1, 1, channels), self.param_dtype)
        x32 = x.astype(jnp.float32)
        g = jnp.sqrt(jnp.sum(jnp.square(x32), axis=(1, 2), keepdims=True))
        n = g / (jnp.mean(g, axis=-1, keepdims=True) + GRN_EPSILON)
        return (gamma * (x32 * n) + beta + x32).astype(self.dtype or x.dtype)


class ChannelMixing(Module):
    """dw7x7 (no bias) -> LayerNorm -> Linear (C -> alpha C) -> GELU -> GRN -> Linear (-> C): the official one."""

    alpha: int = 3

    @nn.compact
    def __call__(self, x):
        common = self.dtype_kwargs
        dim = x.shape[-1]
        hidden = self.alpha * dim
        torch_linear = dict(kernel_init=TORCH_DEFAULT_INIT, **common)
        x = conv2d(dim, 7, groups=dim, use_bias=False, kernel_init=TORCH_DEFAULT_INIT, name="conv_77", **common)(x)
        x = LayerNorm(epsilon=LAYER_NORM_EPSILON, name="layer_norm", **common)(x)
        x = dense(hidden, ("embed", "mlp"), bias_init=torch_uniform_init(dim), name="fc1", **torch_linear)(x)
        x = GRN(name="grn", **common)(jax.nn.gelu(x, approximate=False))
        return dense(dim, ("mlp", "embed"), bias_init=torch_uniform_init(hidden), name="fc2", **torch_linear)(x)


class BasicBlock(Module):
    """x + drop_path(TokenMixing(x)), then x + drop_path(ChannelMixing(x)) (the official `BasicBlock`)."""

    grid_size: int
    alpha: int = 3
    drop_path: float = 0.1

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        drop = DropPath(self.drop_path)
        y = StripMLP(x.shape[-1], grid_size=self.grid_size, name="token_mixing", **common)(x, train=train)
        x = x + drop(y, train=train)
        return x + drop(ChannelMixing(self.alpha, name="channel_mixing", **common)(x), train=train)


class StripMLPNet(Backbone):
    """Strip-MLP: `apply(variables, images[B, S, S, 3], train=...) -> logits[B, num_classes]` (float32).

    BatchNorm statistics live in `batch_stats` (mutable when `train=True`); drop path needs the `drop_path`
    rng stream, `head_dropout` the `dropout` one.
    """

    depths: Sequence[int] = (2, 2, 6, 2)
    dims: Sequence[int] = (80, 160, 320, 640)
    alpha: int = 3  # the channel MLP's expansion (official ALPHA)
    num_classes: int = 1000
    drop_path_rate: float = 0.1  # one rate for every block: the official BasicBlock's hard-coded DropPath(0.1)
    head_dropout: float = 0.0
    image_size: int | None = 224

    def check_arguments(self) -> None:
        if len(self.depths) != 4 or len(self.dims) != 4:
            raise ValueError(
                f"StripMLPNet has exactly four stages (its cross-stage paths are fixed); got depths "
                f"{tuple(self.depths)} and dims {tuple(self.dims)}."
            )
        for i in (1, 2):
            if self.dims[i + 1] % self.dims[i]:
                raise ValueError(
                    f"StripMLPNet: dims {tuple(self.dims)}: the cross-stage conv from stage {i + 1} groups its "
                    f"{self.dims[i]} input channels, so dims[{i + 1}] must be a multiple of dims[{i}]."
                )
        for dim in self.dims:
            check_dim(dim, "StripMLPNet")

    def stage_maps(self, images, *, train: bool):
        self.check_arguments()
        check_images(
            images, PATCH_SIZE * 8, "StripMLPNet", "a 4x4 patch embedding and three 2x2 mergings", self.image_size
        )
        height, width = images.shape[1:3]
        if height != width:
            raise ValueError(
                f"StripMLPNet needs square images (the strip MLP mixes square token grids); got {height}x{width}."
            )
        grid = (self.image_size or height) // PATCH_SIZE
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images

        def conv(features, kernel, name, groups=1):
            return conv2d(
                features,
                kernel,
                stride=kernel,
                groups=groups,
                padding=0,
                use_bias=False,
                kernel_init=TORCH_DEFAULT_INIT,
                name=name,
                **common,
            )

        def stage(i, x):
            for j in range(self.depths[i]):
                x = BasicBlock(grid // 2**i, self.alpha, self.drop_path_rate, name=f"blocks{i + 1}_{j}", **common)(
                    x, train=train
                )
            return x

        dims = self.dims
        x = conv(dims[0], PATCH_SIZE, "patch_embed")(x)
        maps = [stage(0, x)]
        x = conv(dims[1], 2, "merging1")(maps[-1])
        s1_14 = conv(dims[2], 2, "conv_s1_28", groups=dims[1])(x)
        s1_7 = conv(dims[3], 2, "conv_s1_14", groups=dims[2])(s1_14)
        maps.append(stage(1, x))
        x = conv(dims[2], 2, "merging2")(maps[-1])
        s2_7 = conv(dims[3], 2, "conv_s2_14", groups=dims[2])(x)
        maps.append(stage(2, x + s1_14))
        x = conv(dims[3], 2, "merging3")(maps[-1])
        maps.append(stage(3, x + s1_7 + s2_7))
        return maps

    def classify(self, features, *, train: bool):
        common = self.dtype_kwargs
        x = batch_norm("norm", train=train, **common)(features)
        return pooled_classifier(
            self,
            x,
            num_classes=self.num_classes,
            head_dropout=self.head_dropout,
            train=train,
            name="head",
            kernel_init=TORCH_DEFAULT_INIT,
            **common,
        )
