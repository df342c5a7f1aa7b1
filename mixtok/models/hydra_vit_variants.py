"""The named Hydra ViT variants, as data (depth, width).

hydra_vit_b is the size of the paper's ImageNet comparison: ViT-B/16 (depth 12, width 768) with Hydra in place
of attention ("Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers", Hwang et al. 2024,
abstract: "+2% top-1 over ViT"). hydra_vit_s and hydra_vit_ti are mixtok additions at DeiT-S / DeiT-Ti's sizes
(depth 12, widths 384 and 192), not in the paper. There is no official parameter count for any of them
(goombalab/hydra @ 55bef745 has no image model): `official_params` is None, and tests/models/test_hydra_vit.py
checks the counts against a hand formula instead.
"""

from mixtok.models.hydra_vit import HydraViT
from mixtok.models.registry import ModelSpec, register_model

PAPER = "Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers (Hwang et al., 2024)"

SIZES = {  # name: (depth, width)
    "ti": (12, 192),
    "s": (12, 384),
    "b": (12, 768),
}


def _register_all() -> None:
    for size, (depth, dim) in SIZES.items():
        register_model(f"hydra_vit_{size}", ModelSpec(HydraViT, dict(depths=(depth,), dims=(dim,)), PAPER, None))


_register_all()
