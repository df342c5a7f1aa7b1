r"""vim2_base on ImageNet-1k at 224 px: ViM2 (MambaMixer: selective token and channel mixers), the paper's recipe.

    python -m mixtok.train \
        --config experiments/configs/imagenet/vim2_base.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/vim2_base

Expect: the paper (arXiv 2403.19888 v1, Table "Accuracy comparison across various models on ImageNet-1K") reports
83.9% top-1 at 224 px for ViM2-B (74M parameters; mixtok's reading of the paper's table counts fewer:
mixtok/models/mamba_mixer_variants.py), marked "preliminary results". NO OFFICIAL CODE EXISTS (MambaMixer/M2 @
250a86b9: README only): mixtok's ViM2 follows the paper's text and table only, so this is not a reproduction of the
authors' model.

Paper: MambaMixer: Efficient Selective State Space Models with Dual Token and Channel Selection (Behrouz,
Santacatterina & Zabih, 2024).

Recipe: vim2_tiny.py's (the paper's stated settings, Swin's pipeline for what it leaves open); only the drop path
differs: 0.5, VMamba v0 base's (MzeroMiko/VMamba @ 943d2042: classification/configs/vssm/vmambav0_base_224.yaml
DROP_PATH_RATE), which the paper follows; it states none itself.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one token and one channel mixer per stage,
4 steps). Run the same command with the same --workdir to resume.
"""

from mixtok.train.config_files import import_beside

recipe = import_beside(__file__, "vim2_tiny")


def get_config(arg=None):
    return recipe.vim2_config(arg, "vim2_base", drop_path_rate=0.5)  # VMamba v0 base's DROP_PATH_RATE
