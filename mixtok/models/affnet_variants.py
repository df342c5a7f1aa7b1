"""The named AFFNet variants of the paper, as data (channels, depths, expansion).

Source: microsoft/TokenMixers @ 99dbe38c, Adaptive Frequency Filters/affnet/models/classification/config/
affnet.py (`get_configuration`, modes "xx_small", "x_small", "small"), built by
models/classification/affnet.py `AffNet`. Names follow the paper and README:

    affnet_et  AFFNet-ET (xx_small)  1,436,264 parameters   README: 73.0% top-1, 0.4 GFLOPs at 256 px
    affnet_t   AFFNet-T  (x_small)   2,654,232 parameters   README: 77.0% top-1, 0.8 GFLOPs at 256 px
    affnet     AFFNet    (small)     5,568,696 parameters   README: 79.8% top-1, 1.5 GFLOPs at 256 px

The counts are the official models' `sum(p.numel() for p in model.parameters())` with 1000 classes,
built with normalization batch_norm, activation swish and attn_norm_layer layer_norm_2d (the yaml
configs are off-repo); BatchNorm running statistics are buffers, not parameters. They do not depend on
the resolution (the filter's weights act on channels, not on frequencies); the models are trained
and evaluated at 256 px.
"""

from mixtok.models.affnet import AFFNet
from mixtok.models.registry import ModelSpec, register_model

PAPER = "Adaptive Frequency Filters As Efficient Global Token Mixers (Huang et al., ICCV 2023)"

# name: (official mode, mv2_exp_mult, depths of layers 1-5 (MobileNetV2 blocks of 1-2, AFF Blocks of 3-5),
#        dims of layers 1-5, ffn dims of layers 3-5, official params)
SIZES = {
    "affnet_et": ("xx_small", 2, (1, 3, 2, 4, 3), (32, 48, 64, 104, 144), (128, 208, 288), 1_436_264),
    "affnet_t": ("x_small", 4, (1, 3, 2, 4, 3), (32, 48, 96, 160, 192), (192, 320, 384), 2_654_232),
    "affnet": ("small", 4, (1, 3, 2, 4, 3), (32, 64, 128, 256, 320), (256, 512, 640), 5_568_696),
}


def _register_all() -> None:
    for name, (_, expand, depths, dims, ffn_dims, count) in SIZES.items():
        kwargs = dict(depths=depths, dims=dims, ffn_dims=ffn_dims, expand_ratio=float(expand))
        register_model(name, ModelSpec(AFFNet, kwargs, PAPER, count))


_register_all()
