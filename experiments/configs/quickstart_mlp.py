r"""Token-MLP-family quickstart: one small model of each family on scikit-learn's bundled digits.

    python -m mixtok.train --config experiments/configs/quickstart_mlp.py:family=ms_mlp \
        --workdir /tmp/mixtok_ms_mlp

`family=` picks the model: ms_mlp, the named variant's layers shrunk to widths 32-96 and one block per stage
for 32-px digits (MS-MLP's mix-shift mixer: five channel groups rolled by -2 ... 2 along H and W, each then a
depthwise conv; every width splits into five torch.chunk groups). Nothing is downloaded: the digits ship with
scikit-learn (1,797 8x8 images, split 1,497 train / 300 test), upsampled to 32x32.

Expect eval accuracy >= 0.95 after 300 steps. Measured on a 2-core CPU (AMD EPYC, JAX 0.10.2, 2026-12-07),
eval accuracy and wall time including compilation (`MEASURED` below): ms_mlp 0.9767 in 267 s (0.9433 at step
100, 0.9833 at 200), with other jobs sharing the cores (load average 6-9: the run got about half a core, 137 s
of CPU time), so expect it faster on an idle machine.
Run it again with the same --workdir and it resumes (or, if finished, returns at once).

Options after a colon: `family=NAME` (default ms_mlp), `steps=N` (default 300).
"""

from ml_collections import ConfigDict

from mixtok.registry import unknown_name_error
from mixtok.train.config import parse_config_arg

DIMS = (32, 48, 64, 96)
# family: (variant whose layers are used, overrides that shrink it to the digits)
FAMILIES = {
    "ms_mlp": ("ms_mlp_t", dict(depths=(1, 1, 1, 1), dims=DIMS)),
}
# family: (eval accuracy after 300 steps, wall seconds), measured with the command above.
MEASURED = {
    "ms_mlp": (0.9767, 267),
}


def get_config(arg=None):
    args = parse_config_arg(arg, family="ms_mlp", steps=300)
    if args.family not in FAMILIES:
        raise unknown_name_error("quickstart_mlp family", args.family, FAMILIES)
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
