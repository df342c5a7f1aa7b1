r"""Command line: python -m mixtok.sweep --config FILE[:ARGS] --root DIR [--only NAME,...] [--dry-run]
[--launcher local|slurm|tpu|gke] [-- launcher options]. Runs the sweep a config file defines.

A config file may define, beside `get_config(arg=None)`, a `get_sweep(arg=None)` (both get the ARGS after
the colon) that returns a list of points, each a dict with a "name" and dotted config overrides:

    def get_sweep(arg=None):
        return [
            {"name": "pooling", "model.kwargs.token_mixers": ("pooling",) * 4},
            {"name": "attention", "model.kwargs.token_mixers": ("attention",) * 4, "optimizer.lr": 1e-3},
        ]

Each point is an ordinary trainer run in DIR/NAME:

    python -m mixtok.train --config FILE[:ARGS] --workdir DIR/NAME --config.FIELD=VALUE ...

which the sweep prints before running it, so it can be rerun by hand (and resumes like any run).
Override values are str, bool, int, float, or tuples / lists of those, written so that ml_collections'
`--config.FIELD=VALUE` parser reads them back; a field must exist in `get_config`'s config (or be one of
the trainer's optional fields, `mixtok.train.config.OPTIONAL_DEFAULTS`, or `mesh.AXIS`). Point names are
directory names: letters, digits, '.', '_' and '-', starting with a letter or digit.

`--launcher local` (the default) runs the points here one after another. `DIR/sweep.json` (written
atomically) records the config, and per point its overrides, command, state ("pending", "running",
"done", "failed" with the last line of the trainer's stderr in "error"), start and end times (UTC) and
wall seconds. On a rerun with the same --root, a point that is "done" (or "submitted") with the same
command is skipped; every other point is run, so an interrupted one ("running") resumes from its last
checkpoint and a failed one is tried again. A point whose overrides changed starts again as "pending";
its run meets the checkpoints its workdir already holds (the trainer resumes them or, for another model,
refuses them: delete the workdir to start that point afresh). A failing point does not stop the sweep.
`--only a,b` runs only those points.

`--launcher slurm|tpu|gke` hands each point to `python -m mixtok.launch KIND [launcher options] -- <the
trainer's arguments>` (launch/README.md). The launcher options are everything after the sweep's `--`;
the sweep sets what must differ between points, in place of any given: slurm `--job-name PREFIX-NAME
--script DIR/NAME.sbatch --force`, gke `--workload PREFIX-NAME` (lowercase, '_' and '.' as '-'), where
PREFIX is the `--job-name` / `--workload` given (default "mixtok"). The workdirs are absolute paths (every host writes
to them). slurm and gke points are "submitted" once sbatch / xpk accept them; tpu runs each point over
`gcloud ... ssh` in turn, so its points end "done" or "failed" like local ones.

--dry-run prints the command of every selected point, one per line (shell-quoted), checks the launcher
options, writes nothing and runs nothing.

Exit status:
  0  every selected point is done (or submitted); always after --dry-run
  1  a point failed (its error is in sweep.json and on stderr)
  130 interrupted (Ctrl-C): the point that was running stays "running" and resumes on a rerun
  2  bad input, found before anything runs: one line "mixtok.sweep: error: ...". A config file that does
     not exist or has no get_config / get_sweep; a point that is not a dict, has no name, repeats a name,
     has a name that is not a safe directory name, overrides a field the config does not have, or has a
     value that cannot be written as a flag; --only naming an unknown point; a --root that is a file or
     holds another sweep's sweep.json (another config file or ARGS); bad launcher options.
"""

import argparse
import contextlib
import datetime
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from ml_collections import ConfigDict

PROG = "mixtok.sweep"
LAUNCHERS = ("local", "slurm", "tpu", "gke")
STATES = ("pending", "running", "done", "failed", "submitted")
SWEEP_FILE = "sweep.json"
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

__all__ = ["LAUNCHERS", "Point", "SweepError", "expand_sweep", "format_value", "load_sweep", "main"]


class SweepError(Exception):
    """Bad input, found before anything runs: printed as one line, exit status 2."""


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):
        raise SweepError(message)


@dataclass(frozen=True)
class Point:
    """One run of a sweep: its directory name and its `--config.FIELD=VALUE` overrides (dotted field names)."""

    name: str
    overrides: dict


