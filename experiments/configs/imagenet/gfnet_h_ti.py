r"""GFNet-H-Ti (hierarchical, widths 64-512) on ImageNet-1k at 224 px: a global Fourier filter as the token mixer.

    python -m mixtok.train \
        --config experiments/configs/imagenet/gfnet_h_ti.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/gfnet_h_ti

Expect: the official README (raoyongming/GFNet) reports 80.1% top-1 on ImageNet-1k val at 224 px
(15M parameters, 2.0G FLOPs), trained on ImageNet-1k only. mixtok has not reproduced it: the
augmentations of the official recipe listed in mixtok/train/recipes.py (RandAugment, Mixup / CutMix)
are not implemented yet, so expect a lower top-1 until they are.

Official recipe (main_gfnet.py --arch gfnet-h-ti --batch-size 128 on 8 GPUs): AdamW, lr 5e-4 x 1024 / 512
= 1e-3 at global batch 1024, 5 warm-up epochs, cosine to 1e-5, 300 epochs, weight decay 0.05,
gradient clipping 1.0, label smoothing 0.1, the architecture's drop path; eval resize 256, crop 224.
Details and what is not implemented: `mixtok.train.recipes.gfnet_imagenet`.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import gfnet_imagenet


def get_config(arg=None):
    return gfnet_imagenet("gfnet_h_ti", arg)
