r"""cas_vit_t on ImageNet-1k at 224 px: convolutional additive token mixers (CATM).

    python -m mixtok.train \
        --config experiments/configs/imagenet/cas_vit_t.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/cas_vit_t

Expect: the official README (Tianfang-Zhang/CAS-ViT) reports 83.9 / 84.1 (two unlabelled accuracies)% top-1 on ImageNet-1k val at 224 px, trained on
ImageNet-1k only. mixtok has not reproduced it: the augmentations and other parts of the official recipe
listed in `mixtok.train.recipes.cas_vit_imagenet` are not implemented yet, so expect a lower top-1 until they are.

Paper: CAS-ViT (Zhang et al., 2024). Official recipe and its sources: `mixtok.train.recipes.cas_vit_imagenet`.

Compute: 187,670 steps of 2,048 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import cas_vit_imagenet


def get_config(arg=None):
    return cas_vit_imagenet("cas_vit_t", arg)
