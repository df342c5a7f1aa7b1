r"""ffnet_4 on ImageNet-1k at 256 px: FFNified attention (convolutional token and channel mixers).

    python -m mixtok.train \
        --config experiments/configs/imagenet/ffnet_4.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/ffnet_4

Expect: the paper's top-1 for this variant is the target (see the official README, ysj9909/FFNet; mixtok
has not recorded the number here). mixtok has not reproduced it: the augmentations and other parts of the official recipe
listed in `mixtok.train.recipes.ffnet_imagenet` are not implemented yet, so expect a lower top-1 until they are.

Paper: MetaMixer Is All You Need (Yun et al.). Official recipe and its sources: `mixtok.train.recipes.ffnet_imagenet`.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import ffnet_imagenet


def get_config(arg=None):
    return ffnet_imagenet("ffnet_4", arg)
