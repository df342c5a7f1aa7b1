"""FFNet: MetaMixer's all-convolutional backbone of FFNified-attention blocks, and its inference fusion.

Paper: "FFNet: MetaMixer-based Efficient Convolutional Mixer Design" (Yun, Lee, Ro; arXiv 2406.02021).
Official code: ysj9909/FFNet @ f3c3e4c5: models/ffnet.py (`FFNet`, `FFBlock`, `Channel_Mixer`, `PatchMerging`,
`Conv2d_BN_skip`, `BN_Conv2d`, `ResidualBlock`) and export_model.py (`replace_batchnorm`). The token mixer
is `mixtok.mixers.ffnet.FFNifiedAttention`.

    patch_embed:   ConvBN 3x3 s2 (3 -> in_dim) - GELU - ConvBN 3x3 s2 (-> C0)       (patch_embed_0, _2)
    stages_i_0:    (i > 0) PatchMerging: RepVGGDW 7x7 s2 (C_{i-1} -> C_i, groups C_{i-1}) (proj_0)
                   -> BN_Conv2d skip: x + Conv1x1(BN(x)) (proj_1)
    stages_i_j:    FFBlock:  x = x + drop_path(ls1 * FFNifiedAttention(x))            (token_mixer_0)
                             x = x + drop_path(ls2 * ChannelMixer(x))                 (channel_mixer)
                   ChannelMixer: RepVGGDW 7x7 if ks = 7 else ConvBN dw ks -> 1x1 (C -> ratio C, bias)
                                 -> GELU -> 1x1 (-> C, bias)
    head:          BN (norm) - mean over (H, W) - Linear (head)

Layer scale (ls) exists only when `layer_scale_init` is set (the official `use_layer_scale` with
`layer_scale_init_value`; FFNet-3 and -4). Drop path rises linearly from 0 to `drop_path_rate` over all
blocks (torch.linspace). `mlp_ratios` is the official `expansion_ratios` (the channel mixer's hidden
width); `head_dropout`, before the classifier, is a mixtok addition (default 0, the official behaviour).

Inference fusion: `fuse_ffnet(variables)` maps the training-time variables to those of the same model
built with `fused=True`, as the official export_model.py `replace_batchnorm` does: every Conv2d_BN
becomes a conv with bias, every RepVGGDW one 7x7 dw conv, the `BN -> 1x1 conv + identity` skip one 1x1
conv with bias; the last BatchNorm (`norm`) stays.

Parity: official checkpoints (training form, or fused by export_model.py) convert with
`mixtok.interop.ffnet`; with every weight and BatchNorm statistic random, ffnet_1 and ffnet_3 at 256 and
384 px give the official eval logits within 1.4e-6 of the largest logit in both forms (the figures and the
procedure are in that module's docstring).

Differences from the official code:
- NHWC layout; parameter names follow the official module paths (`stages_2_1/token_mixer_0_main/fc/conv`
  for `stages.2.1.token_mixer.0.main.fc.c`; `kernel` for `weight`, BN `scale` for `weight`, layer scale
  `[C]` for `[C, 1, 1]`).
- The squeeze-excite option (`use_ses`, off in every variant) and `layer_norm_last` are not ported.
- BatchNorm statistics are those of the global batch under a sharded `jit` (SyncBatchNorm semantics),
  and flax's running variance averages the biased batch variance (PyTorch: unbiased).
- `method="intermediates"` returns the four stage outputs and `method="features"` the last; the pooled
  features are sown into `intermediates` as `pre_logits`.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mixtok.layers.conv import BN_EPSILON, ConvBN, batch_norm
from mixtok.layers.drop import DropPath
from mixtok.layers.heads import pooled_classifier
from mixtok.layers.module import Module
from mixtok.layers.scale import scale_by_param
from mixtok.mixers.ffnet import (
    REPVGG_KERNEL,
    FFNifiedAttention,
    RepVGGDW,
    fuse_conv_bn_branch,
    fuse_depthwise,
    fuse_ffnified_attention,
    fuse_repvgg_dw,
    plain_conv,
)
from mixtok.models.backbone import Backbone, PerStage, per_stage, stage_drop_path_rates
from mixtok.models.inputs import check_image_size, check_images

TOTAL_STRIDE = 32  # stem 4, three PatchMergings


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)  # PyTorch's nn.GELU


class ChannelMixer(Module):
    """fc2(GELU(fc1(dw(x)))), dw a RepVGGDW (ks 7) or a ConvBN depthwise conv: the official `Channel_Mixer`."""

    kernel_size: int = 3
    mlp_ratio: float = 3.0
    fused: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        dim, k = x.shape[-1], self.kernel_size
        if self.fused:
            y = plain_conv(dim, k, groups=dim, name="conv", **common)(x)
        elif k == REPVGG_KERNEL:
            y = RepVGGDW(dim, k, name="conv", **common)(x, train=train)
        else:
            y = ConvBN(dim, k, groups=dim, name="conv", **common)(x, train=train)
        y = _gelu(plain_conv(int(dim * self.mlp_ratio), 1, name="fc1", **common)(y))
        return plain_conv(dim, 1, name="fc2", **common)(y)


class FFBlock(Module):
    """x + dp(ls * FFNifiedAttention(x)), then + dp(ls * ChannelMixer(x)): the official `FFBlock` (no SE)."""

    kernel_size: int = 3
    kernel_size1: int = 7
    kernel_size2: int = 7
    mlp_ratio: float = 3.0
    drop_path: float = 0.0
    layer_scale_init: float | None = None  # None: no layer scale
    fused: bool = False

    def _scale(self, y, name: str):
        if self.layer_scale_init is None:
            return y
        return scale_by_param(self, name, self.layer_scale_init, y, self.param_dtype)

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = dict(fused=self.fused, **self.dtype_kwargs)
        y = FFNifiedAttention(x.shape[-1], self.kernel_size1, self.kernel_size2, name="token_mixer_0_main", **common)(
            x, train=train
        )
        x = x + DropPath(self.drop_path)(self._scale(y, "token_mixer_0_layer_scale"), train=train)
        y = ChannelMixer(self.kernel_size, self.mlp_ratio, name="channel_mixer_main", **common)(x, train=train)
        return x + DropPath(self.drop_path)(self._scale(y, "channel_mixer_layer_scale"), train=train)


class BNConv(Module):
    """Conv1x1(BN(x)), conv without bias: the official `BN_Conv2d` (parameters `bn`, `conv` for `bn`, `c`)."""

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        x = batch_norm("bn", train=train, **common)(x)
        return plain_conv(x.shape[-1], 1, use_bias=False, name="conv", **common)(x)


class BNConvSkip(Module):
    """x + Conv1x1(BN(x)) (official `Conv2d_BN_skip` around `BN_Conv2d`); one 1x1 conv with bias when fused."""

    fused: bool = False

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        dim = x.shape[-1]
        if self.fused:
            return plain_conv(dim, 1, name="conv", **common)(x)
        return x + BNConv(name="conv", **common)(x, train=train)


class FFNet(Backbone):
    """FFNet: `apply(variables, images[B, H, W, 3], train=...) -> logits[B, num_classes]` (float32).

    Training needs `mutable=["batch_stats"]` and, with drop path, the `drop_path` rng stream. `fused=True`
    builds the inference form whose variables `fuse_ffnet` makes. `image_size`, when set, is checked: no
    parameter depends on the resolution.
    """

    depths: Sequence[int] = (2, 2, 8, 2)
    dims: Sequence[int] = (80, 160, 320, 640)
    in_dim: int = 64
    kernel_sizes: Sequence[int] = (3, 3, 3, 3)  # the channel mixer's dw conv
    kernel_sizes1: Sequence[int] = (3, 3, 7, 7)  # the token mixer's conv1
    kernel_sizes2: Sequence[int] = (3, 3, 7, 7)  # the token mixer's conv2
    mlp_ratios: PerStage = 3.0  # the official expansion_ratios
    layer_scale_init: float | None = None  # None: no layer scale (the official use_layer_scale=False)
    num_classes: int = 1000
    drop_path_rate: float = 0.1
    head_dropout: float = 0.0
    fused: bool = False
    image_size: int | None = None

    def _check_config(self):
        tables = dict(
            depths=self.depths,
            dims=self.dims,
            kernel_sizes=self.kernel_sizes,
            kernel_sizes1=self.kernel_sizes1,
            kernel_sizes2=self.kernel_sizes2,
        )
        if len({len(v) for v in tables.values()}) != 1:
            raise ValueError(
                "FFNet needs one entry per stage in every table; got "
                + ", ".join(f"{k} {tuple(v)}" for k, v in tables.items())
                + "."
            )
        for k in (*self.kernel_sizes, *self.kernel_sizes1, *self.kernel_sizes2):
            if k < 1 or k % 2 == 0:
                raise ValueError(
                    f"FFNet kernel sizes must be odd and positive; got kernel_sizes "
                    f"{tuple(self.kernel_sizes)}, kernel_sizes1 {tuple(self.kernel_sizes1)}, "
                    f"kernel_sizes2 {tuple(self.kernel_sizes2)}."
                )

    def stage_maps(self, images, *, train: bool):
        self._check_config()
        check_images(images, TOTAL_STRIDE, "FFNet", "a stride-4 stem and three stride-2 patch mergings")
        check_image_size(images, self.image_size, "FFNet")
        mlp_ratios = per_stage(self.mlp_ratios, len(self.depths), "mlp_ratios")
        common = self.dtype_kwargs
        x = images.astype(self.dtype) if self.dtype is not None else images
        if self.fused:
            x = _gelu(plain_conv(self.in_dim, 3, stride=2, name="patch_embed_0", **common)(x))
            x = plain_conv(self.dims[0], 3, stride=2, name="patch_embed_2", **common)(x)
        else:
            x = _gelu(ConvBN(self.in_dim, 3, 2, name="patch_embed_0", **common)(x, train=train))
            x = ConvBN(self.dims[0], 3, 2, name="patch_embed_2", **common)(x, train=train)
        maps = []
        for stage, (dim, rates) in enumerate(zip(self.dims, stage_drop_path_rates(self.drop_path_rate, self.depths))):
            first = 0
            if stage > 0:  # PatchMerging at stages.i.0
                if self.fused:
                    x = plain_conv(
                        dim, REPVGG_KERNEL, stride=2, groups=x.shape[-1], name=f"stages_{stage}_0_proj_0", **common
                    )(x)
                else:
                    x = RepVGGDW(dim, REPVGG_KERNEL, 2, name=f"stages_{stage}_0_proj_0", **common)(x, train=train)
                x = BNConvSkip(self.fused, name=f"stages_{stage}_0_proj_1", **common)(x, train=train)
                first = 1
            for block, rate in enumerate(rates):
                x = FFBlock(
                    self.kernel_sizes[stage],
                    self.kernel_sizes1[stage],
                    self.kernel_sizes2[stage],
                    float(mlp_ratios[stage]),
                    rate,
                    self.layer_scale_init,
                    self.fused,
                    name=f"stages_{stage}_{first + block}",
                    **common,
                )(x, train=train)
            maps.append(x)
        return maps

    def classify(self, features, *, train: bool):
        common = self.dtype_kwargs
        return pooled_classifier(
            self,
            batch_norm("norm", train=train, **common)(features),
            num_classes=self.num_classes,
            head_dropout=self.head_dropout,
            train=train,
            name="head",
            **common,
        )


# ----------------------------------------------------------------------------------------------------------------
# Inference fusion (official export_model.py `replace_batchnorm`).


def fuse_bn_conv_skip(params: Mapping[str, Any], stats: Mapping[str, Any]) -> dict:
    """{kernel, bias} of the 1x1 conv equal to x + Conv1x1(BN(x)) in inference mode (official `Conv2d_BN_skip.fuse`).

    BN(x) = s * x + t with s = scale / sqrt(var + eps), t = bias - s * mean, so the conv W' = s[:, None] * W
    (input channels scaled), bias t @ W, and the identity adds 1 on the diagonal.
    """
    kernel = params["conv"]["conv"]["kernel"]  # [1, 1, C, C]
    bn, bn_stats = params["conv"]["bn"], stats["conv"]["bn"]
    s = bn["scale"] / jnp.sqrt(bn_stats["var"] + BN_EPSILON)
    t = bn["bias"] - s * bn_stats["mean"]
    fused = kernel * s[None, None, :, None] + jnp.eye(kernel.shape[2], dtype=kernel.dtype)[None, None]
    return {"kernel": fused, "bias": t @ kernel[0, 0]}


def _fuse_block(params: Mapping[str, Any], stats: Mapping[str, Any]) -> dict:
    fused = dict(params)
    fused["token_mixer_0_main"] = fuse_ffnified_attention(
        {"params": params["token_mixer_0_main"], "batch_stats": stats.get("token_mixer_0_main", {})}
    )["params"]
    mixer, mixer_stats = params["channel_mixer_main"], stats["channel_mixer_main"]
    conv = mixer["conv"]
    fused_conv = (
        fuse_depthwise(conv, mixer_stats["conv"])
        if set(conv) == {"conv", "conv1"}
        else fuse_conv_bn_branch(conv, mixer_stats["conv"])
    )
    fused["channel_mixer_main"] = {**mixer, "conv": fused_conv}
    return fused


def fuse_ffnet(variables: Mapping[str, Any]) -> dict:
    """Variables of the same FFNet built with `fused=True`, equal to `variables` in eval mode.

    The result holds `params` and the `batch_stats` of the last BatchNorm (`norm`), the only one left.
    """
    params, stats = variables["params"], variables["batch_stats"]
    fused = {}
    for name, value in params.items():
        if name.startswith("patch_embed_"):
            fused[name] = fuse_conv_bn_branch(value, stats[name])
        elif name.endswith("_proj_0"):
            fused[name] = fuse_repvgg_dw(value, stats[name])
        elif name.endswith("_proj_1"):
            fused[name] = {"conv": fuse_bn_conv_skip(value, stats[name])}
        elif name.startswith("stages_"):
            fused[name] = _fuse_block(value, stats.get(name, {}))
        else:  # norm, head
            fused[name] = value
    return {"params": fused, "batch_stats": {"norm": stats["norm"]}}
