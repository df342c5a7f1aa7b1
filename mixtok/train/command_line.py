"""The parts of a config command line that `python -m mixtok.train` and `python -m mixtok.compile_check` share.

Both take `--config FILE[:ARGS]` and `--config.FIELD=VALUE`, and report a mistake in one line:
- the optional trainer fields (`mixtok.train.config.OPTIONAL_DEFAULTS`) and the mesh axes
  (`--config.mesh.AXIS=N`) are taken out of argv (`pop_optional_overrides`) and set on the config
  afterwards (`apply_optional_overrides`), since ml_collections only overrides fields a config file
  defines;
- a missing config file is named before anything else (`missing_config_file`);
- ml_collections' and absl's errors are shortened to one line (`override_error_message`,
  `without_traceback`).
"""

import os

from ml_collections import ConfigDict

from mixtok.parallel import MESH_AXES
from mixtok.train.config import OPTIONAL_DEFAULTS

__all__ = [
    "OverrideError",
    "apply_optional_overrides",
    "missing_config_file",
    "override_error_message",
    "pop_optional_overrides",
    "without_traceback",
]


def without_traceback(message: str) -> str:
    """Keeps the first line and the final exception line of a message that embeds a traceback."""
    lines = [line for line in message.splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        return f"{lines[0]} {lines[-1].strip()}"
    return message


class OverrideError(ValueError):
    """A `--config.FIELD=VALUE` for an optional field whose value does not parse."""


def _optional_value(field: str, value: str):
    """`value` typed as the default of optional `field` (or, for `mesh.AXIS`, as an axis size)."""
    if field.startswith("mesh."):
        axis = field[len("mesh.") :]
        if axis not in MESH_AXES:
            raise OverrideError(f"--config.{field}: {axis!r} is not a mesh axis; the axes are {', '.join(MESH_AXES)}.")
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1 and size != -1:
            raise OverrideError(f"--config.{field}={value}: a mesh axis size is a positive integer or -1 (the rest).")
        return size
    default = OPTIONAL_DEFAULTS[field]
    try:
        return type(default)(value)
    except ValueError:
        raise OverrideError(f"--config.{field}={value}: expected a {type(default).__name__}.") from None


def pop_optional_overrides(argv) -> tuple[list, dict]:
    """Takes `--config.FIELD=VALUE` for the optional fields (config.OPTIONAL_DEFAULTS) and the mesh axes
    (`--config.mesh.AXIS=N`) out of argv: a config file need not define them, and ml_collections only
    overrides fields that exist. Raises `OverrideError` for a value that does not parse."""
    rest, optional = [], {}
    args = iter(argv)
    for arg in args:
        name, sep, value = arg.partition("=")
        field = name[len("--config.") :] if name.startswith("--config.") else None
        if field is not None and (field in OPTIONAL_DEFAULTS or field.startswith("mesh.")):
            optional[field] = _optional_value(field, value if sep else next(args, ""))
        else:
            rest.append(arg)
    return rest, optional


def apply_optional_overrides(config, optional: dict) -> None:
    mesh = {field[len("mesh.") :]: size for field, size in optional.items() if field.startswith("mesh.")}
    with config.unlocked():
        for field, value in optional.items():
            if not field.startswith("mesh."):
                config[field] = value
        if mesh:
            config.mesh = ConfigDict({**dict(config.get("mesh") or {}), **mesh})


def missing_config_file(argv) -> str | None:
    """The one-line error for a `--config FILE[:ARGS]` whose file does not exist, else None."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--config=") else None
        if arg == "--config" and i + 1 < len(argv):
            value = argv[i + 1]
        if value is not None and not os.path.isfile(value.split(":", 1)[0]):
            return (
                f"config file {value.split(':', 1)[0]!r} does not exist "
                "(configs live in experiments/configs/; see experiments/README.md)."
            )
    return None


def override_error_message(error: BaseException) -> str:
    """One line for a config override ml_collections refused (it names a missing field by its bare name)."""
    message = str(error).strip("'\"").replace("\\n", " ").replace("\n", " ").replace("\\'", "'")
    if " " not in message:
        message = f"the config has no field {message!r} (fields can only be overridden, not added)"
    return message
