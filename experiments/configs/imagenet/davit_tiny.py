r"""davit_tiny on ImageNet-1k at 224 px: spatial window attention and channel attention, alternating.

    python -m mixtok.train \
        --config experiments/configs/imagenet/davit_tiny.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/davit_tiny

Expect: the official README (dingmyu/davit) reports 82.8% top-1 on ImageNet-1k val at 224 px, trained on
ImageNet-1k only. mixtok has not reproduced it: the augmentations and other parts of the official recipe
listed in `mixtok.train.recipes.davit_imagenet` are not implemented yet, so expect a lower top-1 until they are.

Paper: Dual Attention Vision Transformers (Ding et al., ECCV 2022). Official recipe and its sources: `mixtok.train.recipes.davit_imagenet`.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import davit_imagenet


def get_config(arg=None):
    return davit_imagenet("davit_tiny", arg)
