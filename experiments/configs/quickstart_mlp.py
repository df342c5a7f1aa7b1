r"""Token-MLP / state-space quickstart: one small model of each such family on scikit-learn's bundled digits.

    python -m mixtok.train --config experiments/configs/quickstart_mlp.py:family=mixer \
        --workdir /tmp/mixtok_mixer

`family=` picks the model, each a named variant's layers shrunk to the digits:
- mixer (MLP-Mixer: mixer_s16_224's layers, 4 blocks of width 64 on 4-px patches, an 8x8 grid of 64 tokens; its
  token MLPs are built for the 32-px images);
- hydra (hydra_vit_ti's layers shrunk to 4 blocks of width 64 on 4-px patches, d_state 16, head dim 32: the 64
  tokens scanned in raster order both ways);
- ms_mlp (MS-MLP: ms_mlp_t's layers shrunk to one block per stage of widths 32, 48, 64, 96; its mix-shift mixer
  rolls five channel groups by -2 ... 2 along H and W, each then a depthwise conv, and every width splits into
  five torch.chunk groups);
- raft_mlp (RaftMLP: raftmlp_s's layers shrunk to one block per stage of widths 32, 48, 64, 96, rafts of 2
  channels; its token MLPs have one weight per row / column position, so `image_size=32` builds them for the 8,
  4, 2 and 1-token grids of the 32-px digits);
- wavemix (WaveMix: wavemix_192_16's layers shrunk to 4 blocks of width 64 on a 2-px patchify stem, a 16x16 grid
  that its 3-level Haar DWT halves three times; feed-forward dropout 0.1, not the release's 0.5, for 300 steps on
  1,497 images);
- mamba_mixer (ViM2, MambaMixer from the paper only: vim2_tiny's layers shrunk to one selective token mixer and
  one selective channel mixer per stage of widths 32, 48, 64, 96, d_state 8; the 8x8 ... 1x1 grids cross-scanned
  four ways, each token's channels scanned both ways);
- ponet (PoNetViT: ponet_vit_ti's layers shrunk to 4 blocks of width 64 (2 heads of 32) on 4-px patches: PoNet's
  pooling mixer on the 8x8 grid, its segments the grid's rows and its local pooling a 3x3 max);
- strip_mlp (Strip-MLP: strip_mlp_tiny_light's layers shrunk to one block per stage of widths 16, 32, 64, 128,
  built for 32-px images: square token grids of 8, 4, 2, 1; every width keeps the strip MLP's channel groups,
  p = 4 groups of width / 2 / 4, the official rule p = 2 if width % 80 == 0 else 4).
Nothing is downloaded: the digits ship with scikit-learn (1,797 8x8 images, split 1,497 train / 300 test),
upsampled to 32x32.

Expect eval accuracy >= 0.95 after 300 steps. Measured on a 2-core CPU (AMD EPYC, JAX 0.10.2, 2026-12-07),
eval accuracy and wall time including compilation (`MEASURED` below); all but strip_mlp's on the quiet CPU,
with the CPU time the run itself used where it was recorded:
- mixer 0.98 in 96 s (69 s of them the 300 steps, the rest start-up and compilation);
- hydra 0.9933 in 100 s on the quiet CPU (152 s of CPU time; a first run on a shared CPU: the same accuracy in
  325 s, 0.93 at step 100, 0.99 at step 200);
- ms_mlp 0.9767 in 96 s on the quiet CPU (139 s of CPU time; a first run at load average 6-9: the same accuracy
  in 267 s, 0.9433 at step 100, 0.9833 at step 200);
- raft_mlp 0.9867 in 43 s on the quiet CPU (61 s of CPU time; a first run at load average 8-14: the same accuracy
  in 306 s, 0.9433 at step 100, 0.9867 at step 200);
- wavemix 0.9867 in 185 s on the quiet CPU (303 s of CPU time; a first run at load average 13-17: the same
  accuracy in 1160 s, 0.8367 at step 100, 0.98 at step 200);
- mamba_mixer 0.9867 in 182 s on the quiet CPU (263 s of CPU time; a first run at load average 14-18: the same
  accuracy in 839 s, 0.9567 at step 100, 0.9833 at step 200, 2.5 minutes of it one compilation);
- ponet 0.98 in 43 s on the quiet CPU (69 s of CPU time; a first run at load average 11-15: the same accuracy in
  576 s, 0.6067 at step 100, 0.96 at step 200);
- strip_mlp 0.9867 in 134 s (0.91 at step 100, 0.99 at step 200; load average 3-5, 154 s of CPU time; an earlier
  run at load average 11-14 gave the same accuracy in 720 s).
Run it again with the same --workdir and it resumes (or, if finished, returns at once).

Options after a colon: `family=NAME` (default mixer), `steps=N` (default 300).
"""

from ml_collections import ConfigDict

from mixtok.registry import unknown_name_error
from mixtok.train.config import parse_config_arg

# family: (variant whose layers are used, overrides that shrink it to the digits)
FAMILIES = {
    "mixer": ("mixer_s16_224", dict(depths=(4,), dims=(64,), patch_size=4, image_size=32)),
    "hydra": (
        "hydra_vit_ti",
        dict(depths=(4,), dims=(64,), patch_size=4, image_size=32, mlp_ratios=(2,), d_state=16, headdim=32),
    ),
    "ms_mlp": ("ms_mlp_t", dict(depths=(1, 1, 1, 1), dims=(32, 48, 64, 96))),
    # The token MLPs need a fixed grid: image_size=32 builds them for the digits' 8, 4, 2, 1 token grids.
    "raft_mlp": ("raftmlp_s", dict(depths=(1, 1, 1, 1), dims=(32, 48, 64, 96), image_size=32)),
    "wavemix": ("wavemix_192_16", dict(depths=(4,), dims=(64,), patch_size=2, levels=3, dropout=0.1)),
    "mamba_mixer": (
        "vim2_tiny",
        dict(depths=(1, 1, 1, 1), channel_depths=(1, 1, 1, 1), dims=(32, 48, 64, 96), d_state=8),
    ),
    "ponet": ("ponet_vit_ti", dict(depths=(4,), dims=(64,), patch_size=4, image_size=32, mlp_ratios=(2,))),
    "strip_mlp": ("strip_mlp_tiny_light", dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), image_size=32)),
}
# family: (eval accuracy after 300 steps, wall seconds), measured with the command above.
MEASURED = {
    "mixer": (0.98, 96),
    "hydra": (0.9933, 100),
    "ms_mlp": (0.9767, 96),
    "raft_mlp": (0.9867, 43),
    "wavemix": (0.9867, 185),
    "mamba_mixer": (0.9867, 182),
    "ponet": (0.98, 43),
    "strip_mlp": (0.9867, 134),
}


def get_config(arg=None):
    args = parse_config_arg(arg, family="mixer", steps=300)
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
