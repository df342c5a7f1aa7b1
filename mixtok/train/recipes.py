r"""Training recipes shared by many configs: the MetaFormer ImageNet-1k recipe.

    config = metaformer_imagenet("convformer_s18", arg, lr=4e-3, batch_size=4096, warmup_epochs=20,
                                 drop_path_rate=0.2)

builds a full training config for one of the 28 MetaFormer variants (experiments/configs/imagenet/
holds one file per variant, each passing the numbers of its official training script). The recipe
follows the official scripts of sail-sg/poolformer (train.py, README "Train") and sail-sg/metaformer
(train.py, scripts/<family>/train_<variant>.sh), both built on timm's training script:

- ImageNet-1k, 224 px; 300 epochs over the 1,281,167 training images;
- AdamW (b1 0.9, b2 0.999, eps 1e-8), no gradient clipping; CAFormer's scripts use LAMB instead
  (eps 1e-6, lr 8e-3, and timm's Lamb clips the global gradient norm to 1.0 itself); weight decay
  0.05 on weights with two or more dimensions only;
- linear warm-up (5 epochs; 20 for ConvFormer / CAFormer) then cosine decay to 1e-5;
- the official learning rate at the official global batch (PoolFormer 1e-3 at 1024, the MetaFormer
  baselines 4e-3 at 4096), scaled linearly with `batch_size` (PoolFormer's README states the rule
  lr = batch / 1024 * 1e-3);
- label smoothing 0.1; stochastic depth (and, for ConvFormer / CAFormer, head dropout) per variant;
- train: random resized crop (area 0.08-1, aspect 3/4-4/3), horizontal flip (p 0.5), ImageNet
  mean / std; eval: resize to 224 / crop_pct then centre crop 224, crop_pct from timm's pretrained
  config (PoolFormer S 0.9, PoolFormer M 0.95, every MetaFormer baseline 1.0).

Steps come from epochs: total_steps = epochs * 1,281,167 // batch_size (93,835 at 4096). The official
loader drops each epoch's last partial batch (312 steps per epoch at 4096, 93,600 in all); mixtok's
stream never drops a batch, so the same number of images is seen in slightly more steps.

Not implemented yet by mixtok, all of which the official recipe uses and which matter for reaching
the papers' accuracy (expect a run of these configs to land below the reported top-1 until they are):

- RandAugment (timm `rand-m9-mstd0.5-inc1`);
- Mixup (alpha 0.8) and CutMix (alpha 1.0), switched per batch with p 0.5, with soft-target loss;
- random erasing (p 0.25, per-pixel noise);
- the 10 cool-down epochs at min_lr that timm's scheduler appends (310 epochs in all), the warm-up
  starting at 1e-6 rather than 0, and timm's once-per-epoch (not per-step) learning-rate updates;
- bicubic resizing at evaluation and a random (bilinear / bicubic) interpolation per training crop
  (mixtok resizes bilinearly);
- timm's Lamb leaves the trust ratio out for the weights without weight decay (norms, biases, scales);
  optax's LAMB, which `optimizer.name="lamb"` gives, applies it to every weight (CAFormer only);
- head dropout (ConvFormer / CAFormer): mixtok's head follows timm, which drops out before the MLP
  head and again inside it; the official model drops out inside the MLP head only;
- the official PoolFormer runs used apex mixed precision (fp16); `bf16` is mixtok's nearest option.

Options after the config's colon (`caformer_s18.py:data_root=/data/imagenet,bf16`):

    data_root=PATH        the ImageNet root: for imagefolder, PATH/train/<class>/*.JPEG and PATH/val/...;
                          for array_record, a folder of {train,val}*.array_record files or a glob.
                          Required: without it, training stops at start-up with a message saying so.
    source=imagefolder    or array_record (see `python -m mixtok.data.imagefolder_to_array_record`)
    batch_size=N          global batch; the learning rate scales linearly from the official one
    epochs=N              default 300 (warm-up stays at the official number of epochs)
    bf16                  compute in bfloat16 (parameters and optimizer state stay float32)
    runlocal              a laptop smoke test: synthetic data (10 classes) at 64 px, batch 16, 4 steps,
                          the named variant with one block per stage (its dims, mixers and norms);
                          about half a minute on a 2-core CPU, mostly compilation
"""

