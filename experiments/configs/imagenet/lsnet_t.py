r"""lsnet_t on ImageNet-1k at 224 px: LS convolutions (large-kernel perception, small-kernel aggregation).

    python -m mixtok.train \
        --config experiments/configs/imagenet/lsnet_t.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/lsnet_t

Expect: the official README (jameslahm/lsnet) reports 74.9% top-1 on ImageNet-1k val at 224 px, trained on
ImageNet-1k only. mixtok has not reproduced it: the augmentations and other parts of the official recipe
listed in `mixtok.train.recipes.lsnet_imagenet` are not implemented yet, so expect a lower top-1 until they are.

Paper: LSNet: See Large, Focus Small (Wang et al., CVPR 2025). Official recipe and its sources: `mixtok.train.recipes.lsnet_imagenet`.

Compute: 187,670 steps of 2,048 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import lsnet_imagenet


def get_config(arg=None):
    return lsnet_imagenet("lsnet_t", arg)
