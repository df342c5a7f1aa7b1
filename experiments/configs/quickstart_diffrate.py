r"""DiffRate's search on the token-reduction quickstart's digits DeiT: per-layer prune and merge counts, learnt.

    python -m mixtok.train --config experiments/configs/quickstart_token_reduction.py --workdir /tmp/mixtok_deit
    python -m mixtok.train --config experiments/configs/quickstart_diffrate.py:backbone=/tmp/mixtok_deit \
        --workdir /tmp/mixtok_diffrate

The first command trains the quickstart's DeiT (6 blocks of width 96, 65 tokens, 48.3 MFLOPs an image by
DiffRate's count). The second freezes it (`backbone=`: that run's workdir, its latest checkpoint) and learns
DiffRate's rates (task `diffrate_search`, mixtok/train/tasks/diffrate_search.py) towards `target=` MFLOPs
with the official recipe scaled to the digits: AdamW lr 0.01 cosine to 0.001, no weight decay, loss
cross-entropy (label smoothing 0.1) + 5 (MFLOPs - target)^2, granularity 4 (OpenGVLab/DiffRate main.py /
engine.py; the official run searches 3 ImageNet epochs at batch 1024 with `--arch-lr 0.01 --arch-min-lr
0.001`). The schedule found is written to WORKDIR/diffrate_schedule.json after every eval; run the model with
it via `mixtok.reduction.diffrate.load_schedule(path)`, or evaluate it beside the other rules:

    python -m mixtok.reduction.evaluate --workdir /tmp/mixtok_deit --rules diffrate \
        --schedules "diffrate:amounts=P0+M0/P1+M1/..."     # the json's prune / merge counts, block by block

Without `backbone=` the backbone keeps its random initialisation: a smoke test, not a search.

Measured on a 2-core CPU (JAX 0.10.2, 2026-12-07): the quickstart DeiT reaches 0.970 eval accuracy (600
steps); this search (300 steps, about 60 s) ends at 30.07 MFLOPs with prune = merge counts [65, 35, 34, 34,
34, 34] and 0.937 eval accuracy (`mixtok.reduction.evaluate` with that schedule: 0.9367, agreement 0.9367; ToMe
r=8, 37 tokens a block on average, 0.9733). The rates start where every candidate is equally likely (half the
patches kept, 48.3 -> about 30 MFLOPs already) and the prune and merge rates, started equal and pushed alike
by the FLOPs term, stay tied in so short a search: the schedule prunes only. The official search runs 3
ImageNet epochs (3,750 steps of 1,024 images), over which the released schedules separate the two.

Options after a colon: `backbone=WORKDIR`, `target=MFLOPS` (default 30), `steps=N` (default 300).
"""

from ml_collections import ConfigDict

from mixtok.train.config import parse_config_arg


def get_config(arg=None):
    args = parse_config_arg(arg, backbone="", target=30.0, steps=300)
    config = ConfigDict()
    config.seed = 0
    config.task = "diffrate_search"
    config.total_steps = args.steps
    config.batch_size = 64
    config.log_every = 25
    config.eval_every = 100
    config.checkpoint_every = 100
    config.keep_checkpoints = 2

    # the quickstart's data and model (experiments/configs/quickstart_token_reduction.py), unreduced
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
    config.model.kwargs = ConfigDict(dict(depths=(6,), dims=(96,), num_heads=3, patch_size=4, image_size=32))

    config.optimizer = ConfigDict(dict(name="adamw", lr=0.01, min_lr=0.001, warmup_steps=0, weight_decay=0.0))
    config.label_smoothing = 0.1
    config.diffrate = ConfigDict(
        dict(target_flops=args.target, flops_unit=1e6, flops_weight=5.0, granularity=4, backbone_weights=args.backbone)
    )
    return config
