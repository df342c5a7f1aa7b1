r"""vim2_tiny on ImageNet-1k at 224 px: ViM2 (MambaMixer: selective token and channel mixers), the paper's recipe.

    python -m mixtok.train \
        --config experiments/configs/imagenet/vim2_tiny.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/vim2_tiny

Expect: the paper (arXiv 2403.19888 v1, Table "Accuracy comparison across various models on ImageNet-1K") reports
82.7% top-1 at 224 px for ViM2-T (20M parameters), marked "preliminary results". NO OFFICIAL CODE EXISTS
(MambaMixer/M2 @ 250a86b9: README only): mixtok's ViM2 follows the paper's text and table only
(mixtok/models/mamba_mixer.py lists every open choice), so this is not a reproduction of the authors' model.

Paper: MambaMixer: Efficient Selective State Space Models with Dual Token and Channel Selection (Behrouz,
Santacatterina & Zabih, 2024).

The paper's recipe (section 5, "Image Classification on ImageNet", "Setup"): "Following VMamba, we use the pipeline
of Swin and train our models for 300 epochs (with the first 20 epochs to warm-up), with batch size of 1024 and
using AdamW optimizer with a momentum of 0.9, learning rate of 0.001, and a weight decay of 0.05". Those are
used as stated (AdamW betas (0.9, 0.999), lr 1e-3 at batch 1024, weight decay 0.05 on every parameter but the 1-D
ones, mixtok's default as Swin's set_weight_decay).

Left open by the paper, taken from "the pipeline of Swin" (Swin Transformer's training code, whose defaults the
ms_mlp_t config records from JegZheng/MS-MLP @ a10d34d9 config.py, main.py, lr_scheduler.py, data/build.py):
warm-up lr 5e-7 and min lr 5e-6 scaled by batch / 512 (1e-6, 1e-5), timm's CosineLRScheduler per update with the
warm-up inside the 300 epochs and no cool-down (`timm_cosine`, `schedule_on="step"`), gradient clipping at global
norm 5.0, label smoothing 0.1, Mixup 0.8 / CutMix 1.0 (prob 1.0, switch 0.5, per batch), RandAugment
rand-m9-mstd0.5-inc1, random erasing 0.25 (per pixel, one box), bicubic training crops, eval Resize(256) +
CenterCrop(224) bicubic, no weight EMA, AdamW eps 1e-8. Drop path 0.2: VMamba v0 tiny's (MzeroMiko/VMamba @
943d2042: classification/configs/vssm/vmambav0_tiny_224.yaml DROP_PATH_RATE), which the paper follows; it states
none itself.

Differences: the paper does not say its precision; `:bf16` computes in bfloat16 (parameters float32; the scans run
in float32). mixtok's data stream never drops a partial batch.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one token and one channel mixer per stage,
4 steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    return vim2_config(arg, "vim2_tiny", drop_path_rate=0.2)  # VMamba v0 tiny's DROP_PATH_RATE


def vim2_config(arg, name: str, *, drop_path_rate: float):
    """The paper's recipe (this module's docstring) for ViM2 variant `name`; the variants differ only in drop path."""
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # the paper: batch size 1024, 300 epochs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Swin's augmentations (the paper: "the pipeline of Swin"): RandAugment, random erasing 0.25 per pixel, bicubic
    # training crops; eval Resize(256) + CenterCrop(224), bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=224 / 256,
        train_interpolation="bicubic",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name=name, dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=drop_path_rate))
    if arg.runlocal:  # the same layers, fewer: one token and one channel mixer per stage
        config.model.kwargs.update(common.one_block_per_stage(name))
        config.model.kwargs.update(common.one_block_per_stage(name, "channel_depths"))

    # The paper: 20 warm-up epochs in 300; Swin's per-update cosine, warm-up and min lr scaled by batch / 512.
    scale = config.batch_size / 512
    schedule = common.timm_cosine(
        config, arg, warmup_epochs=20, warmup_lr_init=5e-7 * scale, min_lr=5e-6 * scale, cooldown_epochs=0
    )
    schedule["schedule_on"] = "step"
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-3,  # the paper's learning rate at batch 1024 (Swin's 5e-4 x 1024 / 512)
            **schedule,
            weight_decay=0.05,
            b1=0.9,  # the paper's "momentum of 0.9"
            b2=0.999,
            eps=1e-8,
            grad_clip=5.0,  # Swin's TRAIN.CLIP_GRAD
        )
    )
    config.label_smoothing = 0.1
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
