r"""Attention-family quickstart: one small model of each family on scikit-learn's bundled digits.

    python -m mixtok.train --config experiments/configs/quickstart_attention.py:family=davit \
        --workdir /tmp/mixtok_davit

`family=` picks the model: davit, cas_vit, ffnet, iformer, lsnet or transnext, each the named
variant's layers shrunk to widths 32-96 and one or two blocks per stage for 32-px digits (the
BatchNorm families update their running statistics as they train). Nothing is downloaded: the
digits ship with scikit-learn (1,797 8x8 images, split 1,497 train / 300 test), upsampled to 32x32.

Expect eval accuracy >= 0.95 after 300 steps. Measured on a 2-core CPU (AMD EPYC, JAX 0.10.2,
2026-11-21), eval accuracy and wall time including compilation (`MEASURED` below):
davit 0.9733 in 82 s, cas_vit 0.9933 in 64 s, ffnet 0.9933 in 300 s (XLA's CPU depthwise 7x7
convolutions are slow), iformer 0.9933 in 63 s, lsnet 0.9933 in 52 s, transnext 0.9933 in 93 s.
Run it again with the same --workdir and it resumes (or, if finished, returns at once).

Options after a colon: `family=NAME` (default davit), `steps=N` (default 300).
"""

from ml_collections import ConfigDict

from mixtok.registry import unknown_name_error
from mixtok.train.config import parse_config_arg

DIMS = (32, 48, 64, 96)
# family: (variant whose layers are used, overrides that shrink it to the digits)
FAMILIES = {
    "davit": ("davit_tiny", dict(depths=(1, 1, 1, 1), dims=DIMS, num_heads=(1, 2, 2, 3))),
    "cas_vit": ("cas_vit_xs", dict(depths=(1, 1, 1, 1), dims=DIMS)),
    # FFNet's patch merging is a grouped conv with groups = C_in: each stage doubles its width.
    "ffnet": ("ffnet_1", dict(depths=(1, 1, 1, 1), dims=(24, 48, 96, 192), in_dim=16)),
    "iformer": (
        "iformer_s",
        dict(depths=(1, 1, 1, 1), dims=DIMS, num_heads=(2, 2, 2, 3), attention_heads=(1, 1, 1, 2), image_size=32),
    ),
    "lsnet": ("lsnet_t", dict(depths=(0, 2, 2, 2), dims=DIMS, num_heads=(1, 1, 1, 2), key_dim=16, image_size=32)),
    "transnext": ("transnext_micro", dict(depths=(1, 1, 1, 1), dims=DIMS, num_heads=(1, 2, 2, 3))),
}
# family: (eval accuracy after 300 steps, wall seconds), measured with the command above.
MEASURED = {
    "davit": (0.9733, 82),
    "cas_vit": (0.9933, 64),
    "ffnet": (0.9933, 300),
    "iformer": (0.9933, 63),
    "lsnet": (0.9933, 52),
    "transnext": (0.9933, 93),
}


def get_config(arg=None):
    args = parse_config_arg(arg, family="davit", steps=300)
    if args.family not in FAMILIES:
        raise unknown_name_error("quickstart_attention family", args.family, FAMILIES)
    model_name, kwargs = FAMILIES[args.family]
    config = ConfigDict()
    config.seed = 0
    config.task = "classification"
    config.total_steps = args.steps
    config.batch_size = 64
    config.log_every = 25
    config.eval_every = 100
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
    config.model.name = model_name
    config.model.dtype = "float32"
    config.model.kwargs = ConfigDict(kwargs)

    config.optimizer = ConfigDict(
        dict(
            name="adamw",
            lr=3e-3,
            min_lr=1e-5,
            warmup_steps=min(30, args.steps // 10),
            weight_decay=0.05,
            b1=0.9,
            b2=0.999,
            grad_clip=1.0,
        )
    )
    config.label_smoothing = 0.1
    return config
