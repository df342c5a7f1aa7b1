"""VQGAN as MaskGIT builds it: a 2D convolutional tokenizer, 256 px images -> 16 x 16 codes out of 1024.

Paper: "MaskGIT: Masked Generative Image Transformer" (Chang et al., CVPR 2022), whose tokenizer re-implements
VQGAN ("Taming Transformers for High-Resolution Image Synthesis", Esser et al., CVPR 2021) without its
non-local (attention) layers. Official code (JAX/Flax): google-research/maskgit @ 1db2359:
maskgit/nets/vqgan_tokenizer.py (`ResBlock`, `Encoder`, `Decoder`, `VectorQuantizer`, `VQVAE`),
maskgit/nets/layers.py (`get_norm_layer`, `dsample`, `upsample`), config maskgit/configs/vqgan_config.py.
PyTorch port (TiTok's frozen "proxy code" tokenizer), used for the parameter count and the numerical tests:
bytedance/1d-tokenizer @ 942a96f: modeling/modules/maskgit_vqgan.py.

With L = len(channel_multipliers) levels, R = num_res_blocks and widths w_i = filters * m_i:

    encoder: conv3x3 (no bias) to filters
             -> for level i = 0..L-1: R ResBlocks at w_i, then, except after the last level,
                2x2 average pooling (conv_downsample=True: conv 4x4 stride 2 with bias)
             -> R ResBlocks at w_{L-1} -> norm -> swish -> conv1x1 (bias) to quantizer.input_dim
    quantizer: any mixtok quantizer (MaskGIT: VQ, 1024 codes x 256)
    decoder: conv3x3 (bias) from code_dim to w_{L-1} -> R ResBlocks at w_{L-1}
             -> for level i = L-1..0: R ResBlocks at w_i, then, except after level 0,
                nearest-neighbour 2x upsampling -> conv3x3 (bias)
             -> norm -> swish -> conv3x3 (bias) to 3 channels
    ResBlock(w): h = conv3x3(swish(norm(conv3x3(swish(norm(x))))))    (both convs without bias)
                 out = h + x if x has w channels, else h + conv1x1(h)

The downsampling factor is 2^(L-1): MaskGIT's (1, 1, 2, 2, 4) is f16, 256 px -> 16 x 16 = 256 tokens.
Norms are GroupNorm(32 groups, eps 1e-6) (config `norm_type="GN"`); convs pad "SAME"; initialisation is
flax's default as in the official code (LeCun-normal kernels, zero biases), with logical axis names.

The width-changing ResBlock's shortcut is `conv1x1(h)` of the branch output h, not of the input x: the
official flax `ResBlock` reassigns x before computing `residual = conv(x)`, and the PyTorch port keeps it
(`residual = self.nin_shortcut(hidden_states)`). It is kept here so that the released weights compute
what they were trained to compute.

Parameter names mirror the official flax tree (MaskGIT's `tokenizer_imagenet256_checkpoint`), so that the
encoder and decoder subtrees load one to one (kernels [kh, kw, in, out] as flax's nn.Conv):

    encoder/Conv_0                       stem conv
    encoder/ResBlock_{i*R + j}           block j of level i; then ResBlock_{L*R + j}, the middle blocks
    encoder/Conv_1 .. Conv_{L-1}         the strided downsampling convs (conv_downsample=True only)
    encoder/GroupNorm_0, Conv_{last}     the output norm and the 1x1 conv to quantizer.input_dim
    decoder/Conv_0                       conv from code_dim
    decoder/ResBlock_j                   the R middle blocks; then ResBlock_{R + (L-1-i)*R + j}, level i
    decoder/Conv_{L-i}                   the conv after upsampling from level i (i = L-1..1)
    decoder/GroupNorm_0, Conv_L          the output norm and the conv to RGB
    ResBlock: GroupNorm_0, Conv_0, GroupNorm_1, Conv_1, Conv_2 (the 1x1 shortcut, width changes only)
    quantizer/codebook                   [codebook_size, code_dim] with the default VQ, as the official one

With norm_type="LN" the norms are LayerNorm_k instead of GroupNorm_k, as in the official code. The PyTorch
port's names map as: encoder.conv_in -> encoder/Conv_0; encoder.down[i].block[j] -> encoder/ResBlock_{i*R+j};
encoder.mid[j] -> encoder/ResBlock_{L*R+j}; encoder.norm_out, conv_out -> encoder/GroupNorm_0, Conv_1;
decoder.conv_in -> decoder/Conv_0; decoder.mid[j] -> decoder/ResBlock_j; decoder.up[i].block[j] ->
decoder/ResBlock_{R+(L-1-i)*R+j}; decoder.up[i].upsample_conv -> decoder/Conv_{L-i}; decoder.norm_out,
conv_out -> decoder/GroupNorm_0, Conv_L; inside a block norm1, conv1, norm2, conv2, nin_shortcut ->
GroupNorm_0, Conv_0, GroupNorm_1, Conv_1, Conv_2; quantize.embedding.weight -> the VQ codebook; conv
weights [out, in, kh, kw] transpose to [kh, kw, in, out].

Quantizer loss. MaskGIT's VQ loss is commitment_cost * mean((sg[q] - z)^2) + mean((q - sg[z])^2) with
commitment_cost = 0.25 (plus, in vqgan_config.py, 0.1 x an entropy penalty of the code assignment at
temperature 0.01), which is mixtok's VectorQuantizer with beta = 0.25. The PyTorch port swaps the two
weights (1.0 on the commitment term, 0.25 on the codebook term); TiTok never trains through it. mixtok's VQ
has no entropy term, so MaskGIT's entropy penalty is not part of `QuantizerOutput.loss` here.

Differences from the official code:
- The quantizer is any mixtok quantizer (`make_quantizer` arguments); MaskGIT has VQ and Gumbel VQ. The
  default VQ initialises its codebook U(-1/K, 1/K) (TiTok's, and the PyTorch port's); the official flax
  code uses U(-sqrt(3/K), sqrt(3/K)) (variance_scaling(1, "fan_in", "uniform") of a [K, d] array). Its
  loss has no entropy term (see above), and its `quantized` is float32 whatever `dtype`.
- The images are in [-1, 1] (mixtok's contract); MaskGIT's tokenizer was trained on pixels in [0, 1] and
  the port clamps its output to [0, 1]. A model trained here has no fixed range; the released weights
  need x01 = (x + 1) / 2 before the encoder and 2 * y - 1 after the decoder (the importer's job).
- Image sides must be multiples of the downsampling factor (ValueError otherwise); the official "SAME"
  pooling and convs would pad odd sizes. For the sizes allowed, TF-style "SAME" 2x2 average pooling is
  the plain mean over 2x2 blocks and the 4x4 stride-2 conv pads one pixel on each side, as here.
- Norm statistics are computed in float32 with the two-pass variance E[(x - mean)^2] (PyTorch's); flax's
  default, used by the official code, is E[x^2] - mean^2. They agree to float32 rounding.
- norm_type "BN" (the official BatchNorm option) is not offered: the tokenizer contract has no
  `batch_stats` collection; the MaskGIT config uses "GN". The ResBlock's `use_conv_shortcut` option (a
  3x3 shortcut) is not exposed: the official Encoder and Decoder always pass False.
"""

