"""The named LSNet variants of the paper, as data (widths, depths, attention heads).

Source: jameslahm/lsnet @ cbe737c9, model/lsnet.py (`lsnet_t`, `lsnet_s`, `lsnet_b`; img_size 224, patch_size 8,
key_dim 16), built by `LSNet` with distillation=False (main.py's default `--distillation-type none`):

    lsnet_t  LSNet-T  11,409,832 parameters   README: 74.9% top-1 (76.1% distilled), 0.3 GFLOPs
    lsnet_s  LSNet-S  16,146,304 parameters   README: 77.8% top-1 (79.0% distilled), 0.5 GFLOPs
    lsnet_b  LSNet-B  23,313,608 parameters   README: 80.3% top-1 (81.6% distilled), 1.3 GFLOPs

The counts are `sum(p.numel() for p in model.parameters())` of the training-time (unfused) models with 1000
classes; BatchNorm running statistics are buffers, not parameters. LSNet-T has no stage-1 blocks.
"""

from mixtok.models.lsnet import LSNet
from mixtok.models.registry import ModelSpec, register_model

PAPER = "LSNet: See Large, Focus Small (Wang et al., CVPR 2025)"

# name: (dims, depths, num_heads, official params)
SIZES = {
    "lsnet_t": ((64, 128, 256, 384), (0, 2, 8, 10), (3, 3, 3, 4), 11_409_832),
    "lsnet_s": ((96, 192, 320, 448), (1, 2, 8, 10), (3, 3, 3, 4), 16_146_304),
    "lsnet_b": ((128, 256, 384, 512), (4, 6, 8, 10), (3, 3, 3, 4), 23_313_608),
}


def _register_all() -> None:
    for name, (dims, depths, heads, count) in SIZES.items():
        kwargs = dict(dims=dims, depths=depths, num_heads=heads, key_dim=16, image_size=224)
        register_model(name, ModelSpec(LSNet, kwargs, PAPER, count))


_register_all()
