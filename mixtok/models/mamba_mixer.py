"""ViM2 (Vision MambaMixer): a four-stage backbone of selective token and channel mixers, FROM THE PAPER ONLY.

Paper: "MambaMixer: Efficient Selective State Space Models with Dual Token and Channel Selection" (Behrouz,
Santacatterina & Zabih, arXiv 2403.19888 v1: section 4 "Vision MambaMixer (ViM2)", the appendix table
"Architectural overview of the ViM2 in different scales"). NO OFFICIAL CODE EXISTS (MambaMixer/M2 @ 250a86b9 is a
README: "Codes and models will be available soon"), so nothing here was compared with the authors' model; the
mixers are `mixtok.mixers.mamba_mixer` (whose docstring lists the mixer-level choices). The paper says ViM2 uses
"a similar pipeline as" VMamba (arXiv 2401.10166); where the paper is silent this file takes VMamba v0's layers
(MzeroMiko/VMamba @ 943d2042: classification/configs/vssm/vmambav0_*_224.yaml, PATCHEMBED / DOWNSAMPLE "v1").

    patch_embed:              conv 4x4 s4 (3 -> C0, bias) - LayerNorm                    (the table's stem)
    stages_{i}_downsample:    (i > 0) 2x2 space-to-depth - LayerNorm(4 C) - Linear(4 C -> C_i, no bias)
    stages_{i}_blocks_{s}:    x_s = sum_j dwa_j * out_j  (out_0 = the stage input, out_j = sub-block j - 1's output)
                              out_{s+1} = x_s + drop_path(Mixer(LayerNorm(x_s)))
                              Mixer: the selective token mixer ("token") or channel mixer ("channel")
    head:                     LayerNorm - mean over (H, W) - Linear                       (the table: "Average
                                                                                          Pooling, 1000D FC")

The table gives each stage a number of token mixers (`depths`: tiny (2, 2, 6, 2), small and base (2, 2, 18, 2))
and a number of channel mixers (`channel_depths`: tiny (1, 1, 3, 1), small and base (1, 1, 9, 1)); widths
(96, 192, 384, 768) for tiny and small, (128, 256, 512, 1024) for base; token mixers "Linear C -> 2C, DWConv 3x3,
S6 2C, Linear" (expand 2, d_state 16: the table's third argument).

Choices the paper leaves open, and what this file does:
- Order of the mixers in a stage: the table has half as many channel mixers as token mixers; a channel mixer
  follows every depths[i] / channel_depths[i] token mixers (tiny stage 3: T T C T T C T T C).
- Weighted averaging (section 3, "Weighted Averaging of Earlier Features", "limited to each individual stage"):
  every mixer's input is a learnable weighted sum of the stage input and of the outputs of all earlier mixers of
  the stage, token and channel alike (the paper's alpha / beta for token mixers, theta / gamma for channel
  mixers: the same thing for the interleaved sequence). The paper counts the model input twice (y_Token^(0) =
  y_Channel^(0) = x); one weight on it is the same function. Init: 1 on the latest output, 0 on the others (the
  plain residual stack, which the paper names as VMamba's special case; DenseFormer's init). The stage output
  is its last mixer's output.
- Each mixer sits in a pre-norm residual block (VMamba's VSSBlock: x + drop_path(mixer(LayerNorm(x)))); the
  paper's figure is not in its text. The outputs the weights average are these blocks' outputs.
- Stem and downsampling: the table's "conv 4x4, stride 4" with VMamba v0's LayerNorm after it; VMamba v0's
  PatchMerging2D between stages (the paper: "each stage (except the first) includes a down sampling"). The
  table's stem output "112x112" contradicts a stride-4 conv at 224 px (56x56, the table's stage 1); 56 is used.
- Head: LayerNorm on every token, then the average (VMamba's classifier); the table lists no norm.
- Drop path: linear from 0 to `drop_path_rate` over all the mixers of the model (token and channel); the
  defaults are VMamba v0's (0.2 tiny, 0.3 small, 0.5 base); the paper states none.
- LayerNorm eps 1e-5 (PyTorch's default, VMamba's); Linear kernels trunc-normal(0.02), the stem conv PyTorch's
  default init.

Any image size that is a multiple of 32 works (no parameter depends on the resolution; the paper evaluates
224-trained models at 384 to 1024 px). `image_size`, when set, is checked.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.drop import DropPath
from mixtok.layers.heads import ClassifierHead
from mixtok.layers.init import TORCH_DEFAULT_INIT
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import param_with_axes
from mixtok.layers.stems import PatchEmbed
from mixtok.mixers.mamba_mixer import SelectiveChannelMixer, SelectiveTokenMixer
from mixtok.models.backbone import Backbone
from mixtok.models.inputs import check_images

NORM_EPSILON = 1e-5


def mixer_order(depth: int, channel_depth: int) -> tuple[str, ...]:
    """The kinds of a stage's mixers: a channel mixer after every depth / channel_depth token mixers."""
    if channel_depth == 0:
        return ("token",) * depth
    every = depth // channel_depth
    order = []
    for t in range(depth):
        order.append("token")
        if (t + 1) % every == 0:
            order.append("channel")
    return tuple(order)


def latest_one_init(key, shape, dtype=jnp.float32):
    """[1, 0, ..., 0] reversed: the weighted average starts as the latest output alone."""
    del key
    return jnp.zeros(shape, dtype).at[-1].set(1.0)