import collections
from collections.abc import Mapping, Sequence
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.module import Module
from mixtok.layers.partitioning import param_with_axes, zeros_with_axes
from mixtok.models.inputs import check_images
from mixtok.registry import unknown_name_error
from mixtok.tokenizers.base import QuantizerOutput, TokenizerOutput, check_token_indices
from mixtok.tokenizers.quantizers import make_quantizer

NORM_EPSILON = 1e-6  # flax GroupNorm / LayerNorm default, as the official code uses them
NORM_TYPES = {"GN": "GroupNorm", "LN": "LayerNorm"}  # official config value -> flax module (and name prefix)
ACTIVATIONS = {"swish": nn.swish, "relu": nn.relu}
MASKGIT_QUANTIZER = flax.core.FrozenDict({"name": "vq", "codebook_size": 1024, "code_dim": 256, "beta": 0.25})

# flax's default nn.Conv initialisation (what the official code trains from), with logical axis names.
_KERNEL_INIT = param_with_axes(nn.initializers.lecun_normal(), (None, None, "conv_in", "conv_out"))


class _Names:
    """Hands out `Kind_k` names in creation order, as flax's auto-naming in the official modules does."""

    def __init__(self):
        self._counts = collections.Counter()

    def __call__(self, kind: str) -> str:
        index = self._counts[kind]
        self._counts[kind] += 1
        return f"{kind}_{index}"


