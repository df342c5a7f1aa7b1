r"""GFNet-Ti (isotropic, 12 blocks, width 256) on ImageNet-1k at 224 px: a global Fourier filter as the token mixer.

    python -m mixtok.train \
        --config experiments/configs/imagenet/gfnet_ti.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/gfnet_ti

Expect: the official README (raoyongming/GFNet) reports 74.6% top-1 on ImageNet-1k val at 224 px (7M
parameters, 1.3G FLOPs), trained on ImageNet-1k only. mixtok has not reproduced it: its augmentations
are the official script's (below), but the differences named below and in common.py's docstring may
still leave a run under that top-1.

Official recipe (main_gfnet.py --arch gfnet-ti --batch-size 128 on 8 GPUs): AdamW, lr 5e-4 x 1024 / 512
= 1e-3 at global batch 1024, 5 warm-up epochs, cosine to 1e-5, 300 epochs, weight decay 0.05, gradient
clipping 1.0, label smoothing 0.1, the architecture's drop path; eval resize 256, crop 224.

Sources: raoyongming/GFNet main_gfnet.py (defaults) and README (the training command, `--batch-size 128`
on 8 GPUs for every variant). main_gfnet.py scales `--lr 5e-4` by global batch / 512, clips gradients at
`--clip-grad 1`, keeps no EMA, and builds each architecture with its own stochastic depth, ignoring its
--drop-path flag: gfnet-ti and gfnet-xs none, gfnet-s 0.15, gfnet-b 0.25, gfnet-h-ti 0.1, gfnet-h-s 0.2,
gfnet-h-b 0.4. Its evaluation resizes to 256 bicubically.

Schedule and Mixup / CutMix as raoyongming/GFNet main_gfnet.py sets them: timm's cosine stepped once per
epoch, a warm-up from 1e-6, min lr 1e-5, no cool-down (the script never runs it; its
`lr_scheduler.step(epoch)` after each epoch trains epoch e at timm's rate of epoch e - 1, modelled by
`epoch_lag=1`); mixup 0.8, cutmix 1.0, switch p 0.5, per batch.

Augmentations (raoyongming/GFNet main_gfnet.py defaults: --aa, --reprob 0, --train-interpolation
bicubic): RandAugment rand-m9-mstd0.5-inc1, no random erasing (--reprob 0), training crops with bicubic
interpolation, bicubic evaluation resize (datasets.py: transforms.Resize(size, interpolation=3)); its
colour jitter 0.4 is skipped by timm's create_transform while RandAugment is on.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # README: --batch-size 128 on 8 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: raoyongming/GFNet main_gfnet.py defaults: --aa, --reprob 0, --train-interpolation bicubic; eval
    # resize bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=0.875,  # eval: resize 256, crop 224
        train_interpolation="bicubic",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.0,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name="gfnet_ti", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.0))  # as main_gfnet.py builds this architecture
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("gfnet_ti"))  # the same layers, fewer
        config.model.kwargs.image_size = common.RUNLOCAL_IMAGE_SIZE  # the filters' size follows the image's

    # timm's cosine as raoyongming/GFNet main_gfnet.py steps it (once per epoch): warm-up from 1e-6 over 5 epochs,
    # cosine to 1e-5; the script never runs timm's cool-down.
    schedule = common.timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=0)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-3 * config.batch_size / 1024,  # 5e-4 x 1024 / 512, scaled linearly
            **schedule,
            epoch_lag=1,  # main_gfnet.py steps timm's scheduler after each epoch (DeiT's loop)
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=1.0,  # main_gfnet.py's --clip-grad default
        )
    )
    config.label_smoothing = 0.1
    # timm's Mixup / CutMix (raoyongming/GFNet main_gfnet.py): one draw a batch, CutMix half the time; soft targets
    # smoothed by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
