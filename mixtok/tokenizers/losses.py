"""Training losses of image tokenizers: reconstruction, perceptual, GAN (PatchGAN / TiTok discriminators), LeCam.

    loss = reconstruction_loss(images, recon, kind="l2")
         + 0.1 * perceptual(images, recon)                       # PerceptualLoss or LogitPerceptualLoss
         + gan_weight_at(step, 20_000, 0.01) * hinge_g_loss(disc_logits_of_recon)

Follows TiTok's single-stage / stage-2 loss (bytedance/1d-tokenizer @ 942a96f: modeling/modules/losses.py
`ReconstructionLoss_Stage2`, `ReconstructionLoss_Single_Stage`; modeling/modules/discriminator.py; modeling/modules/
perceptual_loss.py; modeling/modules/lpips.py) and VQGAN's (CompVis/taming-transformers @ 3ba01b2:
taming/modules/losses/vqperceptual.py, taming/modules/discriminator/model.py). Yu et al. 2024, "An Image is Worth 32
Tokens for Reconstruction and Generation"; Esser et al. 2021, "Taming Transformers for High-Resolution Image
Synthesis"; Tseng et al. 2021, "Regularizing Generative Adversarial Networks under Limited Data" (LeCam).

TiTok's recipe (configs/training/TiTok/stage2/titok_l32.yaml): l2 reconstruction 1.0, ConvNeXt-S perceptual 0.1,
hinge GAN with the discriminator below, generator weight 0.01 from step 20,000 (`discriminator_start`), LeCam 0.001
with EMA decay 0.999. TiTok uses NO adaptive generator weight: its `d_weight` is the constant
`discriminator_weight`. VQGAN's adaptive weight (the ratio of the gradient norms of the reconstruction and GAN
losses at the decoder's last layer) is `adaptive_generator_weight`, for taming-style recipes.

Training generator and discriminator with ONE optimizer step. With G the tokenizer's parameters and D the
discriminator's, and sg = jax.lax.stop_gradient,

    total(G, D) = L_G(G, sg(D)) + L_D(sg(recon(G)), D)
    L_G = reconstruction + perceptual + gan_weight * hinge_g_loss(D_sg(recon))
    L_D = gan_factor * hinge_d_loss(D(images), D(sg(recon))) + lecam_weight * lecam_regularization(...)

gives d total / dG = d L_G / dG (L_D sees only sg(recon), so no gradient reaches G) and d total / dD = d L_D / dD
(L_G sees only sg(D)), so `jax.grad(total)` of {"generator": G, "discriminator": D} is exactly the two gradients
that TiTok's two optimizers receive; tests/tokenizers/test_losses.py checks this. TiTok computes both losses from
the same forward pass and the discriminator's parameters before its update, so one simultaneous update is the same
algorithm. Keep the two parameter sets' optimizer settings apart with optax.multi_transform (TiTok gives the
discriminator its own learning rate and schedule, and clip gradient norms per set, not globally), and, since the
discriminator's gradient is zero before `discriminator_start`, do not let weight decay shrink it then (TiTok does
not step the discriminator's optimizer before that step). The logged total is not either loss alone.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.init import TORCH_DEFAULT_INIT, torch_uniform_init
from mixtok.layers.module import Module
from mixtok.layers.partitioning import param_with_axes

# ---------------------------------------------------------------------------------------------------------------
# Reconstruction and perceptual losses
# ---------------------------------------------------------------------------------------------------------------

RECONSTRUCTION_KINDS = ("l1", "l2")


def reconstruction_loss(x, y, kind: str = "l2"):
    """Mean absolute ("l1") or squared ("l2") error over every element, float32 (F.l1_loss / F.mse_loss)."""
    if kind not in RECONSTRUCTION_KINDS:
        raise ValueError(f"reconstruction_loss: unknown kind {kind!r}; valid kinds: {', '.join(RECONSTRUCTION_KINDS)}.")
    diff = jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32)
    return jnp.mean(jnp.abs(diff)) if kind == "l1" else jnp.mean(jnp.square(diff))


# LPIPS's ScalingLayer (richzhang/PerceptualSimilarity; 1d-tokenizer modeling/modules/lpips.py): the VGG of LPIPS
# expects ((x in [-1, 1]) - shift) / scale.
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def lpips_scaling(images):
    """LPIPS's input scaling for images in [-1, 1] (mixtok's tokenizer space): (x - shift) / scale per channel."""
    return (images - jnp.asarray(LPIPS_SHIFT)) / jnp.asarray(LPIPS_SCALE)


def normalize_channels(features, eps: float = 1e-10):
    """LPIPS's normalize_tensor: each feature vector divided by (its L2 norm over channels + eps)."""
    norm = jnp.sqrt(jnp.sum(jnp.square(features), axis=-1, keepdims=True))
    return features / (norm + eps)


