r"""Plumbing shared by the ImageNet-1k configs in this folder: options, data, training loop, runlocal.

Not a config: each config file beside it states its paper's recipe itself (model and its arguments,
optimizer, schedule, batch, epochs, label smoothing, eval crop) and calls this module only for what
every ImageNet config does the same way. A config imports it by path, because ml_collections'
config_flags runs config files by path without putting their folder on sys.path:

    from mixtok.train.config_files import import_beside
    common = import_beside(__file__, "common")

so the configs work from any working directory once mixtok is installed (`pip install -e .`).

Options after a config's colon (`caformer_s18.py:data_root=/data/imagenet,bf16`), parsed by `parse_arg`:

    data_root=PATH        the ImageNet root: for imagefolder, PATH/train/<class>/*.JPEG and PATH/val/...;
                          for array_record, a folder of {train,val}*.array_record files or a glob.
                          Required: without it, training stops at start-up with a message saying so.
    source=imagefolder    or array_record (see `python -m mixtok.data.imagefolder_to_array_record`)
    batch_size=N          global batch; each config scales its learning rate linearly from the official one
    epochs=N              classification configs, default 300 (warm-up and cool-down stay at the official
                          numbers of epochs)
    steps=N               tokenizer configs, default 1,000,000
    perceptual_network=pkg.module:Class, perceptual_weights=FILE.msgpack
                          tokenizer configs: the perceptual loss's network and its weights (together)
    bf16                  compute in bfloat16 (parameters and optimizer state stay float32)
    runlocal              a laptop smoke test: in-memory data (synthetic, 10 classes, 64 px; sample photos
                          at 32 px for tokenizers), a small batch, 4 steps, the named model with one block
                          per stage (its dims, mixers and norms); about half a minute on a 2-core CPU

Steps come from epochs: total_steps = (epochs + cool-down epochs) * 1,281,167 // batch_size (96,963 at
4096 for 300 + 10). The official loaders (timm's train.py and its descendants) drop each epoch's last
partial batch (312 steps per epoch at 4096, 96,720 in 310 epochs); mixtok's stream never drops a batch,
so the same number of images is seen in slightly more steps (the last ones at min_lr).

Learning rate: most official scripts drive timm's CosineLRScheduler (`timm_cosine`, below): a linear
warm-up from `warmup_lr_init` (timm's --warmup-lr) over the warm-up epochs, a cosine to `min_lr` over
`epochs=` epochs, then timm's --cooldown-epochs at min_lr, which train.py runs after the cosine (10 by
default: 310 epochs in all, so total_steps covers epochs + cool-down), the rate changing once per epoch
of the official loader's updates (steps_per_epoch = 1,281,167 // batch_size, 312 at 4096). Scripts built
on DeiT's main.py never run the cool-down (their configs set 0) and lag timm's rate by one epoch (they
call `lr_scheduler.step(epoch)` after training epoch `epoch`), which their configs model with
`epoch_lag=1`. Each config states its script's warm-up, warm-up start, min_lr and cool-down itself.
Mixup / CutMix (`config.mixup`, timm's `Mixup` with soft targets smoothed by `label_smoothing`): each
config states its script's alphas; timm train.py's recipe in these papers is mixup 0.8, cutmix 1.0,
prob 1.0, switch_prob 0.5, mode "batch".

The training pipeline, as in timm's train.py that most official classification scripts build on:
random resized crop (area 0.08-1, aspect 3/4-4/3), horizontal flip (p 0.5), ImageNet mean / std;
evaluation resizes to image_size / crop_pct and centre-crops image_size. On top of it, each
classification config turns on, through `imagenet_data`, the augmentations its official script uses
(mixtok.data.options names the fields; all are keys of config.data even when off, so
`--config.data.reprob=0` and the like override them):

- `train_interpolation`: timm's RandomResizedCropAndInterpolation with "random" (bilinear or bicubic
  per image, timm train.py's default) or "bicubic" (DeiT-style main.py's default);
- `auto_augment`: timm's RandAugment, `rand-m9-mstd0.5-inc1` in all these scripts;
- `reprob` / `remode` / `recount`: random erasing (p 0.25, per-pixel noise, one box, where used);
- `eval_interpolation="bicubic"`: timm's eval resize and centre crop, bicubic as the models'
  pretrained configs and DeiT-style `transforms.Resize(size, interpolation=3)` resize.

timm's create_transform skips colour jitter while RandAugment is on (transforms_factory.py: "color
jitter is typically disabled if AA/RA on"), so the scripts' `--color-jitter 0.4` does nothing there
and is not a gap. Weight EMA (`config.model_ema`, mixtok/train/ema.py) is set where a script keeps
one (FFNet, CAS-ViT, LSNet: timm's ModelEma; AFFNet: ml-cvnets' EMA), as those do: the parameters and
the BatchNorm statistics, from the first update on. Each config names its family's remaining gaps.
DeiT's repeated augmentation (facebookresearch/deit samplers.py RASampler, --repeated-aug: 3 differently
augmented copies of each image in the same step, an epoch reading a third of the images) is
`repeated_aug=3` where a script keeps it on (LSNet, TransNeXt; GFNet's main_gfnet.py turns it off;
mixtok.data.pipeline).

Weight decay applies to the weights with two or more dimensions only, as timm's does (no decay on
norms, biases and scales); where an official recipe excludes more by name, its config says so. AFFNet's
(ml-cvnets' mobilevit.yaml) decays every parameter (`weight_decay_on="all"`).

1D tokenizers (titok_*.py, one_d_piece_*.py): the papers train in two stages (bytedance/1d-tokenizer
@ 942a96f configs/training/TiTok/stage{1,2}/*.yaml; turingmotors/One-D-Piece @ 473665d
configs/training/stage{1,2}/*.yaml): stage 1 predicts the codes of a frozen MaskGIT-VQGAN (proxy
codes, cross-entropy over 1024 classes); stage 2 freezes the encoder and quantizer and fine-tunes the
decoder to pixels. mixtok's TiTok is the single-stage RGB model (no MaskGIT weights can be downloaded
here), so those configs combine the two into one stage:

- the stage-1 optimizer for the tokenizer: AdamW lr 1e-4 at global batch 256 (One-D-Piece: 1024),
  betas (0.9, 0.99), weight decay 1e-4, eps 1e-8, 10,000 warm-up steps then cosine to 1e-5, gradient
  clipping 1.0, 1,000,000 steps;
- the stage-2 losses: L2 reconstruction 1.0, quantizer 1.0 (beta 0.25), perceptual 0.1, TiTok's
  discriminator (hinge) with generator weight 0.01 from step 20,000 and LeCam 0.001 (EMA 0.999);
  the discriminator's own AdamW: lr 1e-4, betas (0.9, 0.999), weight decay 1e-4, 5,000 warm-up steps;
- data: ImageNet train at 256 px, random square crop + horizontal flip; eval on val, resize 256 and
  centre crop 256 (PSNR, SSIM, codebook usage).

Differences that matter, all unimplemented or impossible offline (expect worse rFID until closed):
- the perceptual loss: TiTok's is ConvNeXt-S logits (0.1), plus LPIPS in some configs. mixtok
  downloads no weights, so the perceptual weight is 0 unless you pass `perceptual_network=pkg.mod:Class`
  and `perceptual_weights=FILE.msgpack` (a linen network mapping [-1, 1] images to feature maps);
- weight EMA (decay 0.999) of the tokenizer, fp16 / bf16 mixed precision (`bf16` computes in bf16);
- TiTok's weight-decay exclusions by name (embeddings, latent tokens, mask token, codebook): mixtok
  exempts only weights with fewer than two dimensions;
- the crop: official "resize shorter side to 256, random crop 256"; mixtok's random-resized crop with
  area 60-100% and aspect 1 (then resized to 256) is the nearest its transforms give.
"""