from ml_collections import ConfigDict

from mixtok.data.options import IMAGENET_MEAN, IMAGENET_STD
from mixtok.models import model_spec
from mixtok.registry import unknown_name_error
from mixtok.train.config import parse_config_arg

IMAGENET_TRAIN_IMAGES = 1_281_167
IMAGENET_CLASSES = 1000
IMAGENET_SOURCES = ("imagefolder", "array_record")
# What data.root holds until the user names the data: training stops at once on it with this
# message (the data pipeline reports the root as a missing folder), while importing and inspecting
# the config still works.
MISSING_DATA_ROOT = ("UNSET: add :data_root=/path/to/imagenet to --config "
                     "(or pass --config.data.root=/path/to/imagenet)")

RUNLOCAL = dict(image_size=64, batch_size=16, total_steps=4, num_classes=10, num_examples=64,
                num_eval_examples=32)


def _steps(epochs: float, batch_size: int) -> int:
    return int(epochs * IMAGENET_TRAIN_IMAGES // batch_size)


def metaformer_imagenet(model_name: str, arg: str | None = None, *, lr: float, batch_size: int,
                        warmup_epochs: int, drop_path_rate: float, head_dropout: float = 0.0,
                        eval_crop_pct: float = 1.0, optimizer: str = "adamw", grad_clip: float = 0.0,
                        epochs: int = 300, weight_decay: float = 0.05, min_lr: float = 1e-5,
                        label_smoothing: float = 0.1) -> ConfigDict:
    """The ImageNet-1k training config of `model_name` under the official MetaFormer recipe.

    Args:
      model_name: a variant from `mixtok.models.list_models()`, e.g. "poolformerv2_s12".
      arg: the options after the config file's colon (see the module docstring).
      lr, batch_size: the official peak learning rate and the global batch it was used with; a
        different `batch_size=` option scales the learning rate linearly.
      warmup_epochs: linear warm-up length in epochs.
      drop_path_rate: the stochastic-depth rate of the last block (rates rise linearly from 0).
      head_dropout: dropout in the classifier head (ConvFormer / CAFormer's MLP head only).
      eval_crop_pct: centre-crop fraction at evaluation (timm's pretrained config of the variant).
      optimizer: "adamw", or "lamb" for CAFormer, as the official scripts' `--opt`.
      grad_clip: global gradient-norm clipping; 0 disables it (timm's default, `--clip-grad None`).
      epochs, weight_decay, min_lr, label_smoothing: the shared recipe's defaults.
    """
    return imagenet_recipe(
        model_name, arg, lr=lr, batch_size=batch_size, warmup_epochs=warmup_epochs,
        model_kwargs=dict(drop_path_rate=drop_path_rate, head_dropout=head_dropout),
        # One block per stage about halves the compile time on a CPU (measured: CAFormer-S18 43 s
        # instead of 79 s); dims, mixers and norms stay the named variant's, so the same layers run.
        runlocal_model_kwargs=dict(depths=(1, 1, 1, 1)),
        eval_crop_pct=eval_crop_pct, optimizer=optimizer, grad_clip=grad_clip, epochs=epochs,
        weight_decay=weight_decay, min_lr=min_lr, label_smoothing=label_smoothing)


def imagenet_recipe(model_name: str, arg: str | None = None, *, lr: float, batch_size: int,
                    warmup_epochs: float, model_kwargs: dict, runlocal_model_kwargs: dict,
                    image_size: int = 224, eval_crop_pct: float = 1.0, optimizer: str = "adamw",
                    grad_clip: float = 0.0, epochs: int = 300, weight_decay: float = 0.05, min_lr: float = 1e-5,
                    label_smoothing: float = 0.1, b2: float = 0.999) -> ConfigDict:
    """An ImageNet-1k classification config: the shared skeleton of every family's official recipe.

    Args beyond `metaformer_imagenet`'s:
      model_kwargs: the variant's training arguments (drop path, dropout ...), passed to create_model.
      runlocal_model_kwargs: what `:runlocal` overrides on top of them to make a laptop smoke test
        (fewer blocks, the small image size), keeping the variant's layers.
      image_size: the training and evaluation resolution (224; AFFNet's recipe trains at 256).
      warmup_epochs: may be fractional (a recipe that states its warm-up in iterations).
      b2: AdamW's second-moment decay.
    """
    model_spec(model_name)  # an unknown name fails here, listing the close matches
    official_lr, official_batch = lr, batch_size
    args = parse_config_arg(arg, data_root="", source="imagefolder", batch_size=official_batch,
                            epochs=epochs, bf16=False, runlocal=False)
    if args.source not in IMAGENET_SOURCES:
        raise unknown_name_error("ImageNet data source (source=)", args.source, IMAGENET_SOURCES)
    if args.batch_size <= 0 or args.epochs <= 0:
        raise ValueError(f"batch_size and epochs must be positive; got batch_size={args.batch_size}, "
                         f"epochs={args.epochs}.")
    if args.epochs <= warmup_epochs and not args.runlocal:
        raise ValueError(f"epochs={args.epochs} leaves no training after the recipe's {warmup_epochs} warm-up "
                         f"epochs; use epochs > {warmup_epochs}.")

    config = ConfigDict()
    config.seed = 0
    config.task = "classification"
    batch = RUNLOCAL["batch_size"] if args.runlocal else args.batch_size
    config.batch_size = batch
    if args.runlocal:
        config.total_steps = RUNLOCAL["total_steps"]
        warmup_steps = 1
        config.log_every = 1
        config.eval_every = config.checkpoint_every = config.total_steps
    else:
        config.total_steps = _steps(args.epochs, batch)
        warmup_steps = _steps(warmup_epochs, batch)
        config.log_every = 100
        # Once per epoch, as the official script validates and saves.
        config.eval_every = config.checkpoint_every = max(1, _steps(1, batch))
    config.keep_checkpoints = 3
    config.progress_bar = True  # --config.progress_bar=False for batch jobs' logs
    # Data parallel by default; `--config.mesh.fsdp=8` shards every weight's `embed` axis 8 ways (FSDP).
    config.mesh = ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    config.sharding_rules = [["batch", ["data", "fsdp"]], ["embed", "fsdp"]]

    transforms = dict(crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), hflip=True, crop_pct=eval_crop_pct,
                      mean=IMAGENET_MEAN, std=IMAGENET_STD)
    if args.runlocal:
        config.data = ConfigDict(dict(
            name="synthetic", image_size=RUNLOCAL["image_size"], num_classes=RUNLOCAL["num_classes"],
            num_examples=RUNLOCAL["num_examples"], num_eval_examples=RUNLOCAL["num_eval_examples"],
            **transforms))
    else:
        # num_classes is checked against the class folders (a wrong root fails early) and spares
        # array_record a scan of every label.
        config.data = ConfigDict(dict(
            name=args.source, root=args.data_root or MISSING_DATA_ROOT, train_split="train", eval_split="val",
            image_size=image_size, num_classes=IMAGENET_CLASSES, read_threads=16, **transforms))

    config.model = ConfigDict()
    config.model.name = model_name
    config.model.dtype = "bfloat16" if args.bf16 else "float32"
    config.model.kwargs = ConfigDict(dict(model_kwargs))
    if args.runlocal:
        config.model.kwargs.update(runlocal_model_kwargs)

    config.optimizer = ConfigDict(dict(
        name=optimizer, lr=official_lr * batch / official_batch, min_lr=min_lr, warmup_steps=warmup_steps,
        weight_decay=weight_decay, b1=0.9, b2=b2, eps=1e-6 if optimizer == "lamb" else 1e-8,  # timm's
        grad_clip=grad_clip))
    config.label_smoothing = label_smoothing
    return config


