r"""cas_vit_s on ImageNet-1k at 224 px: convolutional additive token mixers (CATM).

    python -m mixtok.train \
        --config experiments/configs/imagenet/cas_vit_s.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/cas_vit_s

Expect: the official README (Tianfang-Zhang/CAS-ViT) reports 80.9 / 81.1 (two unlabelled accuracies)%
top-1 on ImageNet-1k val at 224 px, trained on ImageNet-1k only. mixtok has not reproduced it: its
augmentations are the official script's (below), but the differences named below and in common.py's
docstring may still leave a run under that top-1.

Paper: CAS-ViT (Zhang et al., 2024).

Official recipe (Tianfang-Zhang/CAS-ViT: classification/main.py defaults, README): AdamW, lr 6e-3 at
global batch 2048 (128 x 8 GPUs x update_freq 2), weight decay 0.05, cosine to 1e-6 after 20 warm-up
epochs, 300 epochs, label smoothing 0.1, drop path 0.1 (the default and the README's command; no
per-variant rate is given), eval crop 0.875. Trains without the distillation head, as main.py does. Weight EMA
0.9995 (`config.model_ema`; the parameters and the BatchNorm statistics, from the first update on, as
timm's ModelEma). The README command's `--multi_scale_sampler` (classification/data/samplers.py
`MultiScaleSamplerDDP`): `data.multi_scale` with rule="cas_vit" (mixtok.data.multi_scale) draws each
micro-batch's size from 160, 192, 224, 256, 288, 320 px with 248, 176, 128, 128, 128, 128 images per GPU on 8
GPUs (global 1,984, 1,408, 1,024, ...); `grad_accum_steps = 2` (--update_freq 2) makes an update of two
micro-batches, each its own draw; eval stays at 224. An epoch is taken as 1,281,167 / (2 x 1,248, the mean
micro-batch) = 513 updates (common.cas_vit_multi_scale). What differs: main.py's schedule counts
`len(dataset) // 2048` = 625 updates an epoch (its `num_training_steps_per_epoch`) but an epoch of the sampler
has about 513, so at each epoch's start its rate jumps to that epoch's nominal value; mixtok's cosine and
warm-up run over 513-update epochs instead, smoothly, reaching the same rate at each epoch's start. The
draws are numpy's, not Python's `random` reseeded per epoch, and a micro-batch may span two epochs.

Schedule and Mixup / CutMix: main.py has its own cosine (its utils.cosine_scheduler, per step, from
0), not timm's scheduler, so this config keeps its warm-up then cosine; main.py's defaults train
without Mixup / CutMix (--mixup 0 --cutmix 0, which the README's command does not change), so it
sets none.

Augmentations (Tianfang-Zhang/CAS-ViT classification/main.py defaults: --aa, --reprob 0.0,
--train_interpolation bicubic): RandAugment rand-m9-mstd0.5-inc1, no random erasing (--reprob 0),
training crops with bicubic interpolation, bicubic evaluation resize (data/datasets.py:
transforms.Resize(size, interpolation=3)); its colour jitter 0.4 is skipped by timm's create_transform
while RandAugment is on.

Compute: 153,900 updates of two micro-batches, 2,496 images on average (300 epochs of 513). Time: not
measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 32 and 64 px, a block or two per
stage, 2 updates of two micro-batches). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=2048, epochs=300)  # 128 x 8 GPUs x update_freq 2
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: Tianfang-Zhang/CAS-ViT classification/main.py defaults: --aa, --reprob 0.0, --train_interpolation
    # bicubic; eval resize bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=0.875,  # main.py's
        train_interpolation="bicubic",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.0,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name="cas_vit_s", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.1))  # main.py's default and the README's command
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("cas_vit_s"))  # the same layers, fewer

    # --multi_scale_sampler with --update_freq 2: micro-batches of batch_size / 2 at the base size, their own sizes.
    warmup_steps = common.cas_vit_multi_scale(config, arg, update_freq=2, warmup_epochs=20)

    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=6e-3 * arg.batch_size / 2048,  # official at batch 2048 (two micro-batches), scaled linearly
            warmup_steps=warmup_steps,  # 20 epochs of linear warm-up, then cosine
            min_lr=1e-6,  # cosine decay to min_lr
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=0.0,  # global-norm clipping; 0 disables it
        )
    )
    config.label_smoothing = 0.1
    # Weight EMA (CAS-ViT classification/main.py: --model-ema-decay 0.9995), timm's ModelEma:
    # constant decay from the first update (the average starts as the initial model, with no copy at step 1), over
    # the parameters and the BatchNorm running statistics, as ModelEma averages the whole state_dict
    # (mixtok/train/ema.py: first_update_copies=False, buffers=True).
    config.model_ema = ConfigDict(dict(decay=0.9995, warmup=False, first_update_copies=False, buffers=True))
    return config
