r"""ffnet_4 on ImageNet-1k at 256 px: FFNified attention (convolutional token and channel mixers).

    python -m mixtok.train \
        --config experiments/configs/imagenet/ffnet_4.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/ffnet_4

Expect: the paper's top-1 for this variant is the target (see the official README, ysj9909/FFNet; mixtok
has not recorded the number here). mixtok has not reproduced it: its augmentations are the official
script's (below), but the differences named below and in common.py's docstring may still leave a run
under that top-1.

Paper: MetaMixer Is All You Need (Yun et al.).

Official recipe (ysj9909/FFNet: train.py defaults, README, default_cfgs): AdamW, lr 1e-3 at global batch
1024 (128 x 8 GPUs), weight decay 0.05, cosine to 1e-5 after 5 warm-up epochs, 300 epochs, label
smoothing 0.1, 256 px; drop path 0.1 / 0.15 / 0.35 (README) and 0.4 (FFNet-4: the code's default; the
README gives only its 384-px fine-tune); eval crop 0.9 (1, 2) or 0.95 (3, 4). Weight EMA 0.9995
(`config.model_ema`, `eval_ema/` metrics; the parameters and the BatchNorm statistics,
from the first update on, as timm's ModelEma).

Schedule and Mixup / CutMix (ysj9909/FFNet train.py (its defaults at commit aed6a70; since removed
from the repository)): timm's cosine, rate changed once per epoch, warm-up from 1e-6, min lr 1e-5,
then 20 cool-down epochs at min lr (--cooldown-epochs); mixup 0.8, cutmix 1.0, switch p 0.5, per
batch.

Augmentations (ysj9909/FFNet train.py defaults at aed6a70: --aa, --reprob 0.25, --train-interpolation
bicubic): RandAugment rand-m9-mstd0.5-inc1, random erasing p 0.25 (per-pixel noise, one box), training
crops with bicubic interpolation, bicubic evaluation resize (default_cfgs); its colour jitter 0.4 is
skipped by timm's create_transform while RandAugment is on.

Compute: 400,364 steps of 1,024 images (300 epochs + 20 cool-down). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # 128 x 8 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: ysj9909/FFNet train.py defaults at aed6a70: --aa, --reprob 0.25, --train-interpolation bicubic;
    # eval resize bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=256,
        crop_pct=0.95,  # default_cfgs
        train_interpolation="bicubic",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name="ffnet_4", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.4))  # README (FFNet-4: the code's default)
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("ffnet_4"))  # the same layers, fewer

    # timm's cosine (ysj9909/FFNet train.py): warm-up from 1e-6 over 5 epochs, cosine to 1e-5, then 20 cool-down
    # epochs at 1e-5; the rate changes once per epoch.
    schedule = common.timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=20)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-3 * config.batch_size / 1024,  # official at batch 1024, scaled linearly
            **schedule,
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=0.0,  # global-norm clipping; 0 disables it
        )
    )
    config.label_smoothing = 0.1
    # Weight EMA (ysj9909/FFNet train.py: --model-ema, decay 0.9995), timm's ModelEma:
    # constant decay from the first update (the average starts as the initial model, with no copy at step 1), over
    # the parameters and the BatchNorm running statistics, as ModelEma averages the whole state_dict
    # (mixtok/train/ema.py: first_update_copies=False, buffers=True).
    config.model_ema = ConfigDict(dict(decay=0.9995, warmup=False, first_update_copies=False, buffers=True))
    # timm's Mixup / CutMix (ysj9909/FFNet train.py): one draw a batch, CutMix half the time; soft targets smoothed
    # by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
