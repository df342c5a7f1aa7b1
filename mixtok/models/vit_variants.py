"""The named ViT and DeiT variants, as data, with timm's parameter counts (timm 1.0.31, 1000 classes, 224 px).

ViT-Ti/S/B/L/16 (Dosovitskiy et al. 2021; Ti and S from "How to train your ViT", Steiner et al. 2021) and
DeiT-Ti/S/B/16 (Touvron et al. 2021) share one architecture per size; DeiT's distilled models add a
distillation token and a second head (facebookresearch/deit models.py, timm/models/deit.py). The counts
are `sum(p.numel() for p in timm.create_model(name).parameters())`, checked against mixtok's in
tests/models/test_vit.py.
"""

from mixtok.models.registry import ModelSpec, register_model
from mixtok.models.vit import VisionTransformer

VIT_PAPER = "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale (Dosovitskiy et al., 2021)"
DEIT_PAPER = "Training data-efficient image transformers & distillation through attention (Touvron et al., 2021)"

SIZES = {  # size: (depth, width, heads)
    "tiny": (12, 192, 3),
    "small": (12, 384, 6),
    "base": (12, 768, 12),
    "large": (24, 1024, 16),
}
VIT_COUNTS = {"tiny": 5_717_416, "small": 22_050_664, "base": 86_567_656, "large": 304_326_632}
DEIT_DISTILLED_COUNTS = {"tiny": 5_910_800, "small": 22_436_432, "base": 87_338_192}


def _kwargs(size: str, **extra) -> dict:
    depth, width, heads = SIZES[size]
    return dict(depths=(depth,), dims=(width,), num_heads=heads, **extra)


def _register_all() -> None:
    for size, count in VIT_COUNTS.items():
        name = f"vit_{size}_patch16_224"
        register_model(name, ModelSpec(VisionTransformer, _kwargs(size), VIT_PAPER, count, name))
    for size in ("tiny", "small", "base"):
        name = f"deit_{size}_patch16_224"
        register_model(name, ModelSpec(VisionTransformer, _kwargs(size), DEIT_PAPER, VIT_COUNTS[size], name))
        name = f"deit_{size}_distilled_patch16_224"
        spec = ModelSpec(
            VisionTransformer, _kwargs(size, distilled=True), DEIT_PAPER, DEIT_DISTILLED_COUNTS[size], name
        )
        register_model(name, spec)


_register_all()
