r"""lsnet_s on ImageNet-1k at 224 px: LS convolutions (large-kernel perception, small-kernel aggregation).

    python -m mixtok.train \
        --config experiments/configs/imagenet/lsnet_s.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/lsnet_s

Expect: the paper's top-1 for this variant is the target (see the official README, jameslahm/lsnet;
mixtok has not recorded the number here). mixtok has not reproduced it: its augmentations are the
official script's (below), but the differences named below and in common.py's docstring may still leave
a run under that top-1.

Paper: LSNet: See Large, Focus Small (Wang et al., CVPR 2025).

Official recipe (jameslahm/lsnet: main.py defaults and README): AdamW (eps 1e-8), lr 1e-3 x batch / 512
= 4e-3 at global batch 2048 (256 x 8 GPUs), weight decay 0.025 (T, S) or 0.05 (B), cosine to 1e-5 after
5 warm-up epochs, 300 epochs, label smoothing 0.1, no drop path (the model has none), eval resize 256
and crop 224 (0.875). Weight EMA 0.99996 (`config.model_ema`; the parameters and the BatchNorm
statistics, from the first update on, as timm's ModelEma). Adaptive gradient clipping with clip factor
0.02 (main.py's defaults --clip-grad 0.02 --clip-mode agc: timm's adaptive_clip_grad). Repeated
augmentation: main.py's default --repeated-aug, 3 copies of each image (`repeated_aug=3`).

Schedule and Mixup / CutMix as jameslahm/lsnet main.py sets them: timm's cosine stepped once per epoch,
a warm-up from 1e-6, min lr 1e-5, no cool-down (the script never runs it; its `lr_scheduler.step(epoch)`
after each epoch trains epoch e at timm's rate of epoch e - 1, modelled by `epoch_lag=1`); mixup 0.8,
cutmix 1.0, switch p 0.5, per batch.

Augmentations (jameslahm/lsnet main.py defaults: --aa, --reprob 0.25, --train-interpolation bicubic):
RandAugment rand-m9-mstd0.5-inc1, random erasing p 0.25 (per-pixel noise, one box), training crops with
bicubic interpolation, bicubic evaluation resize (data/datasets.py: transforms.Resize(size,
interpolation=3)); its colour jitter 0.4 is skipped by timm's create_transform while RandAugment is on.

Compute: 187,670 steps of 2,048 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=2048, epochs=300)  # 256 x 8 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: jameslahm/lsnet main.py defaults: --aa, --reprob 0.25, --train-interpolation bicubic; eval resize
    # bicubic.
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

    config.model = ConfigDict(dict(name="lsnet_s", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict())  # LSNet has no stochastic depth
    if arg.runlocal:
        # Two blocks per stage after the first keep one LSConv (odd depth) and, in stage 4, attention.
        config.model.kwargs.update(depths=(0, 2, 2, 2), image_size=common.RUNLOCAL_IMAGE_SIZE)

    # timm's cosine as jameslahm/lsnet main.py steps it (once per epoch): warm-up from 1e-6 over 5 epochs, cosine to
    # 1e-5; the script never runs timm's cool-down.
    schedule = common.timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=0)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=4e-3 * config.batch_size / 2048,  # main.py: 1e-3 x batch / 512
            **schedule,
            epoch_lag=1,  # main.py steps timm's scheduler after each epoch (DeiT's loop)
            weight_decay=0.025,  # main.py / README
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=0.02,  # main.py: --clip-grad 0.02 --clip-mode agc (timm's adaptive_clip_grad)
            clip_mode="agc",
        )
    )
    config.label_smoothing = 0.1
    # Weight EMA (LSNet main.py (DeiT's): --model-ema-decay 0.99996), timm's ModelEma:
    # constant decay from the first update (the average starts as the initial model, with no copy at step 1), over
    # the parameters and the BatchNorm running statistics, as ModelEma averages the whole state_dict
    # (mixtok/train/ema.py: first_update_copies=False, buffers=True).
    config.model_ema = ConfigDict(dict(decay=0.99996, warmup=False, first_update_copies=False, buffers=True))
    # timm's Mixup / CutMix (jameslahm/lsnet main.py): one draw a batch, CutMix half the time; soft targets smoothed
    # by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
