"""The named TransNeXt variants of the paper, as data (widths, depths, heads, MLP ratios).

Source: DaiShiResearch/TransNeXt @ c8a99743, classification/transnext.py (`transnext_micro`, `_tiny`, `_small`,
`_base`). All share patch size 4, window 3, sr_ratios (8, 4, 2, 1), mlp_ratios (8, 8, 4, 4), qkv_bias True and
LayerNorm eps 1e-6:

    transnext_micro  dims (48, 96, 192, 384)   heads (2, 4, 8, 16)   depths (2, 2, 15, 2)  12,809,304  82.5%
    transnext_tiny   dims (72, 144, 288, 576)  heads (3, 6, 12, 24)  depths (2, 2, 15, 2)  28,258,960  84.0%
    transnext_small  dims (72, 144, 288, 576)  heads (3, 6, 12, 24)  depths (5, 5, 22, 5)  49,741,564  84.7%
    transnext_base   dims (96, 192, 384, 768)  heads (4, 8, 16, 32)  depths (5, 5, 23, 5)  89,721,496  84.8%

Counts are the official `sum(p.numel() for p in model.parameters())` at img_size 224 with 1000 classes and the
native attention (the relative position tables, padding masks and length scales are non-persistent buffers and
not counted; here they are trace-time constants). Top-1 are the README's ImageNet-1k 224-px results.
Training drop path rates (classification/configs/*.py) are in experiments/configs/imagenet/transnext_*.py;
the model default is 0.
"""

from mixtok.models.registry import ModelSpec, register_model
from mixtok.models.transnext import TransNeXt

PAPER = "TransNeXt: Robust Foveal Visual Perception for Vision Transformers (Shi, CVPR 2024)"

# name: (dims, num_heads, depths, official params)
SIZES = {
    "transnext_micro": ((48, 96, 192, 384), (2, 4, 8, 16), (2, 2, 15, 2), 12_809_304),
    "transnext_tiny": ((72, 144, 288, 576), (3, 6, 12, 24), (2, 2, 15, 2), 28_258_960),
    "transnext_small": ((72, 144, 288, 576), (3, 6, 12, 24), (5, 5, 22, 5), 49_741_564),
    "transnext_base": ((96, 192, 384, 768), (4, 8, 16, 32), (5, 5, 23, 5), 89_721_496),
}


def _register_all() -> None:
    for name, (dims, heads, depths, count) in SIZES.items():
        kwargs = dict(
            dims=dims,
            num_heads=heads,
            depths=depths,
            mlp_ratios=(8, 8, 4, 4),
            sr_ratios=(8, 4, 2, 1),
            window_size=3,
            patch_size=4,
            qkv_bias=True,
        )
        register_model(name, ModelSpec(TransNeXt, kwargs, PAPER, count))


_register_all()
