"""The named CAS-ViT variants (official rcvit_xs / s / m / t), as data.

Source: Tianfang-Zhang/CAS-ViT @ 041d2d68, classification/model/rcvit.py (`rcvit_xs` ... `rcvit_t`),
built as classification/main.py builds them (`distillation=False`). Counts are the official
`sum(p.numel() for p in model.parameters())` with 1000 classes (BatchNorm running statistics are
buffers); `distillation=True` adds the dist_head (+ C_last * 1000 + 1000):

    cas_vit_xs  rcvit_xs  depths (2, 2, 4, 2)  dims (48, 56, 112, 220)   2,979,700  (3,200,700 with dist_head)
    cas_vit_s   rcvit_s   depths (3, 3, 6, 3)  dims (48, 64, 128, 256)   5,507,224  (5,764,224)
    cas_vit_m   rcvit_m   depths (3, 3, 6, 3)  dims (64, 96, 192, 384)  12,036,520  (12,421,520)
    cas_vit_t   rcvit_t   depths (3, 3, 6, 3)  dims (96, 128, 256, 512) 21,250,120  (21,763,120)

MODEL_ZOO.md top-1 (two unlabelled numbers per model, 224 px): XS 78.3 / 78.7, S 80.9 / 81.1,
M 82.8 / 83.0, T 83.9 / 84.1.
"""

from mixtok.models.cas_vit import CASViT
from mixtok.models.registry import ModelSpec, register_model

PAPER = (
    "CAS-ViT: Convolutional Additive Self-attention Vision Transformers for Efficient Mobile "
    "Applications (Zhang et al., 2024)"
)

# name: (official name, depths, dims, official params without / with the distillation head)
SIZES = {
    "cas_vit_xs": ("rcvit_xs", (2, 2, 4, 2), (48, 56, 112, 220), 2_979_700, 3_200_700),
    "cas_vit_s": ("rcvit_s", (3, 3, 6, 3), (48, 64, 128, 256), 5_507_224, 5_764_224),
    "cas_vit_m": ("rcvit_m", (3, 3, 6, 3), (64, 96, 192, 384), 12_036_520, 12_421_520),
    "cas_vit_t": ("rcvit_t", (3, 3, 6, 3), (96, 128, 256, 512), 21_250_120, 21_763_120),
}


def _register_all() -> None:
    for name, (_, depths, dims, count, _) in SIZES.items():
        register_model(name, ModelSpec(CASViT, dict(depths=depths, dims=dims), PAPER, count))


_register_all()