def gfnet_imagenet(model_name: str, arg: str | None = None) -> ConfigDict:
    """GFNet's official ImageNet-1k recipe (raoyongming/GFNet: main_gfnet.py defaults and README command).

    The README trains every variant with `--batch-size 128` on 8 GPUs (global 1024); main_gfnet.py
    scales `--lr 5e-4` by global batch / 512, so the peak is 1e-3 at 1024. AdamW (eps 1e-8), weight
    decay 0.05, cosine to 1e-5 after 5 warm-up epochs, 300 epochs, label smoothing 0.1, gradient
    clipping at 1.0 (`--clip-grad` defaults to 1 there), no EMA; the stochastic depth of each
    architecture as main_gfnet.py builds it (`gfnet_variants.TRAIN_DROP_PATH_RATES`: the script ignores
    its --drop-path flag). Evaluation resizes to 256 (bicubic) and centre-crops 224: crop_pct 0.875.
    Beyond the MetaFormer recipe's missing pieces, also not implemented: the DeiT-style RandAugment,
    Mixup 0.8 / CutMix 1.0 the script uses (random erasing is off there, `--reprob 0`).
    """
    from mixtok.models.gfnet_variants import TRAIN_DROP_PATH_RATES  # noqa: PLC0415 (keeps import light)

    isotropic = model_spec(model_name).kwargs.get("depth") is not None
    runlocal = dict(depth=1, img_size=RUNLOCAL["image_size"]) if isotropic else dict(
        depths=(1, 1, 1, 1), img_size=RUNLOCAL["image_size"])
    return imagenet_recipe(model_name, arg, lr=1e-3, batch_size=1024, warmup_epochs=5,
                           model_kwargs=dict(drop_path_rate=TRAIN_DROP_PATH_RATES[model_name]),
                           runlocal_model_kwargs=runlocal, eval_crop_pct=0.875, grad_clip=1.0)


