"""LSNet: a lightweight BatchNorm backbone whose token mixers are LS convolutions and, last, LeViT attention.

Paper: "LSNet: See Large, Focus Small" (Wang et al., CVPR 2025). Official code: jameslahm/lsnet @ cbe737c9,
model/lsnet.py (`LSNet`, `Block`, `RepVGGDW`, `Attention`, `FFN`, `Conv2d_BN`, `BN_Linear`) with timm's
`SqueezeExcite` (`SEModule`). The LS convolution is `mixtok.mixers.lsnet.LSConv`.

    patch_embed:  ConvBN3x3 s2 (3 -> C1/4) - ReLU - ConvBN3x3 s2 (-> C1/2) - ReLU - ConvBN3x3 s2 (-> C1)   (stride 8)
    stage i > 1 starts with ConvBN dw3x3 s2 - ConvBN1x1 (C_{i-1} -> C_i)
    Block at depth d within its stage:
        d even:  x = ConvBN_dw3x3(x) + ConvBN_dw1x1(x) + x  (RepVGGDW);  x = x * sigmoid(fc2(ReLU(fc1(mean_hw x))))
        d odd:   x = LSConv(x) (stages 1-3)  or  x = x + Attention(x) (stage 4)
        then     x = x + ConvBN1x1(ReLU(ConvBN1x1(x, C -> 2C)), 2C -> C; BN weight init 0)
    head: mean over (H, W) - BatchNorm1d - Linear

    Attention (LeViT-style, stage 4): qkv = ConvBN1x1(x) split by channel into q, k (heads x key_dim each) and
    v (heads x d, d = C / heads); q = ConvBN_dw3x3(q); per head a = softmax(q^T k / sqrt(key_dim) + B[|dy|, |dx|]);
    out = ConvBN1x1(ReLU(v a^T), BN weight init 0). B (`attention_biases`, [heads, R * R]) is indexed by the
    offset between two positions of the R x R stage-4 map, R fixed by `image_size` (7 -> 4 at 224).

The SE block is `mixtok.layers.SqueezeExcite` (timm's SEModule): make_divisible(C / 4, 8) channels, with biases.
Initialisation is the official one: PyTorch's default for every conv (U(+-1/sqrt(fan_in)), biases likewise),
BatchNorm 1 / 0 except the FFN's and attention projection's last BN weight (0), classifier trunc-normal(0.02)
with zero bias, attention biases 0.

Differences from the official code:
- NHWC; parameter names follow the official module paths with `_` for `.` at the model level (`blocks3_4` for
  `blocks3.4`; a later stage's downsampling layers are its `blocks{i}_0` and `blocks{i}_1`, as in the official
  Sequential, and the blocks follow from index 2), while a block keeps nested names: `mixer` (RepVGGDW `conv`,
  `conv1`; LSConv `lkp`, `bn`; Attention `qkv`, `dw`, `proj`, `attention_biases` for the official
  `mixer.m.qkv`, `mixer.m.dw`, `mixer.m.proj.1`), `se` (`fc1`, `fc2`), `pw1`, `pw2` (for `ffn.m.pw1`, ...).
  ConvBN's `conv`/`bn` stand for Conv2d_BN's `c`/`bn`; `head_bn`, `head_l` for BN_Linear's `head.bn`, `head.l`.
- BatchNorm under a sharded `jit` uses the global batch's statistics; flax's running variance uses the biased
  batch variance where PyTorch uses the unbiased one (factor N / (N - 1)).
- The distillation head (`distillation=True`, a second BN_Linear averaged in eval) and the inference-time
  fusion (`replace_batchnorm`) are not ported; the model is the training-time form the official counts use.
- Like the official model, the attention biases fit one resolution: images whose stage-4 map is not R x R
  (R from `image_size`) are rejected with a ValueError instead of failing inside an index.
- mixtok additions, both off by default so the model is the official one: stochastic depth (`drop_path_rate`,
  rising linearly over the blocks from 0) on the branches the official code wraps in `Residual` (the FFN and
  the stage-4 attention; the official `Residual(m, drop)` has the mechanism but LSNet never sets it), and
  `head_dropout` before the classifier's Linear.
- Arguments use the backbones' shared names: `dims` (official `embed_dim`), `image_size` (`img_size`).
Parity: with weights converted from official state dicts by `mixtok.interop.lsnet` (which holds the procedure
and figures), lsnet_t and lsnet_b match the official eval logits at 224 and 384 px within float32 rounding, and a
tiny model with every block kind matches the golden fixture made by the official code (tests/fixtures/lsnet).
Features: `method="features"` gives the stage-4 map [B, H/64, W/64, C4] (before the head's pooling),
`method="intermediates"` the four stage maps (an empty stage 1, as in LSNet-T, passes the stem's output on).
Stage outputs are also sown into `intermediates` as `stage1` ... `stage4` (absent for an empty stage 1) and
`pre_logits`.
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mixtok.layers.attention import dot_product_attention
from mixtok.layers.conv import ConvBN, batch_norm
from mixtok.layers.drop import DropPath
from mixtok.layers.init import TORCH_DEFAULT_INIT
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.partitioning import param_with_axes
from mixtok.layers.se import SqueezeExcite
from mixtok.layers.stems import conv_stem
from mixtok.mixers.lsnet import LSConv
from mixtok.models.backbone import Backbone
from mixtok.models.inputs import check_images

PATCH_SIZE = 8  # the stem's stride


# LSNet's Conv2d_BN: a ConvBN with PyTorch's default conv init (the official code keeps it).
_conv_bn = functools.partial(ConvBN, kernel_init=TORCH_DEFAULT_INIT)


def attention_bias_index(resolution: int) -> np.ndarray:
    """[N, N] indices into the bias table: |dy| * R + |dx|, the order in which the official loop meets offsets."""
    ys, xs = np.divmod(np.arange(resolution * resolution), resolution)
    return np.abs(ys[:, None] - ys[None, :]) * resolution + np.abs(xs[:, None] - xs[None, :])


class RepVGGDW(Module):
    """ConvBN dw3x3 + ConvBN dw1x1 + identity (re-parameterisable into one dw3x3 conv)."""

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        depthwise = functools.partial(_conv_bn, x.shape[-1], groups=x.shape[-1], **self.dtype_kwargs)
        return depthwise(3, name="conv")(x, train=train) + depthwise(1, name="conv1")(x, train=train) + x


class LeViTAttention(Module):
    """LSNet's stage-4 attention (without its residual): LeViT attention with a dw3x3 on the queries."""

    num_heads: int
    key_dim: int = 16
    resolution: int = 4

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        batch, height, width, dim = x.shape
        if (height, width) != (self.resolution, self.resolution):
            raise ValueError(
                f"LSNet attention: its biases fit a {self.resolution}x{self.resolution} map (from "
                f"image_size); got {height}x{width}. Build the model with the image_size of the images."
            )
        common = self.dtype_kwargs
        heads, key_dim = self.num_heads, self.key_dim
        value_dim = int(dim / (key_dim * heads) * key_dim)  # the official int(attn_ratio * key_dim)
        qk_channels = heads * key_dim
        qkv = _conv_bn(2 * qk_channels + heads * value_dim, name="qkv", **common)(x, train=train)
        q, k, v = jnp.split(qkv, [qk_channels, 2 * qk_channels], axis=-1)
        q = _conv_bn(qk_channels, 3, groups=qk_channels, name="dw", **common)(q, train=train)
        tokens = height * width
        q = q.reshape(batch, tokens, heads, key_dim)
        k = k.reshape(batch, tokens, heads, key_dim)
        v = v.reshape(batch, tokens, heads, value_dim)
        biases = self.param(
            "attention_biases",
            param_with_axes(jax.nn.initializers.zeros, ("heads", None)),
            (heads, self.resolution**2),
            self.param_dtype,
        )
        # The relative-position table enters as the attention bias [heads, N, N] (values wider than keys:
        # "auto" computes it in the reference form).
        out = dot_product_attention(
            q, k, v, bias=biases[:, attention_bias_index(self.resolution)][None], scale=key_dim**-0.5
        )
        out = out.reshape(batch, height, width, heads * value_dim)
        return _conv_bn(dim, bn_scale_init=0.0, name="proj", **common)(nn.relu(out), train=train)


