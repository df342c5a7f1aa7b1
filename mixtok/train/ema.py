"""Model EMA: a moving average of the parameters (optionally of BatchNorm statistics), timm's `ModelEmaV3`.

A config turns it on with a `model_ema` block (absent: off, and the train state, checkpoints and
metrics are exactly what they are without it):

    config.model_ema = dict(decay=0.9998, warmup=False, warmup_gamma=1.0, warmup_power=2 / 3,
                            min_decay=0.0, update_after_step=0, eval=True, buffers=False,
                            first_update_copies=True)

Every field is optional (the values above are the defaults: timm train.py's `--model-ema-decay`
0.9998, the rest `ModelEmaV3`'s; `buffers` and `first_update_copies` are described below). The
average lives in the train state (`EmaTrainState.ema_params`, float32, sharded like the parameters),
is updated inside the jitted train step after the optimizer update, is saved and restored with the
checkpoint, and with `eval` (default on) the eval pass runs on it too, logged as `eval_ema/...`
beside `eval/...`.

timm (huggingface/pytorch-image-models: timm/utils/model_ema.py, `ModelEmaV3`; train.py calls
`model_ema.update(model, step=num_updates)` right after the optimizer step, `num_updates` already
counting that step):

- `get_decay(step)`: with t = max(0, step - update_after_step - 1), the decay is 0 while t == 0
  (the average is set to the parameters: the first update copies them), else `decay`, or with
  `use_warmup` `max(min(1 - (1 + t / warmup_gamma) ** -warmup_power, decay), min_decay)`.
- the update is `ema.lerp_(param, 1 - decay)`.

Here the step is `TrainState.step` after the update (1 at the first step), as timm's `num_updates`.
The weight `1 - decay` is computed directly (`(1 + t / gamma) ** -power`, or `1 - decay` in double
precision on the host) rather than by subtracting a float32 decay from 1, which would lose 3 of the
7 significant digits of 1 - 0.9998. The lerp is torch's (aten `lerp`: `e + w * (p - e)` for
w < 0.5, else `p - (p - e) * (1 - w)`), so the first update copies the parameters exactly.

Which official recipes keep an EMA (as the configs' docstrings in experiments/configs/imagenet record
them, and the official code): MetaFormer (sail-sg/metaformer: train.py `--model-ema` off by default,
scripts/*/train_*.sh do not set it), GFNet and TransNeXt (DaiShiResearch/TransNeXt:
classification/main.py, its `--model-ema` arguments commented out) keep none; LSNet keeps one at
0.99996 (DeiT's main.py default), CAS-ViT and FFNet at 0.9995, AffNet (cvnets) at momentum 5e-4,
TiTok's tokenizer at 0.999. DeiT-style scripts use timm's older `ModelEma` (and `ModelEmaV2`), whose
`update` sets every state-dict entry, parameters and buffers, to `ema * decay + (1 - decay) * model`:
the decay is constant from the first update (no copy at step 1, no warm-up). `warmup=False` here
differs from it by that first copy, so the two averages differ by decay ** n * (the first step's
change) after n steps; `first_update_copies=False, buffers=True` is `ModelEma` itself, as cvnets' EMA
below; the FFNet, CAS-ViT and LSNet configs set it so.

Buffers (`buffers`, default off): `ModelEmaV3` also averages the model's floating-point buffers
(BatchNorm's running mean and variance) unless `exclude_buffers=True`: `apply_update_` lerps every
floating-point entry of the state dict with the same weight `1 - decay` as the parameters (the first
update copying them too) and copies the others (`num_batches_tracked`); with `exclude_buffers=True`
(`apply_update_no_buffers_`) it copies every buffer from the model at each update. Off, mixtok does
the latter: only the parameters are averaged, and the EMA model is evaluated with the raw model's other
collections (`batch_stats`, `quantizer_state`, frozen weights), and the state and checkpoints are
exactly what they were before this option existed. With `buffers=True` the `batch_stats` collections
(every `batch_stats` in the state's `other_variables`, at any depth: a tokenizer's discriminator keeps
its own) are averaged too, by the same update with the same weight, right after the parameters; the
average lives in `EmaBuffersTrainState.ema_batch_stats` (float32, sharded like `batch_stats`, in the
checkpoint), and the EMA eval runs with it in place of the raw statistics
(`mixtok.train.steps.ema_variables`). Other mutable collections (`quantizer_state`'s EMA codebooks
and counters) stay the raw model's either way.

cvnets (apple/ml-cvnets: cvnets/misc/averaging_utils.py, `EMA`, which MobileViT's and so AFFNet's
recipe turns on with config/classification/imagenet/mobilevit.yaml `ema: {enable: true, momentum:
0.0005}`): main_train.py builds it from the freshly initialised model (a deep copy, so the average
starts at the initial weights and buffers), and engine/training_engine.py calls
`model_ema.update_parameters(model)` after every optimizer step (every `accum_freq` batches), which
sets every entry of the state dict, parameters and buffers alike, to `ema * (1 - momentum) + momentum *
model`. So it is `decay = 1 - momentum` from the very first update, with no first-update copy, no
warm-up, and buffers averaged: timm's `ModelEma` formula. `first_update_copies=False` (which needs `warmup=False` and
`update_after_step=0`) gives exactly that: the weight is `1 - decay` at every step, the first update
included, so the average starts from the step-0 parameters (and statistics). AFFNet's configs set
`decay=0.9995, warmup=False, first_update_copies=False, buffers=True`. What still differs: the
update is torch's lerp `e + w (p - e)` rather than `e (1 - w) + w p`, which agree up to float32
rounding (a few units in the last place per update); and cvnets also averages the integer
`num_batches_tracked` (truncated back to an integer), which flax's BatchNorm does not have.
"""