AFFNET_IMAGE_SIZE = 256


def affnet_imagenet(model_name: str, arg: str | None = None) -> ConfigDict:
    """AFFNet on ImageNet-1k at 256 px, under the MobileViT recipe of the framework it is built on.

    AFFNet's own training configs are not in microsoft/TokenMixers (its README links them off-repo),
    so this is the recipe of apple/ml-cvnets' config/classification/imagenet/mobilevit.yaml, the
    framework AFFNet's code is written in, and the 256-px train / eval resolution AFFNet's README
    reports: global batch 1024 (128 x 8 GPUs), AdamW (0.9, 0.999), weight decay 0.01, cosine from
    2e-3 to 2e-4 over 300 epochs after a 20,000-iteration warm-up (~16 epochs at 1024), label
    smoothing 0.1, classifier dropout 0.1; evaluation resizes to 288 and centre-crops 256
    (crop_pct 256 / 288). Not implemented here, all of which that recipe uses: the multi-scale
    variable-batch sampler (160-320 px), EMA of the weights (momentum 5e-4), the warm-up starting at
    2e-4 instead of 0, and weight decay on the BatchNorm and bias weights (`no_decay_bn_filter_bias:
    false`; mixtok decays only weights with two or more dimensions).
    """
    warmup_epochs = 20_000 * 1024 / IMAGENET_TRAIN_IMAGES
    return imagenet_recipe(model_name, arg, lr=2e-3, batch_size=1024, warmup_epochs=warmup_epochs,
                           model_kwargs=dict(classifier_dropout=0.1),
                           runlocal_model_kwargs=dict(aff_depths=(1, 1, 1)), image_size=AFFNET_IMAGE_SIZE,
                           eval_crop_pct=256 / 288, weight_decay=0.01, min_lr=2e-4)


def dsm_imagenet(model_name: str, arg: str | None = None, *, drop_path_rate: float) -> ConfigDict:
    """A DSM stand-in variant on ImageNet-1k under DFFormer's recipe (the DSM paper's is not available).

    DFFormer's README (okojoalg/dfformer): AdamW, lr 1e-3 at global batch 1024 (128 x 8 GPUs), weight
    decay 0.05, cosine over 300 epochs after 20 warm-up epochs, label smoothing 0.1, evaluation
    crop_pct 1.0 (its timm `_cfg`); drop path 0.2 is stated for S18 only. Also used there and not
    implemented here: RandAugment, Mixup 0.8 / CutMix 1.0, random erasing 0.25 (see the module
    docstring). See mixtok.models.dsm for what is a stand-in.
    """
    return imagenet_recipe(model_name, arg, lr=1e-3, batch_size=1024, warmup_epochs=20,
                           model_kwargs=dict(drop_path_rate=drop_path_rate),
                           runlocal_model_kwargs=dict(depths=(1, 1, 1, 1)), eval_crop_pct=1.0)


