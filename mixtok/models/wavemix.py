"""WaveMix: an isotropic stack of wavelet token-mixing blocks on a convolutional stem (image classification).

Paper: "WaveMix: A Resource-efficient Neural Network for Image Analysis" (Jeevan, Viswanathan, A S, Sethi; arXiv
2205.14375). Official code: pranavphoenix/WaveMix @ ba3d1b42: wavemix/classification.py (`WaveMix`) on
wavemix/__init__.py (`Level1Waveblock` ... `Level4Waveblock`); the released ImageNet models are built by
Saved_weights/ImageNet/*.py. The block is `mixtok.mixers.wavelet.WaveletMixer`.

    conv      the stem, `initial_conv`:
              'pachify' (stem="patchify"): Conv3x3 (3 -> C/4, padding 1) - Conv3x3 (-> C/2, padding 1)
                        - Conv patch x patch, stride patch (-> C) - GELU - BatchNorm        (conv.0, .1, .2, .4)
              'strided' (stem="strided"):  Conv3x3 stride s (3 -> C/2, padding 1) - Conv3x3 stride s (-> C)
    layers_i  x = x + drop_path(WaveletMixer(x))     (the official `x = attn(x) + x`; no norm anywhere)
    head      AdaptiveAvgPool2d(1) - Linear (C -> classes)                                (official `pool.2`)

The grid (image / patch, or image / s^2) must be a multiple of 2^levels: at 224 px, patch 4 gives 56 x 56, which
levels 1-3 divide; the level-4 model (strided, s = 2) needs a multiple of 64 px (256 px; its official forward fails
at 224). Another size is one ValueError naming a valid one; no parameter depends on the resolution.

Parity: the four released configurations of the official classification `WaveMix` (levels 1 and 3 at 224 px, level
4 strided at 256 px), every parameter and BatchNorm statistic random, converted by `mixtok.interop.wavemix`, give
eval logits within 1.7e-6 of the official ones (5.4e-7 of the largest logit) over three seeds; the procedure and
the figures are in that module's docstring.

Differences from the official code:
- NHWC layout; parameter names follow the official module paths (`conv_2` for `conv.2`, `layers_5/feedforward1/
  upsample` for `layers.5.feedforward1.4`, `head` for `pool.2`; the mixer's docstring lists its names).
- Official arguments under the shared vocabulary: `depths=(depth,)`, `dims=(final_dim,)`, `mlp_ratios` is `mult`
  (the feed-forwards' hidden width over C, an integer), `levels` is `level`, `stem` is `initial_conv` ("patchify"
  for the official spelling 'pachify'), `stem_stride` is `stride`; `ff_channel` and `dropout` keep their names
  (`ff_channel=None` means C, as every release sets it).
- `drop_path_rate` and `head_dropout` are mixtok additions (the official model has neither), 0 by default.
- Init: PyTorch's defaults, which the official model keeps (Image_Classification/timm.py defines an
  `_init_weights` it never applies), except the classifier's bias, which starts at zero (the shared head's).
"""

from collections.abc import Sequence

import jax.numpy as jnp

from mixtok.layers.activations import get_activation
from mixtok.layers.conv import batch_norm, conv2d
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import pooled_classifier
from mixtok.layers.init import TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.partitioning import param_with_axes
from mixtok.mixers.wavelet import WaveletMixer
from mixtok.models.backbone import Backbone, PerStage, per_stage, stage_drop_path_rates
from mixtok.models.inputs import check_images

STEMS = ("patchify", "strided")


class WaveMix(Backbone):
    """WaveMix: `apply(variables, images[B, H, W, 3], train=...) -> logits[B, num_classes]` (float32).

    BatchNorm statistics live in `batch_stats` (mutable when training); dropout and drop path need the `dropout`
    and `drop_path` rng streams when training.
    """

    depths: Sequence[int] = (16,)  # official depth
    dims: Sequence[int] = (192,)  # official final_dim
    mlp_ratios: PerStage = 2  # official mult
    ff_channel: int | None = None  # None: dims[0]
    levels: int = 3  # official level
    stem: str = "patchify"  # official initial_conv ('pachify' or 'strided')
    patch_size: int = 4
    stem_stride: int = 2  # official stride (the strided stem's two convs)
    dropout: float = 0.5  # inside every feed-forward, after its GELU
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    image_size: int | None = None

    @property
    def stem_reduction(self) -> int:
        return self.patch_size if self.stem == "patchify" else self.stem_stride**2

    def stage_maps(self, images, *, train: bool):
        if self.stem not in STEMS:
            raise ValueError(f"WaveMix: stem={self.stem!r} is not one of {STEMS} (official 'pachify', 'strided').")
        if len(self.depths) != 1 or len(self.dims) != 1:
            raise ValueError(
                f"WaveMix is isotropic: depths and dims take one entry each; got depths {tuple(self.depths)}, "
                f"dims {tuple(self.dims)}."
            )
        dim, depth = self.dims[0], self.depths[0]
        why = f"the stem's stride {self.stem_reduction} times 2^{self.levels} for a {self.levels}-level DWT"
        check_images(images, self.stem_reduction * 2**self.levels, "WaveMix", why, self.image_size)
        (mlp_ratio,) = per_stage(self.mlp_ratios, 1, "mlp_ratios")
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = self.stem_layers(x, dim, train=train)
        maps = []
        for i, rate in enumerate(stage_drop_path_rates(self.drop_path_rate, (depth,))[0]):
            y = WaveletMixer(dim, self.levels, mlp_ratio, self.ff_channel, self.dropout, name=f"layers_{i}", **common)(
                x, train=train
            )
            x = x + DropPath(rate)(y, train=train)
            maps.append(x)
        return maps

    def stem_layers(self, x, dim: int, *, train: bool):
        """The official `conv` Sequential, its layers named by their index in it."""
        common = self.dtype_kwargs

        def conv(inputs, features, kernel, stride, padding, index):
            fan_in = inputs.shape[-1] * kernel * kernel  # PyTorch's default bias bound 1 / sqrt(fan_in)
            return conv2d(
                features,
                kernel,
                stride=stride,
                padding=padding,
                kernel_init=TORCH_DEFAULT_INIT,
                bias_init=torch_uniform_init(fan_in),
                name=f"conv_{index}",
                **common,
            )(inputs)

        if self.stem == "strided":
            x = conv(x, dim // 2, 3, self.stem_stride, 1, 0)
            return conv(x, dim, 3, self.stem_stride, 1, 1)
        x = conv(x, dim // 4, 3, 1, 1, 0)
        x = conv(x, dim // 2, 3, 1, 1, 1)
        x = conv(x, dim, self.patch_size, self.patch_size, 0, 2)
        x = get_activation("gelu", **common)(x)
        return batch_norm("conv_4", train=train, **common)(x)

    def classify(self, features, *, train: bool):
        logits = pooled_classifier(
            self,
            features,
            num_classes=self.num_classes,
            head_dropout=self.head_dropout,
            train=train,
            name="head",
            kernel_init=param_with_axes(TORCH_DEFAULT_INIT, ("embed", None)),
            **self.dtype_kwargs,
        )
        return logits.astype(jnp.float32)
