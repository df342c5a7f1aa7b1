"""MLP-Mixer's token-mixing MLP: one MLP across the N patches, shared by every channel.

Paper: "MLP-Mixer: An all-MLP Architecture for Vision" (Tolstikhin et al., NeurIPS 2021). Official code:
google-research/vision_transformer: vit_jax/models_mixer.py (`MlpBlock`, `MixerBlock`, `MlpMixer`);
mixtok follows timm's port, timm/models/mlp_mixer.py (timm 1.0.31: `MixerBlock`, `Mlp`, `_init_weights`),
whose `mixer_*` weights `mixtok.interop.timm` converts:

    y[b, :, c] = fc2(GELU(fc1(x[b, :, c])))     fc1: N -> hidden, fc2: hidden -> N, over the N = H * W tokens

The block around it (mixtok.models.mlp_mixer.MixerBlock, or a MetaFormer block) holds the LayerNorm before
it and the residual after it, as the mixer contract says; the mixer itself is the transpose, the two Linears
and the exact (erf) GELU of timm's `mlp_tokens`. Its width is timm's rule, `hidden = int(mlp_ratio * dim)`
with `mlp_ratio=0.5` (timm's `mlp_ratio=(0.5, 4.0)`: Mixer-B/16 has 768 channels and a token MLP of 384,
the paper's D_S), or `hidden_dim` when set (the official `tokens_mlp_dim`).

Fixed grid. fc1 and fc2 have one weight per token, so the mixer runs only at the token count it was built
for: `num_tokens`, or (when None) the H * W of the input at initialisation. Another token count raises one
ValueError naming the expected count. In a MetaFormer (`token_mixers=("token_mixing_mlp", ...)`),
`image_size` gives each stage its token count through the `num_tokens` field, as it does for RandFormer's
RandomMixing (`mixtok.models.metaformer.resolution_options`).

Initialisation: timm's `_init_weights` (its default, `flax=False`): Linear weights xavier-uniform, the biases
of the MLPs normal(0, 1e-6) (`'mlp' in name`). `jax.nn.initializers.xavier_uniform` draws from the same
U(+-sqrt(6 / (fan_in + fan_out))) as torch's `xavier_uniform_`.
"""

import flax.linen as nn
import jax

from mixtok.layers.activations import get_activation
from mixtok.layers.init import XAVIER_UNIFORM_INIT
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.partitioning import Axes, param_with_axes
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

# timm's `_init_weights`: the biases of every Linear inside an MLP (`'mlp' in name`) are normal(0, 1e-6).
MLP_BIAS_STD = 1e-6


def mixer_dense(features: int, axes: Axes, *, name: str, **kwargs):
    """A Dense layer with timm's MLP-Mixer init: xavier-uniform kernel, normal(0, 1e-6) bias."""
    return dense(
        features,
        axes,
        kernel_init=param_with_axes(XAVIER_UNIFORM_INIT, axes),
        bias_init=param_with_axes(jax.nn.initializers.normal(MLP_BIAS_STD), (axes[-1],)),
        name=name,
        **kwargs,
    )


class MixerMlp(Module):
    """fc1 -> GELU (erf) -> dropout -> fc2 -> dropout on the last axis, with timm's MLP-Mixer init.

    timm's `timm.layers.Mlp` as `MixerBlock` builds it (both `mlp_tokens` and `mlp_channels`). The shared
    `mixtok.layers.mlp.Mlp` is the same map but takes no initialisers (trunc-normal 0.02, zero biases).
    """

    hidden_dim: int
    dropout: float = 0.0
    axes: Axes = ("embed", "mlp")  # logical (input, hidden) axes of fc1; fc2 has them reversed

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        features = x.shape[-1]
        in_axis, hidden_axis = self.axes
        x = mixer_dense(self.hidden_dim, (in_axis, hidden_axis), name="fc1", **self.dtype_kwargs)(x)
        x = get_activation("gelu", **self.dtype_kwargs, name="act")(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = mixer_dense(features, (hidden_axis, in_axis), name="fc2", **self.dtype_kwargs)(x)
        return nn.Dropout(self.dropout, deterministic=not train)(x)


@register("token_mixing_mlp")
class TokenMixingMLP(Mixer):
    """y = fc2(GELU(fc1(x^T)))^T: an MLP over the H * W tokens, per channel (timm's `mlp_tokens`)."""

    num_tokens: int | None = None  # None: the input's H * W at initialisation
    mlp_ratio: float = 0.5  # hidden = int(mlp_ratio * dim), timm's rule
    hidden_dim: int | None = None  # overrides mlp_ratio: the official `tokens_mlp_dim`
    dropout: float = 0.0  # timm's proj_drop_rate inside the MLP

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        batch, height, width, channels = x.shape
        tokens = height * width
        expected = self.num_tokens
        if expected is None and self.has_variable("params", "fc1"):  # built at init from the input's grid
            expected = nn.meta.unbox(self.variables["params"]["fc1"]["kernel"]).shape[0]
        if expected is not None and expected != tokens:
            raise ValueError(
                f"TokenMixingMLP has one weight per token and was built for {expected} tokens, but the input is "
                f"{height}x{width} = {tokens} tokens; feed the image size it was built for (e.g. a "
                f"{int(expected**0.5)}x{int(expected**0.5)} grid when square) or build it for {tokens} tokens."
            )
        hidden = self.hidden_dim if self.hidden_dim is not None else int(self.mlp_ratio * self.dim)
        y = x.reshape(batch, tokens, channels).swapaxes(1, 2)  # [B, C, N]: the MLP runs along the tokens
        # fc1 / fc2 directly in this module (not in a MixerMlp), so the parameters are timm's mlp_tokens.fc1 / .fc2.
        y = mixer_dense(hidden, (None, None), name="fc1", **self.dtype_kwargs)(y)
        y = get_activation("gelu", **self.dtype_kwargs, name="act")(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        y = mixer_dense(tokens, (None, None), name="fc2", **self.dtype_kwargs)(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        return y.swapaxes(1, 2).reshape(batch, height, width, channels)
