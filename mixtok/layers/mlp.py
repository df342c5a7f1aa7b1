"""The channel MLP of transformer-style blocks (MetaFormer, GFNet, DaViT, ...); heads are in `mixtok.layers.heads`."""

import flax.linen as nn

from mixtok.layers.activations import get_activation
from mixtok.layers.linear import dense
from mixtok.layers.module import Module
from mixtok.layers.partitioning import constrain_channels_last


class Mlp(Module):
    """fc1 (C -> ratio * C) -> activation -> dropout -> fc2 (-> C) -> dropout, on the last axis.

    With `activation="star_relu", use_bias=False` this is MetaFormer Baselines' `Mlp`
    (sail-sg/metaformer: metaformer_baselines.py); with `"gelu", use_bias=True` it is PoolFormer
    v1's (sail-sg/poolformer: models/poolformer.py, whose 1x1 convs are the same map).

    Sharding (inside `mixtok.parallel.sharding_context`): the hidden activation is constrained to
    (batch, ..., mlp) and the output to (batch, ..., embed), Megatron's column- then row-parallel split
    when the rules map `mlp` to the `tensor` mesh axis.
    """

    mlp_ratio: float = 4.0
    activation: str = "star_relu"
    use_bias: bool = False
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        dim = x.shape[-1]
        hidden = int(self.mlp_ratio * dim)
        x = dense(hidden, ("embed", "mlp"), use_bias=self.use_bias, **self.dtype_kwargs, name="fc1")(x)
        x = get_activation(self.activation, **self.dtype_kwargs, name="act")(x)
        x = constrain_channels_last(x, "mlp")  # tensor parallelism: hidden units split, fc1 by columns
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = dense(dim, ("mlp", "embed"), use_bias=self.use_bias, **self.dtype_kwargs, name="fc2")(x)
        x = constrain_channels_last(x, "embed")  # fc2 by rows: its partial sums are reduced here
        return nn.Dropout(self.dropout, deterministic=not train)(x)
