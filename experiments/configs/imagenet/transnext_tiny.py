r"""transnext_tiny on ImageNet-1k at 224 px: aggregated (pixel-focused) attention and ConvGLU.

    python -m mixtok.train \
        --config experiments/configs/imagenet/transnext_tiny.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/transnext_tiny

Expect: the official README (DaiShiResearch/TransNeXt) reports 84.0% top-1 on ImageNet-1k val at 224 px, trained on
ImageNet-1k only. mixtok has not reproduced it: the augmentations and other parts of the official recipe
listed in `mixtok.train.recipes.transnext_imagenet` are not implemented yet, so expect a lower top-1 until they are.

Paper: TransNeXt: Robust Foveal Visual Perception for Vision Transformers (Shi, CVPR 2024). Official recipe and its sources: `mixtok.train.recipes.transnext_imagenet`.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import transnext_imagenet


def get_config(arg=None):
    return transnext_imagenet("transnext_tiny", arg)
