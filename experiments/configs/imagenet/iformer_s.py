r"""iformer_s on ImageNet-1k at 224 px: inception mixers (high-frequency conv / max-pool branches, low-frequency attention).

    python -m mixtok.train \
        --config experiments/configs/imagenet/iformer_s.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/iformer_s

Expect: the official README (sail-sg/iFormer) reports 83.4% top-1 on ImageNet-1k val at 224 px, trained on
ImageNet-1k only. mixtok has not reproduced it: the augmentations and other parts of the official recipe
listed in `mixtok.train.recipes.iformer_imagenet` are not implemented yet, so expect a lower top-1 until they are.

Paper: Inception Transformer (Si et al., NeurIPS 2022). Official recipe and its sources: `mixtok.train.recipes.iformer_imagenet`.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import iformer_imagenet


def get_config(arg=None):
    return iformer_imagenet("iformer_s", arg)
