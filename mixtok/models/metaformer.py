"""The MetaFormer backbone: a four-stage pyramid whose token mixer is a per-stage choice.

Papers: "MetaFormer Is Actually What You Need for Vision" (PoolFormer, Yu et al., CVPR 2022) and
"MetaFormer Baselines for Vision" (IdentityFormer, RandFormer, PoolFormerV2, ConvFormer, CAFormer;
Yu et al., TPAMI 2024). Official code: sail-sg/poolformer: models/poolformer.py and
sail-sg/metaformer: metaformer_baselines.py. Parameter names and layout follow timm's port,
timm/models/metaformer.py, whose pretrained weights `mixtok.interop.timm` converts.

    stem:   conv 7x7 stride 4 padding 2 -> [norm]
    stage i (i > 0): [norm] -> conv 3x3 stride 2 padding 1
    block:  x = res_scale1(x) + layer_scale1(drop_path(mixer(norm1(x))))
            x = res_scale2(x) + layer_scale2(drop_path(mlp(norm2(x))))
    head:   global average pool -> LayerNorm (eps 1e-6, with bias) -> [dropout] -> Linear | MlpHead

Where timm and the official code differ, we follow timm (its weights are the ones users load):
- PoolFormer v1's final norm: the official code applies GroupNorm(1) to the feature map before
  pooling; timm applies LayerNorm (eps 1e-6) to the pooled vector.
- MlpHead's LayerNorm eps: official 1e-5, timm 1e-6 (`head_mlp_norm_epsilon`).
- Stochastic-depth rates rise linearly over all blocks, as in the official code.
- `head_dropout`: timm drops before an MlpHead and again inside it (before fc2), and never before a
  Linear head; the official code drops only inside MlpHead. We follow timm.
The model checks that the image size is a multiple of the total stride (32) and says so otherwise.
"""

from typing import Any, Mapping, Optional, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from mixtok import mixers
from mixtok.layers.drop import DropPath
from mixtok.layers.mlp import Mlp, MlpHead
from mixtok.layers.norms import LayerNorm, get_norm
from mixtok.layers.partitioning import conv_kernel_init, dense_kernel_init, param_with_axes, zeros_with_axes
from mixtok.models.inputs import check_images

PerStage = Union[Any, Sequence[Any]]


class Scale(nn.Module):
    """Per-channel learnable scale (LayerScale / ResScale), initialised to `init_value`."""

    init_value: float
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        scale = self.param("scale", param_with_axes(nn.initializers.constant(self.init_value), ("embed",)),
                           (x.shape[-1],), self.param_dtype)
        return x * scale.astype(x.dtype)


class MetaFormerBlock(nn.Module):
    """norm -> token mixer -> residual; norm -> MLP -> residual (with optional layer/res scales)."""

    token_mixer: str
    mixer_kwargs: Mapping[str, Any]
    norm: str
    norm_epsilon: float
    mlp_activation: str
    mlp_bias: bool
    drop_path: float = 0.0
    layer_scale_init: Optional[float] = None
    res_scale_init: Optional[float] = None
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        dim = x.shape[-1]
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        for i, branch in ((1, "mixer"), (2, "mlp")):
            y = get_norm(self.norm, epsilon=self.norm_epsilon, name=f"norm{i}", **common)(x)
            if branch == "mixer":
                y = mixers.get(self.token_mixer)(dim=dim, name="token_mixer", **common, **self.mixer_kwargs)(
                    y, train=train)
            else:
                y = Mlp(activation=self.mlp_activation, use_bias=self.mlp_bias, name="mlp", **common)(y, train=train)
            y = DropPath(self.drop_path)(y, train=train)
            if self.layer_scale_init is not None:
                y = Scale(self.layer_scale_init, self.param_dtype, name=f"layer_scale{i}")(y)
            if self.res_scale_init is not None:
                x = Scale(self.res_scale_init, self.param_dtype, name=f"res_scale{i}")(x)
            x = x + y
        return x


class Downsampling(nn.Module):
    """[norm] -> strided conv; the stem puts its norm after the conv instead."""

    features: int
    kernel_size: int
    stride: int
    padding: int
    norm: Optional[str] = None
    norm_epsilon: float = 1e-6
    norm_after: bool = False
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        norm = get_norm(self.norm, epsilon=self.norm_epsilon, name="norm", **common) if self.norm else None
        if norm is not None and not self.norm_after:
            x = norm(x)
        p = self.padding
        x = nn.Conv(self.features, (self.kernel_size,) * 2, strides=(self.stride,) * 2, padding=((p, p), (p, p)),
                    kernel_init=conv_kernel_init(), bias_init=zeros_with_axes(("conv_out",)), name="conv",
                    **common)(x)
        if norm is not None and self.norm_after:
            x = norm(x)
        return x


class MetaFormerStage(nn.Module):
    """[Downsampling] followed by len(drop_path_rates) MetaFormer blocks of the same options."""

    features: int
    downsample: bool
    downsample_norm: Optional[str]
    downsample_norm_epsilon: float
    block: Mapping[str, Any]
    drop_path_rates: Sequence[float]
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.downsample:
            x = Downsampling(self.features, 3, 2, 1, norm=self.downsample_norm,
                             norm_epsilon=self.downsample_norm_epsilon, name="downsample", **common)(x)
        for j, rate in enumerate(self.drop_path_rates):
            x = MetaFormerBlock(**self.block, drop_path=rate, name=f"blocks_{j}", **common)(x, train=train)
        return x


