r"""hydra_vit_b on ImageNet-1k at 224 px: ViT-B/16 with Hydra (a bidirectional SSD scan) in place of attention.

    python -m mixtok.train \
        --config experiments/configs/imagenet/hydra_vit_b.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/hydra_vit_b

Expect: the paper ("Hydra: Bidirectional State Space Models Through Generalized Matrix Mixers", Hwang, Lahoti,
Dao and Gu, 2024) states, in its abstract, that Hydra as a drop-in replacement for attention beats ViT by 2% top-1
on ImageNet (81.0% for the ViT-B-sized Hydra model, as summaries of the paper's table give it; not checked against
the paper's table here). mixtok has not reproduced it.

What is stated and what is a choice. The official repository (goombalab/hydra @ 55bef745) ships only the
BERT / GLUE pipeline: no image model, no ImageNet script and no training configuration for the vision experiment.
The model follows what the paper states (ViT-B/16's depth 12, width 768 and MLP ratio 4, Hydra mixing every
block: mixtok/models/hydra_vit.py names the choices it leaves open). The recipe here is **mixtok's choice, not the
paper's**: the DeiT recipe that ViT-B comparisons trained on ImageNet-1k alone use, facebookresearch/deit main.py's
defaults (DeiT-B README command: --batch-size 256 on 4 GPUs), namely AdamW (eps 1e-8, betas (0.9, 0.999)), lr
5e-4 x global batch / 512 = 1e-3 at batch 1024, weight decay 0.05, 300 epochs, 5 warm-up epochs from 1e-6, cosine
to 1e-5, no gradient clipping (--clip-grad None), label smoothing 0.1, drop path 0.1, weight EMA 0.99996
(--model-ema on by default: timm's ModelEma, a copy of the initial model averaged every update), repeated
augmentation with 3 copies of each image (--repeated-aug on by default: samplers.py RASampler), eval resize 256
and crop 224 (0.875), bicubic.

Schedule and Mixup / CutMix as facebookresearch/deit main.py sets them: timm's cosine stepped once per epoch, a
warm-up from 1e-6, min lr 1e-5, no cool-down (the script never runs it; its `lr_scheduler.step(epoch)` after
each epoch trains epoch e at timm's rate of epoch e - 1, modelled by `epoch_lag=1`); mixup 0.8, cutmix 1.0,
switch p 0.5, per batch.

Augmentations (facebookresearch/deit main.py defaults: --aa, --reprob 0.25, --train-interpolation bicubic):
RandAugment rand-m9-mstd0.5-inc1, random erasing p 0.25 (per-pixel noise, one box), training crops with bicubic
interpolation, bicubic evaluation resize (datasets.py: interpolation=3); its colour jitter 0.3 is skipped by
timm's create_transform while RandAugment is on.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block, 4 steps). Run the same
command with the same --workdir to resume.
"""

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # DeiT-B's README: --batch-size 256 on 4 GPUs
    return common.deit_recipe(arg, "hydra_vit_b")  # facebookresearch/deit main.py's defaults (mixtok's choice)