import dataclasses
import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

import jax
import jax.numpy as jnp
from ml_collections import ConfigDict

__all__ = [
    "BATCH_STATS",
    "MODEL_EMA_DEFAULTS",
    "ModelEma",
    "model_ema_from_config",
    "running_stats",
    "with_running_stats",
]

BATCH_STATS = "batch_stats"  # the collection `buffers=True` averages

MODEL_EMA_DEFAULTS = {
    "decay": 0.9998,
    "min_decay": 0.0,
    "update_after_step": 0,
    "warmup": False,
    "warmup_gamma": 1.0,
    "warmup_power": 2 / 3,
    "eval": True,
    "buffers": False,
    "first_update_copies": True,
}


@dataclasses.dataclass(frozen=True)
class ModelEma:
    """The EMA's settings (`config.model_ema` with defaults filled in); `update` is traceable."""

    decay: float = MODEL_EMA_DEFAULTS["decay"]
    min_decay: float = MODEL_EMA_DEFAULTS["min_decay"]
    update_after_step: int = MODEL_EMA_DEFAULTS["update_after_step"]
    warmup: bool = MODEL_EMA_DEFAULTS["warmup"]
    warmup_gamma: float = MODEL_EMA_DEFAULTS["warmup_gamma"]
    warmup_power: float = MODEL_EMA_DEFAULTS["warmup_power"]
    eval: bool = MODEL_EMA_DEFAULTS["eval"]
    buffers: bool = MODEL_EMA_DEFAULTS["buffers"]
    first_update_copies: bool = MODEL_EMA_DEFAULTS["first_update_copies"]

    def weight(self, step) -> jax.Array:
        """1 - timm's `get_decay(step)` (float32), the share of the parameters in the update at `step`.

        With `first_update_copies=False`: `1 - decay` at every step (cvnets' `momentum`).
        """
        if not self.first_update_copies:
            return jnp.float32(1.0 - self.decay)
        t = jnp.maximum(jnp.asarray(step, jnp.int32) - self.update_after_step - 1, 0)
        if self.warmup:
            u = (1.0 + t.astype(jnp.float32) / jnp.float32(self.warmup_gamma)) ** jnp.float32(-self.warmup_power)
            w = jnp.minimum(jnp.maximum(u, jnp.float32(1.0 - self.decay)), jnp.float32(1.0 - self.min_decay))
        else:
            w = jnp.float32(1.0 - self.decay)
        return jnp.where(t <= 0, jnp.float32(1.0), w)

    def decay_at(self, step) -> jax.Array:
        """timm's `ModelEmaV3.get_decay(step)`, or `decay` at every step with `first_update_copies=False` (float32)."""
        return 1.0 - self.weight(step)

    def init(self, params: Any) -> Any:
        """The average at step 0: the parameters, in float32 (integer leaves as they are)."""
        return jax.tree_util.tree_map(_as_float32, params)

    def update(self, ema_params: Any, params: Any, step) -> Any:
        """The average after the optimizer step that brought the state to `step` (timm's `num_updates`)."""
        w = self.weight(step)

        def lerp(e, p):
            if not jnp.issubdtype(e.dtype, jnp.inexact):
                return p.astype(e.dtype)  # timm copies non-float state
            p = p.astype(e.dtype)
            return jnp.where(w < 0.5, e + w * (p - e), p - (p - e) * (1.0 - w))

        return jax.tree_util.tree_map(lerp, ema_params, params)


