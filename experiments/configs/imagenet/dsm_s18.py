r"""DSM-S18 stand-in on ImageNet-1k at 224 px: a MetaFormer whose mixer filters the DCT spectrum per sample.

    python -m mixtok.train \
        --config experiments/configs/imagenet/dsm_s18.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/dsm_s18

What this is: "Dynamic Spectrum Mixer for Visual Recognition" (Hu & Yu, 2023) reports 83.8% top-1
on ImageNet-1k for its best model; its architecture table, variants and training recipe could not be
retrieved and no official code is known, so `dsm_s18` is a stand-in: DFFormer-S18's layout with the
Dynamic Spectrum Mixer (mixtok.mixers.dsm and mixtok.models.dsm write down every choice). Do not
compare its top-1 with the paper's as a reproduction.

Recipe: DFFormer's (okojoalg/dfformer README): AdamW, lr 1e-3 at global batch 1024, 20 warm-up epochs,
cosine over 300 epochs, weight decay 0.05, label smoothing 0.1, drop path 0.2; eval crop_pct 1.0. Drop
path 0.2 is stated for S18 only (its README).

Schedule and Mixup / CutMix (okojoalg/dfformer: the README's command (--warmup-lr 1e-6,
--warmup-epochs 20, --mixup 0.8, --cutmix 1.0) and train.py's defaults): timm's cosine, rate changed
once per epoch, warm-up from 1e-6, min lr 1e-5, then 10 cool-down epochs at min lr
(--cooldown-epochs); mixup 0.8, cutmix 1.0, switch p 0.5, per batch.

Augmentations (okojoalg/dfformer README command: --aa, --reprob 0.25; train.py's --train-interpolation
random): RandAugment rand-m9-mstd0.5-inc1, random erasing p 0.25 (per-pixel noise, one box), training
crops with a random (bilinear or bicubic) interpolation, bicubic evaluation resize (DFFormer's timm
_cfg); its colour jitter 0.4 is skipped by timm's create_transform while RandAugment is on.

Compute: 387,853 steps of 1,024 images (300 epochs + 10 cool-down). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # DFFormer README: 128 x 8 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: okojoalg/dfformer README command: --aa, --reprob 0.25; train.py's --train-interpolation random;
    # eval resize bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=1.0,  # DFFormer's timm _cfg
        train_interpolation="random",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name="dsm_s18", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.2))  # DFFormer-S18's
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("dsm_s18"))  # the same layers, fewer

    # timm's cosine (okojoalg/dfformer README command, train.py defaults): warm-up from 1e-6 over 20 epochs,
    # cosine to 1e-5, then 10 cool-down epochs at 1e-5; the rate changes once per epoch.
    schedule = common.timm_cosine(config, arg, warmup_epochs=20, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=10)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-3 * config.batch_size / 1024,  # DFFormer's at batch 1024, scaled linearly
            **schedule,
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=0.0,  # global-norm clipping; 0 disables it
        )
    )
    config.label_smoothing = 0.1
    # timm's Mixup / CutMix (okojoalg/dfformer README command, train.py defaults): one draw a batch, CutMix half
    # the time; soft targets smoothed by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
