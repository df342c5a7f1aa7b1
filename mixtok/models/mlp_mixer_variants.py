"""The named MLP-Mixer variants with timm's names, as data (blocks, width).

Source: timm 1.0.31 timm/models/mlp_mixer.py (`mixer_s16_224`, `mixer_b16_224`, `mixer_l16_224`: patch 16,
`mlp_ratio=(0.5, 4.0)`), the paper's Table 1 (Mixer-S/16: 8 layers, hidden size C 512, D_S 256, D_C 2048;
B/16: 12, 768, 384, 3072; L/16: 24, 1024, 512, 4096). Parameter counts are timm's
`sum(p.numel() for p in timm.create_model(name).parameters())` at 224 px with 1000 classes (the paper's
Table 1 rounds them to 18M, 59M, 207M).
"""

from mixtok.models.mlp_mixer import MlpMixer
from mixtok.models.registry import ModelSpec, register_model

PAPER = "MLP-Mixer: An all-MLP Architecture for Vision (Tolstikhin et al., NeurIPS 2021)"

SIZES = {  # name (timm's): (blocks, width, timm's parameter count)
    "mixer_s16_224": (8, 512, 18_528_264),
    "mixer_b16_224": (12, 768, 59_880_472),
    "mixer_l16_224": (24, 1024, 208_196_168),
}


def _register_all() -> None:
    for name, (blocks, width, count) in SIZES.items():
        kwargs = dict(depths=(blocks,), dims=(width,), patch_size=16, image_size=224)
        register_model(name, ModelSpec(MlpMixer, kwargs, PAPER, count, timm_name=name))


_register_all()