def lpips_distance(
    features_x: Sequence[jax.Array], features_y: Sequence[jax.Array], layer_weights: Sequence[jax.Array] | None = None
):
    """Per-image LPIPS distance [B] from two lists of NHWC feature maps.

    sum over layers l of mean over (h, w) of sum_c w_lc (n(f_l(x)) - n(f_l(y)))_c^2, n = normalize_channels;
    w_l are LPIPS's `lin` heads (a 1x1 conv to one channel without bias, [C_l]); without heads w = 1 (the
    "baseline" LPIPS). LPIPS's dropout before the heads is inactive in eval mode, as in TiTok.
    """
    if len(features_x) != len(features_y):
        raise ValueError(f"lpips_distance: {len(features_x)} feature maps for x, {len(features_y)} for y.")
    if layer_weights is not None and len(layer_weights) != len(features_x):
        raise ValueError(f"lpips_distance: {len(layer_weights)} layer weights for {len(features_x)} feature maps.")
    total = 0.0
    for layer, (fx, fy) in enumerate(zip(features_x, features_y)):
        diff = jnp.square(normalize_channels(fx.astype(jnp.float32)) - normalize_channels(fy.astype(jnp.float32)))
        if layer_weights is None:
            per_pixel = jnp.sum(diff, axis=-1)
        else:
            weights = jnp.asarray(layer_weights[layer], jnp.float32).reshape(-1)
            if weights.shape[0] != diff.shape[-1]:
                raise ValueError(
                    f"lpips_distance: layer {layer} has {diff.shape[-1]} channels but its weights "
                    f"have {weights.shape[0]}."
                )
            per_pixel = diff @ weights
        total = total + jnp.mean(per_pixel, axis=(1, 2))
    return total


class PerceptualLoss:
    """LPIPS-style perceptual loss over a pluggable feature network: mean over the batch of `lpips_distance`.

    features: images [B, H, W, 3] -> sequence of NHWC feature maps, including the network's own input
      preprocessing (for LPIPS-VGG16 on [-1, 1] images: `lambda x: vgg_relu_maps(lpips_scaling(x))` applied with
      your weights; the LPIPS layers are relu1_2, relu2_2, relu3_3, relu4_3, relu5_3). mixtok downloads nothing:
      pass your own network and weights, or `SmallFeatureNet` (random init) as a stand-in for tests.
    layer_weights: the LPIPS heads, one [C_l] vector per feature map (PyTorch `lin{l}.model.1.weight`
      [1, C_l, 1, 1], flattened); None weighs every channel 1.

    Follows 1d-tokenizer modeling/modules/lpips.py `LPIPS.forward` (and richzhang/PerceptualSimilarity). TiTok's
    LPIPS maps its [0, 1] inputs to [-1, 1] first; mixtok's images are already in [-1, 1].
    """

    def __init__(
        self, features: Callable[[jax.Array], Sequence[jax.Array]], layer_weights: Sequence[jax.Array] | None = None
    ):
        self.features = features
        self.layer_weights = layer_weights

    def per_image(self, x, y):
        """[B] LPIPS distance of each image pair."""
        return lpips_distance(self.features(x), self.features(y), self.layer_weights)

    def __call__(self, x, y):
        return jnp.mean(self.per_image(x, y))


