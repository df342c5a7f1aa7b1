"""The Dynamic Spectrum Mixer (DSM): a per-sample, per-channel filter on the 2-D DCT spectrum of the tokens.

Paper: "Dynamic Spectrum Mixer for Visual Recognition" (Zhiqiang Hu, Tao Yu; arXiv 2309.06721, 2023).
No official code is known, and the paper's body (equations, figures, variant table) could not be
retrieved here; only its abstract was (arXiv / Hugging Face papers page). The abstract fixes two things:

- "The DSM represents token interactions in the frequency domain by employing the Discrete Cosine
  Transform, which can learn long-term spatial dependencies with log-linear complexity."
- "a dynamic spectrum weight generation layer is proposed as the spectrum bands selector, which could
  emphasize the informative frequency bands while diminishing others."

Everything else is filled in from the closest documented design, DFFormer's `DynamicFilter`
("FFT-based Dynamic Token Mixer for Vision", Tatsunami & Taki, AAAI 2024; okojoalg/dfformer @ 11f8c7b:
models/dfformer.py), with its rfft2 / irfft2 pair replaced by the DCT the abstract names:

    r    = softmax_F(fc2(StarReLU(fc1(mean_HW(x)))))      [B, F, C'] routing over F base filters
    K_b  = sum_f r[b, f, :] * W[:, :, f]                   [B, H, W, C'] dynamic spectrum weights
    u    = StarReLU(pwconv1(x))                            [B, H, W, C'], C' = expansion_ratio * C
    y    = pwconv2(idctn(dctn(u) * K_b))                   DCT-II, norm 'ortho', over (H, W)

with W [h, w, F] real, learned. The DCT filtering is `mixtok.kernels.dct_filter`. Choices the paper
leaves open here (all DFFormer's unless said otherwise), so a reader can change any of them knowingly:

1. Transform: 2-D DCT-II over (H, W) with the orthonormal ('ortho') scaling, per channel; idctn
   (DCT-III) back. [Ours: the abstract says "the Discrete Cosine Transform"; type II is the DCT,
   'ortho' makes the pair exact inverses and keeps activations at scale.]
2. The spectrum weights are real, one value per (k_h, k_w) coefficient and channel (the DCT spectrum
   is real; DFFormer's complex [H, W//2+1] filter becomes a real [H, W] one).
3. Weight generation ("band selector"): F = `num_filters` = 4 learned base filters W, mixed per
   sample and channel by a softmax routing computed from the spatial mean of the mixer's input by a
   bias-free MLP dim -> int(0.25 dim) -> F * C' with StarReLU (DFFormer's `reweight`, ratio 0.25).
4. Inverted bottleneck around the filter: pwconv1 Linear(C -> 2C, no bias) -> StarReLU -> filter ->
   Identity -> pwconv2 Linear(2C -> C, no bias) (DFFormer's `med_channels = 2 dim`; MetaFormer's
   SepConv layout).
5. Initialisation: W ~ 0.02 N(0, 1) (DFFormer's complex weights); Linear kernels trunc-normal 0.02.
6. Grids: W is stored for `grid_size` (h, w), or the input's grid at initialisation when None. An
   input of another grid gets W resized in the forward pass, bicubic with align_corners=True over
   (h, w) (DFFormer's `resize_complex_weight`, GFNet's fine-tuning rule), so the parameters keep their
   shape. Note the DCT index k is the frequency pi k / N, and align_corners=True maps the corner
   frequencies onto each other, not every frequency exactly.
7. No norm, residual or dropout inside: the block around the mixer owns them (the mixer contract, docs/contracts.md).

Precision: the DCT runs on the compute dtype (bfloat16 operands with float32 accumulation under
bf16) with a float32 spectrum and filter; the routing softmax and the weight mixing are float32.
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.kernels.dct_filter import dct_filter
from mixtok.layers.activations import get_activation
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.partitioning import constrain_channels_last, param_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register
from mixtok.mixers.spectral import resize_bicubic


class DynamicSpectrumWeights(Module):
    """Per-sample spectrum weights [B, H, W, C']: a softmax mix of `num_filters` learned DCT-domain filters.

    The routing is computed from `pooled` [B, C] (the spatial mean of the mixer's input); the base
    filters are stored for `grid_size` and resized (bicubic, align_corners=True) to (height, width).
    """

    channels: int  # C', the channels of the filtered map
    grid_size: Sequence[int]
    num_filters: int = 4
    hidden_ratio: float = 0.25
    activation: str = "star_relu"
    use_bias: bool = False

    @nn.compact
    def __call__(self, pooled: jax.Array, height: int, width: int) -> jax.Array:
        common = dict(use_bias=self.use_bias, **self.dtype_kwargs)
        hidden = int(self.hidden_ratio * pooled.shape[-1])
        r = dense(hidden, ("embed", None), name="fc1", **common)(pooled)
        r = get_activation(self.activation, **self.dtype_kwargs, name="act")(r)
        r = dense(self.num_filters * self.channels, (None, None), name="fc2", **common)(r)
        routing = jax.nn.softmax(r.astype(jnp.float32).reshape(-1, self.num_filters, self.channels), axis=1)
        base = self.param(
            "base_filters",
            param_with_axes(jax.nn.initializers.normal(stddev=0.02), (None, None, None)),
            (*self.grid_size, self.num_filters),
            self.param_dtype,
        ).astype(jnp.float32)
        if base.shape[:2] != (height, width):
            base = resize_bicubic(base, (height, width), align_corners=True)
        return jnp.einsum("bfc,hwf->bhwc", routing, base, precision=jax.lax.Precision.HIGHEST)


@register("dynamic_spectrum_mixer")
class DynamicSpectrumMixer(Mixer):
    """pwconv1 -> StarReLU -> idctn(dctn(.) * K(x)) -> pwconv2, K(x) generated per sample (DSM)."""

    expansion_ratio: float = 2.0
    num_filters: int = 4
    weight_hidden_ratio: float = 0.25
    grid_size: Sequence[int] | None = None  # (h, w) of the stored base filters; None: the input's at init
    activation1: str = "star_relu"
    activation2: str = "identity"
    use_bias: bool = False
    impl: str = "auto"  # dct_filter implementation: "auto", "reference" or "xla"

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        if self.num_filters < 1:
            raise ValueError(f"num_filters must be a positive number of base filters; got {self.num_filters}.")
        height, width = x.shape[1:3]
        grid = tuple(self.grid_size) if self.grid_size is not None else (height, width)
        if len(grid) != 2:
            raise ValueError(f"grid_size must be (h, w); got {self.grid_size!r}.")
        hidden = int(self.expansion_ratio * self.dim)
        common = dict(use_bias=self.use_bias, **self.dtype_kwargs)
        pooled = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(self.dtype or x.dtype)
        filt = DynamicSpectrumWeights(
            channels=hidden,
            grid_size=grid,
            num_filters=self.num_filters,
            hidden_ratio=self.weight_hidden_ratio,
            **self.dtype_kwargs,
            name="spectrum_weights",
        )(pooled, height, width)
        y = dense(hidden, ("embed", "mlp"), name="pwconv1", **common)(x)
        y = constrain_channels_last(get_activation(self.activation1, **self.dtype_kwargs, name="act1")(y), "mlp")
        y = dct_filter(y, filt, impl=self.impl)
        y = get_activation(self.activation2, **self.dtype_kwargs, name="act2")(y)
        return constrain_channels_last(dense(self.dim, ("mlp", "embed"), name="pwconv2", **common)(y), "embed")