class PatchMerging(Module):
    """VMamba v0's PatchMerging2D (Swin's): 2x2 neighbours concatenated, LayerNorm(4 C), Linear(4 C -> dim)."""

    dim: int

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        # Swin's order: (0, 0), (1, 0), (0, 1), (1, 1) offsets in (row, column).
        x = jnp.concatenate([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1)
        x = LayerNorm(epsilon=NORM_EPSILON, name="norm", **self.dtype_kwargs)(x)
        return dense(self.dim, ("embed", "embed"), use_bias=False, name="reduction", **self.dtype_kwargs)(x)


class MambaMixerBlock(Module):
    """One mixer of a stage: its input is a learnable weighted sum of the earlier outputs, then a residual block."""

    kind: str = "token"  # "token" or "channel"
    d_state: int = 16
    expand: int = 2
    channel_expand: int = 2
    drop_path: float = 0.0
    chunk_size: int = 64
    impl: str = "auto"

    @nn.compact
    def __call__(self, outputs: Sequence, *, train: bool = False):
        weights = self.param("dwa", param_with_axes(latest_one_init, (None,)), (len(outputs),), self.param_dtype)
        weights = jnp.asarray(weights, outputs[0].dtype)
        x = sum(w * o for w, o in zip(weights, outputs, strict=True))
        dim = x.shape[-1]
        common = self.dtype_kwargs
        y = LayerNorm(epsilon=NORM_EPSILON, name="norm", **common)(x)
        if self.kind == "token":
            mixer = SelectiveTokenMixer(
                dim, self.d_state, self.expand, chunk_size=self.chunk_size, impl=self.impl, name="mixer", **common
            )
        else:
            mixer = SelectiveChannelMixer(
                dim,
                self.d_state,
                self.channel_expand,
                chunk_size=self.chunk_size,
                impl=self.impl,
                name="mixer",
                **common,
            )
        return x + DropPath(self.drop_path)(mixer(y, train=train), train=train)


class ViM2(Backbone):
    """ViM2: `apply(variables, images[B, H, W, 3], train=...) -> logits[B, num_classes]` (float32).

    Images of any size that is a multiple of 32; `image_size`, when set, is checked. With drop path training
    needs the `drop_path` rng stream.
    """

    depths: Sequence[int] = (2, 2, 6, 2)  # token mixers per stage
    channel_depths: Sequence[int] = (1, 1, 3, 1)  # channel mixers per stage
    dims: Sequence[int] = (96, 192, 384, 768)
    d_state: int = 16
    expand: int = 2
    channel_expand: int = 2
    patch_size: int = 4
    num_classes: int = 1000
    drop_path_rate: float = 0.2
    head_dropout: float = 0.0
    image_size: int | None = None
    chunk_size: int = 64
    impl: str = "auto"

    def _orders(self):
        stages = len(self.depths)
        if not stages or len(self.dims) != stages or len(self.channel_depths) != stages:
            raise ValueError(
                f"ViM2 needs one dim and one channel depth per stage; got depths {tuple(self.depths)}, dims "
                f"{tuple(self.dims)} and channel_depths {tuple(self.channel_depths)}."
            )
        for depth, channel in zip(self.depths, self.channel_depths, strict=True):
            if channel < 0 or depth < 0 or (channel and (depth < channel or depth % channel)):
                raise ValueError(
                    f"ViM2: each stage's channel depth must divide its token depth (a channel mixer after every "
                    f"depth / channel_depth token mixers); got depths {tuple(self.depths)} and channel_depths "
                    f"{tuple(self.channel_depths)}."
                )
        return [mixer_order(d, c) for d, c in zip(self.depths, self.channel_depths, strict=True)]

    def stage_maps(self, images, *, train: bool):
        orders = self._orders()
        stages = len(orders)
        check_images(
            images, self.patch_size * 2 ** (stages - 1), "ViM2", "a stem and stride-2 downsamplings", self.image_size
        )
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images
        x = PatchEmbed(
            self.dims[0],
            self.patch_size,
            self.patch_size,
            padding=0,
            norm="layernorm",
            norm_epsilon=NORM_EPSILON,
            kernel_init=TORCH_DEFAULT_INIT,
            name="patch_embed",
            **common,
        )(x)
        total = sum(len(order) for order in orders)
        rates = [self.drop_path_rate * i / max(total - 1, 1) for i in range(total)]  # torch.linspace(0, r, total)
        maps, index = [], 0
        for i, order in enumerate(orders):
            if i > 0:
                x = PatchMerging(self.dims[i], name=f"stages_{i}_downsample", **common)(x)
            outputs = [x]
            for s, kind in enumerate(order):
                block = MambaMixerBlock(
                    kind,
                    self.d_state,
                    self.expand,
                    self.channel_expand,
                    rates[index],
                    self.chunk_size,
                    self.impl,
                    name=f"stages_{i}_blocks_{s}",
                    **common,
                )
                outputs.append(block(outputs, train=train))
                index += 1
            x = outputs[-1]
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        logits = ClassifierHead(
            self.num_classes,
            norm_epsilon=NORM_EPSILON,
            norm_before_pool=True,
            head_dropout=self.head_dropout,
            name="head",
            **self.dtype_kwargs,
        )(features, train=train)
        return logits.astype(jnp.float32)
