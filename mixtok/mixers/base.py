"""The base of mixtok's token mixers: `dim` first and one check of the input (docs/contracts.md, "Mixer").

@register("my_mixer")
class MyMixer(Mixer):
    kernel_size: int = 3

    @nn.compact
    def __call__(self, x, *, train: bool = False):
        self.check_input(x)  # NHWC with `dim` channels, else one ValueError line
        ...
"""

import jax

from mixtok.layers.module import Module, check_channels


class Mixer(Module):
    """A token mixer: `Mixer(dim=C, **options)`, NHWC [B, H, W, C] in and out (plus `dtype`, `param_dtype`)."""

    dim: int

    def check_input(self, x: jax.Array, *, num_heads: int | None = None) -> None:
        """Raises one ValueError line unless `x` is [B, H, W, dim] (and `num_heads` >= 1 divides `dim`)."""
        check_channels(self, x, nhwc=True)
        if num_heads is not None and (num_heads < 1 or self.dim % num_heads):
            raise ValueError(f"{type(self).__name__}: num_heads={num_heads} must be >= 1 and divide dim={self.dim}.")
