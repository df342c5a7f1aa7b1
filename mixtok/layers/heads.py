"""Classifier heads: how a backbone's final feature map [B, h, w, C] becomes logits [B, num_classes].

    logits = ClassifierHead(1000, norm_epsilon=1e-6, head_dropout=0.1, name="head")(features, train=train)
    pooled = global_avg_pool(features)                       # [B, C], averaged in float32
    logits = classifier(1000, name="fc")(pooled)             # a Linear with timm's init

The backbones of the zoo end in one of a few heads:

- pool -> LayerNorm -> [dropout] -> Linear: DaViT, PoolFormer (timm's `NormMlpClassifierHead`
  without hidden layer);
- pool -> LayerNorm -> dropout -> `MlpHead` (Linear C -> 4C -> SquaredReLU -> LayerNorm -> dropout
  -> Linear): ConvFormer, CAFormer (MetaFormer Baselines' `MlpHead`);
- LayerNorm on every token -> pool -> dropout -> Linear: GFNet (`norm_before_pool=True`);
- [BatchNorm or a 1x1 conv] -> pool -> dropout -> Linear named as the official module (CAS-ViT,
  FFNet, AFFNet): their parameter paths have no `head` module around the layers, so they call
  `pooled_classifier(self, ...)`, which builds the Linear in the model's own scope.

`head_dropout` is the dropout right before the classifier (the models' `head_dropout` argument);
inside an MlpHead it also drops before the last Linear, as timm's does. With `dropout_before_mlp=False`
an MlpHead drops only inside, before its last Linear, as the official MetaFormer code does
(sail-sg/metaformer metaformer_baselines.py: `MetaFormer.forward` goes from the final norm straight to
`MlpHead`, whose `head_dropout` sits before `fc2`; timm's MetaFormer adds `head.drop` before it).
`num_classes <= 0` returns the pooled (and normalised) features, as timm's `num_classes=0`. The pooled
features are sown into the `intermediates` collection as `pre_logits`.

Precision: the pooling mean is accumulated in float32, and the final Linear is a `Classifier`, whose
logits are never rounded below float32: with bfloat16 compute its inputs and kernel are bfloat16, the
product is accumulated and returned in float32 and the float32 bias is added unrounded. (PyTorch's
autocast returns bfloat16 logits, whose rounding alone is up to 1/64 at a logit of 4 to 8.)
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.dtypes import promote_dtype

from mixtok.layers.init import dense_kernel_init
from mixtok.layers.linear import Dense, dense, flattening_dot_general
from mixtok.layers.module import Module
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import zeros_with_axes


def global_avg_pool(x: jax.Array) -> jax.Array:
    """The mean over (h, w) of an NHWC map, accumulated in float32 and returned in the input's dtype."""
    if x.ndim != 4:
        raise ValueError(f"global_avg_pool takes an NHWC feature map [B, h, w, C]; got shape {x.shape}.")
    return jnp.mean(x.astype(jnp.float32), axis=(1, 2)).astype(x.dtype)


def _widened_dot_general(lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, **kwargs):
    """`flattening_dot_general` accumulating into (and returning) at least float32, whatever the operands' dtype."""
    del preferred_element_type  # nn.Dense passes none; this is the point of the function
    wide = jnp.promote_types(jnp.result_type(lhs, rhs), jnp.float32)
    return flattening_dot_general(
        lhs, rhs, dimension_numbers, precision=precision, preferred_element_type=wide, **kwargs
    )


def _promote_all_but_bias(inputs, kernel, bias=None, *, dtype=None, inexact=True):
    """flax's `promote_dtype` for the inputs and kernel; the bias keeps its (parameter) dtype if that is wider."""
    inputs, kernel = promote_dtype(inputs, kernel, dtype=dtype, inexact=inexact)
    return inputs, kernel, None if bias is None else bias.astype(jnp.promote_types(inputs.dtype, bias.dtype))


class Classifier(Dense):
    """`Dense` whose output is never rounded below float32: the final Linear of a classifier.

    With half-precision `dtype` the inputs and kernel are cast to it as in `Dense`, but their product is
    accumulated and returned in float32 and the float32 bias is added unrounded, so the logits carry the
    rounding of the classifier's inputs and weights only, not a rounding of their own (a bfloat16 logit of
    magnitude 4 to 8 would be off by up to 1/64). With float32 compute it is `Dense` itself, bit for bit.
    Parameters as `Dense`'s.
    """

    dot_general: Any = _widened_dot_general
    promote_dtype: Any = _promote_all_but_bias


