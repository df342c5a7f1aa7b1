r"""DSM-S18 stand-in on ImageNet-1k at 224 px: a MetaFormer whose mixer filters the DCT spectrum per sample.

    python -m mixtok.train \
        --config experiments/configs/imagenet/dsm_s18.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/dsm_s18

What this is: "Dynamic Spectrum Mixer for Visual Recognition" (Hu & Yu, 2023) reports 83.8% top-1
on ImageNet-1k for its best model; its architecture table, variants and training recipe could not be
retrieved and no official code is known, so `dsm_s18` is a stand-in: DFFormer-S18's layout with the
Dynamic Spectrum Mixer (mixtok.mixers.dsm and mixtok.models.dsm write down every choice). Do not
compare its top-1 with the paper's as a reproduction.

Recipe: DFFormer's (okojoalg/dfformer README): AdamW, lr 1e-3 at global batch 1024, 20 warm-up
epochs, cosine over 300 epochs, weight decay 0.05, label smoothing 0.1, drop path 0.2; eval crop_pct
1.0. Not implemented beyond common.py's list: DFFormer's RandAugment, Mixup 0.8 / CutMix 1.0 and
random erasing 0.25 (its README; drop path 0.2 is stated for S18 only).

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4
steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # DFFormer README: 128 x 8 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    config.data = common.imagenet_data(arg, image_size=224, crop_pct=1.0)  # DFFormer's timm _cfg

    config.model = ConfigDict(dict(name="dsm_s18", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.2))  # DFFormer-S18's
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("dsm_s18"))  # the same layers, fewer

    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-3 * config.batch_size / 1024,  # DFFormer's at batch 1024, scaled linearly
            warmup_steps=common.warmup_steps(arg, epochs=20),  # linear warm-up, then cosine
            min_lr=1e-5,  # cosine decay to min_lr
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=0.0,  # global-norm clipping; 0 disables it
        )
    )
    config.label_smoothing = 0.1
    return config
