r"""One-D-Piece S-256 (TiTok-S with tail token drop, 256 tokens) on ImageNet-1k at 256 px, single-stage RGB.

    python -m mixtok.train \
        --config experiments/configs/imagenet/one_d_piece_s256.py:data_root=/data/imagenet \
        --workdir /tmp/mixtok/one_d_piece_s256

Expect: the official rFID 1.48 at 256 tokens (README); mixtok's single-stage recipe without a pretrained perceptual
network has not reproduced it (no run has been made). Eval reports PSNR, SSIM and codebook usage; rFID needs
Inception weights you supply (mixtok.evaluate.compute_rfid).

Recipe sources and its differences from the official two-stage one: common.py's docstring, "1D
tokenizers". Global batch 1024, 1,000,000 steps. `:runlocal` smoke-tests it on a laptop (sample
photos, 32 px, 4 steps).
"""

from ml_collections import ConfigDict

from mixtok.train.config_files import import_beside

common = import_beside(__file__, "common")


def get_config(arg=None):
    arg = common.parse_arg(arg, batch_size=1024, steps=1_000_000, perceptual_network="", perceptual_weights="")
    config = common.tokenizer_loop(arg)  # eval and checkpoint every 10,000 steps
    # Official: shorter side to 256, random crop 256; mixtok's nearest: a square random-resized crop of
    # 60-100% of the area, resized to 256. Tokenizers see pixels in [-1, 1].
    config.data = common.imagenet_data(
        arg,
        image_size=256,
        crop_pct=1.0,
        crop_scale=(0.6, 1.0),
        crop_ratio=(1.0, 1.0),
        mean=common.HALF,
        std=common.HALF,
        runlocal_data=common.RUNLOCAL_PHOTOS,
    )

    config.model = ConfigDict(dict(name="one_d_piece_s256", dtype=common.compute_dtype(arg)))
    config.model.kwargs = ConfigDict(common.RUNLOCAL_TOKENIZER if arg.runlocal else {})

    # Stage 1: 10k warm-up steps. Stage 2: the discriminator warms up 5k steps, its loss counts from 20k.
    warmup, disc_warmup, gan_start = (1, 1, 2) if arg.runlocal else (10_000, 5_000, 20_000)
    common.check_steps_cover(arg, warmup=warmup, gan_start=gan_start)
    scale = config.batch_size / 1024  # the official learning rates at the official batch, scaled linearly
    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-4 * scale,
            min_lr=1e-5 * scale,
            warmup_steps=warmup,  # then cosine to min_lr
            weight_decay=1e-4,
            b1=0.9,
            b2=0.99,
            eps=1e-8,
            grad_clip=1.0,
        )
    )
    config.discriminator_optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-4 * scale,
            min_lr=1e-5 * scale,
            warmup_steps=disc_warmup,
            weight_decay=1e-4,
            b1=0.9,
            b2=0.999,
            eps=1e-8,
            grad_clip=1.0,
        )
    )
    config.loss = ConfigDict(
        dict(
            reconstruction="l2",
            reconstruction_weight=1.0,
            quantizer_weight=1.0,
            # TiTok's ConvNeXt-S perceptual loss (0.1) needs weights mixtok cannot download: off unless given.
            perceptual_weight=0.1 if arg.perceptual_network else 0.0,
            **common.perceptual_network(arg),
            gan_weight=0.01,
            gan_start_step=gan_start,
            gan_loss="hinge",
            discriminator="titok",
            lecam_weight=0.001,
            lecam_decay=0.999,
        )
    )
    # One-D-Piece's tail token drop: also report PSNR from the first few tokens.
    config.eval_num_tokens = [1, 4] if arg.runlocal else [1, 16, 64, 128]
    return config
