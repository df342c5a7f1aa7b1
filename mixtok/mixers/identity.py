"""The identity token mixer of IdentityFormer (MetaFormer Baselines for Vision, Yu et al. 2022).

sail-sg/metaformer: metaformer_baselines.py uses `nn.Identity` as the mixer: the block reduces to
norm + MLP with residuals, the paper's lower bound of what the MetaFormer skeleton gives alone.
"""

from mixtok.mixers.base import Mixer
from mixtok.mixers.registry import register


@register("identity")
class Identity(Mixer):
    """Returns its input: no token mixing at all."""

    def __call__(self, x, *, train: bool = False):
        self.check_input(x)
        return x
