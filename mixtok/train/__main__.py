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
import sys

from absl import app, flags
from ml_collections import config_flags

from mixtok import host_memory
from mixtok.train.command_line import (
    OverrideError,
    apply_optional_overrides,
    missing_config_file,
    override_error_message,
    pop_optional_overrides,
    without_traceback,
)
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


def parse_flags(argv):
    """absl's parser, with config-override mistakes (`--config.total_stepz=5`) reported in one line."""
    try:
        argv, optional = pop_optional_overrides(argv)
    except OverrideError as error:
        print(f"mixtok.train: error: bad config override: {error}", file=sys.stderr)
        sys.exit(2)
    # ml_collections' config flag reads its `--config.X` overrides from sys.argv, not from `argv`.
    sys.argv = list(argv)
    missing = missing_config_file(argv)  # config_flags would report it only at first use, deep in the trainer
    if missing:
        print(f"mixtok.train: error: {missing}", file=sys.stderr)
        sys.exit(2)
    try:
        rest = flags.FLAGS(argv)
        apply_optional_overrides(_CONFIG.value, optional)
        return rest
    except flags.Error as error:
        print(f"mixtok.train: error: {without_traceback(str(error))}", file=sys.stderr)
    except (AttributeError, KeyError, TypeError, ValueError) as error:
        print(f"mixtok.train: error: bad config override: {override_error_message(error)}", file=sys.stderr)
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
