"""Checks a training config before anything expensive starts, and builds its model."""

from typing import Any

import jax.numpy as jnp
from ml_collections import ConfigDict

from mixtok.registry import unknown_name_error

REQUIRED = ("model", "data", "batch_size", "total_steps", "seed", "optimizer")
KNOWN_TOP_LEVEL = REQUIRED + (
    "task", "label_smoothing", "log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
    "mesh", "sharding_rules", "progress_bar", "tensorboard", "async_checkpointing", "eval_batch_size",
    # the tokenizer task (mixtok.train.tasks.tokenizer)
    "loss", "discriminator_optimizer", "eval_num_tokens",
)
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def validate_config(config: ConfigDict) -> None:
    """Raises a ValueError that names each missing, unknown or invalid top-level field."""
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise ValueError(f"The config lacks the required fields {missing}; every training config needs "
                         f"{', '.join(REQUIRED)}.")
    for key in config.keys():
        if key not in KNOWN_TOP_LEVEL:
            raise unknown_name_error("config field", key, KNOWN_TOP_LEVEL)
    for key in ("batch_size", "total_steps"):
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ValueError(f"config.{key} must be a positive integer; got {config[key]!r}.")
    if "name" not in config.model:
        raise ValueError("config.model.name is required (a name from mixtok.models.list_models()).")
    dtype = config.model.get("dtype", "float32")
    if dtype not in DTYPES:
        raise unknown_name_error("compute dtype", dtype, DTYPES)


def compute_dtype(config: ConfigDict) -> Any:
    return DTYPES[config.model.get("dtype", "float32")]


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
