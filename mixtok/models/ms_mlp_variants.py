"""The named MS-MLP variants (official tiny / small / base), as data.

Source: JegZheng/MS-MLP @ a10d34d9, configs/msmlp_{tiny,small,base}_patch4_shift5_224.yaml on config.py's
defaults (PATCH_SIZE 4, MLP_RATIO 4, SHIFT_SIZE 5, SHIFT_DIST [-2, -1, 0, 1, 2], PATCH_NORM True), built by
models/build.py. All three use MIX_SIZE [[1,1,3,5,7], [1,3,3,5,7], [1,5,5,5,7], [1,7,7,7,7]]. Counts are the
official `sum(p.numel() for p in model.parameters())` at 224 px with 1000 classes (no buffers):

    ms_mlp_t  EMBED_DIM 96   DEPTHS (3, 3, 9, 3)   DROP_PATH_RATE 0.1  28,656,232   README: 82.1% top-1, 4.9G FLOPs
    ms_mlp_s  EMBED_DIM 96   DEPTHS (3, 3, 27, 3)  DROP_PATH_RATE 0.4  50,303,752   README: 83.4%, 9.0G
    ms_mlp_b  EMBED_DIM 128  DEPTHS (3, 3, 27, 3)  DROP_PATH_RATE 0.5  88,696,792   README: 83.8%, 16.1G

The registered defaults carry each yaml's DROP_PATH_RATE (the training value; it does nothing in eval).
"""

from mixtok.models.ms_mlp import MSMLP
from mixtok.models.registry import ModelSpec, register_model

PAPER = "Mixing and Shifting: Exploiting Global and Local Dependencies in Vision MLPs (Zheng et al., 2022)"

# name: (official MODEL.NAME, depths, embed dim, drop path rate, official params)
SIZES = {
    "ms_mlp_t": ("ms_mlp_tiny_patch4_shift5_224", (3, 3, 9, 3), 96, 0.1, 28_656_232),
    "ms_mlp_s": ("ms_mlp_small_patch4_shift5_224", (3, 3, 27, 3), 96, 0.4, 50_303_752),
    "ms_mlp_b": ("ms_mlp_base_patch4_shift5_224", (3, 3, 27, 3), 128, 0.5, 88_696_792),
}


def _register_all() -> None:
    for name, (_, depths, dim, drop_path_rate, count) in SIZES.items():
        dims = tuple(dim * 2**i for i in range(4))
        register_model(
            name, ModelSpec(MSMLP, dict(depths=depths, dims=dims, drop_path_rate=drop_path_rate), PAPER, count)
        )


_register_all()
