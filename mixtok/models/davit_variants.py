"""The named DaViT variants of the paper, as data (units per stage, widths, heads).

Source: dingmyu/davit @ fc79470d: timm/models/davit.py (`DaViT_tiny`, `DaViT_small`, `DaViT_base`, whose
comments give the counts below) and timm 1.0.31 timm/models/davit.py (`davit_tiny`, `davit_small`,
`davit_base`; timm.create_model(pretrained=False) has the same counts). All use window 7, MLP ratio 4,
qkv biases and 224 px; `depths` counts units of (window block, channel block):

    davit_tiny   depths (1, 1, 3, 1)  dims (96, 192, 384, 768)    heads (3, 6, 12, 24)   28,360,168 parameters
    davit_small  depths (1, 1, 9, 1)  dims (96, 192, 384, 768)    heads (3, 6, 12, 24)   49,745,896 parameters
    davit_base   depths (1, 1, 9, 1)  dims (128, 256, 512, 1024)  heads (4, 8, 16, 32)   87,954,408 parameters

README (ImageNet-1k, 224 px): DaViT-T 82.8% top-1 (4.5 GFLOPs), DaViT-S 84.2% (8.8G), DaViT-B 84.6% (15.5G).
The counts do not depend on the image size.
"""

from mixtok.models.davit import DaViT
from mixtok.models.registry import ModelSpec, register_model

PAPER = "DaViT: Dual Attention Vision Transformers (Ding et al., ECCV 2022)"

# name: (depths, dims, num_heads, official params)
SIZES = {
    "davit_tiny": ((1, 1, 3, 1), (96, 192, 384, 768), (3, 6, 12, 24), 28_360_168),
    "davit_small": ((1, 1, 9, 1), (96, 192, 384, 768), (3, 6, 12, 24), 49_745_896),
    "davit_base": ((1, 1, 9, 1), (128, 256, 512, 1024), (4, 8, 16, 32), 87_954_408),
}


def _register_all() -> None:
    for name, (depths, dims, num_heads, count) in SIZES.items():
        register_model(
            name, ModelSpec(DaViT, dict(depths=depths, dims=dims, num_heads=num_heads), PAPER, count, timm_name=name)
        )


_register_all()