def _conv(
    features: int,
    kernel_size: int,
    name: str,
    *,
    stride: int = 1,
    use_bias: bool = True,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> nn.Conv:
    # flax's "SAME" padding for the sides allowed (even at stride 2): k - stride in total, the smaller half first.
    total = kernel_size - stride
    pad = (total // 2, total - total // 2)
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=(pad, pad),
        use_bias=use_bias,
        kernel_init=_KERNEL_INIT,
        bias_init=zeros_with_axes(("conv_out",)),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def _norm(norm_type: str, num_groups: int, name: str, dtype: Any, param_dtype: Any) -> nn.Module:
    common = dict(
        epsilon=NORM_EPSILON,
        use_fast_variance=False,
        dtype=dtype,
        param_dtype=param_dtype,
        scale_init=param_with_axes(nn.initializers.ones, ("conv_out",)),
        bias_init=zeros_with_axes(("conv_out",)),
        name=name,
    )
    if norm_type == "GN":
        return nn.GroupNorm(num_groups=num_groups, **common)
    return nn.LayerNorm(**common)


def average_pool_2x2(x: jax.Array) -> jax.Array:
    """Mean over non-overlapping 2x2 blocks of [B, H, W, C] (H, W even): the official `layers.dsample`."""
    batch, height, width, channels = x.shape
    return x.reshape(batch, height // 2, 2, width // 2, 2, channels).mean(axis=(2, 4))


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
    """Each pixel repeated 2x2: the official `layers.upsample` (jax.image.resize 'nearest', factor 2)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


class VQGANResBlock(Module):
    """Pre-activation residual block, norm -> act -> conv3x3 twice; see the module docstring's shortcut note."""

    filters: int
    activation: str = "swish"
    norm_type: str = "GN"
    norm_groups: int = 32

    @nn.compact
    def __call__(self, x):
        names, act = _Names(), ACTIVATIONS[self.activation]
        norm = NORM_TYPES[self.norm_type]
        common = self.dtype_kwargs
        h = _norm(self.norm_type, self.norm_groups, names(norm), **common)(x)
        h = _conv(self.filters, 3, names("Conv"), use_bias=False, **common)(act(h))
        h = _norm(self.norm_type, self.norm_groups, names(norm), **common)(h)
        h = _conv(self.filters, 3, names("Conv"), use_bias=False, **common)(act(h))
        if x.shape[-1] != self.filters:
            return h + _conv(self.filters, 1, names("Conv"), use_bias=False, **common)(h)
        return h + x


class _ConvNet(Module):
    """Fields shared by the encoder and the decoder (MaskGIT's `config.vqvae`)."""

    filters: int = 128
    channel_multipliers: Sequence[int] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    activation: str = "swish"
    norm_type: str = "GN"
    norm_groups: int = 32

    def _block(self, filters: int, names: _Names) -> VQGANResBlock:
        return VQGANResBlock(
            filters,
            self.activation,
            self.norm_type,
            self.norm_groups,
            **self.dtype_kwargs,
            name=names("ResBlock"),
        )

    def _output(self, x, features: int, kernel_size: int, names: _Names):
        x = _norm(self.norm_type, self.norm_groups, names(NORM_TYPES[self.norm_type]), self.dtype, self.param_dtype)(x)
        return _conv(features, kernel_size, names("Conv"), **self.dtype_kwargs)(ACTIVATIONS[self.activation](x))


class VQGANEncoder(_ConvNet):
    """Images [B, H, W, C] -> latents [B, H / f, W / f, output_dim], f = 2^(len(channel_multipliers) - 1)."""

    output_dim: int = 256
    conv_downsample: bool = False

    @nn.compact
    def __call__(self, images):
        names = _Names()
        common = self.dtype_kwargs
        x = _conv(self.filters, 3, names("Conv"), use_bias=False, **common)(images)
        for level, multiplier in enumerate(self.channel_multipliers):
            filters = self.filters * multiplier
            for _ in range(self.num_res_blocks):
                x = self._block(filters, names)(x)
            if level < len(self.channel_multipliers) - 1:
                if self.conv_downsample:
                    x = _conv(filters, 4, names("Conv"), stride=2, **common)(x)
                else:
                    x = average_pool_2x2(x)
        for _ in range(self.num_res_blocks):
            x = self._block(filters, names)(x)
        return self._output(x, self.output_dim, 1, names)


class VQGANDecoder(_ConvNet):
    """Codes [B, h, w, code_dim] -> images [B, h * f, w * f, output_dim], f = 2^(len(channel_multipliers) - 1)."""

    output_dim: int = 3

    @nn.compact
    def __call__(self, codes):
        names = _Names()
        common = self.dtype_kwargs
        filters = self.filters * self.channel_multipliers[-1]
        x = _conv(filters, 3, names("Conv"), **common)(codes)
        for _ in range(self.num_res_blocks):
            x = self._block(filters, names)(x)
        for level in reversed(range(len(self.channel_multipliers))):
            filters = self.filters * self.channel_multipliers[level]
            for _ in range(self.num_res_blocks):
                x = self._block(filters, names)(x)
            if level > 0:
                x = _conv(filters, 3, names("Conv"), **common)(upsample_nearest_2x(x))
        return self._output(x, self.output_dim, 3, names)


class VQGAN(Module):
    """MaskGIT's VQGAN tokenizer (see the module docstring): images in [-1, 1] -> [B, h, w] codes -> images.

    image_size: the side the variant is made for (sets `num_latent_tokens`); any multiple of the
      downsampling factor runs.
    quantizer: keyword arguments of `make_quantizer`; the encoder ends in the quantizer's `input_dim`
      channels and the decoder starts from its `code_dim`. Default: MaskGIT's VQ, 1024 codes x 256, beta 0.25.
    filters, channel_multipliers, num_res_blocks, conv_downsample, activation ("swish" | "relu"),
      norm_type ("GN" | "LN"), norm_groups: MaskGIT's `config.vqvae` fields (norm_groups is flax's default 32).
    dtype, param_dtype: of the encoder and decoder; the quantizer takes its own in the `quantizer` mapping
      (mixtok's quantizers compute in float32 whatever the input dtype).
    """

    PREFIX_DECODING = False  # the tokens are a 2D grid: every position is needed to decode

    image_size: int = 256
    filters: int = 128
    channel_multipliers: Sequence[int] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    quantizer: Mapping[str, Any] = MASKGIT_QUANTIZER
    conv_downsample: bool = False
    activation: str = "swish"
    norm_type: str = "GN"
    norm_groups: int = 32

    @property
    def downsampling_factor(self) -> int:
        return 2 ** (len(self.channel_multipliers) - 1)

    @property
    def latent_size(self) -> int:
        """Side of the token grid for `image_size` images."""
        return self.image_size // self.downsampling_factor

    @property
    def num_latent_tokens(self) -> int:
        return self.latent_size**2

    def _check_config(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise unknown_name_error("activation", self.activation, ACTIVATIONS)
        if self.norm_type not in NORM_TYPES:
            raise unknown_name_error("norm_type", self.norm_type, NORM_TYPES)
        if not self.channel_multipliers or min(self.channel_multipliers) < 1 or self.num_res_blocks < 0:
            raise ValueError(
                f"channel_multipliers must be positive integers (one per level) and num_res_blocks "
                f">= 0; got {tuple(self.channel_multipliers)} and {self.num_res_blocks}."
            )
        widths = sorted({self.filters * m for m in self.channel_multipliers})
        if self.norm_type == "GN" and any(width % self.norm_groups for width in widths):
            raise ValueError(
                f"GroupNorm with norm_groups={self.norm_groups} needs every width filters * "
                f"multiplier to be a multiple of it; got widths {widths}."
            )
        if self.image_size % self.downsampling_factor:
            raise ValueError(
                f"image_size {self.image_size} is not a multiple of the downsampling factor "
                f"{self.downsampling_factor} (2^(len(channel_multipliers) - 1))."
            )
        if self.quantizer is None or "name" not in self.quantizer:
            raise ValueError(
                f"quantizer must be a mapping with a 'name' (make_quantizer's arguments), got {self.quantizer!r}."
            )

    def setup(self):
        self._check_config()
        # Named "quantizer" (the field of that name holds its arguments) to mirror the official tree.
        self.quantize = make_quantizer(**dict(self.quantizer)).clone(parent=self, name="quantizer")
        net = dict(
            filters=self.filters,
            channel_multipliers=tuple(self.channel_multipliers),
            num_res_blocks=self.num_res_blocks,
            activation=self.activation,
            norm_type=self.norm_type,
            norm_groups=self.norm_groups,
            **self.dtype_kwargs,
        )
        self.encoder = VQGANEncoder(output_dim=self.quantize.input_dim, conv_downsample=self.conv_downsample, **net)
        self.decoder = VQGANDecoder(output_dim=3, **net)

    def _check_num_tokens(self, num_tokens) -> None:
        if num_tokens is not None:
            raise ValueError(
                f"VQGAN has no prefix decoding (its tokens are a 2D grid), so num_tokens must be "
                f"None; got {num_tokens!r}."
            )

    def encode(self, images, *, train: bool = False) -> QuantizerOutput:
        """Images [B, H, W, 3] -> QuantizerOutput with quantized [B, H/f, W/f, code_dim], indices [B, H/f, W/f]."""
        check_images(
            images, self.downsampling_factor, "VQGAN", f"{len(self.channel_multipliers) - 1} halvings of the side"
        )
        return self.quantize(self.encoder(images), train=train)

    def decode(self, quantized, *, num_tokens=None, train: bool = False):
        """Quantized codes [B, h, w, code_dim] -> images [B, h * f, w * f, 3]. `train` changes nothing here."""
        self._check_num_tokens(num_tokens)
        if quantized.ndim != 4:
            raise ValueError(f"VQGAN decodes a grid of codes [B, h, w, code_dim]; got shape {quantized.shape}.")
        return self.decoder(quantized)

    def decode_indices(self, indices, *, num_tokens=None):
        """Code indices [B, h, w] -> images [B, h * f, w * f, 3], through the quantizer's codebook.

        A ValueError for non-integer indices, and for ids outside the codebook unless they are traced
        (under jax.jit they cannot be checked; see mixtok.tokenizers.base).
        """
        self._check_num_tokens(num_tokens)
        check_token_indices(indices, self.quantize.codebook_size, "VQGAN")
        return self.decode(self.quantize.decode_indices(indices))

    def __call__(self, images, *, train: bool = False, num_tokens=None) -> TokenizerOutput:
        self._check_num_tokens(num_tokens)
        quantizer_output = self.encode(images, train=train)
        reconstruction = self.decode(quantizer_output.quantized, train=train)
        grid_tokens = quantizer_output.quantized.shape[1] * quantizer_output.quantized.shape[2]
        return TokenizerOutput(
            reconstruction=reconstruction, quantizer=quantizer_output, num_tokens=jnp.asarray(grid_tokens, jnp.int32)
        )
