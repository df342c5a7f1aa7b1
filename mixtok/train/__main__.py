"""Command line: python -m mixtok.train --config experiments/configs/NAME.py[:ARGS] --workdir DIR
[--config.FIELD=VALUE ...]. Running the same command again resumes from the latest checkpoint.

Exit codes (each failure is one line on stderr, "mixtok.train: error: ..."; no traceback):
  0    the run finished (or had already finished); also a preempted run with --exit_zero_on_preemption
  1    the run failed: a fault of the machine or of the training, e.g. the disk filled up while writing
       metrics or checkpoints, or the loss became NaN or infinite. What was saved before is kept.
  2    the command is wrong: a bad flag or config value, a missing config file, a --workdir that is a
       file, not writable, in use by another trainer (its host and pid are named), holding another
       model's checkpoints, or holding a metrics.jsonl with a bad line.
  143  preempted (128 + SIGTERM, what schedulers expect): the run saved a checkpoint and stopped, and
       says "preempted at step N; rerun the same command to resume" on stderr.
"""

import logging
import os
import sys

from absl import app, flags
from ml_collections import ConfigDict, config_flags

from mixtok import host_memory
from mixtok.parallel import MESH_AXES
from mixtok.train.config import OPTIONAL_DEFAULTS
from mixtok.train.trainer import NonFiniteLossError, Preempted, train_and_evaluate

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file, optionally with :ARGS.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and TensorBoard logs.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed",
    False,
    "Multi-host run: join the other processes with jax.distributed.initialize() first. "
    "On TPU pods, SLURM and other clusters JAX detects the coordinator and this process's id itself; "
    "elsewhere pass --coordinator_address, --num_processes and --process_id.",
)
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --distributed).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (with --distributed).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --distributed).")
_EXIT_ZERO_ON_PREEMPTION = flags.DEFINE_bool(
    "exit_zero_on_preemption",
    False,
    "Exit with code 0 instead of 143 (128 + SIGTERM) when SIGTERM stops the run after saving a checkpoint.",
)
flags.mark_flags_as_required(["config", "workdir"])


def initialize_distributed(coordinator_address=None, num_processes=None, process_id=None) -> None:
    """Joins the processes of a multi-host run; CPU hosts exchange collectives over gloo."""
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )


def _without_traceback(message: str) -> str:
    """Keeps the first line and the final exception line of a message that embeds a traceback."""
    lines = [line for line in message.splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        return f"{lines[0]} {lines[-1].strip()}"
    return message


class _OverrideError(ValueError):
    """A `--config.FIELD=VALUE` for an optional field whose value does not parse."""


def _optional_value(field: str, value: str):
    """`value` typed as the default of optional `field` (or, for `mesh.AXIS`, as an axis size)."""
    if field.startswith("mesh."):
        axis = field[len("mesh.") :]
        if axis not in MESH_AXES:
            raise _OverrideError(f"--config.{field}: {axis!r} is not a mesh axis; the axes are {', '.join(MESH_AXES)}.")
        try:
            size = int(value)
        except ValueError:
            size = 0
        if size < 1 and size != -1:
            raise _OverrideError(f"--config.{field}={value}: a mesh axis size is a positive integer or -1 (the rest).")
        return size
    default = OPTIONAL_DEFAULTS[field]
    try:
        return type(default)(value)
    except ValueError:
        raise _OverrideError(f"--config.{field}={value}: expected a {type(default).__name__}.") from None


def _pop_optional_overrides(argv) -> tuple[list, dict]:
    """Takes `--config.FIELD=VALUE` for the optional fields (config.OPTIONAL_DEFAULTS) and the mesh axes
    (`--config.mesh.AXIS=N`) out of argv: a config file need not define them, and ml_collections only
    overrides fields that exist. Raises `_OverrideError` for a value that does not parse."""
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


def _apply_optional_overrides(config, optional: dict) -> None:
    mesh = {field[len("mesh.") :]: size for field, size in optional.items() if field.startswith("mesh.")}
    with config.unlocked():
        for field, value in optional.items():
            if not field.startswith("mesh."):
                config[field] = value
        if mesh:
            config.mesh = ConfigDict({**dict(config.get("mesh") or {}), **mesh})


def parse_flags(argv):
    """absl's parser, with config-override mistakes (`--config.total_stepz=5`) reported in one line."""
    try:
        argv, optional = _pop_optional_overrides(argv)
    except _OverrideError as error:
        print(f"mixtok.train: error: bad config override: {error}", file=sys.stderr)
        sys.exit(2)
    # ml_collections' config flag reads its `--config.X` overrides from sys.argv, not from `argv`.
    sys.argv = list(argv)
    # config_flags defers a missing config file's error to first use, deep inside the trainer.
    for i, arg in enumerate(argv):
        value = (
            arg.split("=", 1)[1]
            if arg.startswith("--config=")
            else (argv[i + 1] if arg == "--config" and i + 1 < len(argv) else None)
        )
        if value is not None and not os.path.isfile(value.split(":", 1)[0]):
            print(
                f"mixtok.train: error: config file {value.split(':', 1)[0]!r} does not exist "
                f"(configs live in experiments/configs/; see experiments/README.md).",
                file=sys.stderr,
            )
            sys.exit(2)
    try:
        rest = flags.FLAGS(argv)
        _apply_optional_overrides(_CONFIG.value, optional)
        return rest
    except flags.Error as error:
        print(f"mixtok.train: error: {_without_traceback(str(error))}", file=sys.stderr)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        message = str(error).strip("'\"").replace("\\n", " ").replace("\n", " ")
        if " " not in message:  # ml_collections reports a missing field by its bare name
            message = f"the config has no field {message!r} (fields can only be overridden, not added)"
        print(f"mixtok.train: error: bad config override: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    logging.getLogger().setLevel(logging.INFO)
    host_memory.retain()  # before JAX's backend starts; MIXTOK_RETAIN_HOST_MEMORY=0 turns it off
    if _DISTRIBUTED.value:
        initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    # Orbax and grain log every checkpoint step at INFO through absl; keep the progress bar readable.
    logging.getLogger("absl").setLevel(logging.WARNING)
    try:
        metrics = train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except Preempted as stopped:
        # Not "final metrics": the run is not finished. 128 + the signal's number, as a killed process reports.
        print(f"mixtok.train: {stopped}", file=sys.stderr)
        sys.exit(0 if _EXIT_ZERO_ON_PREEMPTION.value else 128 + stopped.signum)
    except (ValueError, FileNotFoundError) as error:
        # User errors get their message, not a traceback from deep inside.
        print(f"mixtok.train: error: {error}", file=sys.stderr)
        sys.exit(2)
    except (NonFiniteLossError, OSError) as error:
        # Faults of the run (the loss diverged, the disk filled up): one line, and what was saved is kept.
        print(f"mixtok.train: error: {error}", file=sys.stderr)
        sys.exit(1)
    if metrics:
        print("final metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
