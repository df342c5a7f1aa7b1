r"""ms_mlp_t on ImageNet-1k at 224 px: MS-MLP (mix-shift token mixing), the official tiny recipe.

    python -m mixtok.train \
        --config experiments/configs/imagenet/ms_mlp_t.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/ms_mlp_t

Expect: the official README (JegZheng/MS-MLP) reports 82.1% top-1 on ImageNet-1k val at 224 px (MS-MLP-Tiny),
trained on ImageNet-1k only. mixtok has not reproduced it: its augmentations are the official script's (below), but
the differences named below and in common.py's docstring may still leave a run under that top-1.

Paper: Mixing and Shifting: Exploiting Global and Local Dependencies in Vision MLPs (Zheng et al., 2022).

Official recipe (JegZheng/MS-MLP @ a10d34d9: configs/msmlp_tiny_patch4_shift5_224.yaml on config.py's defaults,
main.py, lr_scheduler.py, optimizer.py, data/build.py; Swin Transformer's training code): embed dim 96, depths (3,
3, 9, 3), drop path 0.1 (the yaml's DROP_PATH_RATE), AdamW (eps 1e-8, betas (0.9, 0.999)), weight decay 0.05 on
every parameter but the 1-D ones (norms, biases, layer scales: optimizer.py set_weight_decay, which is mixtok's
default), base lr 5e-4, warm-up lr 5e-7 and min lr 5e-6, each scaled by global batch / 512 (main.py
`linear_scaled_lr`): 1e-3, 1e-6 and 1e-5 at global batch 1024 (README command: --batch-size 128 on 8 GPUs,
--accumulation-steps 0); 300 epochs with 20 of linear warm-up, gradient clipping at global norm 5.0
(TRAIN.CLIP_GRAD), label smoothing 0.1, eval crop 224 / 256 = 0.875 (TEST.CROP: Resize(256) then CenterCrop(224),
bicubic). No weight EMA (main.py --model_ema defaults to False).

Schedule (lr_scheduler.py): timm's CosineLRScheduler over the updates (`t_in_epochs=False`, stepped with
`step_update` after every update), t_initial = 300 epochs of updates with the warm-up inside it (no warm-up prefix),
warm-up from the scaled WARMUP_LR, cosine to the scaled MIN_LR, no cool-down: `timm_cosine` with
`schedule_on="step"`. Mixup / CutMix (config.py AUG): mixup 0.8, cutmix 1.0, prob 1.0, switch 0.5, per batch, soft
targets smoothed by 0.1.

Augmentations (config.py AUG with data/build.py: timm's create_transform): RandAugment rand-m9-mstd0.5-inc1, random
erasing p 0.25 (per-pixel noise, one box), training crops with bicubic interpolation (DATA.INTERPOLATION), bicubic
evaluation resize; its colour jitter 0.4 is skipped by timm's create_transform while RandAugment is on.

Differences: main.py trains in apex AMP O1 (--amp-opt-level default); `:bf16` is the nearest (mixtok computes in
bfloat16, parameters float32). The official loader drops each epoch's last partial batch (1,251 updates an epoch);
mixtok's stream never drops one.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4 steps). Run the same
command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    return ms_mlp_config(arg, "ms_mlp_t", drop_path_rate=0.1)  # configs/msmlp_tiny_patch4_shift5_224.yaml


def ms_mlp_config(arg, name: str, *, drop_path_rate: float):
    """The official recipe (this module's docstring) for MS-MLP variant `name`; the variants differ only in
    their yaml's DROP_PATH_RATE (the base run's gradient accumulation gives the same update: ms_mlp_b.py)."""
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # 128 x 8 GPUs (base: 64 x 8 x accumulation 2)
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: JegZheng/MS-MLP config.py AUG (Swin's) through data/build.py build_transform: RandAugment,
    # random erasing 0.25 per pixel, bicubic training crops; eval Resize(256) + CenterCrop(224), bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=224 / 256,  # TEST.CROP: Resize(int(256 / 224 * 224)), CenterCrop(224)
        train_interpolation="bicubic",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name=name, dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=drop_path_rate))  # the variant's yaml DROP_PATH_RATE
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage(name))  # the same layers, fewer

    # lr_scheduler.py: timm's CosineLRScheduler per update (t_in_epochs=False), 20 warm-up epochs inside the
    # 300-epoch cosine, no cool-down. main.py scales the three rates by global batch / 512.
    scale = config.batch_size / 512
    schedule = common.timm_cosine(
        config, arg, warmup_epochs=20, warmup_lr_init=5e-7 * scale, min_lr=5e-6 * scale, cooldown_epochs=0
    )
    schedule["schedule_on"] = "step"
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=5e-4 * scale,  # TRAIN.BASE_LR at batch 512, scaled linearly (main.py linear_scaled_lr)
            **schedule,
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=5.0,  # TRAIN.CLIP_GRAD, global norm
        )
    )
    config.label_smoothing = 0.1
    # timm's Mixup / CutMix (config.py AUG.MIXUP 0.8, CUTMIX 1.0, MIXUP_PROB 1.0, MIXUP_SWITCH_PROB 0.5, MIXUP_MODE
    # batch); soft targets smoothed by label_smoothing (MODEL.LABEL_SMOOTHING 0.1).
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
