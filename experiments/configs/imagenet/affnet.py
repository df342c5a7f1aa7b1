r"""AFFNet (small) on ImageNet-1k at 256 px: MobileNetV2 blocks and adaptive frequency filters.

    python -m mixtok.train \
        --config experiments/configs/imagenet/affnet.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/affnet

Expect: the official README (microsoft/TokenMixers, "Adaptive Frequency Filters") reports 79.8% top-1
on ImageNet-1k val at 256 x 256 (5.5M parameters, 1.5G FLOPs). mixtok has not reproduced it.

Recipe: AFFNet's own training configs are not in the official repository (its README links them
off-repo), so this is the MobileViT recipe of apple/ml-cvnets, the framework AFFNet's code is built
on: AdamW, cosine 2e-3 -> 2e-4 over 300 epochs after a 20,000-iteration warm-up, global batch 1024,
weight decay 0.01, label smoothing 0.1, classifier dropout 0.1; eval resize 288, crop 256. Its
multi-scale sampler, weight EMA and BatchNorm weight decay are not implemented yet:
`mixtok.train.recipes.affnet_imagenet`. BatchNorm statistics are global-batch (synchronised) under
mixtok's sharded jit.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one AFF block per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import affnet_imagenet


def get_config(arg=None):
    return affnet_imagenet("affnet", arg)
