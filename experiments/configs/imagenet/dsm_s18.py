r"""DSM-S18 stand-in on ImageNet-1k at 224 px: a MetaFormer whose mixer filters the DCT spectrum per sample.

    python -m mixtok.train \
        --config experiments/configs/imagenet/dsm_s18.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/dsm_s18

What this is: "Dynamic Spectrum Mixer for Visual Recognition" (Hu & Yu, 2023) reports 83.8% top-1
on ImageNet-1k for its best model; its architecture table, variants and training recipe could not be
retrieved and no official code is known, so `dsm_s18` is a stand-in: DFFormer-S18's layout with the
Dynamic Spectrum Mixer (mixtok.mixers.dsm and mixtok.models.dsm write down every choice). Do not
compare its top-1 with the paper's as a reproduction.

Recipe: DFFormer's (okojoalg/dfformer README): AdamW, lr 1e-3 at global batch 1024, 20 warm-up
epochs, cosine over 300 epochs, weight decay 0.05, label smoothing 0.1, drop path 0.2; eval
crop_pct 1.0. Its augmentations are not implemented yet: `mixtok.train.recipes.dsm_imagenet`.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.recipes import dsm_imagenet


def get_config(arg=None):
    return dsm_imagenet("dsm_s18", arg, drop_path_rate=0.2)