def _literal(value) -> str:
    """A Python literal of scalars, tuples and str-keyed dicts; strings double-quoted (a JSON string is a
    Python literal too), so that shlex.join's single quotes around the whole flag stay readable:
    '--config.x=("pooling", "attention")'."""
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        items = [_literal(v) for v in value]
        return f"({', '.join(items)}{',' if len(items) == 1 else ''})"
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        return "{" + ", ".join(f"{json.dumps(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value).__name__)


def format_value(value) -> str:
    """`value` as ml_collections' `--config.FIELD=VALUE` parser reads it back: strings raw, tuples as literals
    (of scalars, tuples, or dicts with string keys, e.g. per-stage options ({"sr_ratio": 8}, {})); the
    field must hold a tuple already for ml_collections to parse a tuple of dicts."""
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return value
    if isinstance(value, tuple | list):
        try:
            return _literal(value)
        except TypeError:
            pass
    raise TypeError(
        f"{value!r} is a {type(value).__name__}; a value is a str, bool, int, float, or a tuple of those, of "
        "tuples or of dicts with string keys"
    )


def _has_field(config: ConfigDict, field: str) -> bool:
    from mixtok.parallel import MESH_AXES
    from mixtok.train.config import OPTIONAL_DEFAULTS

    if field in OPTIONAL_DEFAULTS or (field.startswith("mesh.") and field[len("mesh.") :] in MESH_AXES):
        return True
    node = config
    for part in field.split("."):
        if not isinstance(node, ConfigDict) or part not in node:
            return False
        node = node[part]
    return not isinstance(node, ConfigDict)


def expand_sweep(points, config: ConfigDict) -> list[Point]:
    """Checks `get_sweep()`'s list against `config` (names, fields, values) and returns its points."""
    if not isinstance(points, list | tuple) or not points:
        raise SweepError(f"get_sweep() must return a non-empty list of dicts; got {points!r}.")
    out, seen = [], set()
    for index, point in enumerate(points):
        if not isinstance(point, dict):
            raise SweepError(f"sweep point {index} is a {type(point).__name__}; each point is a dict with a 'name'.")
        name = point.get("name")
        if name is None:
            raise SweepError(f"sweep point {index} has no 'name' (its directory under --root); it is {point!r}.")
        if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name == SWEEP_FILE:
            raise SweepError(
                f"sweep point {index} has name {name!r}, which is not a safe directory name: use letters, digits, "
                "'.', '_' and '-', starting with a letter or digit (at most 100 characters)."
            )
        if name in seen:
            raise SweepError(f"sweep point name {name!r} repeats; each point needs its own name (its directory).")
        seen.add(name)
        overrides = {key: value for key, value in point.items() if key != "name"}
        for field, value in overrides.items():
            if not _has_field(config, field):
                raise SweepError(
                    f"sweep point {name!r} overrides {field!r}, a field the config does not have "
                    "(fields can only be overridden, not added; use dotted names such as 'optimizer.lr')."
                )
            try:
                format_value(value)
            except TypeError as error:
                raise SweepError(f"sweep point {name!r}, field {field!r}: {error}.") from None
        out.append(Point(name, overrides))
    return out


def load_sweep(config_ref: str) -> tuple[ConfigDict, list[Point]]:
    """The config and the checked points of `"path/to/config.py[:ARGS]"`."""
    from mixtok.train.config_files import load_module

    path, _, arg = config_ref.partition(":")
    if not os.path.isfile(path):
        raise SweepError(
            f"config file {path!r} does not exist (configs live in experiments/configs/; see experiments/README.md)."
        )
    module = load_module(path)
    for function in ("get_config", "get_sweep"):
        if not callable(getattr(module, function, None)):
            raise SweepError(
                f"{path!r} defines no {function}(arg=None); a sweep's config file defines get_config and get_sweep "
                "(see experiments/README.md, Sweeps)."
            )
    try:
        config = module.get_config(arg or None)
        points = module.get_sweep(arg or None)
    except (ValueError, TypeError, KeyError) as error:
        raise SweepError(f"--config {config_ref!r}: {error}") from None
    return config, expand_sweep(points, config)


def trainer_args(config_ref: str, workdir: str, point: Point) -> list[str]:
    """`--config F[:ARGS] --workdir DIR/NAME --config.FIELD=VALUE ...`: the trainer's arguments for `point`."""
    overrides = [f"--config.{field}={format_value(value)}" for field, value in point.overrides.items()]
    return ["--config", config_ref, "--workdir", workdir, *overrides]


def _flag_value(argv, name: str) -> str | None:
    value = None
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            value = arg.split("=", 1)[1]
        elif arg == name and i + 1 < len(argv):
            value = argv[i + 1]
    return value


def _without(argv, names: tuple[str, ...], switches: tuple[str, ...] = ()) -> list[str]:
    """`argv` less the options `names` (`--name V` or `--name=V`) and the switches `switches`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in names:
            skip = True
        elif arg.split("=", 1)[0] in names or arg in switches:
            continue
        else:
            out.append(arg)
    return out


def launcher_options(kind: str, launcher_argv, root: str, name: str) -> list[str]:
    """The user's launcher options, with those that must differ between the points of one sweep set per point."""
    if kind == "slurm":
        prefix = _flag_value(launcher_argv, "--job-name") or "mixtok"
        own = _without(launcher_argv, ("--job-name", "--script"), ("--force",))
        return [*own, "--job-name", f"{prefix}-{name}", "--script", os.path.join(root, f"{name}.sbatch"), "--force"]
    if kind == "gke":
        prefix = _flag_value(launcher_argv, "--workload") or "mixtok"
        own = _without(launcher_argv, ("--workload",))
        return [*own, "--workload", re.sub(r"[_.]", "-", f"{prefix}-{name}".lower())]
    return list(launcher_argv)


def point_command(args, launcher_argv, point: Point) -> list[str]:
    """The argv that runs `point`: the trainer itself (local) or `mixtok.launch KIND` (clusters)."""
    if args.launcher == "local":
        workdir = os.path.join(args.root, point.name)
        return [sys.executable, "-m", "mixtok.train", *trainer_args(args.config, workdir, point)]
    root = os.path.abspath(args.root)
    launch = launcher_options(args.launcher, launcher_argv, root, point.name)
    trainer = trainer_args(args.config, os.path.join(root, point.name), point)
    return [sys.executable, "-m", "mixtok.launch", args.launcher, *launch, "--", *trainer]


def check_launcher(command: list[str]) -> None:
    """Runs `mixtok.launch`'s own checks on one point's command (as its --dry-run, output discarded)."""
    from mixtok.launch.__main__ import main as launch_main
    from mixtok.launch.common import LaunchError

    argv = command[3:]
    split = argv.index("--")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            launch_main([*argv[:split], "--dry-run", *argv[split:]])
    except LaunchError as error:
        raise SweepError(f"launcher {argv[0]}: {error}") from None


def _same_config(a: str, b: str) -> bool:
    (path_a, _, arg_a), (path_b, _, arg_b) = a.partition(":"), b.partition(":")
    return os.path.realpath(path_a) == os.path.realpath(path_b) and arg_a == arg_b


def read_state(root: str, config_ref: str) -> dict:
    """The sweep.json under `root`, or a new one; refuses a root that holds another sweep's."""
    if os.path.exists(root) and not os.path.isdir(root):
        raise SweepError(f"--root {root!r} is a file; give a directory (it is created if missing).")
    path = os.path.join(root, SWEEP_FILE)
    if not os.path.exists(path):
        return {"config": config_ref, "points": {}}
    try:
        with open(path) as f:
            state = json.load(f)
        other = state["config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SweepError(f"{path!r} is not a sweep.json this tool wrote ({error}); use another --root.") from None
    if not _same_config(other, config_ref):
        raise SweepError(
            f"--root {root!r} holds the sweep.json of another sweep (config {other!r}, not {config_ref!r}); "
            "use another --root."
        )
    return state


def write_state(root: str, state: dict) -> None:
    """Writes sweep.json atomically: a temporary file in `root`, fsync, then os.replace."""
    fd, temporary = tempfile.mkstemp(dir=root, prefix=f".{SWEEP_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(state, f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, os.path.join(root, SWEEP_FILE))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    directory = os.open(root, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def run_point(command: list[str]) -> tuple[int, str]:
    """Runs `command`, passing its stderr through; returns its exit status and the last line of its stderr."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace")
    last = ""
    try:
        for line in process.stderr:
            sys.stderr.write(line)
            if line.strip():
                last = line.strip()
    except KeyboardInterrupt:  # Ctrl-C reached the trainer too: let it save and stop before the sweep exits
        process.wait()
        raise
    return process.wait(), last


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    split = argv.index("--") if "--" in argv else len(argv)
    own, launcher_argv = argv[:split], argv[split + 1 :]
    parser = _ArgumentParser(
        prog=f"python -m {PROG}", description="Runs the sweep a config file's get_sweep() defines.", add_help=True
    )
    parser.add_argument("--config", required=True, help="The config file, with options after a colon: FILE[:ARGS].")
    parser.add_argument("--root", required=True, help="The sweep's directory; point NAME runs in ROOT/NAME.")
    parser.add_argument("--only", help="Comma-separated point names to run (default: all).")
    parser.add_argument("--dry-run", action="store_true", help="Print each point's command and exit 0.")
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS, help="Where the points run.")
    args = parser.parse_args(own)
    if launcher_argv and args.launcher == "local":
        raise SweepError(
            f"options after '--' ({shlex.join(launcher_argv)}) go to a cluster launcher; "
            "--launcher local takes none (use --launcher slurm, tpu or gke)."
        )
    return args, launcher_argv


def main(argv: list[str]) -> int:
    args, launcher_argv = parse_args(argv)
    _, all_points = load_sweep(args.config)
    names = [point.name for point in all_points]
    points = all_points
    if args.only is not None:
        only = [name.strip() for name in args.only.split(",") if name.strip()]
        unknown = [name for name in only if name not in names]
        if unknown or not only:
            raise SweepError(f"--only {args.only!r}: unknown point(s) {unknown}; the points are {', '.join(names)}.")
        points = [point for point in points if point.name in only]
    commands = {point.name: point_command(args, launcher_argv, point) for point in all_points}
    if args.launcher != "local":
        check_launcher(commands[points[0].name])
    state = read_state(args.root, args.config)
    if args.dry_run:
        for point in points:
            print(shlex.join(commands[point.name]), flush=True)
        return 0

    # Every point of get_sweep() is recorded; one whose command changed starts again as pending.
    previous = state.get("points", {})
    state = {"config": args.config, "launcher": args.launcher, "points": {}}
    for point in all_points:
        command = shlex.join(commands[point.name])
        entry = previous.get(point.name)
        if not isinstance(entry, dict) or entry.get("command") != command:
            entry = {"overrides": point.overrides, "command": command, "state": "pending"}
        state["points"][point.name] = entry
    os.makedirs(args.root, exist_ok=True)
    write_state(args.root, state)

    failed = []
    for number, point in enumerate(points, 1):
        entry = state["points"][point.name]
        prefix = f"{PROG}: point {point.name} ({number}/{len(points)})"
        if entry["state"] in ("done", "submitted"):
            print(f"{prefix}: {entry['state']}, skipped ({entry['command']})", flush=True)
            continue
        print(f"{prefix}: {entry['command']}", flush=True)
        entry.update(state="running", start_time=_now())
        for key in ("end_time", "wall_seconds", "error", "exit_status"):
            entry.pop(key, None)
        write_state(args.root, state)
        start = time.monotonic()
        status, last_line = run_point(commands[point.name])
        entry.update(end_time=_now(), wall_seconds=round(time.monotonic() - start, 3))
        if status == 0:
            entry["state"] = "submitted" if args.launcher in ("slurm", "gke") else "done"
            print(f"{prefix}: {entry['state']} in {entry['wall_seconds']:.1f} s", flush=True)
        else:
            failed.append(point.name)
            entry.update(state="failed", exit_status=status, error=last_line or f"exit status {status}")
            print(f"{prefix}: failed (exit status {status}): {entry['error']}", file=sys.stderr, flush=True)
        write_state(args.root, state)
    if failed:
        print(f"{PROG}: {len(failed)} point(s) failed: {', '.join(failed)} (see {args.root}/sweep.json)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except SweepError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; rerun the same command to resume (sweep.json keeps its state)", file=sys.stderr)
        sys.exit(130)
