"""The named WaveMix variants: the four released ImageNet-1k models, as data.

Source: pranavphoenix/WaveMix @ ba3d1b42, Saved_weights/ImageNet/*.py, each building wavemix/classification.py's
`WaveMix(num_classes=1000, depth=16, mult=2, dropout=0.5, ...)` and loading its released state dict. Counts are the
official `sum(p.numel() for p in model.parameters())` with 1000 classes (BatchNorm weights and biases counted, its
buffers not); no parameter depends on the resolution:

    wavemix_192_16         final_dim = ff_channel 192, level 3, 'pachify' patch 4   27,857,608   wavemix_28M_75.06.py
    wavemix_192_16_level1  final_dim = ff_channel 192, level 1, 'pachify' patch 4   12,494,536   wavemix_12M_71.18.py
    wavemix_256_16         final_dim = ff_channel 256, level 3, 'pachify' patch 4   49,416,808   wavemix_73.py
    wavemix_256_16_level4  final_dim = ff_channel 256, level 4, 'strided' stride 2  62,764,776
                                                                             wavemix_level4_imagenet_70.42.py

The file names carry the top-1 accuracies (75.06, 71.18, 73.03 in the weight URL, 70.42); README.md's table
states 75.32% for ImageNet-1k. The level-4 model needs images that are a multiple of 64 px (256 px: its
official forward fails at 224, where the 56 x 56 grid is not a multiple of 16).
"""

from mixtok.models.registry import ModelSpec, register_model
from mixtok.models.wavemix import WaveMix

PAPER = "WaveMix: A Resource-efficient Neural Network for Image Analysis (Jeevan, Viswanathan, A S, Sethi, 2022)"

# name: (official Saved_weights/ImageNet file, final_dim = ff_channel, level, initial_conv, official params)
SIZES = {
    "wavemix_192_16": ("wavemix_28M_75.06", 192, 3, "patchify", 27_857_608),
    "wavemix_192_16_level1": ("wavemix_12M_71.18", 192, 1, "patchify", 12_494_536),
    "wavemix_256_16": ("wavemix_73", 256, 3, "patchify", 49_416_808),
    "wavemix_256_16_level4": ("wavemix_level4_imagenet_70.42", 256, 4, "strided", 62_764_776),
}


def _register_all() -> None:
    for name, (_, dim, levels, stem, count) in SIZES.items():
        kwargs = dict(depths=(16,), dims=(dim,), mlp_ratios=2, levels=levels, stem=stem, dropout=0.5)
        register_model(name, ModelSpec(WaveMix, kwargs, PAPER, count))


_register_all()
