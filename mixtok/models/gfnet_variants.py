"""The named GFNet variants of the paper, as data (depths, widths, layer scale).

Source: raoyongming/GFNet: main_gfnet.py (`--arch gfnet-ti` ...), which builds gfnet.py's `GFNet` and
`GFNetPyramid`. Parameter counts are the official models' `sum(p.numel() for p in model.parameters())`
at 224 px with 1000 classes, the complex filters counted as their real pairs.
"""

from mixtok.models.gfnet import GFNet, GFNetPyramid
from mixtok.models.registry import ModelSpec, register_model

PAPER = "Global Filter Networks for Image Classification (Rao et al., NeurIPS 2021)"

ISOTROPIC_SIZES = {  # name: (depth, width (the official embed_dim), official params)
    "ti": (12, 256, 7_511_784),
    "xs": (12, 384, 15_985_768),
    "s": (19, 384, 24_869_608),
    "b": (19, 512, 43_120_616),
}
PYRAMID_SIZES = {  # name: (depths, dims, layer_scale_init, official params)
    "h_ti": ((3, 3, 10, 3), (64, 128, 256, 512), 1e-3, 15_085_096),
    "h_s": ((3, 3, 10, 3), (96, 192, 384, 768), 1e-5, 32_162_632),
    "h_b": ((3, 3, 27, 3), (96, 192, 384, 768), 1e-6, 53_744_200),
}
# The stochastic-depth rates main_gfnet.py trains each architecture with are part of its recipe:
# experiments/configs/imagenet/gfnet_*.py.


def _register_all() -> None:
    for size, (depth, dim, count) in ISOTROPIC_SIZES.items():
        register_model(
            f"gfnet_{size}", ModelSpec(GFNet, dict(depths=(depth,), dims=(dim,), patch_size=16), PAPER, count)
        )
    for size, (depths, dims, layer_scale, count) in PYRAMID_SIZES.items():
        register_model(
            f"gfnet_{size}",
            ModelSpec(GFNetPyramid, dict(depths=depths, dims=dims, layer_scale_init=layer_scale), PAPER, count),
        )


_register_all()
