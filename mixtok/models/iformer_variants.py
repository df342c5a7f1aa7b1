"""The named iFormer variants of the paper, as data (depths, widths, heads, attention heads per block).

Source: sail-sg/iFormer @ 725d8e7f, models/inception_transformer.py (`iformer_small`, `iformer_base`,
`iformer_large`, all with layer scale 1e-6 in stages 3-4), built by `InceptionTransformer`:

    iformer_s  iFormer-S  19,866,344 parameters   official docstring: 4.849 GFLOPs, 83.382% top-1
    iformer_b  iFormer-B  47,866,216 parameters   official docstring: 9.379 GFLOPs, 84.598% top-1
    iformer_l  iFormer-L  86,637,096 parameters   official docstring: 14.048 GFLOPs, 84.752% top-1

The counts are `sum(p.numel() for p in model.parameters())` with 1000 classes at img_size 224; they include
the 224-specific position embeddings (533,120 / 551,936 / 570,752 parameters), so another `image_size` changes
them. BatchNorm running statistics are buffers, not parameters. The official `*_384` models are the same
tables with img_size=384 (`create_model("iformer_s", image_size=384)`).
"""

from mixtok.models.iformer import IFormer
from mixtok.models.registry import ModelSpec, register_model

PAPER = "Inception Transformer (Si et al., NeurIPS 2022)"

# name: (depths, dims, num_heads, attention heads per block, official params at 224)
SIZES = {
    "iformer_s": (
        (3, 3, 9, 3),
        (96, 192, 320, 384),
        (3, 6, 10, 12),
        (1,) * 3 + (3,) * 3 + (7,) * 4 + (9,) * 5 + (11,) * 3,
        19_866_344,
    ),
    "iformer_b": (
        (4, 6, 14, 6),
        (96, 192, 384, 512),
        (3, 6, 12, 16),
        (1,) * 4 + (3,) * 6 + (8,) * 7 + (10,) * 7 + (15,) * 6,
        47_866_216,
    ),
    "iformer_l": (
        (4, 6, 18, 8),
        (96, 192, 448, 640),
        (3, 6, 14, 20),
        (1,) * 4 + (3,) * 6 + (10,) * 9 + (12,) * 9 + (19,) * 8,
        86_637_096,
    ),
}


def _register_all() -> None:
    for name, (depths, dims, heads, attention_heads, count) in SIZES.items():
        kwargs = dict(
            depths=depths,
            dims=dims,
            num_heads=heads,
            attention_heads=attention_heads,
            image_size=224,
            layer_scale_init=1e-6,
        )
        register_model(name, ModelSpec(IFormer, kwargs, PAPER, count))


_register_all()
