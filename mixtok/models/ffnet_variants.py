"""The named FFNet variants (official ffnet_1 ... ffnet_4), as data.

Source: ysj9909/FFNet @ f3c3e4c5, models/ffnet.py (`ffnet_1` ... `ffnet_4`). Counts are the official
`sum(p.numel() for p in model.parameters())` with 1000 classes (BatchNorm running statistics are buffers),
training-time and after export_model.py `replace_batchnorm` (build with `fused=True`, convert with
`mixtok.models.ffnet.fuse_ffnet`). They do not depend on the resolution; the models run at 256 px
(crop_pct 0.9 for ffnet_1/2, 0.95 for ffnet_3/4).

    name      depths          dims                   channel ks   layer scale  drop path   params (fused)
    ffnet_1   (2, 2, 8, 2)    (80, 160, 320, 640)    3            no           0.1         13,775,656 (13,660,152)
    ffnet_2   (3, 3, 15, 3)   (88, 176, 352, 704)    7            no           0.15        27,208,408 (26,908,440)
    ffnet_3   (4, 4, 22, 5)   (96, 192, 384, 768)    7            1e-6         0.35        48,817,896 (48,330,632)
    ffnet_4   (4, 4, 27, 3)   (128, 256, 512, 1024)  7            1e-6         0.4         79,868,968 (79,200,360)

Every variant: in_dim 64, token-mixer kernel sizes (3, 3, 7, 7) for conv1 and conv2, expansion ratio 3.
README top-1 at 256 px: FFNet-1 81.3% (13.7M, 2.9G FLOPs).
"""

from mixtok.models.ffnet import FFNet
from mixtok.models.registry import ModelSpec, register_model

PAPER = "FFNet: MetaMixer-based Efficient Convolutional Mixer Design (Yun, Lee, Ro; arXiv 2406.02021)"

# name: (depths, dims, channel-mixer kernel size, layer scale init (None: off), drop path, params, fused params)
SIZES = {
    "ffnet_1": ((2, 2, 8, 2), (80, 160, 320, 640), 3, None, 0.1, 13_775_656, 13_660_152),
    "ffnet_2": ((3, 3, 15, 3), (88, 176, 352, 704), 7, None, 0.15, 27_208_408, 26_908_440),
    "ffnet_3": ((4, 4, 22, 5), (96, 192, 384, 768), 7, 1e-6, 0.35, 48_817_896, 48_330_632),
    "ffnet_4": ((4, 4, 27, 3), (128, 256, 512, 1024), 7, 1e-6, 0.4, 79_868_968, 79_200_360),
}


def _register_all() -> None:
    for name, (depths, dims, kernel, layer_scale, drop_path, count, _) in SIZES.items():
        kwargs = dict(
            depths=depths,
            dims=dims,
            in_dim=64,
            kernel_sizes=(kernel,) * 4,
            kernel_sizes1=(3, 3, 7, 7),
            kernel_sizes2=(3, 3, 7, 7),
            mlp_ratios=(3, 3, 3, 3),
            drop_path_rate=drop_path,
            layer_scale_init=layer_scale,
        )
        register_model(name, ModelSpec(FFNet, kwargs, PAPER, count))


_register_all()
