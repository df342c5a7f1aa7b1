"""FFNifiedAttention: FFNet's token mixer (MetaMixer), attention re-cast as a convolutional FFN.

"FFNet: MetaMixer-based Efficient Convolutional Mixer Design" (Yun, Lee, Ro; arXiv 2406.02021, first
titled "MetaMixer Is All You Need"). Official code: ysj9909/FFNet @ f3c3e4c5: models/ffnet.py
(`Token_Mixer`, `RepVGGDW`, `Conv2d_BN`) and export_model.py (`replace_batchnorm`, the inference
re-parameterisation). For
x [B, H, W, C] (no softmax and no norm in front: the BatchNorms are inside the Conv-BN pairs):

    y = conv2(GELU(conv1(fc(x))))
    fc     = Conv2d_BN 1x1 (conv without bias -> BN)                                 "key" projection
    conv_i = RepVGGDW if ks_i = 7: BN(dwConv7x7(z)) + BN(dwConv3x3(z))               (two Conv-BN pairs)
             otherwise a depthwise conv ks_i x ks_i with bias

Re-parameterisation (`fuse_ffnified_attention`, the official `fuse()`s): fc becomes a 1x1 conv with
bias; each RepVGGDW becomes one 7x7 depthwise conv with bias, the 3x3 branch's fused kernel
zero-padded to 7x7 and added (the official RepVGGDW has no identity branch); the plain depthwise
convs are unchanged. `FFNifiedAttention(..., fused=True)` is the module those variables belong to.

BatchNorm keeps running statistics in `batch_stats` (PyTorch defaults: momentum 0.1, i.e. flax 0.9,
eps 1e-5); apply with `mutable=["batch_stats"]` when `train=True`. Parameter names follow the official
paths (`conv1/conv1/conv/kernel` for `conv1.conv1.c.weight`; `c` is named `conv` as in
`mixtok.layers.conv.ConvBN`).

Differences from the official code:
- NHWC layout. Init: trunc-normal 0.02 kernels and zero biases for every conv (official `_init_weights`),
  BN 1 / 0.
- BatchNorm running variance: flax averages the biased batch variance, PyTorch the unbiased one.
"""

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax

from mixtok.layers.conv import ConvBN, conv2d, fuse_conv_bn, pad_kernel
from mixtok.layers.module import Module
from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register

REPVGG_KERNEL = 7  # the official builds a RepVGGDW exactly when the kernel size is 7


# A Conv2d with padding (k - 1) // 2 per side, trunc-normal 0.02 kernel and zero bias (FFNet's init).
plain_conv = conv2d


class RepVGGDW(Module):
    """BN(dwConv_k(x)) + BN(dwConv_{k//2}(x)): the official `RepVGGDW` (training form; `fuse_repvgg_dw`).

    Grouped with groups = input channels; `features` may be a multiple of them (FFNet's downsampling).
    Its fused form is one k x k grouped conv with bias (`plain_conv`), which the modules build instead.
    """

    features: int
    kernel_size: int = REPVGG_KERNEL
    stride: int = 1

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        groups, k = x.shape[-1], self.kernel_size
        small = k // 2
        y = ConvBN(self.features, k, self.stride, groups, padding=k // 2, name="conv", **common)(x, train=train)
        return y + ConvBN(self.features, small, self.stride, groups, padding=small // 2, name="conv1", **common)(
            x, train=train
        )


@register("ffnified_attention")
class FFNifiedAttention(Mixer):
    """y = conv2(GELU(conv1(ConvBN_1x1(x)))): FFNet's `Token_Mixer`; `fused=True` is its inference form."""

    kernel_size1: int = 7
    kernel_size2: int = 7
    fused: bool = False

    def _depthwise(self, x, kernel_size: int, name: str, train: bool):
        common = self.dtype_kwargs
        if kernel_size == REPVGG_KERNEL and not self.fused:
            return RepVGGDW(self.dim, kernel_size, name=name, **common)(x, train=train)
        return plain_conv(self.dim, kernel_size, groups=self.dim, name=name, **common)(x)

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        for kernel_size in (self.kernel_size1, self.kernel_size2):
            if kernel_size < 1 or kernel_size % 2 == 0:
                raise ValueError(
                    f"FFNifiedAttention kernel sizes must be odd and positive (7 builds a RepVGGDW); "
                    f"got kernel_size1={self.kernel_size1}, kernel_size2={self.kernel_size2}."
                )
        common = self.dtype_kwargs
        if self.fused:
            y = plain_conv(self.dim, 1, name="fc", **common)(x)
        else:
            y = ConvBN(self.dim, 1, name="fc", **common)(x, train=train)
        y = self._depthwise(y, self.kernel_size1, "conv1", train)
        y = jax.nn.gelu(y, approximate=False)  # PyTorch's nn.GELU (erf)
        return self._depthwise(y, self.kernel_size2, "conv2", train)


# ----------------------------------------------------------------------------------------------------------------
# Re-parameterisation: training-time variables -> the fused module's variables (inference only).

Tree = Mapping[str, Any]


def fuse_conv_bn_branch(params: Tree, stats: Tree) -> dict:
    """{kernel, bias} of the conv equal to a ConvBN's `conv -> bn` in inference mode (official `Conv2d_BN.fuse`)."""
    kernel, bias = fuse_conv_bn(params["conv"]["kernel"], params["bn"], stats["bn"])
    return {"kernel": kernel, "bias": bias}


def fuse_repvgg_dw(params: Tree, stats: Tree) -> dict:
    """{kernel, bias} of the one k x k dw conv equal to RepVGGDW: both branches fused, the small one padded."""
    large = fuse_conv_bn_branch(params["conv"], stats["conv"])
    small = fuse_conv_bn_branch(params["conv1"], stats["conv1"])
    size = large["kernel"].shape[0]
    return {"kernel": large["kernel"] + pad_kernel(small["kernel"], size), "bias": large["bias"] + small["bias"]}


def _is_repvgg(params: Tree) -> bool:
    return set(params) == {"conv", "conv1"}


def fuse_depthwise(params: Tree, stats: Tree) -> dict:
    """A RepVGGDW fused, or a plain dw conv unchanged (FFNet's `conv1` / `conv2`)."""
    if _is_repvgg(params):
        return fuse_repvgg_dw(params, stats)
    return dict(params)


def fuse_ffnified_attention(variables: Tree) -> dict:
    """The variables of `FFNifiedAttention(..., fused=True)` equal in eval mode to `variables` (unfused).

    `variables` holds `params` and `batch_stats`; the result holds `params` only (no BatchNorm is left).
    """
    params, stats = variables["params"], variables.get("batch_stats", {})
    fused = {"fc": fuse_conv_bn_branch(params["fc"], stats["fc"])}
    for name in ("conv1", "conv2"):
        fused[name] = fuse_depthwise(params[name], stats.get(name, {}))
    return {"params": fused}
