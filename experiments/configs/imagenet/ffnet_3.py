r"""ffnet_3 on ImageNet-1k at 256 px: FFNified attention (convolutional token and channel mixers).

    python -m mixtok.train \
        --config experiments/configs/imagenet/ffnet_3.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/ffnet_3

Expect: the official README (ysj9909/FFNet) reports 83.9% top-1 on ImageNet-1k val at 256 px, trained on
ImageNet-1k only. mixtok has not reproduced it: the augmentations and other parts of the official recipe
listed in `mixtok.train.recipes.ffnet_imagenet` are not implemented yet, so expect a lower top-1 until they are.

Paper: MetaMixer Is All You Need (Yun et al.). Official recipe and its sources: `mixtok.train.recipes.ffnet_imagenet`.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import ffnet_imagenet


def get_config(arg=None):
    return ffnet_imagenet("ffnet_3", arg)