def classifier(
    num_classes: int,
    *,
    name: str,
    in_axis: str | None = "embed",
    kernel_init: Callable | None = None,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> Dense:
    """The final Linear (features -> classes): trunc-normal 0.02 kernel (timm's) unless `kernel_init`, zero bias.

    The class axis is never sharded (a class count rarely divides a mesh axis).
    """
    init = kernel_init or dense_kernel_init((in_axis, None))
    return Classifier(
        num_classes,
        kernel_init=init,
        bias_init=zeros_with_axes((None,)),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def pooled_classifier(
    module: nn.Module,
    features: jax.Array,
    *,
    num_classes: int,
    head_dropout: float,
    train: bool,
    name: str = "head",
    kernel_init: Callable | None = None,
    dtype: Any = None,
    param_dtype: Any = jnp.float32,
) -> jax.Array:
    """pool -> dropout -> Linear `name`, built in `module`'s scope (call it inside its compact method).

    Sows the pooled features as `pre_logits` and returns them when `num_classes <= 0`; otherwise
    float32 logits.
    """
    x = global_avg_pool(features)
    module.sow("intermediates", "pre_logits", x)
    if num_classes <= 0:
        return x
    x = nn.Dropout(head_dropout, deterministic=not train)(x)
    x = classifier(num_classes, name=name, kernel_init=kernel_init, dtype=dtype, param_dtype=param_dtype)(x)
    return x.astype(jnp.float32)


class MlpHead(Module):
    """fc1 (C -> 4C) -> SquaredReLU -> LayerNorm -> dropout -> fc2 (-> classes).

    MetaFormer Baselines' `MlpHead` (ConvFormer, CAFormer). The official code uses PyTorch's
    LayerNorm default eps 1e-5; timm (whose weights we load) uses 1e-6, hence `norm_epsilon`.
    """

    num_classes: int
    mlp_ratio: float = 4.0
    norm_epsilon: float = 1e-6
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        hidden = int(self.mlp_ratio * x.shape[-1])
        x = dense(hidden, ("embed", "mlp"), name="fc1", **common)(x)
        x = jnp.square(nn.relu(x))
        x = LayerNorm(epsilon=self.norm_epsilon, name="norm", **common)(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return classifier(self.num_classes, in_axis="mlp", name="fc2", **common)(x)


class ClassifierHead(Module):
    """Average pool and LayerNorm (in either order) -> dropout -> Linear, or MlpHead when `mlp_ratio` is set.

    Parameters: `norm/{scale,bias}` and `fc/{kernel,bias}` (or `fc/fc1`, `fc/norm`, `fc/fc2`), timm's
    `head.norm` and `head.fc`.
    """

    num_classes: int
    norm_epsilon: float = 1e-6
    norm_before_pool: bool = False  # GFNet normalises every token, then averages
    mlp_ratio: float | None = None  # None: a Linear classifier; else MlpHead's hidden ratio
    mlp_norm_epsilon: float = 1e-6
    head_dropout: float = 0.0
    dropout_before_mlp: bool = True  # timm's; False: an MlpHead's only dropout is its own (official code)

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        common = self.dtype_kwargs
        norm = LayerNorm(epsilon=self.norm_epsilon, name="norm", **common)
        x = global_avg_pool(norm(x)) if self.norm_before_pool else norm(global_avg_pool(x))
        self.sow("intermediates", "pre_logits", x)
        if self.num_classes <= 0:
            return x
        if self.mlp_ratio is None or self.dropout_before_mlp:
            x = nn.Dropout(self.head_dropout, deterministic=not train)(x)
        if self.mlp_ratio is not None:
            return MlpHead(
                self.num_classes,
                self.mlp_ratio,
                norm_epsilon=self.mlp_norm_epsilon,
                dropout=self.head_dropout,
                name="fc",
                **common,
            )(x, train=train)
        return classifier(self.num_classes, name="fc", **common)(x)