from ml_collections import ConfigDict, config_dict

from mixtok.data import multi_scale
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
MISSING_DATA_ROOT = "UNSET: add :data_root=/path/to/imagenet to --config (or pass --config.data.root=/path/to/imagenet)"
HALF = (0.5, 0.5, 0.5)  # mean and std that map pixels to [-1, 1], as the tokenizers see them

# `runlocal`: a run small enough for a laptop that still builds every layer of the named model.
RUNLOCAL_STEPS = 4
RUNLOCAL_IMAGE_SIZE = 64
RUNLOCAL_SYNTHETIC = dict(
    name="synthetic", image_size=RUNLOCAL_IMAGE_SIZE, num_classes=10, num_examples=64, num_eval_examples=32
)
RUNLOCAL_PHOTOS = dict(name="sample_photos", image_size=32, num_examples=64, num_eval_examples=16)
# A TiTok / One-D-Piece shrunk to width 32, one block and 8 tokens: 32-px photos in 8-px patches.
RUNLOCAL_TOKENIZER = dict(
    image_size=32,
    patch_size=8,
    encoder_width=32,
    encoder_depth=1,
    encoder_heads=2,
    decoder_width=32,
    decoder_depth=1,
    decoder_heads=2,
    num_latent_tokens=8,
)


def parse_arg(
    arg: str | None, *, batch_size: int, epochs: int | None = None, steps: int | None = None, **extra
) -> ConfigDict:
    """The options after the config's colon (module docstring), with the official batch and length as defaults.

    Pass `epochs=` (classification) or `steps=` (tokenizers); `extra` adds config-specific options,
    typed by their defaults. Unknown options and bad values raise a ValueError naming the valid ones.
    """
    if (epochs is None) == (steps is None):
        raise TypeError(f"parse_arg takes one run length, epochs= or steps=; got epochs={epochs}, steps={steps}.")
    length = dict(epochs=epochs) if steps is None else dict(steps=steps)
    arg = parse_config_arg(
        arg, data_root="", source="imagefolder", batch_size=batch_size, **length, bf16=False, runlocal=False, **extra
    )
    if arg.source not in IMAGENET_SOURCES:
        raise unknown_name_error("ImageNet data source (source=)", arg.source, IMAGENET_SOURCES)
    for key in ("batch_size", *length):
        if arg[key] <= 0:
            raise ValueError(f"{key} must be positive; got {key}={arg[key]}.")
    return arg


