r"""CAFormer-B36 on ImageNet-1k at 224 px: SepConv in stages 1-2, attention in stages 3-4.

    python -m mixtok.train \
        --config experiments/configs/imagenet/caformer_b36.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/caformer_b36

Expect: MetaFormer Baselines for Vision (Yu et al., TPAMI 2024) reports 85.5% top-1 on ImageNet-1k val
at 224 px, trained on ImageNet-1k only (sail-sg/metaformer README, "Models with common token mixers
trained on ImageNet-1K"). mixtok has not reproduced it: its augmentations are the official script's
(below), but the differences named below and in common.py's docstring may still leave a run under that
top-1.

Official recipe, from sail-sg/metaformer: scripts/caformer/train_caformer_b36.sh and train.py's
defaults: LAMB, lr 8e-3 at global batch 4096, 20 warm-up epochs, drop path 0.6, head dropout 0.5, 300
epochs, weight decay 0.05, label smoothing 0.1; eval crop_pct 1.0.

Optimizer: timm's Lamb, as the official script's `--opt lamb` builds it (mixtok's `timm_lamb`): it
clips the global gradient norm to 1.0 itself and applies the trust ratio only to the weights with
weight decay.

The official train_caformer_b36.sh passes `--model caformer_s36` (a slip in the script); its other
flags, drop path 0.6 and head dropout 0.5, are taken as B36's.

Head dropout as the official model applies it: inside the MLP head only, before its last Linear
(`head_dropout_before_mlp=False`; timm, and mixtok's default, also drop out before the MLP head).

Schedule and Mixup / CutMix as sail-sg/metaformer train.py sets them: timm's cosine, rate changed
once per epoch, warm-up from 1e-6, min lr 1e-5, then 10 cool-down epochs at min lr
(--cooldown-epochs); mixup 0.8, cutmix 1.0, switch p 0.5, per batch.

Augmentations (sail-sg/metaformer train.py defaults: --aa, --reprob 0.25, --train-interpolation random):
RandAugment rand-m9-mstd0.5-inc1, random erasing p 0.25 (per-pixel noise, one box), training crops with
a random (bilinear or bicubic) interpolation, bicubic evaluation resize (its timm _cfg); its colour
jitter 0.4 is skipped by timm's create_transform while RandAugment is on.

Compute: 96,963 steps of 4,096 images (300 epochs + 10 cool-down, 397M images at 224 px); 23.2 GMACs
per image forward (official README), so about 2.8e19 multiply-adds to train (3x forward). The
official script runs on 8 GPUs (type not stated) with 4 gradient-accumulation steps of 128 images
per GPU. Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4
steps): about half a minute on a 2-core CPU, mostly compilation (measured 15-42 s over the 28
configs). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=4096, epochs=300)  # 8 GPUs x 128 x 4 gradient-accumulation steps
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: sail-sg/metaformer train.py defaults: --aa, --reprob 0.25, --train-interpolation random; eval
    # resize bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=1.0,  # timm's pretrained config
        train_interpolation="random",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name="caformer_b36", dtype=common.compute_dtype(arg)))
    # Sail-sg/metaformer scripts/caformer/train_caformer_b36.sh.
    config.model.kwargs = ConfigDict(
        dict(drop_path_rate=0.6, head_dropout=0.5, head_dropout_before_mlp=False)  # the official MlpHead's dropout only
    )
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("caformer_b36"))  # the same layers, fewer

    # timm's cosine (sail-sg/metaformer train.py): warm-up from 1e-6 over 20 epochs, cosine to 1e-5, then 10
    # cool-down epochs at 1e-5; the rate changes once per epoch.
    schedule = common.timm_cosine(config, arg, warmup_epochs=20, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=10)
    config.optimizer = ConfigDict(
        dict(
            name="timm_lamb",
            lr=8e-3 * config.batch_size / 4096,  # official at batch 4096, scaled linearly
            **schedule,
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-6,
            grad_clip=0.0,  # timm_lamb clips the global gradient norm to 1.0 itself (max_grad_norm)
        )
    )
    config.label_smoothing = 0.1
    # timm's Mixup / CutMix (sail-sg/metaformer train.py): one draw a batch, CutMix half the time; soft targets
    # smoothed by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
