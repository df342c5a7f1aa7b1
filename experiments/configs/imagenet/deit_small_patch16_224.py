r"""deit_small_patch16_224 on ImageNet-1k at 224 px: DeiT-S's recipe, and the config the token-reduction eval reads.

Train (facebookresearch/deit README_deit.md: `main.py --model deit_small_patch16_224 --batch-size 256` on 4 GPUs):

    python -m mixtok.train \
        --config experiments/configs/imagenet/deit_small_patch16_224.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/deit_small_patch16_224

Evaluate pretrained timm weights under every token-reduction rule on the validation split (`data_root/val`,
one folder per class), with no training: convert the weights once, then run `mixtok.reduction.evaluate`:

    python -m mixtok.interop.timm deit_small_patch16_224.fb_in1k model.safetensors deit_small.msgpack
    python -m mixtok.reduction.evaluate \
        --config experiments/configs/imagenet/deit_small_patch16_224.py:data_root=/data/imagenet \
        --weights deit_small.msgpack --out /tmp/deit_small_reduction

It evaluates the unreduced model and each rule at its default strengths (ToMe r = 8, 13, 16, 24, 31; keep-rate
rules 0.9, 0.7, 0.5 at blocks 3, 6, 9: EViT's setting), or the `--schedules` given (`"tome:r=13"`), and writes
accuracy, agreement with the unreduced model, tokens per block and GFLOPs per image to
/tmp/deit_small_reduction.json with the curve in .png. The evaluation preprocessing is DeiT's: resize 256
(bicubic), centre crop 224, ImageNet mean and std.

Expect: DeiT-S 79.9% top-1 unreduced (facebookresearch/deit README_deit.md: 79.854 with its own evaluation,
which notes that its DeiT-S "is *not* the same model as in Timm"); ToMe r = 13 off the shelf on timm's DeiT-S
weights 79.36% is for a DeiT-S trained with ToMe (facebookresearch/ToMe README: deit_S_r13). mixtok has not
run either here (no ImageNet on the development machine).

The recipe is facebookresearch/deit main.py's defaults: AdamW (eps 1e-8, betas (0.9, 0.999)), lr 5e-4 x global
batch / 512 = 1e-3 at batch 1024, weight decay 0.05, 300 epochs, 5 warm-up epochs from 1e-6, cosine to 1e-5, no
gradient clipping, label smoothing 0.1, drop path 0.1, weight EMA 0.99996, repeated augmentation with 3 copies,
RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, mixup 0.8 / cutmix 1.0 (switch 0.5, per batch), bicubic
training crops and evaluation resize (see experiments/configs/imagenet/hydra_vit_b.py, which uses the same
recipe, for how each is mapped). DeiT's hard distillation (the distilled models' teacher) is not part of the
trainer.

Compute: 375,341 steps of 1,024 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block, 4 steps). Run the same
command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, epochs=300)  # DeiT-S README: --batch-size 256 on 4 GPUs
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: facebookresearch/deit main.py defaults: --aa, --reprob 0.25, --train-interpolation bicubic;
    # eval resize bicubic.
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=0.875,  # eval: resize 256, crop 224
        train_interpolation="bicubic",
        auto_augment="rand-m9-mstd0.5-inc1",
        reprob=0.25,
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
        repeated_aug=3,  # main.py --repeated-aug (on by default; its samplers.py RASampler, 3 copies)
    )

    config.model = ConfigDict(dict(name="deit_small_patch16_224", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.1))  # DeiT main.py --drop-path
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage("deit_small_patch16_224"))  # the same layers, fewer
        config.model.kwargs.image_size = common.RUNLOCAL_IMAGE_SIZE  # the position embedding's grid

    # timm's cosine as facebookresearch/deit main.py steps it (once per epoch): warm-up from 1e-6 over 5 epochs,
    # cosine to 1e-5; the script never runs timm's cool-down.
    schedule = common.timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=0)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=5e-4 * config.batch_size / 512,  # main.py's linear_scaled_lr
            **schedule,
            epoch_lag=1,  # main.py steps timm's scheduler after each epoch
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=0.0,  # main.py --clip-grad None
        )
    )
    config.label_smoothing = 0.1
    # timm's Mixup / CutMix (facebookresearch/deit main.py): one draw a batch, CutMix half the time; soft targets
    # smoothed by label_smoothing.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0, switch_prob=0.5, mode="batch"))
    # timm's ModelEma (main.py --model-ema, on by default): a copy of the initial model, every entry averaged with
    # decay 0.99996 from the first update.
    config.model_ema = ConfigDict(dict(decay=0.99996, warmup=False, first_update_copies=False, buffers=True))
    return config
