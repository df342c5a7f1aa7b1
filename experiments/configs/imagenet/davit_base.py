r"""davit_base on ImageNet-1k at 224 px: spatial window attention and channel attention, alternating.

    python -m mixtok.train \
        --config experiments/configs/imagenet/davit_base.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/davit_base

Expect: the official README (dingmyu/davit) reports 84.6% top-1 on ImageNet-1k val at 224 px, trained on
ImageNet-1k only. mixtok has not reproduced it: its augmentations are the official script's (below), but
the differences named below and in common.py's docstring may still leave a run under that top-1.

Paper: Dual Attention Vision Transformers (Ding et al., ECCV 2022).

Official recipe (dingmyu/davit: README training command and train.py defaults): AdamW (eps 1e-8), lr
1e-3 at global batch 1024 (128 x 8 GPUs; not scaled by the code), weight decay 0.05, gradient clipping
1.0, cosine to 1e-5 after 5 warm-up epochs, 300 epochs, label smoothing 0.1, drop path 0.1 (train.py's
default; the repository states no per-variant rate, so Small and Base use it too), eval crop 0.9 (the
official config; timm's weights use 0.95).

Schedule and Mixup / CutMix as dingmyu/davit train.py sets them: timm's cosine, rate changed once
per epoch, warm-up from 1e-6, min lr 1e-5, then 10 cool-down epochs at min lr (--cooldown-epochs);
mixup 0.8, cutmix 1.0, switch p 0.5, per batch.

Augmentations (dingmyu/davit train.py defaults: --aa, --reprob 0.25, --train-interpolation bicubic):
RandAugment rand-m9-mstd0.5-inc1, random erasing p 0.25 (per-pixel noise, one box), training crops with
bicubic interpolation, bicubic evaluation resize (timm's pretrained config); its colour jitter 0.4 is
skipped by timm's create_transform while RandAugment is on.

Compute: 387,853 steps of 1,024 images (300 epochs + 10 cool-down). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # 128 x 8 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: dingmyu/davit train.py defaults: --aa, --reprob 0.25, --train-interpolation bicubic; eval resize
    # bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=0.9,  # the official config
        train_interpolation="bicubic",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name="davit_base", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.1))  # train.py's default, for every variant
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("davit_base"))  # the same layers, fewer

    # timm's cosine (dingmyu/davit train.py): warm-up from 1e-6 over 5 epochs, cosine to 1e-5, then 10 cool-down
    # epochs at 1e-5; the rate changes once per epoch.
    schedule = common.timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=10)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-3 * config.batch_size / 1024,  # official at batch 1024, scaled linearly
            **schedule,
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=1.0,  # train.py's --clip-grad
        )
    )
    config.label_smoothing = 0.1
    # timm's Mixup / CutMix (dingmyu/davit train.py): one draw a batch, CutMix half the time; soft targets smoothed
    # by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
