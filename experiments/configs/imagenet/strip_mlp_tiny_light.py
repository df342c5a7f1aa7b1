r"""strip_mlp_tiny_light on ImageNet-1k at 224 px: Strip-MLP (strip token mixing), the official recipe.

    python -m mixtok.train \
        --config experiments/configs/imagenet/strip_mlp_tiny_light.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/strip_mlp_tiny_light

Expect: the official README (Med-Process/Strip_MLP) reports 81.2% top-1 on ImageNet-1k val at 224 px (Strip-MLP-T*),
trained on ImageNet-1k only. mixtok has not reproduced it: its augmentations are the official script's (below), but
the differences named below and in common.py's docstring may still leave a run under that top-1.

Paper: Strip-MLP: Efficient Token Interaction for Vision MLP (Cao et al., ICCV 2023).

Official recipe (Med-Process/Strip_MLP @ 492d7050: configs/smlp_tiny_light_alpha3_patch4_224_imagenet1k.yaml
on config.py's defaults, main.py, lr_scheduler.py, optimizer.py, data/build.py, utils.py; Swin Transformer's
training code): embed dim
80, layers (2, 2, 6, 2), alpha 3, drop path 0.1 on every block (hard-coded in models/strip_mlp.py BasicBlock; the
yaml's DROP_RATE 0.2 reaches no layer that runs), AdamW (eps 1e-8, betas (0.9, 0.999)), weight decay 0.05 on every
parameter but the 1-D ones (norms, biases: optimizer.py set_weight_decay, mixtok's default; the GRN's [1, 1, 1, C]
gamma and beta are 4-D, so they decay, as there), base lr 5e-4, warm-up lr 5e-7, min lr 5e-6 at the README's
global batch 128 (one GPU, --batch-size 128). main.py computes batch-scaled rates (`linear_scaled_lr`, divided by
TRAIN.EPOCHS, not 512) but never writes them into the config it then freezes, so the optimizer and scheduler run
the unscaled ones; this config keeps them at batch 128 and scales them linearly with `batch_size=`. 300 epochs
with 20 of linear warm-up, gradient clipping at global norm 5.0 (TRAIN.CLIP_GRAD), label smoothing 0.1, eval crop
224 / 256 = 0.875 (TEST.CROP: Resize(256) then CenterCrop(224), bicubic). No weight EMA.

Schedule (lr_scheduler.py): timm's CosineLRScheduler over the updates (`t_in_epochs=False`, stepped with
`step_update` after every update), t_initial = 300 epochs of updates with the warm-up inside it, warm-up from
WARMUP_LR, cosine to MIN_LR, no cool-down: `timm_cosine` with `schedule_on="step"`. Mixup / CutMix (config.py
AUG): mixup 0.8, cutmix 1.0, prob 1.0, switch 0.5, per batch, soft targets smoothed by 0.1.

Augmentations (config.py AUG with data/build.py: timm's create_transform): RandAugment rand-m9-mstd0.5-inc1, random
erasing p 0.25 (per-pixel noise, one box), training crops with bicubic interpolation (DATA.INTERPOLATION), bicubic
evaluation resize; its colour jitter 0.4 is skipped by timm's create_transform while RandAugment is on.

Differences: main.py trains in float32 (--amp-opt-level defaults to O0); `:bf16` computes in bfloat16. The official
loader drops each epoch's last partial batch (10,009 updates an epoch at 128); mixtok's stream never drops one.
BatchNorm statistics are the global batch's under data parallelism (the official DistributedDataParallel keeps
per-GPU BatchNorm; at the README's one GPU they are the same).

Compute: 3,002,735 steps of 128 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, 4 steps). Run the same
command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    return strip_mlp_config(arg, "strip_mlp_tiny_light")  # configs/smlp_tiny_light_alpha3_patch4_224_imagenet1k.yaml


def strip_mlp_config(arg, name: str):
    """The official recipe (this module's docstring) for Strip-MLP variant `name`: the four yaml files differ only
    in EMBED_DIM and LAYERS, which the zoo's variant carries."""
    arg = common.parse_arg(arg, batch_size=128, epochs=300)  # README: one GPU, --batch-size 128
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: Med-Process/Strip_MLP config.py AUG (Swin's) through data/build.py build_transform:
    # RandAugment, random erasing 0.25 per pixel, bicubic training crops; eval Resize(256) + CenterCrop(224), bicubic.
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
    # drop path: BasicBlock's hard-coded DropPath(0.1), the model's default (one rate for every block).
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.1))
    if arg.runlocal:  # the same layers, fewer, for runlocal's 64-px images (the strip weights fit one grid)
        config.model.kwargs.update(common.one_block_per_stage(name), image_size=config.data.image_size)

    # lr_scheduler.py: timm's CosineLRScheduler per update (t_in_epochs=False), 20 warm-up epochs inside the
    # 300-epoch cosine, no cool-down. The rates are the yaml's (config.py's) unscaled ones at batch 128 (main.py's
    # linear_scaled_lr is never stored), scaled linearly here when batch_size= changes the batch.
    scale = config.batch_size / 128
    schedule = common.timm_cosine(
        config, arg, warmup_epochs=20, warmup_lr_init=5e-7 * scale, min_lr=5e-6 * scale, cooldown_epochs=0
    )
    schedule["schedule_on"] = "step"
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=5e-4 * scale,  # TRAIN.BASE_LR as the optimizer receives it
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
