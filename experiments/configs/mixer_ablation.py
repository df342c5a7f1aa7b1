r"""Mixer ablation: one small MetaFormer (PoolFormerV2's layout) on scikit-learn's digits, every token mixer.

    python -m mixtok.sweep --config experiments/configs/mixer_ablation.py --root runs/abl
    python -m mixtok.report runs/abl

One point by hand (what the sweep runs for it):

    python -m mixtok.train --config experiments/configs/mixer_ablation.py:mixer=sepconv --workdir runs/abl_sepconv

`get_config` is quickstart.py's run (32x32 digits, 1,497 train / 300 test images bundled with
scikit-learn; AdamW, batch 64, `steps=N`, default 300) with one block per stage, widths 32-96, and the
mixer `mixer=NAME` (default pooling) in all four stages. `get_sweep` has one point per registered mixer
(`mixtok.mixers.list_mixers()`, read from the registry) that builds on this backbone's grids;
`excluded_mixers()` names any that does not, with the error that rules it out (today: wavelet_mixer, below).
A mixer added to the registry joins the sweep.

Some mixers size themselves to the stage, as their papers do per stage, or have defaults that assume
the 56-7 px grids of 224-px images; here the grids are 8, 4, 2 and 1 (`STAGE_OPTIONS`, set in
`model.kwargs.mixer_kwargs`, one dict per stage):
- aggregated_attention: `sr_ratio` 8, 4, 2, 1, TransNeXt's own per-stage schedule
  (DaiShiResearch/TransNeXt: classification/transnext.py, `sr_ratios=[8, 4, 2, 1]`); here every stage
  pools to 1x1;
- inception_mixer: `pool_size` 2, 2, 1, 1, iFormer's schedule (sail-sg/iFormer: models/inception_transformer.py);
- aggregated_attention and length_scaled_cosine_attention: `pretrain_size` the stage's grid (their
  default), but 2x2 for the 1x1 grid: the position bias divides offsets by size - 1, and the only
  offset on a 1x1 grid, 0, gives the same bias for any size;
- hydra: `headdim` 32 in every stage (the official 64 needs expand * dim, here 64, 96, 128, 192, to be a
  multiple of 64; goombalab/hydra: hydra/modules/hydra.py asserts it);
- wavelet_mixer: `levels` 3, 2, 1, 1 (WaveMix's Haar DWT halves the grid per level, and its transposed
  convolutions double it back, so the grid must be a multiple of 2^levels; pranavphoenix/WaveMix:
  wavemix/__init__.py). Even one level cannot run on stage 4's 1x1 grid, so wavelet_mixer is excluded from the
  sweep (`excluded_mixers()` gives the error); in a MetaFormer it needs every stage's grid to be even.

Measured with the sweep command above (default 300 steps; `python -m mixtok.report` made the table) on
the 2-core development CPU (AMD EPYC, JAX 0.10.2, 2026-12-07): 19 points, 12 min 53 s for the whole
sweep; the seven mixers registered since (hydra, mamba_mixer, mix_shift, pooling_network,
raft_token_mixing, strip_mlp, token_mixing_mlp) in a second run of the same command with
`--only hydra,mix_shift,...` on the same day, 8 min 41 s for the seven, nothing else running.
"train img/s" is the report's throughput from the TensorBoard event times (compilation and eval left
out); "run s" is each point's wall time including start-up and compilation. Other jobs shared the
machine during the first run, so read the speeds as rough. On digits every mixer reaches 0.97-0.997
eval accuracy, including `identity` (no token mixing): this 32-px task does not separate the mixers'
accuracy, only their cost; a harder dataset is needed for an accuracy ablation.

    mixer                             params   eval acc   best (step)   train img/s   run s
    adaptive_frequency_filter         246,258   0.9900     0.9900 (200)       1447    38.8
    additive_token_mixer              331,218   0.9967     0.9967 (300)       1471    44.3
    aggregated_attention              347,426   0.9733     0.9800 (200)        947    53.7
    attention                         300,466   0.9800     0.9800 (200)       2355    25.1
    channel_attention                 304,498   0.9833     0.9833 (300)       2153    24.0
    dynamic_spectrum_mixer            341,334   0.9867     0.9867 (300)       1897    29.9
    ffnified_attention                283,858   0.9800     0.9867 (200)       1123    48.2
    global_filter                     241,394   0.9900     0.9900 (300)       2732    21.6
    hydra                             414,975   0.9800     0.9800 (300)        622    69.2
    identity                          236,978   0.9900     0.9900 (300)       3045    17.2
    inception_mixer                   288,178   0.9867     0.9867 (200)        925    72.2
    length_scaled_cosine_attention    327,330   0.9833     0.9833 (200)        837    71.1
    linear_attention                  301,378   0.9867     0.9867 (300)       1633    39.9
    ls_conv                           266,708   0.9867     0.9867 (300)        841    64.0
    mamba_mixer                       454,258   0.9833     0.9867 (200)        176   160.2
    mix_shift                         244,978   0.9900     0.9900 (200)        787    88.6
    multi_head_attention              304,498   0.9867     0.9900 (200)       1176    48.3
    pooling                           236,978   0.9867     0.9867 (300)       1898    26.6
    pooling_network                   338,258   0.9800     0.9800 (300)       1425    37.6
    raft_token_mixing                 240,838   0.9833     0.9900 (200)       1483    40.1
    random_mixing                     241,347   0.9867     0.9867 (300)       2272    25.5
    sepconv                           327,066   0.9800     0.9800 (200)       1274    37.1
    strip_mlp                         308,406   0.9800     0.9800 (300)        785    84.1
    strip_self_attention              279,178   0.9900     0.9900 (300)       2018    29.7
    token_mixing_mlp                  240,351   0.9767     0.9767 (200)       1849    31.6
    window_attention                  304,498   0.9833     0.9900 (200)        648    46.3
"""

