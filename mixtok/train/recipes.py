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
            image_size=224, num_classes=IMAGENET_CLASSES, read_threads=16, **transforms))

    config.model = ConfigDict()
    config.model.name = model_name
    config.model.dtype = "bfloat16" if args.bf16 else "float32"
    config.model.kwargs = ConfigDict(dict(drop_path_rate=drop_path_rate, head_dropout=head_dropout))
    if args.runlocal:
        # One block per stage about halves the compile time on a CPU (measured: CAFormer-S18 43 s
        # instead of 79 s); dims, mixers and norms stay the named variant's, so the same layers run.
        config.model.kwargs.depths = (1, 1, 1, 1)

    config.optimizer = ConfigDict(dict(
        name=optimizer, lr=official_lr * batch / official_batch, min_lr=min_lr, warmup_steps=warmup_steps,
        weight_decay=weight_decay, b1=0.9, b2=0.999, eps=1e-6 if optimizer == "lamb" else 1e-8,  # timm's
        grad_clip=grad_clip))
    config.label_smoothing = label_smoothing
    return config
