r"""Quickstart for token reduction: a small DeiT on scikit-learn's bundled digits, then every rule on it.

    python -m mixtok.train --config experiments/configs/quickstart_token_reduction.py --workdir /tmp/mixtok_deit
    python -m mixtok.reduction.evaluate --workdir /tmp/mixtok_deit

The first command trains deit_tiny_patch16_224's layers shrunk to the digits: 4-px patches of the 32x32
upsampled digits (an 8x8 grid, 64 patch tokens and a class token), 6 blocks of width 96 with 3 heads. The
second evaluates the trained model on the 300 held-out digits without a reduction and under every registered
rule at a few strengths (`mixtok.reduction.evaluate.default_schedules`), and writes accuracy, agreement with
the unreduced model, tokens per block and GFLOPs per image to WORKDIR/token_reduction.json, and the accuracy
against tokens-kept curve to WORKDIR/token_reduction.png. Nothing is downloaded.

A token reduction can also be trained with: `--config.model.kwargs.token_reduction="tome:r=4"` (any
one-line schedule, `mixtok.reduction.TokenReduction.parse`).

Options after a colon: `steps=N` (default 600).
"""

from ml_collections import ConfigDict

from mixtok.train.config import parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, steps=600)
    config = ConfigDict()
    config.seed = 0
    config.task = "classification"
    config.total_steps = args.steps
    config.batch_size = 64
    config.log_every = 50
    config.eval_every = 200
    config.checkpoint_every = 200
    config.keep_checkpoints = 2

    config.data = ConfigDict(
        dict(
            name="digits",
            image_size=32,
            crop_scale=(0.6, 1.0),
            hflip=False,
            crop_pct=1.0,
            mean=(0.5, 0.5, 0.5),
            std=(0.5, 0.5, 0.5),
        )
    )

    config.model = ConfigDict()
    config.model.name = "deit_tiny_patch16_224"
    config.model.dtype = "float32"
    config.model.kwargs = ConfigDict(
        # token_reduction: a one-line schedule ("tome:r=4") to train with one; empty: none.
        dict(depths=(6,), dims=(96,), num_heads=3, patch_size=4, image_size=32, token_reduction="")
    )

    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=1e-3,
            min_lr=1e-5,
            warmup_steps=min(50, args.steps // 10),
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            grad_clip=1.0,
        )
    )
    config.label_smoothing = 0.1
    return config