import functools

from ml_collections import ConfigDict

from mixtok.train.config import parse_config_arg
from mixtok.train.config_files import import_beside

quickstart = import_beside(__file__, "quickstart")

LAYOUT = dict(depths=(1, 1, 1, 1), dims=(32, 48, 64, 96), drop_path_rate=0.0)
IMAGE_SIZE = 32
GRIDS = (8, 4, 2, 1)  # each stage's token grid at 32 px: stride 4, 8, 16, 32
_PRETRAIN = tuple({"pretrain_size": (max(grid, 2),) * 2} for grid in GRIDS)
STAGE_OPTIONS = {  # per-stage options of the mixers whose defaults need 224-px grids (see the docstring)
    "aggregated_attention": tuple(dict(sr_ratio=r, **p) for r, p in zip((8, 4, 2, 1), _PRETRAIN)),
    "inception_mixer": tuple(dict(pool_size=size) for size in (2, 2, 1, 1)),
    "length_scaled_cosine_attention": _PRETRAIN,
    "hydra": ({"headdim": 32},) * 4,
    "wavelet_mixer": tuple(dict(levels=n) for n in (3, 2, 1, 1)),
}
NO_OPTIONS = ({}, {}, {}, {})


def mixer_options(name: str) -> tuple:
    """`model.kwargs.mixer_kwargs` for mixer `name` in every stage: its STAGE_OPTIONS, else none."""
    return STAGE_OPTIONS.get(name, NO_OPTIONS)


def get_config(arg=None):
    """The quickstart's run (its data, optimizer, batch and cadence) with one block per stage and one mixer."""
    args = parse_config_arg(arg, steps=300, mixer="pooling")
    config = quickstart.get_config(f"steps={args.steps}")
    config.checkpoint_every = 100
    config.keep_checkpoints = 1
    config.model.kwargs = ConfigDict(
        dict(LAYOUT, token_mixers=(args.mixer,) * 4, mixer_kwargs=mixer_options(args.mixer))
    )
    return config


@functools.cache
def _build_errors() -> dict[str, str | None]:
    """Each registered mixer: None if the backbone builds with it in every stage (shapes only), else the error."""
    import jax
    import jax.numpy as jnp

    from mixtok.mixers import list_mixers
    from mixtok.models import create_model

    errors = {}
    for name in list_mixers():
        model = create_model(
            "poolformerv2_s12", num_classes=10, **LAYOUT, token_mixers=(name,) * 4, mixer_kwargs=mixer_options(name)
        )
        try:
            jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3)))
            errors[name] = None
        except (ValueError, TypeError) as error:
            errors[name] = str(error).splitlines()[0]
    return errors


def excluded_mixers() -> dict[str, str]:
    """The registered mixers that do not build on this backbone with their defaults, with the reason."""
    return {name: error for name, error in _build_errors().items() if error is not None}


def get_sweep(arg=None):
    return [
        {"name": name, "model.kwargs.token_mixers": (name,) * 4, "model.kwargs.mixer_kwargs": mixer_options(name)}
        for name, error in _build_errors().items()
        if error is None
    ]
