r"""AFFNet-T (x_small) on ImageNet-1k at 256 px: MobileNetV2 blocks and adaptive frequency filters.

    python -m mixtok.train \
        --config experiments/configs/imagenet/affnet_t.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/affnet_t

Expect: the official README (microsoft/TokenMixers, "Adaptive Frequency Filters") reports 77.0% top-1
on ImageNet-1k val at 256 x 256 (2.6M parameters, 0.8G FLOPs). mixtok has not reproduced it.

Recipe: AFFNet's own training configs are not in the official repository (its README links them
off-repo), so this is the MobileViT recipe of apple/ml-cvnets, the framework AFFNet's code is built
on: AdamW, cosine 2e-3 -> 2e-4 over 300 epochs after a 20,000-iteration warm-up, global batch 1024,
weight decay 0.01, label smoothing 0.1, classifier dropout 0.1; eval resize 288, crop 256. BatchNorm
statistics are global-batch (synchronised) under mixtok's sharded jit.

The warm-up starts at warmup_init_lr 2e-4 (`warmup_lr_init`), and weight decay applies to every
parameter, BatchNorm and bias weights included (`no_decay_bn_filter_bias: false`,
`weight_decay_on="all"`).

Multi-scale: mobilevit.yaml's variable-batch sampler (`sampler.vbs`; apple/ml-cvnets
data/sampler/variable_batch_sampler.py), `data.multi_scale` (mixtok.data.multi_scale): each step draws one
of 160, 192, 256, 288, 320 px uniformly, with 327, 227, 128, 101, 81 images per GPU on 8 GPUs (global 2,616,
1,816, 1,024, 808, 648), every image random-resized-cropped to that size; eval stays at 256. An epoch then
has no fixed step count: it is taken as 1,281,167 // 1,382.4 (the mean global batch at batch_size=1024)
= 926 steps, the cosine's epoch and the eval / checkpoint cadence (common.cvnets_multi_scale); cvnets' epochs end when
each GPU has read its share of the images, so theirs vary by a few steps around that. What differs from
cvnets: the draws (numpy's generator per 1,024 steps, not Python's `random` reseeded each epoch) and a
batch may span two epochs (cvnets pads an epoch's last batch with its first images).
Sources: apple/ml-cvnets config/classification/imagenet/mobilevit.yaml (global batch 1024 = 128 x 8
GPUs, AdamW betas (0.9, 0.999)); AFFNet's README (microsoft/TokenMixers) for the 256-px train / eval
resolution.

Schedule and Mixup / CutMix: ml-cvnets' own cosine scheduler, not timm's (`cvnets_cosine`, as
mobilevit.yaml runs it, `is_iteration_based: false`: a linear warm-up per iteration from 2e-4, then
the rate of each epoch e is the cosine 2e-4 + (2e-3 - 2e-4) (1 + cos(pi e / 300)) / 2, its epochs
counted from the first, warm-up included; optim/scheduler/cosine.py); mobilevit.yaml uses no Mixup /
CutMix, RandAugment or random erasing (random resized crop and flip only), so this config sets none.

EMA: mobilevit.yaml's `ema: {enable: true, momentum: 0.0005}` (apple/ml-cvnets
cvnets/misc/averaging_utils.py `EMA`) averages the weights and the BatchNorm statistics after every
optimizer step, from the initial model on: `config.model_ema` with decay 0.9995, no warm-up, no
first-update copy and the statistics averaged (`eval_ema/` metrics; mixtok/train/ema.py).

Compute: 278,031 steps of 648-2,616 images (300 * 1,281,167 / 1,382.4, the mean global batch: about
384 million images). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, steps of 64 images at 32 px or 16 at
64 px, eval at 64 px, one AFF block per stage, 4 steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # mobilevit.yaml: 128 x 8 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    config.data = common.imagenet_data(arg, image_size=256, crop_pct=256 / 288)  # eval: resize 288, crop 256

    config.model = ConfigDict(dict(name="affnet_t", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(head_dropout=0.1))  # mobilevit.yaml's classifier dropout
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("affnet_t"))  # the same layers, fewer
    steps_per_epoch = common.cvnets_multi_scale(config, arg)  # data.multi_scale; total_steps from its mean batch

    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=2e-3 * config.batch_size / 1024,  # mobilevit.yaml at batch 1024, scaled linearly
            # ml-cvnets' epoch-based cosine over 300 epochs of 926 steps (runlocal: 4 one-step epochs).
            schedule="cvnets_cosine",
            steps_per_epoch=steps_per_epoch,
            epochs=common.RUNLOCAL_STEPS if arg.runlocal else arg.epochs,
            # 20,000 iterations at batch 1024, from warmup_init_lr 2e-4.
            warmup_steps=common.warmup_steps(arg, epochs=20_000 * 1024 / common.IMAGENET_TRAIN_IMAGES),
            warmup_lr_init=2e-4,
            min_lr=2e-4,  # cosine decay to min_lr; mobilevit.yaml: cosine 2e-3 -> 2e-4
            weight_decay=0.01,
            weight_decay_on="all",  # mobilevit.yaml: no_decay_bn_filter_bias: false
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=0.0,  # global-norm clipping; 0 disables it
        )
    )
    config.label_smoothing = 0.1
    # cvnets' EMA (momentum 5e-4 = 1 - decay): every state-dict entry, the BatchNorm statistics included,
    # becomes ema * (1 - momentum) + momentum * model after each optimizer step, the first one included.
    config.model_ema = ConfigDict(dict(decay=0.9995, warmup=False, first_update_copies=False, buffers=True))
    return config
