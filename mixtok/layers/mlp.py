"""The channel MLP of transformer-style blocks (MetaFormer, GFNet, DaViT, ...); heads are in `mixtok.layers.heads`."""

import flax.linen as nn

from mixtok.layers.activations import get_activation
from mixtok.layers.linear import dense
from mixtok.layers.module import Module


class Mlp(Module):
    """fc1 (C -> ratio * C) -> activation -> dropout -> fc2 (-> C) -> dropout, on the last axis.

    With `activation="star_relu", use_bias=False` this is MetaFormer Baselines' `Mlp`
    (sail-sg/metaformer: metaformer_baselines.py); with `"gelu", use_bias=True` it is PoolFormer
    v1's (sail-sg/poolformer: models/poolformer.py, whose 1x1 convs are the same map).
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
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = dense(dim, ("mlp", "embed"), use_bias=self.use_bias, **self.dtype_kwargs, name="fc2")(x)
        return nn.Dropout(self.dropout, deterministic=not train)(x)
