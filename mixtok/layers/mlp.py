"""Channel MLPs: the MetaFormer block MLP and the MetaFormer classification head."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mixtok.layers.activations import get_activation
from mixtok.layers.norms import LayerNorm
from mixtok.layers.partitioning import dense_kernel_init, zeros_with_axes


class Mlp(nn.Module):
    """fc1 (C -> ratio * C) -> activation -> dropout -> fc2 (-> C) -> dropout, on the last axis.

    With `activation="star_relu", use_bias=False` this is MetaFormer Baselines' `Mlp`
    (sail-sg/metaformer: metaformer_baselines.py); with `"gelu", use_bias=True` it is PoolFormer
    v1's (sail-sg/poolformer: models/poolformer.py, whose 1x1 convs are the same map).
    """

    mlp_ratio: float = 4.0
    activation: str = "star_relu"
    use_bias: bool = False
    dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        dim = x.shape[-1]
        hidden = int(self.mlp_ratio * dim)
        x = nn.Dense(hidden, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                     kernel_init=dense_kernel_init(("embed", "mlp")), bias_init=zeros_with_axes(("mlp",)),
                     name="fc1")(x)
        x = get_activation(self.activation, dtype=self.dtype, param_dtype=self.param_dtype, name="act")(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.Dense(dim, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                     kernel_init=dense_kernel_init(("mlp", "embed")), bias_init=zeros_with_axes(("embed",)),
                     name="fc2")(x)
        return nn.Dropout(self.dropout, deterministic=not train)(x)


class MlpHead(nn.Module):
    """fc1 (C -> 4C) -> SquaredReLU -> LayerNorm -> dropout -> fc2 (-> classes).

    MetaFormer Baselines' `MlpHead` (ConvFormer, CAFormer). The official code uses PyTorch's
    LayerNorm default eps 1e-5; timm (whose weights we load) uses 1e-6, hence `norm_epsilon`.
    """

    num_classes: int
    mlp_ratio: float = 4.0
    norm_epsilon: float = 1e-6
    dropout: float = 0.0
    dtype: Any = None
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        hidden = int(self.mlp_ratio * x.shape[-1])
        x = nn.Dense(hidden, dtype=self.dtype, param_dtype=self.param_dtype,
                     kernel_init=dense_kernel_init(("embed", "mlp")), bias_init=zeros_with_axes(("mlp",)),
                     name="fc1")(x)
        x = jnp.square(nn.relu(x))
        x = LayerNorm(epsilon=self.norm_epsilon, dtype=self.dtype, param_dtype=self.param_dtype, name="norm")(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype,
                        kernel_init=dense_kernel_init(("mlp", None)), bias_init=zeros_with_axes((None,)),
                        name="fc2")(x)
