r"""The ImageNet-1k recipe of the 1D tokenizers (TiTok, One-D-Piece), single-stage RGB form.

    config = titok_imagenet("titok_s128", arg)      # experiments/configs/imagenet/titok_s128.py

The papers train in two stages (bytedance/1d-tokenizer @ 942a96f configs/training/TiTok/stage{1,2}/
*.yaml; turingmotors/One-D-Piece @ 473665d configs/training/stage{1,2}/*.yaml): stage 1 predicts the
codes of a frozen MaskGIT-VQGAN (proxy codes, cross-entropy over 1024 classes); stage 2 freezes the
encoder and quantizer and fine-tunes the decoder to pixels. mixtok's TiTok is the single-stage RGB
model (no MaskGIT weights can be downloaded here), so this recipe combines them into one stage:

- the stage-1 optimizer for the tokenizer: AdamW lr 1e-4 at global batch 256 (scaled linearly with
  `batch_size`), betas (0.9, 0.99), weight decay 1e-4, eps 1e-8, 10,000 warm-up steps then cosine to
  1e-5, gradient clipping 1.0, 1,000,000 steps (One-D-Piece: global batch 1024);
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

Options after the colon: data_root=PATH, source=imagefolder|array_record, batch_size=N, steps=N,
bf16, perceptual_network=..., perceptual_weights=..., runlocal (a laptop smoke test: 32-px sample
photos, the variant shrunk to width 32, one block and 8 tokens, 4 steps).
"""

from ml_collections import ConfigDict

from mixtok.registry import unknown_name_error
from mixtok.tokenizers import tokenizer_spec
from mixtok.train.config import parse_config_arg
from mixtok.train.recipes import IMAGENET_CLASSES, IMAGENET_SOURCES, MISSING_DATA_ROOT

HALF = (0.5, 0.5, 0.5)  # tokenizers see pixels in [-1, 1]
RUNLOCAL_KWARGS = dict(image_size=32, patch_size=8, encoder_width=32, encoder_depth=1, encoder_heads=2,
                       decoder_width=32, decoder_depth=1, decoder_heads=2, num_latent_tokens=8)


def titok_imagenet(tokenizer_name: str, arg: str | None = None, *, batch_size: int = 256,
                   total_steps: int = 1_000_000) -> ConfigDict:
    """A config for `tokenizer_name` (a TiTok / One-D-Piece variant) on ImageNet-1k (module docstring)."""
    tokenizer_spec(tokenizer_name)  # an unknown name fails here, listing the close matches
    official_batch = batch_size
    args = parse_config_arg(arg, data_root="", source="imagefolder", batch_size=official_batch, steps=total_steps,
                            bf16=False, runlocal=False, perceptual_network="", perceptual_weights="")
    if args.source not in IMAGENET_SOURCES:
        raise unknown_name_error("ImageNet data source (source=)", args.source, IMAGENET_SOURCES)
    if args.batch_size <= 0 or args.steps <= 0:
        raise ValueError(f"batch_size and steps must be positive; got batch_size={args.batch_size}, "
                         f"steps={args.steps}.")
    if bool(args.perceptual_network) != bool(args.perceptual_weights):
        raise ValueError("perceptual_network= and perceptual_weights= go together: the network's class and the "
                         "file of its weights (mixtok downloads none).")

    config = ConfigDict()
    config.seed = 0
    config.task = "tokenizer"
    if args.runlocal:
        config.batch_size, config.total_steps = 8, 4
        config.log_every, config.eval_every, config.checkpoint_every = 1, 4, 4
        warmup, disc_warmup, gan_start = 1, 1, 2
    else:
        config.batch_size, config.total_steps = args.batch_size, args.steps
        config.log_every, config.eval_every, config.checkpoint_every = 100, 10_000, 10_000
        warmup, disc_warmup, gan_start = 10_000, 5_000, 20_000
        if args.steps <= max(warmup, gan_start):
            raise ValueError(f"steps={args.steps} ends before the recipe's warm-up ({warmup}) and GAN start "
                             f"({gan_start}); use more steps.")
    config.keep_checkpoints = 3
    config.progress_bar = True
    config.mesh = ConfigDict(dict(data=-1, fsdp=1, tensor=1))
    config.sharding_rules = [["batch", ["data", "fsdp"]], ["embed", "fsdp"]]

    transforms = dict(crop_scale=(0.6, 1.0), crop_ratio=(1.0, 1.0), hflip=True, crop_pct=1.0, mean=HALF, std=HALF)
    if args.runlocal:
        config.data = ConfigDict(dict(name="sample_photos", image_size=32, num_examples=64, num_eval_examples=16,
                                      **transforms))
    else:
        config.data = ConfigDict(dict(name=args.source, root=args.data_root or MISSING_DATA_ROOT,
                                      train_split="train", eval_split="val", image_size=256,
                                      num_classes=IMAGENET_CLASSES, read_threads=16, **transforms))

    config.model = ConfigDict(dict(name=tokenizer_name, dtype="bfloat16" if args.bf16 else "float32",
                                   kwargs=ConfigDict(RUNLOCAL_KWARGS if args.runlocal else {})))

    scale = config.batch_size / official_batch
    config.optimizer = ConfigDict(dict(name="adamw", lr=1e-4 * scale, min_lr=1e-5 * scale, warmup_steps=warmup,
                                       weight_decay=1e-4, b1=0.9, b2=0.99, eps=1e-8, grad_clip=1.0))
    config.discriminator_optimizer = ConfigDict(dict(name="adamw", lr=1e-4 * scale, min_lr=1e-5 * scale,
                                                     warmup_steps=disc_warmup, weight_decay=1e-4, b1=0.9,
                                                     b2=0.999, eps=1e-8, grad_clip=1.0))
    perceptual = bool(args.perceptual_network)
    config.loss = ConfigDict(dict(
        reconstruction="l2", reconstruction_weight=1.0, quantizer_weight=1.0,
        perceptual_weight=0.1 if perceptual else 0.0,
        perceptual_network=args.perceptual_network or "small_feature_net",
        perceptual_weights=args.perceptual_weights or None,
        gan_weight=0.01, gan_start_step=gan_start, gan_loss="hinge", discriminator="titok",
        lecam_weight=0.001, lecam_decay=0.999))
    spec = tokenizer_spec(tokenizer_name)
    if spec.kwargs.get("tail_token_drop"):  # One-D-Piece: also report PSNR from short prefixes
        config.eval_num_tokens = [1, 4] if args.runlocal else [1, 16, 64, 128]
    return config