class LSNetBlock(Module):
    """One LSNet block: (RepVGGDW + SE) or (LSConv / attention), then a residual Conv-BN FFN."""

    depth_index: int
    use_attention: bool = False
    num_heads: int = 4
    key_dim: int = 16
    resolution: int = 4
    drop_path: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        dim = x.shape[-1]
        common = self.dtype_kwargs
        drop_path = DropPath(self.drop_path)
        if self.depth_index % 2 == 0:
            x = RepVGGDW(name="mixer", **common)(x, train=train)
            x = SqueezeExcite(0.25, name="se", **common)(x)
        elif self.use_attention:
            y = LeViTAttention(self.num_heads, self.key_dim, self.resolution, name="mixer", **common)(x, train=train)
            x = x + drop_path(y, train=train)
        else:
            x = LSConv(dim, name="mixer", **common)(x, train=train)
        h = nn.relu(_conv_bn(2 * dim, name="pw1", **common)(x, train=train))
        return x + drop_path(_conv_bn(dim, bn_scale_init=0.0, name="pw2", **common)(h, train=train), train=train)


class LSNet(Backbone):
    """LSNet: stride-8 Conv-BN stem, four stages of LS-conv blocks (attention in the last), BN-Linear head."""

    dims: Sequence[int] = (64, 128, 256, 384)
    depths: Sequence[int] = (0, 2, 8, 10)
    num_heads: Sequence[int] = (3, 3, 3, 4)
    key_dim: int = 16
    image_size: int = 224  # fixes the stage-4 attention's bias table (R x R map)

    def _check_config(self):
        if not (len(self.dims) == len(self.depths) == len(self.num_heads) == 4):
            raise ValueError(
                f"LSNet has 4 stages; got dims {tuple(self.dims)}, depths {tuple(self.depths)}, "
                f"num_heads {tuple(self.num_heads)}."
            )
        for dim in self.dims:
            if dim % 8:
                raise ValueError(
                    f"LSNet: dims must be multiples of 8 (LSConv shares a kernel per C/8 group and the "
                    f"stem needs C/4); got {tuple(self.dims)}."
                )

    def stage_maps(self, x, *, train: bool):
        self._check_config()
        check_images(x, 1, "LSNet", "any size")
        common = self.dtype_kwargs
        x = x.astype(self.dtype or x.dtype)
        first = self.dims[0]
        x = conv_stem(
            x,
            (first // 4, first // 2, first),
            strides=(2, 2, 2),
            activation="relu",
            names=("patch_embed_0", "patch_embed_2", "patch_embed_4"),
            kernel_init=TORCH_DEFAULT_INIT,
            train=train,
            **common,
        )
        resolution = self.image_size // PATCH_SIZE
        rates = np.linspace(0.0, self.drop_path_rate, sum(self.depths)).tolist()
        stages = []
        for stage, (dim, depth, heads) in enumerate(zip(self.dims, self.depths, self.num_heads)):
            offset = 0
            if stage > 0:
                previous = self.dims[stage - 1]
                x = _conv_bn(previous, 3, 2, groups=previous, name=f"blocks{stage + 1}_0", **common)(x, train=train)
                x = _conv_bn(dim, name=f"blocks{stage + 1}_1", **common)(x, train=train)
                resolution = (resolution - 1) // 2 + 1
                offset = 2
            for d in range(depth):
                x = LSNetBlock(
                    d,
                    stage == 3,
                    heads,
                    self.key_dim,
                    resolution,
                    rates[sum(self.depths[:stage]) + d],
                    name=f"blocks{stage + 1}_{offset + d}",
                    **common,
                )(x, train=train)
            if stage > 0 or depth:
                self.sow("intermediates", f"stage{stage + 1}", x)
            stages.append(x)
        return tuple(stages)

    def classify(self, x, *, train: bool):
        common = self.dtype_kwargs
        x = jnp.mean(x, axis=(1, 2))
        self.sow("intermediates", "pre_logits", x)
        x = batch_norm("head_bn", train=train, **common)(x)
        x = nn.Dropout(self.head_dropout, deterministic=not train)(x)
        return dense(self.num_classes, ("embed", None), name="head_l", **common)(x)
