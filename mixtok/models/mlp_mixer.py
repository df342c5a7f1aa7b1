"""MLP-Mixer: an isotropic stack of token-mixing and channel-mixing MLPs on non-overlapping patches.

Paper: "MLP-Mixer: An all-MLP Architecture for Vision" (Tolstikhin et al., NeurIPS 2021). Official code:
google-research/vision_transformer: vit_jax/models_mixer.py. Parameter names, layout and initialisation
follow timm's port, timm/models/mlp_mixer.py (timm 1.0.31: `MlpMixer`, `MixerBlock`, `_init_weights`),
whose weights (`mixer_b16_224.goog_in21k_ft_in1k` ..., converted by timm from the official JAX
checkpoints) `mixtok.interop.timm` converts. The token mixer is `mixtok.mixers.TokenMixingMLP`.

    stem:   conv p x p stride p (p = 16), bias          `stem.proj`
    block:  x = x + drop_path(mlp_tokens(norm1(x)))     token mixing: an MLP over the N patches, per channel
            x = x + drop_path(mlp_channels(norm2(x)))   channel mixing: an MLP over C, per patch
    head:   LayerNorm on every token -> mean over tokens -> [dropout] -> Linear   (`norm`, `head`)

LayerNorm eps 1e-6 with bias; MLPs Linear-GELU(erf)-Linear with biases; token MLP width
int(`token_mlp_ratio` * C) = C / 2, channel MLP int(`mlp_ratios` * C) = 4C (timm's `mlp_ratio=(0.5, 4.0)`,
the paper's D_S and D_C for S/16, B/16, L/16).

Initialisation (timm's `_init_weights`, `flax=False`, the default): Linear weights xavier-uniform, MLP
biases normal(0, 1e-6), the classifier's weight and bias zero; the stem conv lecun-normal (timm's
`lecun_normal_`: truncated normal cut at +-2 standard deviations, scaled by 1 / 0.8796 so its std is
sqrt(1 / fan_in)), zero bias; LayerNorm ones / zeros. `jax.nn.initializers.lecun_normal()` is that same
distribution (variance_scaling(1, fan_in, "truncated_normal"): bounds +-2 in units of the std, the same
0.8796 correction, fan_in = p * p * 3 for both), so here JAX's truncated normal does not differ from
timm's. (Where it does differ is the zoo's trunc_normal(std=0.02), `mixtok.layers.init`: timm cuts at
absolute +-2, JAX at +-2 std; MLP-Mixer does not use it.)

Differences from the official JAX model, where we follow timm: none in the forward pass (the official
`MlpBlock` is the same Dense-GELU-Dense, its LayerNorms have flax's eps 1e-6). Stochastic depth: timm gives
every block the same rate `drop_path_rate` (its FIXME: "stochastic depth scaling rule or all the same?"),
not DeiT's linear rise; we follow timm. The official model has none.

Resolution. The token MLP has one weight per patch, so the model is built for one `image_size` (an int, or
(height, width)): the parameters have the shapes of its (image_size / patch_size)^2 patches, and another
input size raises one ValueError naming the expected size (timm's PatchEmbed asserts the same). To run at
another size, build the model for it (a pretrained token MLP does not transfer to another patch count).

Parity with timm: converted timm weights give timm's logits to 1.2e-6 (every weight randomised, five runs
over the three variants; `mixtok.interop.timm_mixer` has the figures and how they were measured).

Arguments use the zoo's vocabulary (`mixtok.models`): timm's `num_blocks` and `embed_dim` are
`depths=(num_blocks,)` and `dims=(embed_dim,)`, one stage; `dropout` is timm's `proj_drop_rate` (inside
every MLP) and `head_dropout` its `drop_rate`. `method="intermediates"` returns every block's output as a
[B, h, w, C] grid (timm's `forward_intermediates`), `features` the last one before the final norm.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax

from mixtok.layers.conv import conv2d
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import pooled_classifier
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.mixers.mlp_mixer import MixerMlp, TokenMixingMLP
from mixtok.models.backbone import Backbone, PerStage, per_stage
from mixtok.models.inputs import check_images

NORM_EPSILON = 1e-6


class MixerBlock(Module):
    """x + drop_path(mlp_tokens(norm1(x))); x + drop_path(mlp_channels(norm2(x))): timm's `MixerBlock`."""

    num_tokens: int
    token_mlp_ratio: float = 0.5
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    drop_path: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        dim = x.shape[-1]
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm1", **common)(x)
        y = TokenMixingMLP(
            dim,
            num_tokens=self.num_tokens,
            mlp_ratio=self.token_mlp_ratio,
            dropout=self.dropout,
            name="mlp_tokens",
            **common,
        )(y, train=train)
        x = x + DropPath(self.drop_path)(y, train=train)
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm2", **common)(x)
        y = MixerMlp(int(self.mlp_ratio * dim), self.dropout, name="mlp_channels", **common)(y, train=train)
        return x + DropPath(self.drop_path)(y, train=train)


