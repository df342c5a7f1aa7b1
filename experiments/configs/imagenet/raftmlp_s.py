r"""raftmlp_s on ImageNet-1k at 224 px: RaftMLP (raft token mixing, cross-scale MLP embedding), the official recipe.

    python -m mixtok.train \
        --config experiments/configs/imagenet/raftmlp_s.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/raftmlp_s

Expect: the official README (okojoalg/raft-mlp) states no accuracy; the paper (arXiv 2108.04384) is quoted at about
76.1% top-1 for RaftMLP-S (9.9M parameters, 2.1G FLOPs) on ImageNet-1k val at 224 px [unverified: not checked
against the paper]. mixtok has not reproduced it, and the differences below may leave a run under it.

Paper: RaftMLP: How Much Can Be Done Without Attention and with Less Spatial Locality? (Tatsunami and Taki, 2021).

Official recipe (okojoalg/raft-mlp @ 6060d5d9: configs/settings/imagenet-raft-mlp-cross-mlp-emb-s.yaml, libs/train.py,
libs/datasets.py `ImageNetGetter`, libs/augmentations.py, libs/losses.py): dims (64, 128, 256, 512), depths (2, 2,
6, 2), raft size 2, drop path 0.1 (the same on every residual branch), dropout 0; global batch 2048, AdamW (torch
defaults: betas (0.9, 0.999), eps 1e-8) lr 2e-3, weight decay 0.05 on EVERY parameter (`optim.AdamW(
model.parameters(), ...)`: norms and biases decay too, `weight_decay_on="all"`), no gradient clipping, fp32 (with_amp
False), 305 epochs: 5 of linear warm-up from 0 (ignite LinearCyclicalScheduler, half a cycle) then 300 of cosine to
end_lr 1e-5 (ignite CosineAnnealingScheduler), both stepped every iteration (ConcatScheduler): `timm_cosine` with
schedule_on="step", warmup_prefix=True (the cosine starts after the warm-up), warmup_lr_init 0, min_lr 1e-5, which
is the same rate at every update. The loader drops the last partial batch (drop_last=True: 625 updates an epoch at
2048), as `steps_per_epoch` assumes. Label smoothing 0.1 (libs/losses.py: alpha * mean(-log p) + (1 - alpha) * NLL,
the usual smoothed target). Eval: Resize(256) + CenterCrop(224) (crop 0.875). Other batch sizes scale the lr
linearly from 2e-3 at 2048 (the official code does not scale; the yaml fixes the batch).

Augmentations (libs/datasets.py ImageNetGetter, train): Resize(256) -> RandomCrop(224) -> RandomHorizontalFlip ->
ColorJitter(0.4, 0.4, 0.4) -> RandAugment() (the PyPI `randaugment` 1.0.2 package, requirements.txt) -> ToTensor
-> Cutout(p 0.25, area 2%-1/3, aspect 0.3-3.3, filled with 0 before Normalize) -> Normalize (ImageNet mean / std).
Per batch (libs/train.py `CutMixup`): Mixup (alpha 0.8, p 1.0) THEN CutMix (p 1.0, alpha 0.8: train.py passes
`cutmix_alpha=params.settings.mixup_alpha`, so the yaml's cutmix_alpha 1.0 is unused), the loss the lambda-weighted
sum of the smoothed losses of the (up to four) label pairs.

Differences (mixtok's pipeline has timm's transforms; tests/experiments/test_configs.py states the family's row):
- crop: a random-resized crop, area (224/256)^2 * 3/4 to (224/256)^2 of the image (a 4:3 and a square image's
  fraction under Resize(256) + RandomCrop(224)), aspect 1, stands in for Resize(256) + RandomCrop(224); bilinear
  as torchvision's Resize default;
- RandAugment: timm's rand-m9-mstd0.5-inc1 for the `randaugment` package's defaults; no colour jitter;
- Cutout: timm's random erasing with p 0.25 and the same area and aspect ranges, but per-pixel noise (the zoo's
  `remode`) where Cutout fills black;
- eval resize bicubic (the zoo's) where torchvision's Resize default is bilinear;
- Mixup and CutMix: timm's Mixup (one of the two per batch, switch 0.5, both alpha 0.8) where the official code
  applies mixup and then cutmix to every batch.

Compute: 190,798 steps of 2,048 images (305 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px, one block per stage, the model's token
MLPs sized for 64 px, 4 steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")

BATCH = 2048  # configs/settings/imagenet-raft-mlp-cross-mlp-emb-*.yaml batch_size
SQUARE_CROP = (224 / 256) ** 2  # the area RandomCrop(224) keeps of a square image after Resize(256)


def get_config(arg=None):
    return raft_mlp_config(arg, "raftmlp_s")


def raft_mlp_config(arg, name: str):
    """The official recipe (this module's docstring) for RaftMLP variant `name`: the three settings yamls differ
    only in the model's dims."""
    arg = common.parse_arg(arg, batch_size=BATCH, epochs=300)  # epochs: the cosine's; 5 warm-up epochs precede it
    config = common.classification_loop(arg)
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=224 / 256,  # Resize(256) + CenterCrop(224)
        crop_scale=(SQUARE_CROP * 3 / 4, SQUARE_CROP),
        crop_ratio=(1.0, 1.0),
        train_interpolation="bilinear",  # torchvision Resize's default
        auto_augment="rand-m9-mstd0.5-inc1",  # for the `randaugment` package's RandAugment()
        reprob=0.25,  # Cutout(cutout_p=0.25)
        remode="pixel",
        recount=1,
        eval_interpolation="bicubic",
    )

    config.model = ConfigDict(dict(name=name, dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.1))  # the yaml's drop_path_rate
    if arg.runlocal:  # the same layers, fewer, with the token MLPs sized for runlocal's images
        config.model.kwargs.update(common.one_block_per_stage(name), image_size=common.RUNLOCAL_IMAGE_SIZE)

    # ignite: linear warm-up from 0 over 5 epochs, then cosine from lr to end_lr over 300 epochs, per iteration.
    schedule = common.timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=0.0, min_lr=1e-5, cooldown_epochs=0)
    schedule.update(schedule_on="step", warmup_prefix=True)
    if not arg.runlocal:
        config.total_steps = common.steps(arg.epochs + 5, arg.batch_size)  # 305 epochs of the loader's updates
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=2e-3 * config.batch_size / BATCH,
            **schedule,
            weight_decay=0.05,
            weight_decay_on="all",  # optim.AdamW(model.parameters()): one group, everything decays
            b1=0.9,
            b2=0.999,
            eps=1e-8,
        )
    )
    config.label_smoothing = 0.1  # label_smoothing_alpha
    # libs/train.py CutMixup: mixup_alpha 0.8 for both (see the docstring); timm's Mixup picks one per batch.
    config.mixup = ConfigDict(dict(mixup_alpha=0.8, cutmix_alpha=0.8, prob=1.0, switch_prob=0.5, mode="batch"))
    return config
