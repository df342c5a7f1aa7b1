r"""MLP-Mixer-B/16 on ImageNet-1k from scratch at 224 px: token-mixing and channel-mixing MLPs, no attention.

    python -m mixtok.train \
        --config experiments/configs/imagenet/mixer_b16_224.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/mixer_b16_224

Expect: google-research/big_vision big_vision/configs/mlp_mixer_i1k.py (@ fa954352), the official
ImageNet-1k-from-scratch recipe for Mixer-B/16, reports 76.3% top-1 after 300 epochs (2h11m on a TPU
v3-128). mixtok has not reproduced it, and the differences below may leave a run under it. The paper's
headline Mixer numbers (and timm's `mixer_b16_224.goog_in21k_ft_in1k` weights, converted from
google-research/vision_transformer's) come from ImageNet-21k / JFT-300M pre-training and fine-tuning,
which this config does not do.

Official recipe (big_vision mlp_mixer_i1k.py): 300 epochs at batch 4096; `scale_by_adam` (Adam, optax
defaults b1 0.9, b2 0.999, eps 1e-8) at lr 1e-3, gradient clipping at global norm 1.0; linear warm-up over
10,000 steps, then linear decay to 1e-5 of the peak; weight decay `wd=1e-4` on kernels only
(big_vision/optax.py: `add_decayed_weights(wd)` on `.*/kernel$`, after the lr scaling and before the
schedule, so the decay per step is wd x schedule, not multiplied by the peak lr); stochastic depth 0.1
(`stoch_depth`); mixup with Beta(0.5, 0.5) on every batch (`mixup=dict(p=0.5)`); training crops
`inception_crop(224)` + `flip_lr` + `randaug(2, 15)`; eval resize_small(256) and central_crop(224);
pixels in [-1, 1]; sigmoid cross-entropy (`loss='sigmoid_xent'`) with the head bias initialised to -6.9.

What mixtok does with it:
- Adam with decoupled decay: adamw with weight_decay = 1e-4 / lr (0.1 at lr 1e-3), which makes optax's
  lr_t x weight_decay equal big_vision's wd x schedule; weight matrices and kernels only (mixtok's
  default `weight_decay_on="matrices"`, the same set as big_vision's `.*/kernel$` here).
- Schedule: mixtok's optimizers have no linear decay, so after the same 10,000-step warm-up (scaled with
  the batch) the rate follows a cosine to the same end, 1e-8 (1e-5 x 1e-3): a difference from the recipe.
- Mixup: timm's Mixup with mixup_alpha 0.5, no CutMix, every batch (big_vision mixes each batch with its
  own roll, timm with its reverse: the same distribution of pairs). No label smoothing (the recipe has none).
- Not reproduced: the sigmoid loss and the -6.9 head bias (mixtok's classification task is softmax
  cross-entropy; the head starts at zero, timm's default `nlhb=False`); big_vision's `randaug(2, 15)` is
  TensorFlow's EfficientNet RandAugment, here timm's `rand-m15-n2-mmax15` (2 ops, magnitude 15 on timm's
  0-10 scale, allowed past 10 as TF's is: a rotation of up to 45 degrees in both), whose op set and
  per-op probability (timm 0.5, TF uniform in 0.2-0.8 a layer) differ; the inception crop (area 0.08-1,
  aspect 3/4-4/3) is mixtok's random resized crop with bilinear resizing; the eval resize is bicubic,
  as timm's pretrained config for mixer_* evaluates (crop_pct 0.875 = 224 / 256); mean / std 0.5 map
  pixels to [-1, 1] as the recipe does.
- Unstated by the recipe: EMA (none is used) and dropout (none).

Compute: 93,835 steps of 4,096 images (300 epochs). Time: not measured by mixtok.

`:runlocal` smoke-tests this config on a laptop (synthetic data, 64 px: the token MLPs are built for the
run's image size, one block, 4 steps). Run the same command with the same --workdir to resume.
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")

SOURCE = "google-research/big_vision big_vision/configs/mlp_mixer_i1k.py"
OFFICIAL_BATCH = 4096
PEAK_LR = 1e-3  # at batch 4096
DECOUPLED_WD = 1e-4  # big_vision's wd: per step wd x schedule, independent of the peak lr
WARMUP_STEPS = 10_000  # at batch 4096
END_FRACTION = 1e-5  # big_vision's linear_end: the schedule's last value, a fraction of the peak
HALF = (0.5, 0.5, 0.5)  # value_range(-1, 1)


def mixer_config(arg, name: str, *, drop_path_rate: float) -> ConfigDict:
    """big_vision's Mixer-B/16 ImageNet-1k recipe (module docstring) for the MLP-Mixer variant `name`."""
    arg = common.parse_arg(arg, batch_size=OFFICIAL_BATCH, epochs=300)
    config = common.classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    config.data = common.imagenet_data(
        arg,
        image_size=224,
        crop_pct=0.875,  # resize_small(256) | central_crop(224)
        mean=HALF,
        std=HALF,
        train_interpolation="bilinear",
        auto_augment="rand-m15-n2-mmax15",  # randaug(2, 15)
        reprob=0.0,
        eval_interpolation="bicubic",
    )
    config.model = ConfigDict(dict(name=name, dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=drop_path_rate))  # the same rate in every block
    if arg.runlocal:
        config.model.kwargs.update(common.one_block_per_stage(name))
        config.model.kwargs.image_size = common.RUNLOCAL_IMAGE_SIZE  # the token MLPs follow the image size

    lr = PEAK_LR * config.batch_size / OFFICIAL_BATCH  # scaled linearly with the batch
    warmup = 1 if arg.runlocal else round(WARMUP_STEPS * OFFICIAL_BATCH / arg.batch_size)
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=lr,
            warmup_steps=warmup,
            min_lr=PEAK_LR * END_FRACTION * config.batch_size / OFFICIAL_BATCH,
            weight_decay=DECOUPLED_WD / lr,  # optax: lr_t x weight_decay = big_vision's wd x schedule
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=1.0,
        )
    )
    config.label_smoothing = 0.0
    config.mixup = ConfigDict(dict(mixup_alpha=0.5, cutmix_alpha=0.0, prob=1.0, switch_prob=0.0, mode="batch"))
    return config


def get_config(arg=None):
    return mixer_config(arg, "mixer_b16_224", drop_path_rate=0.1)  # big_vision: stoch_depth=0.1
