"""Checks a training config before anything expensive starts, and parses config-file arguments.

The trainer owns the fields in TRAINER_FIELDS; the task (`config.task`, default "classification")
owns its own (`Task.CONFIG_FIELDS`, e.g. the tokenizer's `loss`) and checks them (`Task.validate`).

Optional trainer fields a config file may lack (their defaults are in OPTIONAL_DEFAULTS), e.g.
`resume_mismatch`: "error" (default) refuses to resume checkpoints whose saved config differs from
this one in what the run depends on; "allow" resumes them anyway. `sharding_tolerance` (0.1): the
share of parameter bytes that may stay replicated when the mesh asks for FSDP or tensor parallelism
(`mixtok.parallel.check_sufficiently_sharded`). `mesh` ({"data": -1, "fsdp": 1, "tensor": 1}): the
device mesh; `--config.mesh.AXIS=N` sets one axis whether or not the config file has a `mesh`.
`model_ema` (absent: off): a moving average of the parameters (with `buffers`, of BatchNorm's
statistics too), timm's ModelEmaV3 (`mixtok.train.ema` lists its fields and defaults).
`grad_accum_steps` (1): micro-batches per optimizer step, the official codes' `--update_freq`; each
micro-batch is `batch_size` images (a multi-scale stream draws each one's size and batch), so one
update sees batch_size x grad_accum_steps images and `total_steps` counts updates
(`mixtok.train.steps.make_train_step`).
"""

import math
from numbers import Real

from ml_collections import ConfigDict

from mixtok.registry import unknown_name_error
from mixtok.train.ema import model_ema_from_config
from mixtok.train.tasks import DEFAULT_TASK, TASKS, get_task
from mixtok.train.tasks.base import compute_dtype

__all__ = ["OPTIONAL_DEFAULTS", "REQUIRED", "TRAINER_FIELDS", "compute_dtype", "parse_config_arg", "validate_config"]

REQUIRED = ("model", "data", "batch_size", "total_steps", "seed", "optimizer")
TRAINER_FIELDS = REQUIRED + (
    "task",
    "log_every",
    "eval_every",
    "checkpoint_every",
    "keep_checkpoints",
    "mesh",
    "sharding_rules",
    "sharding_tolerance",
    "progress_bar",
    "tensorboard",
    "async_checkpointing",
    "eval_batch_size",
    "resume_mismatch",
    "model_ema",
    "grad_accum_steps",
)
# Fields a config file need not define; `--config.FIELD=VALUE` sets them all the same (mixtok.train's CLI).
OPTIONAL_DEFAULTS = {"resume_mismatch": "error", "sharding_tolerance": 0.1, "grad_accum_steps": 1}
RESUME_MISMATCH = ("error", "allow")


def _check_normalisation(data) -> None:
    """data.mean must be finite and data.std finite and positive (scalar or per channel): images are divided by std."""
    for key, positive in (("mean", False), ("std", True)):
        if key not in data:
            continue
        value = data[key]
        values = value if isinstance(value, (tuple, list)) else (value,)
        ok = bool(values) and all(
            isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
            for v in values
        )
        if not ok:
            what = "finite and positive (the images are divided by it)" if positive else "finite"
            raise ValueError(f"config.data.{key} must be {what}, a number or one per channel; got {value!r}.")


def validate_config(config: ConfigDict) -> None:
    """Raises a ValueError that names each missing, unknown or invalid top-level field."""
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(
            f"The config lacks the required fields {missing}; every training config needs {', '.join(REQUIRED)}."
        )
    task_name = config.get("task", DEFAULT_TASK)
    task = get_task(task_name)
    known = TRAINER_FIELDS + task.CONFIG_FIELDS
    for key in config.keys():
        if key in known:
            continue
        owners = [name for name in TASKS.names() if key in get_task(name).CONFIG_FIELDS]
        if owners:
            raise ValueError(
                f"config.{key} belongs to the {' / '.join(owners)} task, but config.task is "
                f"{task_name!r}; remove it or set config.task."
            )
        raise unknown_name_error("config field", key, known)
    for key in ("batch_size", "total_steps", "grad_accum_steps"):
        value = config.get(key, OPTIONAL_DEFAULTS.get(key))
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"config.{key} must be a positive integer; got {value!r}.")
    if "name" not in config.model:
        raise ValueError(
            "config.model.name is required (a name from mixtok.models.list_models() or "
            "mixtok.tokenizers.list_tokenizers())."
        )
    compute_dtype(config)  # an unknown config.model.dtype is an error naming the valid ones
    if "data" in config and hasattr(config.data, "keys"):
        _check_normalisation(config.data)
    tolerance = config.get("sharding_tolerance", OPTIONAL_DEFAULTS["sharding_tolerance"])
    if isinstance(tolerance, bool) or not isinstance(tolerance, Real) or not 0 <= tolerance <= 1:
        raise ValueError(f"config.sharding_tolerance must be a number in [0, 1]; got {tolerance!r}.")
    mismatch = config.get("resume_mismatch", "error")
    if mismatch not in RESUME_MISMATCH:
        raise ValueError(f"config.resume_mismatch must be one of {RESUME_MISMATCH}; got {mismatch!r}.")
    model_ema_from_config(config)  # a bad config.model_ema field is one line naming it
    task.validate(config)


def parse_config_arg(arg: str | None, **defaults) -> ConfigDict:
    """Parses `get_config`'s argument `"key=value,flag"` into typed options.

    Each option's type comes from its default: `parse_config_arg("variant=s18,runlocal",
    variant="s12", runlocal=False)` gives variant="s18", runlocal=True. A bare key sets a bool
    option to True. Unknown keys and values that do not parse raise errors naming the valid keys.
    """
    out = ConfigDict(dict(defaults))
    for part in filter(None, (arg or "").split(",")):
        key, sep, value = part.partition("=")
        key = key.strip()
        if key not in defaults:
            raise unknown_name_error("config argument", key, defaults)
        default = defaults[key]
        if not sep:
            if not isinstance(default, bool):
                raise ValueError(f"Config argument {key!r} needs a value, e.g. {key}={default}.")
            out[key] = True
        elif isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(f"Config argument {key}={value!r} must be true or false.")
            out[key] = value.lower() in ("true", "1")
        else:
            try:
                out[key] = type(default)(value)
            except ValueError:
                raise ValueError(f"Config argument {key}={value!r} is not a valid {type(default).__name__}.") from None
    return out