class LogitPerceptualLoss:
    """TiTok's ConvNeXt-S perceptual loss: the MSE between a classifier's logits for the two images.

    Both images are mapped from `input_range` to [0, 1], resized to `resize_to`^2 (bilinear, antialiased, as
    F.interpolate(..., antialias=True); jax.image.resize agrees with it to ~2e-7), normalised with the ImageNet
    mean and std, and passed through `network` (images -> logits [B, 1000]; TiTok uses torchvision's
    convnext_small IMAGENET1K_V1, which you supply); the loss is the mean of the squared logit differences.
    Follows 1d-tokenizer modeling/modules/perceptual_loss.py `PerceptualLoss` with model_name "convnext_s".
    TiTok's "lpips-convnext_s-a-b" names average the two losses as (a * lpips + b * convnext) / (a + b).
    """

    def __init__(
        self,
        network: Callable[[jax.Array], jax.Array],
        *,
        resize_to: int | None = 224,
        input_range: tuple[float, float] = (-1.0, 1.0),
    ):
        self.network = network
        self.resize_to = resize_to
        self.input_range = input_range

    def preprocess(self, images):
        low, high = self.input_range
        images = (jnp.asarray(images, jnp.float32) - low) / (high - low)
        if self.resize_to is not None:
            b, _, _, c = images.shape
            images = jax.image.resize(images, (b, self.resize_to, self.resize_to, c), "bilinear", antialias=True)
        return (images - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)

    def __call__(self, x, y):
        logits_x = self.network(self.preprocess(x)).astype(jnp.float32)
        logits_y = self.network(self.preprocess(y)).astype(jnp.float32)
        return jnp.mean(jnp.square(logits_x - logits_y))


class SmallFeatureNet(Module):
    """A STAND-IN feature network for tests and quickstarts, NOT a perceptual metric: random-init 3x3 conv + ReLU
    stages (the first at full resolution, the others stride 2), returning each stage's output, like VGG's relu maps.
    Use a pretrained network (LPIPS-VGG16, ConvNeXt-S) for real training."""

    widths: Sequence[int] = (16, 32, 64)

    @nn.compact
    def __call__(self, images) -> tuple[jax.Array, ...]:
        outputs = []
        x = images
        for stage, width in enumerate(self.widths):
            x = _conv(
                width,
                3,
                stride=1 if stage == 0 else 2,
                padding=(1, 1),
                fan_in=9 * x.shape[-1],
                **self.dtype_kwargs,
                name=f"conv{stage}",
            )(x)
            x = nn.relu(x)
            outputs.append(x)
        return tuple(outputs)


# ---------------------------------------------------------------------------------------------------------------
# Discriminators
# ---------------------------------------------------------------------------------------------------------------