class ClassifierHead(nn.Module):
    """Global average pool -> LayerNorm -> dropout -> Linear or MlpHead."""

    num_classes: int
    use_mlp_head: bool
    norm_epsilon: float = 1e-6
    mlp_norm_epsilon: float = 1e-6
    dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)
        x = LayerNorm(epsilon=self.norm_epsilon, name="norm", **common)(x)
        self.sow("intermediates", "pre_logits", x)
        if self.num_classes <= 0:
            return x
        if self.use_mlp_head:
            x = nn.Dropout(self.dropout, deterministic=not train)(x)
            return MlpHead(self.num_classes, norm_epsilon=self.mlp_norm_epsilon, dropout=self.dropout, name="fc",
                           **common)(x, train=train)
        return nn.Dense(self.num_classes, kernel_init=dense_kernel_init(("embed", None)),
                        bias_init=zeros_with_axes((None,)), name="fc", **common)(x)


def per_stage(value: PerStage, num_stages: int, field: str) -> tuple:
    """Broadcasts a scalar option to every stage, or checks a per-stage list has one entry per stage."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise ValueError(f"{field} has {len(value)} entries {tuple(value)!r} but the model has {num_stages} "
                             f"stages; give one value per stage or a single value for all.")
        return tuple(value)
    return (value,) * num_stages


class MetaFormer(nn.Module):
    """A MetaFormer classifier: `apply(variables, images[B, H, W, 3]) -> logits[B, num_classes]`.

    Per-stage options (`token_mixers`, `mixer_kwargs`, `norms`, `layer_scale_init`,
    `res_scale_init`) take one value for all stages or a list with one per stage, so
    "PoolFormer-S12 with attention in stage 4" is
    `create_model("poolformer_s12", token_mixers=("pooling",) * 3 + ("attention",))`.
    Stage outputs are sown into the `intermediates` collection (`stage0` ... `stage3`, `pre_logits`).
    """

    depths: Sequence[int] = (2, 2, 6, 2)
    dims: Sequence[int] = (64, 128, 320, 512)
    token_mixers: PerStage = "pooling"
    mixer_kwargs: PerStage = None
    norms: PerStage = "groupnorm1_nobias"
    norm_epsilon: float = 1e-6
    downsample_norm: Optional[str] = "layernorm_nobias"
    downsample_norm_epsilon: float = 1e-6
    mlp_activation: str = "star_relu"
    mlp_bias: bool = False
    layer_scale_init: PerStage = None
    res_scale_init: PerStage = (None, None, 1.0, 1.0)
    use_mlp_head: bool = False
    head_norm_epsilon: float = 1e-6
    head_mlp_norm_epsilon: float = 1e-6
    num_classes: int = 1000
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @property
    def reduction(self) -> int:
        """The total stride: the stem's 4 times 2 for every further stage."""
        return 4 * 2 ** (len(self.depths) - 1)

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        check_images(images, self.reduction, "MetaFormer",
                     f"stem 4 x {len(self.depths) - 1} stride-2 downsamplings")
        n = len(self.depths)
        if len(self.dims) != n:
            raise ValueError(f"depths {tuple(self.depths)} and dims {tuple(self.dims)} must have the same length.")
        token_mixers = per_stage(self.token_mixers, n, "token_mixers")
        mixer_kwargs = per_stage(self.mixer_kwargs, n, "mixer_kwargs")
        norms = per_stage(self.norms, n, "norms")
        layer_scales = per_stage(self.layer_scale_init, n, "layer_scale_init")
        res_scales = per_stage(self.res_scale_init, n, "res_scale_init")
        for name in token_mixers:
            mixers.get(name)  # fail before building anything, with the close matches
        drop_rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()
        common = dict(dtype=self.dtype, param_dtype=self.param_dtype)

        x = images.astype(self.dtype) if self.dtype is not None else images
        x = Downsampling(self.dims[0], 7, 4, 2, norm=self.downsample_norm, norm_after=True,
                         norm_epsilon=self.downsample_norm_epsilon, name="stem", **common)(x)
        block_index = 0
        for i in range(n):
            x = MetaFormerStage(
                features=self.dims[i], downsample=i > 0, downsample_norm=self.downsample_norm,
                downsample_norm_epsilon=self.downsample_norm_epsilon, block=dict(
                    token_mixer=token_mixers[i], mixer_kwargs=dict(mixer_kwargs[i] or {}), norm=norms[i],
                    norm_epsilon=self.norm_epsilon, mlp_activation=self.mlp_activation, mlp_bias=self.mlp_bias,
                    layer_scale_init=layer_scales[i], res_scale_init=res_scales[i]),
                drop_path_rates=tuple(drop_rates[block_index:block_index + self.depths[i]]),
                name=f"stages_{i}", **common)(x, train=train)
            block_index += self.depths[i]
            self.sow("intermediates", f"stage{i}", x)
        logits = ClassifierHead(self.num_classes, self.use_mlp_head, norm_epsilon=self.head_norm_epsilon,
                                mlp_norm_epsilon=self.head_mlp_norm_epsilon, dropout=self.head_dropout,
                                name="head", **common)(x, train=train)
        return logits.astype(jnp.float32)
