"""What every launcher shares: the trainer's arguments, the one-line errors, printing commands.

A launcher's command line is `python -m mixtok.launch KIND [launcher options] -- <trainer args>`;
everything after `--` goes to `python -m mixtok.train` unchanged, and the launcher adds the
`--distributed` flags of its kind of cluster.
"""

import argparse
import os
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

PROG = "mixtok.launch"
TRAINER_MODULE = "mixtok.train"
# Set by the launcher for each kind of cluster; the user gives only the run's own arguments.
LAUNCHER_FLAGS = ("--distributed", "--coordinator_address", "--num_processes", "--process_id")
# HTTP(S) proxies "may cause a hang" in jax.distributed.initialize (jax-ml/jax: jax/_src/distributed.py).
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
# `scheme://...` (RFC 3986: a letter, then letters, digits, '+', '-', '.'): gs://, s3://, file://, ...
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class LaunchError(Exception):
    """Bad input, found before anything is started: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with its errors raised as LaunchError (one line, no usage block)."""

    def error(self, message):
        raise LaunchError(message)


def at_least_one(text: str) -> int:
    """argparse type for counts (processes, nodes, GPUs, slices): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (it must be 1 or more)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is less than 1 (it must be 1 or more)")
    return value


@dataclass(frozen=True)
class TrainerArgs:
    """The trainer's part of the command line, as given, with the two values the launchers check."""

    argv: tuple[str, ...]
    config: str
    workdir: str


def _flag_value(argv: Sequence[str], name: str) -> str | None:
    """The value of `--name=V` or `--name V` (absl accepts both; the last one wins)."""
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
        elif arg == name:
            value = argv[i + 1] if i + 1 < len(argv) else ""
    return value


def parse_trainer_args(argv: Sequence[str]) -> TrainerArgs:
    """Checks the trainer's arguments that a launcher can check before starting anything."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name in LAUNCHER_FLAGS or name == "--nodistributed":
            raise LaunchError(f"{arg!r}: the launcher sets {', '.join(LAUNCHER_FLAGS)} itself; leave them out.")
    config = _flag_value(argv, "--config")
    if not config:
        raise LaunchError(
            "no --config after '--': give the trainer's arguments after '--', e.g. "
            "-- --config experiments/configs/quickstart.py --workdir DIR."
        )
    path = config.split(":", 1)[0]
    if not os.path.isfile(path):
        raise LaunchError(
            f"config file {path!r} does not exist (configs live in experiments/configs/; paths are relative to "
            f"the current directory, {os.getcwd()})."
        )
    workdir = _flag_value(argv, "--workdir")
    if not workdir:
        raise LaunchError("no --workdir after '--': the trainer needs a directory for checkpoints and metrics.")
    return TrainerArgs(tuple(argv), config, workdir)


def require_shared_workdir(trainer: TrainerArgs, kind: str) -> None:
    """A multi-host run needs a workdir every host writes to: a gs:// bucket path, or an absolute path on a
    filesystem every host mounts.

    The trainer writes to gs:// itself (`mixtok.train.storage`, with gcsfs: the `gcs` extra); other URLs are
    refused, as the trainer refuses them. Whether a filesystem path really is shared cannot be seen from here;
    that is the user's to ensure.
    """
    workdir = trainer.workdir
    if workdir.startswith("gs://"):
        return
    if URL.match(workdir):
        raise LaunchError(
            f"--workdir {workdir!r}: of URLs only gs:// (Google Cloud Storage) is supported; give a gs://bucket/path "
            "or an absolute path on a filesystem every host mounts."
        )
    if not os.path.isabs(workdir):
        raise LaunchError(
            f"--workdir {workdir!r} is a relative path, but every host of a {kind} run writes to the workdir; "
            "use an absolute path on a filesystem every host mounts."
        )


def trainer_command(python: str, trainer: TrainerArgs, *distributed_flags: str) -> list[str]:
    """`python -m mixtok.train <the user's trainer args> --distributed [flags]`, as an argv list."""
    return [python, "-m", TRAINER_MODULE, *trainer.argv, "--distributed", *distributed_flags]


def require_tool(tool: str, how_to_install: str) -> None:
    """Real runs need the cluster's client tool on PATH; --dry-run does not."""
    if shutil.which(tool) is None:
        raise LaunchError(f"{tool} is not on PATH; {how_to_install} (or use --dry-run to print the commands).")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="Print what would run, one command per line, and exit 0."
    )


def print_commands(commands: Sequence[Sequence[str] | str]) -> None:
    """One command per line: an argv list shell-quoted with shlex.join, or a ready shell line."""
    for command in commands:
        print(command if isinstance(command, str) else shlex.join(command), flush=True)