def _conv(
    features: int,
    kernel_size: int,
    *,
    stride: int,
    padding: tuple[int, int],
    fan_in: int,
    use_bias: bool = True,
    kernel_init: Callable | None = None,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
    name: str | None = None,
) -> nn.Conv:
    """An NHWC conv with (before, after) padding on both spatial axes and PyTorch's default initialisers unless
    `kernel_init` is given (bias U(+-1/sqrt(fan_in)))."""
    return nn.Conv(
        features,
        (kernel_size, kernel_size),
        strides=(stride, stride),
        padding=(padding, padding),
        use_bias=use_bias,
        kernel_init=param_with_axes(kernel_init or TORCH_DEFAULT_INIT, (None, None, "conv_in", "conv_out")),
        bias_init=param_with_axes(torch_uniform_init(fan_in), ("conv_out",)),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def _normal_init(mean: float, stddev: float) -> Callable:
    def init(key, shape, dtype=jnp.float32):
        return mean + stddev * jax.random.normal(key, shape, dtype)

    return init


class PatchGANDiscriminator(Module):
    """VQGAN's PatchGAN (pix2pix `NLayerDiscriminator`): logits [B, h, w, 1], one per overlapping patch.

    conv 4x4 s2 (ndf) -> LeakyReLU 0.2, then n_layers - 1 of [conv 4x4 s2 (no bias) -> BatchNorm -> LeakyReLU 0.2]
    with widths ndf * min(2^n, 8), one more at stride 1, and a 4x4 s1 conv to one channel; padding 1 everywhere.
    256^2 inputs give 30 x 30 logits. Follows taming-transformers @ 3ba01b2: taming/modules/discriminator/model.py
    (use_actnorm=False, its default) with its `weights_init`: conv kernels N(0, 0.02), BatchNorm scale N(1, 0.02)
    and bias 0; conv biases keep PyTorch's default U(+-1/sqrt(fan_in)). 2,765,633 parameters at ndf=64,
    n_layers=3 (the official module's count). BatchNorm statistics live in `batch_stats` (mutable when
    train=True); eps 1e-5, momentum 0.1 as PyTorch's, flax's running variance uses the biased estimate. As in
    taming, each call (real images, fake images) normalises with its own batch's statistics in training; thread
    the returned `batch_stats` from one call into the next.
    Not TiTok's discriminator: that is `TiTokDiscriminator`.
    """

    ndf: int = 64
    n_layers: int = 3

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        if self.n_layers < 1:
            raise ValueError(f"PatchGANDiscriminator: n_layers must be >= 1, got {self.n_layers}.")
        conv = functools.partial(
            _conv,
            kernel_size=4,
            padding=(1, 1),
            kernel_init=_normal_init(0.0, 0.02),
            **self.dtype_kwargs,
        )
        x = conv(self.ndf, stride=2, fan_in=16 * images.shape[-1], name="conv_in")(images)
        x = nn.leaky_relu(x, 0.2)
        for layer in range(1, self.n_layers + 1):
            width = self.ndf * min(2**layer, 8)
            stride = 2 if layer < self.n_layers else 1
            x = conv(width, stride=stride, fan_in=16 * x.shape[-1], use_bias=False, name=f"conv{layer}")(x)
            x = nn.BatchNorm(
                use_running_average=not train,
                momentum=0.9,
                epsilon=1e-5,
                **self.dtype_kwargs,
                scale_init=param_with_axes(_normal_init(1.0, 0.02), ("conv_out",)),
                bias_init=param_with_axes(jax.nn.initializers.zeros, ("conv_out",)),
                name=f"norm{layer}",
            )(x)
            x = nn.leaky_relu(x, 0.2)
        return conv(1, stride=1, fan_in=16 * x.shape[-1], name="conv_out")(x)


def same_padding(size: int, kernel_size: int, stride: int) -> tuple[int, int]:
    """TensorFlow-style 'SAME' padding (before, after) of 1d-tokenizer's Conv2dSame / BlurBlock.calc_same_pad."""
    total = max((-(-size // stride) - 1) * stride + kernel_size - size, 0)
    return total // 2, total - total // 2


def adaptive_max_pool(x, output_size: tuple[int, int]):
    """torch.nn.AdaptiveMaxPool2d on NHWC: output cell i covers rows floor(i H / h) to ceil((i + 1) H / h)."""
    for axis, out in zip((1, 2), output_size):
        size = x.shape[axis]
        if size % out == 0:
            shape = x.shape[:axis] + (out, size // out) + x.shape[axis + 1 :]
            x = jnp.max(x.reshape(shape), axis=axis + 1)
            continue
        cells = [
            jnp.max(
                jax.lax.slice_in_dim(x, (i * size) // out, -(-((i + 1) * size) // out), axis=axis),
                axis=axis,
                keepdims=True,
            )
            for i in range(out)
        ]
        x = jnp.concatenate(cells, axis=axis)
    return x


BLUR_KERNELS = {3: (1, 2, 1), 4: (1, 3, 3, 1), 5: (1, 4, 6, 4, 1)}


def blur_downsample(x, kernel_size: int = 4):
    """1d-tokenizer's BlurBlock: depthwise conv with the normalised outer product of a binomial kernel, stride 2,
    after the 'SAME' padding of a 4x4 stride-2 window (the official code pads for k=4 whatever the kernel)."""
    taps = np.asarray(BLUR_KERNELS[kernel_size], np.float32)
    kernel = np.outer(taps, taps)
    kernel /= kernel.sum()
    channels = x.shape[-1]
    pads = [same_padding(x.shape[axis], 4, 2) for axis in (1, 2)]
    x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    weight = jnp.tile(jnp.asarray(kernel, x.dtype)[:, :, None, None], (1, 1, 1, channels))
    return jax.lax.conv_general_dilated(
        x, weight, (2, 2), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels
    )


class TiTokDiscriminator(Module):
    """TiTok's discriminator (Mark Weber's improved PatchGAN), logits [B, 16, 16, 1] for any input size.

    conv 5x5 (hidden) -> LeakyReLU 0.1; num_stages of [conv 3x3 -> blur 2x downsample (or 2x2 average pool) ->
    GroupNorm(32) -> LeakyReLU 0.1] with widths hidden * (1, 2, 4, ...); adaptive max pool to 16 x 16; conv 1x1 ->
    LeakyReLU 0.1 -> conv 5x5 to one channel. Convs use TF 'SAME' padding (1d-tokenizer's Conv2dSame).
    Follows bytedance/1d-tokenizer @ 942a96f: modeling/modules/discriminator.py `NLayerDiscriminator` (defaults
    num_channels=3, hidden_channels=128, num_stages=3, blur_resample=True, blur_kernel_size=4): 1,909,889
    parameters, the official module's count. No batch statistics (GroupNorm), so no `batch_stats`. PyTorch's
    default initialisation (the official code sets none). GroupNorm eps 1e-5 as PyTorch's.
    """

    hidden_channels: int = 128
    num_stages: int = 3
    blur_resample: bool = True
    blur_kernel_size: int = 4
    pooled_size: int = 16

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        del train  # no dropout or batch statistics; the argument keeps the discriminators interchangeable
        if self.num_stages < 1:
            raise ValueError(f"TiTokDiscriminator: num_stages must be >= 1, got {self.num_stages}.")
        if self.blur_resample and self.blur_kernel_size not in BLUR_KERNELS:
            raise ValueError(
                f"TiTokDiscriminator: blur_kernel_size must be one of {sorted(BLUR_KERNELS)}, got "
                f"{self.blur_kernel_size}."
            )

        def conv(x, width, kernel_size, name):
            pads = same_padding(x.shape[1], kernel_size, 1), same_padding(x.shape[2], kernel_size, 1)
            x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
            return _conv(
                width,
                kernel_size,
                stride=1,
                padding=(0, 0),
                fan_in=kernel_size**2 * x.shape[-1],
                **self.dtype_kwargs,
                name=name,
            )(x)

        x = nn.leaky_relu(conv(images, self.hidden_channels, 5, "conv_in"), 0.1)
        for stage in range(self.num_stages):
            x = conv(x, self.hidden_channels * 2**stage, 3, f"stage{stage}_conv")
            if self.blur_resample:
                x = blur_downsample(x, self.blur_kernel_size)
            else:
                x = nn.avg_pool(x, (2, 2), strides=(2, 2))
            x = nn.GroupNorm(
                num_groups=32,
                epsilon=1e-5,
                **self.dtype_kwargs,
                scale_init=param_with_axes(jax.nn.initializers.ones, ("conv_out",)),
                bias_init=param_with_axes(jax.nn.initializers.zeros, ("conv_out",)),
                name=f"stage{stage}_norm",
            )(x)
            x = nn.leaky_relu(x, 0.1)
        x = adaptive_max_pool(x, (self.pooled_size, self.pooled_size))
        width = x.shape[-1]
        x = nn.leaky_relu(conv(x, width, 1, "logits_conv1"), 0.1)
        return conv(x, 1, 5, "logits_conv2")


# ---------------------------------------------------------------------------------------------------------------
# GAN losses, LeCam, weights
# ---------------------------------------------------------------------------------------------------------------


def hinge_d_loss(logits_real, logits_fake):
    """Discriminator hinge loss 0.5 * (mean(relu(1 - real)) + mean(relu(1 + fake))) (taming / TiTok)."""
    real = jnp.mean(jax.nn.relu(1.0 - jnp.asarray(logits_real, jnp.float32)))
    fake = jnp.mean(jax.nn.relu(1.0 + jnp.asarray(logits_fake, jnp.float32)))
    return 0.5 * (real + fake)


def hinge_g_loss(logits_fake):
    """Generator loss -mean(fake logits): what TiTok and VQGAN use with the hinge discriminator loss."""
    return -jnp.mean(jnp.asarray(logits_fake, jnp.float32))


def non_saturating_d_loss(logits_real, logits_fake):
    """0.5 * (mean(softplus(-real)) + mean(softplus(fake))): binary cross-entropy with labels 1 / 0 (taming's
    `vanilla_d_loss`)."""
    real = jnp.mean(jax.nn.softplus(-jnp.asarray(logits_real, jnp.float32)))
    fake = jnp.mean(jax.nn.softplus(jnp.asarray(logits_fake, jnp.float32)))
    return 0.5 * (real + fake)


def non_saturating_g_loss(logits_fake):
    """mean(softplus(-fake)) = -mean(log sigmoid(fake)) (Goodfellow et al. 2014). taming pairs its vanilla
    discriminator loss with -mean(fake) instead (hinge_g_loss)."""
    return jnp.mean(jax.nn.softplus(-jnp.asarray(logits_fake, jnp.float32)))


def lecam_regularization(logits_real, logits_fake, ema_real, ema_fake, *, reduce_logits_first: bool = True):
    """LeCam regulariser (Tseng et al. 2021): mean(relu(real - ema_fake)^2) + mean(relu(ema_real - fake)^2).

    ema_real, ema_fake: EMAs of the mean real / fake logits (`update_lecam_ema`), treated as constants.
    reduce_logits_first=True (default) is 1d-tokenizer's `compute_lecam_loss`, which is called with the batch
    means of the logits, so real and fake are scalars; False applies it to every logit, as the paper's code
    (google/lecam-gan) does.
    """
    real = jnp.asarray(logits_real, jnp.float32)
    fake = jnp.asarray(logits_fake, jnp.float32)
    if reduce_logits_first:
        real, fake = jnp.mean(real), jnp.mean(fake)
    ema_real = jax.lax.stop_gradient(jnp.asarray(ema_real, jnp.float32))
    ema_fake = jax.lax.stop_gradient(jnp.asarray(ema_fake, jnp.float32))
    return jnp.mean(jnp.square(jax.nn.relu(real - ema_fake))) + jnp.mean(jnp.square(jax.nn.relu(ema_real - fake)))


def update_lecam_ema(ema, value, decay: float = 0.999):
    """ema * decay + mean(value) * (1 - decay), without gradient. TiTok starts both EMAs at 0 and updates them
    after computing the regulariser, once per discriminator step."""
    value = jax.lax.stop_gradient(jnp.mean(jnp.asarray(value, jnp.float32)))
    return jnp.asarray(ema, jnp.float32) * decay + value * (1.0 - decay)


def gan_weight_at(step, start_step, weight):
    """`weight` from `start_step` on, 0 before (taming's adopt_weight, TiTok's discriminator_start); jit-able."""
    return jnp.where(jnp.asarray(step) >= start_step, jnp.asarray(weight, jnp.float32), jnp.float32(0.0))


def adaptive_generator_weight(nll_grads_norm, g_grads_norm, max_weight: float = 1e4):
    """VQGAN's adaptive GAN weight: ||grad nll|| / (||grad g|| + 1e-4), clipped to [0, max_weight], no gradient.

    The norms are of the gradients of the reconstruction (+ perceptual) loss and of the generator GAN loss with
    respect to the decoder's last layer (taming vqperceptual.py `calculate_adaptive_weight`, which then multiplies
    by disc_weight). TiTok does not use it (its weight is the constant discriminator_weight).
    """
    ratio = jnp.asarray(nll_grads_norm, jnp.float32) / (jnp.asarray(g_grads_norm, jnp.float32) + 1e-4)
    return jax.lax.stop_gradient(jnp.clip(ratio, 0.0, max_weight))