class PatchEmbed(Module):
    """conv p x p stride p with bias, lecun-normal kernel and zero bias: timm's `PatchEmbed` (`stem.proj`)."""

    features: int
    patch_size: int

    @nn.compact
    def __call__(self, x):
        return conv2d(
            self.features,
            self.patch_size,
            stride=self.patch_size,
            padding=0,
            kernel_init=jax.nn.initializers.lecun_normal(),
            name="proj",
            **self.dtype_kwargs,
        )(x)


class MlpMixer(Backbone):
    """MLP-Mixer: `apply(variables, images[B, H, W, 3]) -> logits[B, num_classes]` (float32)."""

    depths: Sequence[int] = (8,)  # one stage: timm's `num_blocks`
    dims: Sequence[int] = (512,)  # timm's `embed_dim`
    patch_size: int = 16
    image_size: int | Sequence[int] = 224  # the size the token MLPs are built for; (height, width) or one side
    mlp_ratios: PerStage = 4.0  # the channel MLP's
    token_mlp_ratio: float = 0.5  # the token MLP's hidden width, as a multiple of the channels
    num_classes: int = 1000
    dropout: float = 0.0  # timm's proj_drop_rate: inside every MLP
    drop_path_rate: float = 0.0  # the same rate in every block, as timm's MlpMixer
    head_dropout: float = 0.0  # timm's drop_rate

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of the images the model is built for."""
        size = self.image_size
        return (size, size) if isinstance(size, int) else tuple(size)

    def stage_maps(self, images, *, train: bool):
        if len(self.depths) != 1 or len(self.dims) != 1:
            raise ValueError(
                f"MlpMixer is isotropic (one stage): give depths=(num_blocks,) and dims=(width,); got depths "
                f"{tuple(self.depths)} and dims {tuple(self.dims)}."
            )
        height, width = self.image_shape
        if height % self.patch_size or width % self.patch_size:
            raise ValueError(
                f"MlpMixer: image_size {height}x{width} is not a multiple of patch_size {self.patch_size}."
            )
        check_images(images, self.patch_size, "MlpMixer", f"patch size {self.patch_size}")
        if tuple(images.shape[1:3]) != (height, width):
            raise ValueError(
                f"MlpMixer was built for {height}x{width} images (image_size={self.image_size}: "
                f"{height // self.patch_size}x{width // self.patch_size} patches, one token-MLP weight each) but got "
                f"{images.shape[1]}x{images.shape[2]} images; feed {height}x{width} images or build the model with "
                f"image_size={images.shape[1]}"
                + ("" if images.shape[1] == images.shape[2] else f",{images.shape[2]}")
                + "."
            )
        (mlp_ratio,) = per_stage(self.mlp_ratios, 1, "mlp_ratios")
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = PatchEmbed(self.dims[0], self.patch_size, name="stem", **common)(x)
        num_tokens = x.shape[1] * x.shape[2]
        maps = []
        for i in range(self.depths[0]):
            x = MixerBlock(
                num_tokens,
                token_mlp_ratio=self.token_mlp_ratio,
                mlp_ratio=mlp_ratio,
                dropout=self.dropout,
                drop_path=self.drop_path_rate,
                name=f"blocks_{i}",
                **common,
            )(x, train=train)
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        # timm's `norm` and `head` sit at the top of the model, not in a head module: built in this scope.
        x = LayerNorm(epsilon=NORM_EPSILON, name="norm", **self.dtype_kwargs)(features)
        return pooled_classifier(
            self,
            x,
            num_classes=self.num_classes,
            head_dropout=self.head_dropout,
            train=train,
            name="head",
            kernel_init=param_with_axes(nn.initializers.zeros_init(), ("embed", None)),  # timm: head weight zero
            **self.dtype_kwargs,
        )