def _one_block_per_stage(model_name: str, field: str = "depths") -> dict:
    return {field: tuple(1 for _ in model_spec(model_name).kwargs[field])}


DAVIT_DROP_PATH = 0.1


def davit_imagenet(model_name: str, arg: str | None = None) -> ConfigDict:
    """DaViT's ImageNet-1k recipe (dingmyu/davit: README training command and train.py defaults).

    AdamW (eps 1e-8), lr 1e-3 at global batch 1024 (128 x 8 GPUs; not scaled by the code), weight
    decay 0.05, gradient clipping 1.0, cosine to 1e-5 after 5 warm-up epochs, 300 epochs, label
    smoothing 0.1, drop path 0.1 (train.py's default; the repository states no per-variant rate, so
    Small and Base use it too), eval crop 0.9 (the official config; timm's weights use 0.95). Not
    implemented: RandAugment, colour jitter, Mixup / CutMix, random erasing 0.25, the 10 cool-down epochs.
    """
    return imagenet_recipe(model_name, arg, lr=1e-3, batch_size=1024, warmup_epochs=5,
                           model_kwargs=dict(drop_path_rate=DAVIT_DROP_PATH),
                           runlocal_model_kwargs=_one_block_per_stage(model_name), eval_crop_pct=0.9, grad_clip=1.0)


def cas_vit_imagenet(model_name: str, arg: str | None = None) -> ConfigDict:
    """CAS-ViT's ImageNet-1k recipe (Tianfang-Zhang/CAS-ViT: classification/main.py defaults, README).

    AdamW, lr 6e-3 at global batch 2048 (128 x 8 GPUs x update_freq 2), weight decay 0.05, cosine to
    1e-6 after 20 warm-up epochs, 300 epochs, label smoothing 0.1, drop path 0.1 (the default and the
    README's command; no per-variant rate is given), eval crop 0.875. Not implemented: RandAugment,
    weight EMA (0.9995), the multi-scale sampler. Trains without the distillation head, as main.py does.
    """
    return imagenet_recipe(model_name, arg, lr=6e-3, batch_size=2048, warmup_epochs=20,
                           model_kwargs=dict(drop_path_rate=0.1),
                           runlocal_model_kwargs=_one_block_per_stage(model_name), eval_crop_pct=0.875, min_lr=1e-6)


FFNET_IMAGE_SIZE = 256
FFNET_TRAIN = {"ffnet_1": (0.1, 0.9), "ffnet_2": (0.15, 0.9), "ffnet_3": (0.35, 0.95), "ffnet_4": (0.4, 0.95)}


def ffnet_imagenet(model_name: str, arg: str | None = None) -> ConfigDict:
    """FFNet's ImageNet-1k recipe at 256 px (ysj9909/FFNet: train.py defaults, README, default_cfgs).

    AdamW, lr 1e-3 at global batch 1024 (128 x 8 GPUs), weight decay 0.05, cosine to 1e-5 after 5
    warm-up epochs, 300 epochs, label smoothing 0.1; drop path 0.1 / 0.15 / 0.35 (README) and 0.4
    (FFNet-4: the code's default; the README gives only its 384-px fine-tune); eval crop 0.9 (1, 2) or
    0.95 (3, 4). Not implemented: RandAugment, colour jitter, Mixup (0.2 for FFNet-1/2 in the README,
    0.8 default) / CutMix 1.0, random erasing 0.25, weight EMA (0.9995), the 20 cool-down epochs.
    """
    drop_path, crop = FFNET_TRAIN[model_name]
    return imagenet_recipe(model_name, arg, lr=1e-3, batch_size=1024, warmup_epochs=5,
                           model_kwargs=dict(drop_path_rate=drop_path),
                           runlocal_model_kwargs=_one_block_per_stage(model_name), image_size=FFNET_IMAGE_SIZE,
                           eval_crop_pct=crop)


IFORMER_TRAIN = {"iformer_s": (0.2, 0.0, 1e-6), "iformer_b": (0.4, 1.0, 1e-5), "iformer_l": (0.5, 1.0, 1e-5)}