def running_stats(variables: Mapping[str, Any]) -> dict[str, Any]:
    """The `batch_stats` collections of a model's non-parameter `variables`, in their places ({} if none).

    A collection is found at any depth (a task with several models nests their collections by model).
    """
    out = {}
    for key, value in variables.items():
        if key == BATCH_STATS:
            out[key] = value
        elif isinstance(value, Mapping) and (inner := running_stats(value)):
            out[key] = inner
    return out


def with_running_stats(variables: Mapping[str, Any], stats: Mapping[str, Any]) -> dict[str, Any]:
    """`variables` with its `batch_stats` collections replaced by `stats` (`running_stats`' layout), cast to
    the dtypes they replace."""
    out = dict(variables)
    for key, value in stats.items():
        if key == BATCH_STATS:
            out[key] = jax.tree_util.tree_map(_cast_like, value, variables[key])
        else:
            out[key] = with_running_stats(variables[key], value)
    return out


def _cast_like(x, like):
    return x if x.dtype == like.dtype else x.astype(like.dtype)


def _as_float32(x):
    return x.astype(jnp.float32) if jnp.issubdtype(x.dtype, jnp.floating) else x


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def model_ema_from_config(config: ConfigDict) -> ModelEma | None:
    """The checked `config.model_ema` with defaults filled in; None when the block is absent (EMA off).

    A bad value raises a ValueError of one line naming the field, the value and what is valid.
    """
    block = config.get("model_ema", None)
    if block is None:
        return None
    if not hasattr(block, "keys"):
        raise ValueError(
            f"config.model_ema must be a block of fields ({', '.join(MODEL_EMA_DEFAULTS)}) or absent; got {block!r}."
        )
    block = block.to_dict() if isinstance(block, ConfigDict) else dict(block)
    for key in block:
        if key not in MODEL_EMA_DEFAULTS:
            raise ValueError(f"config.model_ema.{key} is not a field; the fields are {', '.join(MODEL_EMA_DEFAULTS)}.")
    options = {**MODEL_EMA_DEFAULTS, **block}
    for key in ("decay", "min_decay"):
        if not _is_number(options[key]) or not 0.0 <= options[key] < 1.0:
            raise ValueError(f"config.model_ema.{key} must be a number in [0, 1); got {options[key]!r}.")
    if options["min_decay"] > options["decay"]:
        raise ValueError(
            f"config.model_ema.min_decay ({options['min_decay']!r}) must not exceed config.model_ema.decay "
            f"({options['decay']!r})."
        )
    for key in ("warmup_gamma", "warmup_power"):
        if not _is_number(options[key]) or options[key] <= 0:
            raise ValueError(f"config.model_ema.{key} must be a positive number; got {options[key]!r}.")
    after = options["update_after_step"]
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise ValueError(f"config.model_ema.update_after_step must be an integer >= 0; got {after!r}.")
    for key in ("warmup", "eval", "buffers", "first_update_copies"):
        if not isinstance(options[key], bool):
            raise ValueError(f"config.model_ema.{key} must be true or false; got {options[key]!r}.")
    if not options["first_update_copies"] and (options["warmup"] or after):
        raise ValueError(
            "config.model_ema.first_update_copies=False (decay from the first update, as cvnets' EMA) needs "
            f"warmup=False and update_after_step=0; got warmup={options['warmup']!r}, update_after_step={after!r}."
        )
    return ModelEma(
        decay=float(options["decay"]),
        min_decay=float(options["min_decay"]),
        update_after_step=after,
        warmup=options["warmup"],
        warmup_gamma=float(options["warmup_gamma"]),
        warmup_power=float(options["warmup_power"]),
        eval=options["eval"],
        buffers=options["buffers"],
        first_update_copies=options["first_update_copies"],
    )