def steps(epochs: float, batch_size: int) -> int:
    """Optimizer steps in `epochs` passes over ImageNet-1k's training images at `batch_size`."""
    return int(epochs * IMAGENET_TRAIN_IMAGES // batch_size)


def _loop(config: ConfigDict) -> ConfigDict:
    """Adds the fields every ImageNet run shares: checkpoints kept, progress bar, mesh and sharding rules."""
    config.keep_checkpoints = 3
    config.progress_bar = True  # --config.progress_bar=False for batch jobs' logs
    # Data parallel by default. The trainer's default sharding rules (mixtok.parallel.DEFAULT_RULES) name
    # every mesh axis, so the mesh alone picks the parallelism: `--config.mesh.fsdp=8` shards each weight's
    # `embed` / `conv_out` axis 8 ways (FSDP), `--config.mesh.tensor=2` splits attention heads and MLP
    # hidden units 2 ways (tensor parallelism).
    config.mesh = ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    return config


def classification_loop(arg: ConfigDict) -> ConfigDict:
    """A classification config's loop fields: seed, task, batch, steps from `epochs=`, log, eval and save cadence."""
    config = ConfigDict(dict(seed=0, task="classification"))
    if arg.runlocal:
        config.batch_size, config.total_steps, config.log_every = 16, RUNLOCAL_STEPS, 1
        config.eval_every = config.checkpoint_every = RUNLOCAL_STEPS
    else:
        config.batch_size = arg.batch_size
        config.total_steps = steps(arg.epochs, arg.batch_size)
        config.log_every = 100
        # Once per epoch, as the official scripts validate and save.
        config.eval_every = config.checkpoint_every = max(1, steps(1, arg.batch_size))
    return _loop(config)


def tokenizer_loop(arg: ConfigDict) -> ConfigDict:
    """A tokenizer config's loop fields: seed, task, batch, `steps=` steps, log / eval / save cadence, mesh."""
    config = ConfigDict(dict(seed=0, task="tokenizer"))
    if arg.runlocal:
        config.batch_size, config.total_steps, config.log_every = 8, RUNLOCAL_STEPS, 1
        config.eval_every = config.checkpoint_every = RUNLOCAL_STEPS
    else:
        config.batch_size, config.total_steps, config.log_every = arg.batch_size, arg.steps, 100
        config.eval_every = config.checkpoint_every = 10_000
    return _loop(config)


def warmup_steps(arg: ConfigDict, *, epochs: float) -> int:
    """The steps of an `epochs`-long linear warm-up at the run's batch (1 under runlocal)."""
    if arg.runlocal:
        return 1
    if arg.epochs <= epochs:
        raise ValueError(
            f"epochs={arg.epochs} leaves no training after the recipe's {epochs} warm-up epochs; use epochs > {epochs}."
        )
    return steps(epochs, arg.batch_size)


def timm_cosine(
    config: ConfigDict,
    arg: ConfigDict,
    *,
    warmup_epochs: int,
    warmup_lr_init: float,
    min_lr: float,
    cooldown_epochs: int,
) -> dict:
    """The optimizer fields of timm's cosine schedule over `epochs=` epochs (module docstring, "Learning rate").

    Also lengthens config.total_steps by the `cooldown_epochs` that timm's train.py runs at `min_lr`
    after the cosine. Under runlocal: 4 one-step epochs, one of warm-up, no cool-down.
    """
    if arg.runlocal:
        warmup_epochs, cooldown_epochs, steps_per_epoch, epochs = 1, 0, 1, RUNLOCAL_STEPS
    else:
        if arg.epochs <= warmup_epochs:
            raise ValueError(
                f"epochs={arg.epochs} leaves no training after the recipe's {warmup_epochs} warm-up epochs; "
                f"use epochs > {warmup_epochs}."
            )
        steps_per_epoch, epochs = steps(1, arg.batch_size), arg.epochs
        config.total_steps = steps(arg.epochs + cooldown_epochs, arg.batch_size)
    return dict(
        schedule="timm_cosine",
        schedule_on="epoch",  # timm's default: the rate changes once per epoch
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        warmup_epochs=warmup_epochs,
        warmup_lr_init=warmup_lr_init,
        min_lr=min_lr,
        cooldown_epochs=cooldown_epochs,
    )


def check_steps_cover(arg: ConfigDict, **milestones: int) -> None:
    """Raises when `steps=` ends before a schedule's milestone (warm-up, GAN start ...), runlocal aside."""
    late = {name: step for name, step in milestones.items() if step >= arg.steps}
    if late and not arg.runlocal:
        raise ValueError(
            f"steps={arg.steps} ends before the recipe's {late}; use more steps than {max(late.values())}."
        )


def _optional_str(value: str | None):
    """`value`, or for None a str placeholder: ml_collections' command-line overrides refuse None-typed fields."""
    return config_dict.placeholder(str) if value is None else value


def imagenet_data(
    arg: ConfigDict,
    *,
    image_size: int,
    crop_pct: float,
    crop_scale=(0.08, 1.0),
    crop_ratio=(3 / 4, 4 / 3),
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    runlocal_data: dict | None = None,
    train_interpolation: str | None = None,
    auto_augment: str | None = None,
    reprob: float = 0.0,
    remode: str = "pixel",
    recount: int = 1,
    eval_interpolation: str | None = None,
    repeated_aug: int = 0,
) -> ConfigDict:
    """The data section: ImageNet from `data_root=` in `source=` format, or in-memory data under runlocal.

    Training crops are random resized crops (area `crop_scale`, aspect `crop_ratio`) flipped
    horizontally; evaluation resizes to image_size / crop_pct and centre-crops image_size.
    `runlocal_data` replaces the synthetic 10-class images of a runlocal run (tokenizers: photos).
    The timm augmentations (mixtok.data.options: train_interpolation, auto_augment, reprob, remode,
    recount, eval_interpolation, and DeiT's repeated augmentation `repeated_aug`; off by default) are keys of
    the section whatever their values, also
    under runlocal, so that runlocal exercises them and `--config.data.<field>=` overrides them; a None
    is a typed placeholder (a str override is accepted, the value read is None).
    """
    augmentations = dict(
        train_interpolation=_optional_str(train_interpolation),
        auto_augment=_optional_str(auto_augment),
        reprob=float(reprob),
        remode=remode,
        recount=int(recount),
        eval_interpolation=_optional_str(eval_interpolation),
        repeated_aug=int(repeated_aug),
    )
    transforms = dict(
        crop_scale=crop_scale, crop_ratio=crop_ratio, hflip=True, crop_pct=crop_pct, mean=mean, std=std, **augmentations
    )
    if arg.runlocal:
        return ConfigDict(dict(runlocal_data or RUNLOCAL_SYNTHETIC, **transforms))
    # num_classes is checked against the class folders (a wrong root fails early) and spares
    # array_record a scan of every label.
    return ConfigDict(
        dict(
            name=arg.source,
            root=arg.data_root or MISSING_DATA_ROOT,
            train_split="train",
            eval_split="val",
            image_size=image_size,
            num_classes=IMAGENET_CLASSES,
            read_threads=16,
            **transforms,
        )
    )


# ml-cvnets' multi-scale variable-batch sampler as mobilevit.yaml sets it (sampler.vbs: 160-320 px, 5 scales,
# divisible by 32; the 8 GPUs of its batch 128 x 8), and a runlocal version: 32 and 64 px around runlocal's 64.
CVNETS_MULTI_SCALE = dict(min_size=160, max_size=320, num_scales=5, check_scale=32, batch_multiple=8)
RUNLOCAL_MULTI_SCALE = dict(min_size=32, max_size=64, num_scales=2, check_scale=32, batch_multiple=8)


# CAS-ViT's --multi_scale_sampler (classification/main.py: --min_crop_size_w/h 160, --max_crop_size_w/h 320, the
# sampler's 5 scales divisible by 32; its README's 8 GPUs), and a runlocal version on 2 "GPUs".
CAS_VIT_MULTI_SCALE = dict(CVNETS_MULTI_SCALE, rule="cas_vit")
RUNLOCAL_CAS_VIT_MULTI_SCALE = dict(RUNLOCAL_MULTI_SCALE, batch_multiple=2, rule="cas_vit")


def cas_vit_multi_scale(config: ConfigDict, arg: ConfigDict, *, update_freq: int, warmup_epochs: int) -> int:
    """Turns on CAS-ViT's sampler with `update_freq` micro-batches an update; returns the warm-up's updates.

    config.batch_size becomes the micro-batch at the base size (arg.batch_size / update_freq: 1,024 = 128 x 8
    GPUs at 2,048) and config.grad_accum_steps `update_freq`. The micro-batches are 1,984, 1,408 and 1,024
    images at 160, 192 and 224-320 px (mean 1,248), so an epoch is taken as 1,281,167 / (update_freq x 1,248) =
    513 updates at 2,048, the eval / checkpoint cadence, config.total_steps `epochs` times that and the
    warm-up `warmup_epochs` times that. Under runlocal: 32 and 64 px, a one-update warm-up.
    """
    if not arg.runlocal and arg.epochs <= warmup_epochs:
        raise ValueError(
            f"epochs={arg.epochs} leaves no training after the recipe's {warmup_epochs} warm-up epochs; "
            f"use epochs > {warmup_epochs}."
        )
    if arg.batch_size % update_freq:
        raise ValueError(f"batch_size={arg.batch_size} must be a multiple of the recipe's update_freq {update_freq}.")
    config.batch_size //= update_freq
    config.grad_accum_steps = update_freq
    config.data.multi_scale = ConfigDict(RUNLOCAL_CAS_VIT_MULTI_SCALE if arg.runlocal else CAS_VIT_MULTI_SCALE)
    if arg.runlocal:
        config.total_steps = config.eval_every = config.checkpoint_every = RUNLOCAL_STEPS // update_freq
        return 1
    options = multi_scale.multi_scale_options(config.data.multi_scale)
    mean = update_freq * multi_scale.mean_global_batch(options, config.data.image_size, config.batch_size)
    steps_per_epoch = int(IMAGENET_TRAIN_IMAGES / mean)
    config.total_steps = steps_per_epoch * arg.epochs
    config.eval_every = config.checkpoint_every = steps_per_epoch
    return steps_per_epoch * warmup_epochs


def cvnets_multi_scale(config: ConfigDict, arg: ConfigDict) -> int:
    """Turns on data.multi_scale (mobilevit.yaml's sampler; mixtok.data.multi_scale) and returns steps per epoch.

    Steps vary in size, so an epoch has no fixed number of steps; it is taken as the expected one,
    1,281,167 / (mean global batch over the sizes, each drawn with probability 1 / n), rounded down: 926 at
    batch 1024 (mean 1,382.4 over 2,616, 1,816, 1,024, 808 and 648 images). config.total_steps becomes
    `epochs` * 1,281,167 / mean, rounded down (278,031 at 300: the steps after 300 * 926 run at the cosine's
    end, min_lr), and eval and checkpoints come once per such epoch. Under runlocal: 32 and 64 px, one-step
    epochs.
    """
    config.data.multi_scale = ConfigDict(RUNLOCAL_MULTI_SCALE if arg.runlocal else CVNETS_MULTI_SCALE)
    if arg.runlocal:
        return 1
    options = multi_scale.multi_scale_options(config.data.multi_scale)
    mean = multi_scale.mean_global_batch(options, config.data.image_size, config.batch_size)
    steps_per_epoch = int(IMAGENET_TRAIN_IMAGES / mean)
    config.total_steps = int(arg.epochs * IMAGENET_TRAIN_IMAGES / mean)
    config.eval_every = config.checkpoint_every = steps_per_epoch
    return steps_per_epoch


def compute_dtype(arg: ConfigDict) -> str:
    """config.model.dtype: "bfloat16" under the `bf16` option, else "float32"."""
    return "bfloat16" if arg.bf16 else "float32"


def one_block_per_stage(model_name: str, field: str = "depths") -> dict:
    """Model kwargs that give `model_name` one block per stage: its dims, mixers and norms, but fewer layers.

    Reads the variant's `field` (a per-stage tuple, or an int for an isotropic model) from the zoo.
    One block per stage about halves the compile time on a CPU (measured: CAFormer-S18 43 s instead of 79 s).
    """
    kwargs = model_spec(model_name).kwargs
    if field not in kwargs:
        raise ValueError(f"{model_name} has no {field!r} argument to shrink; its arguments are {sorted(kwargs)}.")
    depths = kwargs[field]
    return {field: 1 if isinstance(depths, int) else tuple(1 for _ in depths)}


def first_block_of_each_stage(model_name: str, field: str, depths_field: str = "depths") -> dict:
    """`field`, a per-block tuple of `model_name` (iFormer's attention heads), cut to each stage's first block.

    Goes with `one_block_per_stage`: a model shrunk to one block per stage keeps its stages' first blocks.
    """
    kwargs = model_spec(model_name).kwargs
    starts = [sum(kwargs[depths_field][:i]) for i in range(len(kwargs[depths_field]))]
    return {field: tuple(kwargs[field][s] for s in starts)}


def perceptual_network(arg: ConfigDict) -> dict:
    """The tokenizer loss's perceptual network and weights file from `perceptual_network=`, `perceptual_weights=`.

    mixtok downloads no weights: without both options the perceptual network is the untrained stand-in
    (the configs then set its weight to 0).
    """
    if bool(arg.perceptual_network) != bool(arg.perceptual_weights):
        raise ValueError(
            "perceptual_network= and perceptual_weights= go together: the network's class "
            f"(pkg.module:Class) and the file of its weights; got perceptual_network="
            f"{arg.perceptual_network!r}, perceptual_weights={arg.perceptual_weights!r}."
        )
    return dict(
        perceptual_network=arg.perceptual_network or "small_feature_net",
        perceptual_weights=arg.perceptual_weights or None,
    )


def one_d_tokenizer(
    arg: ConfigDict, model: str, *, official_batch: int, prefix_eval_tokens: tuple[int, ...] = ()
) -> ConfigDict:
    """The 1D tokenizers' single-stage recipe (this docstring, "1D tokenizers") for the registered `model`.

    `arg` from `parse_arg` (batch, steps, perceptual network); the learning rates are the official ones
    at `official_batch`, scaled linearly to the run's batch. `prefix_eval_tokens` (One-D-Piece's tail
    token drop) also reports PSNR decoded from that many first tokens ([1, 4] under runlocal).
    """
    config = tokenizer_loop(arg)  # eval and checkpoint every 10,000 steps
    # Official: shorter side to 256, random crop 256; mixtok's nearest: a square random-resized crop of
    # 60-100% of the area, resized to 256. Tokenizers see pixels in [-1, 1].
    config.data = imagenet_data(
        arg,
        image_size=256,
        crop_pct=1.0,
        crop_scale=(0.6, 1.0),
        crop_ratio=(1.0, 1.0),
        mean=HALF,
        std=HALF,
        runlocal_data=RUNLOCAL_PHOTOS,
    )

    config.model = ConfigDict(dict(name=model, dtype=compute_dtype(arg)))
    config.model.kwargs = ConfigDict(RUNLOCAL_TOKENIZER if arg.runlocal else {})

    # Stage 1: 10k warm-up steps. Stage 2: the discriminator warms up 5k steps, its loss counts from 20k.
    warmup, disc_warmup, gan_start = (1, 1, 2) if arg.runlocal else (10_000, 5_000, 20_000)
    check_steps_cover(arg, warmup=warmup, gan_start=gan_start)
    scale = config.batch_size / official_batch  # the official learning rates at their batch, scaled linearly
    adamw = dict(name="adamw", lr=1e-4 * scale, min_lr=1e-5 * scale, weight_decay=1e-4, b1=0.9, eps=1e-8, grad_clip=1.0)
    config.optimizer = ConfigDict(dict(adamw, warmup_steps=warmup, b2=0.99))  # warm-up, then cosine to min_lr
    config.discriminator_optimizer = ConfigDict(dict(adamw, warmup_steps=disc_warmup, b2=0.999))
    config.loss = ConfigDict(
        dict(
            reconstruction="l2",
            reconstruction_weight=1.0,
            quantizer_weight=1.0,
            # TiTok's ConvNeXt-S perceptual loss (0.1) needs weights mixtok cannot download: off unless given.
            perceptual_weight=0.1 if arg.perceptual_network else 0.0,
            **perceptual_network(arg),
            gan_weight=0.01,
            gan_start_step=gan_start,
            gan_loss="hinge",
            discriminator="titok",
            lecam_weight=0.001,
            lecam_decay=0.999,
        )
    )
    if prefix_eval_tokens:
        config.eval_num_tokens = [1, 4] if arg.runlocal else list(prefix_eval_tokens)
    return config


def deit_recipe(arg: ConfigDict, model_name: str) -> ConfigDict:
    """facebookresearch/deit main.py's defaults for `model_name` (DeiT's own models, and the ViT-B-sized models
    whose papers compare with DeiT on ImageNet-1k alone): `arg` from `parse_arg(..., batch_size=1024, epochs=300)`."""
    config = classification_loop(arg)  # steps from epochs; eval and checkpoint once per epoch
    # Augmentations: facebookresearch/deit main.py defaults: --aa, --reprob 0.25, --train-interpolation bicubic;
    # eval resize bicubic.
    config.data = imagenet_data(
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

    config.model = ConfigDict(dict(name=model_name, dtype=compute_dtype(arg)))
    config.model.kwargs = ConfigDict(dict(drop_path_rate=0.1))  # DeiT main.py --drop-path
    if arg.runlocal:
        config.model.kwargs.update(one_block_per_stage(model_name))  # the same layers, fewer
        config.model.kwargs.image_size = RUNLOCAL_IMAGE_SIZE  # the position embedding's grid

    # timm's cosine as facebookresearch/deit main.py steps it (once per epoch): warm-up from 1e-6 over 5 epochs,
    # cosine to 1e-5; the script never runs timm's cool-down.
    schedule = timm_cosine(config, arg, warmup_epochs=5, warmup_lr_init=1e-6, min_lr=1e-5, cooldown_epochs=0)
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