def iformer_imagenet(model_name: str, arg: str | None = None) -> ConfigDict:
    """iFormer's ImageNet-1k recipe (sail-sg/iFormer: README command, checkpoint/iformer_*/args.yaml).

    AdamW, lr 1e-3 at global batch 1024 (README: -b 128 on 8 GPUs; the released args.yaml records
    64 per GPU), weight decay 0.05, cosine after 5 warm-up epochs to min lr 1e-6 (S) or 1e-5 (B, L),
    300 epochs, label smoothing 0.1, drop path 0.2 / 0.4 / 0.5, gradient clipping none (S) or 1.0
    (B, L), eval crop 0.9. Not implemented: RandAugment, Mixup / CutMix, random erasing 0.25, cool-down.
    """
    drop_path, clip, min_lr = IFORMER_TRAIN[model_name]
    spec = model_spec(model_name).kwargs
    starts = [sum(spec["depths"][:i]) for i in range(len(spec["depths"]))]
    runlocal = dict(depths=(1, 1, 1, 1), attention_heads=tuple(spec["attention_heads"][s] for s in starts),
                    img_size=RUNLOCAL["image_size"])
    return imagenet_recipe(model_name, arg, lr=1e-3, batch_size=1024, warmup_epochs=5,
                           model_kwargs=dict(drop_path_rate=drop_path), runlocal_model_kwargs=runlocal,
                           eval_crop_pct=0.9, grad_clip=clip, min_lr=min_lr)


LSNET_WEIGHT_DECAY = {"lsnet_t": 0.025, "lsnet_s": 0.025, "lsnet_b": 0.05}


def lsnet_imagenet(model_name: str, arg: str | None = None) -> ConfigDict:
    """LSNet's ImageNet-1k recipe (jameslahm/lsnet: main.py defaults and README).

    AdamW (eps 1e-8), lr 1e-3 x batch / 512 = 4e-3 at global batch 2048 (256 x 8 GPUs), weight decay
    0.025 (T, S) or 0.05 (B), cosine to 1e-5 after 5 warm-up epochs, 300 epochs, label smoothing 0.1,
    no drop path (the model has none), eval resize 256 and crop 224 (0.875). Not implemented:
    adaptive gradient clipping (AGC 0.02), weight EMA (0.99996), repeated augmentation, RandAugment,
    Mixup / CutMix, random erasing 0.25.
    """
    # Two blocks per stage after the first keep one LSConv (odd depth) and, in stage 4, attention.
    runlocal = dict(depths=(0, 2, 2, 2), img_size=RUNLOCAL["image_size"])
    return imagenet_recipe(model_name, arg, lr=4e-3, batch_size=2048, warmup_epochs=5, model_kwargs={},
                           runlocal_model_kwargs=runlocal, eval_crop_pct=0.875,
                           weight_decay=LSNET_WEIGHT_DECAY[model_name])


TRANSNEXT_DROP_PATH = {"transnext_micro": 0.15, "transnext_tiny": 0.25, "transnext_small": 0.45,
                       "transnext_base": 0.6}


def transnext_imagenet(model_name: str, arg: str | None = None) -> ConfigDict:
    """TransNeXt's ImageNet-1k recipe (DaiShiResearch/TransNeXt: classification/main.py, configs/*.py).

    AdamW (eps 1e-8), lr 1e-3 at global batch 1024 (not scaled), weight decay 0.05, gradient clipping
    1.0, cosine to 1e-5 after 5 warm-up epochs, 300 epochs, label smoothing 0.1, drop path 0.15 / 0.25
    / 0.45 / 0.6, eval resize 256 and crop 224 (0.875). Not implemented: no weight decay on the
    query embedding, relative position bias, CPB and temperature (mixtok decays every weight with two
    or more dimensions, so of these the CPB MLP kernels are decayed), RandAugment, colour jitter,
    Mixup / CutMix, random erasing 0.25, repeated augmentation, the 10 cool-down epochs.
    """
    return imagenet_recipe(model_name, arg, lr=1e-3, batch_size=1024, warmup_epochs=5,
                           model_kwargs=dict(drop_path_rate=TRANSNEXT_DROP_PATH[model_name]),
                           runlocal_model_kwargs=_one_block_per_stage(model_name), eval_crop_pct=0.875,
                           grad_clip=1.0)
