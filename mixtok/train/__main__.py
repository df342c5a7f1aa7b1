"""Command line: python -m mixtok.train --config experiments/configs/NAME.py[:ARGS] --workdir DIR
[--config.FIELD=VALUE ...]. Running the same command again resumes from the latest checkpoint."""

import logging
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from mixtok import host_memory
from mixtok.train.trainer import NonFiniteLossError, train_and_evaluate

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


def parse_flags(argv):
    """absl's parser, with config-override mistakes (`--config.total_stepz=5`) reported in one line."""
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
        return flags.FLAGS(argv)
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
    except (ValueError, FileNotFoundError, NonFiniteLossError) as error:
        # User errors get their message, not a traceback from deep inside.
        print(f"mixtok.train: error: {error}", file=sys.stderr)
        sys.exit(2)
    if metrics:
        print("final metrics: " + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
