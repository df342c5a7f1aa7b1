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

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # DeiT-B's README: --batch-size 256 on 4 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: facebookresearch/deit main.py defaults: --aa, --reprob 0.25, --train-interpolation bicubic;
    # eval resize bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=0.875,  # eval: resize 256, crop 224
        train_interpolation="bicubic",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
        repeated_aug=3,  # main.py --repeated-aug (on by default; its samplers.py RASampler, 3 copies)
    )

    config.model = ConfigDict(dict(name="hydra_vit_b", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.1))  # DeiT main.py --drop-path
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("hydra_vit_b"))  # the same layers, fewer
        config.model.kwargs.image_size = common.RUNLOCAL_IMAGE_SIZE  # the position embedding's grid

    # timm's cosine as facebookresearch/deit main.py steps it (once per epoch): warm-up from 1e-6 over 5 epochs,
    # cosine to 1e-5; the script never runs timm's cool-down.
    schedule = common.timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=0)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=5e-4 * config.batch_size / 512,  # main.py's linear_scaled_lr
            **schedule,
            epoch_lag=1,  # main.py steps timm's scheduler after each epoch
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=0.0,  # main.py --clip-grad None
        )
    )
    config.label_smoothing = 0.1
    # timm's Mixup / CutMix (facebookresearch/deit main.py): one draw a batch, CutMix half the time; soft targets
    # smoothed by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    # timm's ModelEma (main.py --model-ema, on by default): a copy of the initial model, every entry averaged with
    # decay 0.99996 from the first update.
    config.model_ema = ConfigDict(dict(decay=0.99996, warmup=False, first_update_copies=False, buffers=True))
    return config
