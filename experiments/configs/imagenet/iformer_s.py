r"""iformer_s on ImageNet-1k at 224 px: inception mixers (high-frequency conv / max-pool
branches, low-frequency attention).

    python -m mixtok.train \
        --config experiments/configs/imagenet/iformer_s.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/iformer_s

Expect: the official README (sail-sg/iFormer) reports 83.4% top-1 on ImageNet-1k val at 224 px, trained
on ImageNet-1k only. mixtok has not reproduced it: its augmentations are the official script's (below),
but the differences named below and in common.py's docstring may still leave a run under that top-1.

Paper: Inception Transformer (Si et al., NeurIPS 2022).

Official recipe (sail-sg/iFormer: README command, checkpoint/iformer_*/args.yaml): AdamW, lr 1e-3 at
global batch 1024 (README: -b 128 on 8 GPUs; the released args.yaml records 64 per GPU), weight decay
0.05, cosine after 5 warm-up epochs to min lr 1e-6 (S) or 1e-5 (B, L), 300 epochs, label smoothing 0.1,
drop path 0.2 / 0.4 / 0.5, gradient clipping none (S) or 1.0 (B, L), eval crop 0.9.

Schedule and Mixup / CutMix as sail-sg/iFormer checkpoint/iformer_*/args.yaml sets them: timm's
cosine, rate changed once per epoch, warm-up from 1e-6, min lr 1e-6, then 10 cool-down epochs at min
lr (--cooldown-epochs); mixup 0.8, cutmix 1.0, switch p 0.5, per batch.

Augmentations (sail-sg/iFormer checkpoint/iformer_*/args.yaml: aa, reprob 0.25, train_interpolation
random): RandAugment rand-m9-mstd0.5-inc1, random erasing p 0.25 (per-pixel noise, one box), training
crops with a random (bilinear or bicubic) interpolation, bicubic evaluation resize (timm's pretrained
config); its colour jitter 0.4 is skipped by timm's create_transform while RandAugment is on.

Compute: 387,853 steps of 1,024 images (300 epochs + 10 cool-down). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, a block or two per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # README: -b 128 on 8 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: sail-sg/iFormer checkpoint/iformer_*/args.yaml: aa, reprob 0.25, train_interpolation random; eval
    # resize bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=0.9,  # args.yaml
        train_interpolation="random",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name="iformer_s", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.2))  # args.yaml
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("iformer_s"))  # the same layers, fewer
        config.model.kwargs.update(common.first_block_of_each_stage("iformer_s", "attention_heads"))
        config.model.kwargs.image_size = common.RUNLOCAL_IMAGE_SIZE

    # timm's cosine (sail-sg/iFormer checkpoint/iformer_*/args.yaml): warm-up from 1e-6 over 5 epochs, cosine to
    # 1e-6, then 10 cool-down epochs at 1e-6; the rate changes once per epoch.
    schedule = common.timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=1e-6, min_lr=1e-6, cooldown_epochs=10)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-3 * config.batch_size / 1024,  # official at batch 1024, scaled linearly
            **schedule,
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=0.0,  # args.yaml
        )
    )
    config.label_smoothing = 0.1
    # timm's Mixup / CutMix (sail-sg/iFormer checkpoint/iformer_*/args.yaml): one draw a batch, CutMix half the
    # time; soft targets smoothed by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
