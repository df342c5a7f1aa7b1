r"""transnext_base on ImageNet-1k at 224 px: aggregated (pixel-focused) attention and ConvGLU.

    python -m mixtok.train \
        --config experiments/configs/imagenet/transnext_base.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/transnext_base

Expect: the official README (DaiShiResearch/TransNeXt) reports 84.8% top-1 on ImageNet-1k val at 224 px,
trained on ImageNet-1k only. mixtok has not reproduced it: its augmentations are the official script's
(below), but the differences named below and in common.py's docstring may still leave a run under that
top-1.

Paper: TransNeXt: Robust Foveal Visual Perception for Vision Transformers (Shi, CVPR 2024).

Official recipe (DaiShiResearch/TransNeXt: classification/main.py, configs/*.py): AdamW (eps 1e-8), lr
1e-3 at global batch 1024 (not scaled), weight decay 0.05, gradient clipping 1.0, cosine to 1e-5 after 5
warm-up epochs, 300 epochs, label smoothing 0.1, drop path 0.15 / 0.25 / 0.45 / 0.6
(classification/configs/transnext_{micro,tiny,small,base}.py), eval resize 256 and crop 224 (0.875). No
weight decay on the parameters named after the model's `no_weight_decay_keywords` (query_embedding,
relative_pos_bias_local, cpb, temperature: classification/optimizer.py `set_weight_decay`), besides
biases and 1-D weights. Repeated augmentation as main.py's default --repeated-aug, 3 copies of each image
(`repeated_aug=3`).

Schedule and Mixup / CutMix as DaiShiResearch/TransNeXt classification/main.py sets them: timm's cosine
stepped once per epoch, a warm-up from 1e-6, min lr 1e-5, no cool-down (the script never runs it; its
`lr_scheduler.step(epoch)` after each epoch trains epoch e at timm's rate of epoch e - 1, modelled by
`epoch_lag=1`); mixup 0.8, cutmix 1.0, switch p 0.5, per batch.

Augmentations (DaiShiResearch/TransNeXt classification/main.py defaults: --aa, --reprob 0.25,
--train-interpolation bicubic): RandAugment rand-m9-mstd0.5-inc1, random erasing p 0.25 (per-pixel
noise, one box), training crops with bicubic interpolation, bicubic evaluation resize (DeiT's
datasets.py: interpolation=3); its colour jitter 0.4 is skipped by timm's create_transform while
RandAugment is on.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # the configs' global batch
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: DaiShiResearch/TransNeXt classification/main.py defaults: --aa, --reprob 0.25, --train-
    # interpolation bicubic; eval resize bicubic.
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

    config.model = ConfigDict(dict(name="transnext_base", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.6))  # classification/configs/<variant>.py
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("transnext_base"))  # the same layers, fewer

    # timm's cosine as DaiShiResearch/TransNeXt classification/main.py steps it (once per epoch): warm-up from 1e-6
    # over 5 epochs, cosine to 1e-5; the script never runs timm's cool-down.
    schedule = common.timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=0)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-3 * config.batch_size / 1024,  # official at batch 1024, scaled linearly
            **schedule,
            epoch_lag=1,  # main.py steps timm's scheduler after each epoch (DeiT's loop)
            weight_decay=0.05,
            # classification/transnext.py no_weight_decay_keywords, excluded by classification/optimizer.py.
            no_weight_decay_keywords=("query_embedding", "relative_pos_bias_local", "cpb", "temperature"),
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=1.0,  # the configs' clip grad
        )
    )
    config.label_smoothing = 0.1
    # timm's Mixup / CutMix (DaiShiResearch/TransNeXt classification/main.py): one draw a batch, CutMix half the
    # time; soft targets smoothed by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
