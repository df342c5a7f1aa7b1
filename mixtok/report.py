"""Puts training runs side by side: `python -m mixtok.report DIR [--out OUT]`.

DIR is a sweep root (`python -m mixtok.sweep --root DIR`) or any folder of `python -m mixtok.train`
workdirs. A run is any directory under DIR, at any depth, that holds `metrics.jsonl`; a folder right
under DIR, a directory with the trainer's `checkpoints/`, and each point of `DIR/sweep.json` are
listed too when they have no metrics yet. Into OUT (default DIR) it writes:

  report.csv, report.md   one row per run: model, mixers, parameters, final eval metrics (every
                          eval/* key of the last eval record), best value of the main metric and its
                          step, training images/s, wall time, last step / total steps, state
  metric_vs_params.png    the main eval metric against the parameter count, points labelled
  metric_vs_throughput.png  the same against training images/s (when a run recorded its timing)
  curves.png              training loss and the main eval metric against the step, every run
  hparams/                TensorBoard's HParams dashboard: one session per run with its
                          hyperparameters and final metrics (`tensorboard --logdir DIR`)

Where each column comes from:

- model, mixers, total steps: the `config` item of the run's latest checkpoint
  (`checkpoints/<step>/config/metadata`, mixtok/train/checkpointing.py); for a sweep point with
  no checkpoint yet, the sweep's config file (`"config"` in sweep.json) with the point's overrides.
  Mixers are `model.kwargs.token_mixers`, else the named variant's default
  (`mixtok.models.model_spec`), one entry per stage.
- parameters: the run's task builds its model from that config and `jax.eval_shape` traces its
  init (nothing is allocated, no checkpoint is read); counted by `mixtok.models.count_params`.
- main metric: the task's first `PROGRESS_METRICS` (eval/accuracy for classification, eval/psnr for
  tokenizers); best is its maximum over the eval records (the minimum for a `loss` key), best_step
  the first step that reached it.
- images/s and wall time: the trainer keeps throughput out of metrics.jsonl and TensorBoard
  (mixtok/train/trainer.py: it is wall time, not a reproducible metric), so both are derived from
  the wall-clock stamps of the TensorBoard events (`workdir/tensorboard`). Images/s is
  batch_size x steps / seconds between consecutive logged steps of one session, leaving out the
  intervals that end in an eval (the trainer's own progress-bar figure also leaves out evaluation)
  and the first log of each session (compilation). Wall time is the sum over sessions (a resumed
  run has one per start) of the time from the metric writer's start (the model and data are set
  up, nothing compiled yet) to its last event: it leaves out that set-up and the final checkpoint
  write. A run without TensorBoard events (`tensorboard=False`) leaves both empty.
- state: `done` (the last logged step is total_steps), `in progress` (not yet: running, or stopped
  and resumable), `failed` (its sweep point says so), `no metrics` (metrics.jsonl missing or empty).
- sweep_wall_seconds and error (only when DIR/sweep.json has them): the point's `wall_seconds` (the
  trainer process of its last attempt, start-up included) and the last line of a failed point's error.

Exit codes: 0 written; 2 bad input (DIR missing, or holding no runs), one line on stderr
`mixtok.report: error: ...`.
"""

import argparse
import csv
import dataclasses
import json
import math
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

PROG = "mixtok.report"
EXIT_BAD_INPUT = 2
MARKER = ".mixtok_report"  # marks OUT/hparams as this command's, so a rerun may replace it


class ReportError(ValueError):
    """Bad input to the report: one line that names the value and what would be valid."""


@dataclasses.dataclass
class RunSummary:
    """What the report shows of one workdir."""

    name: str
    workdir: Path
    state: str = "no metrics"
    model: str | None = None
    mixers: str | None = None
    params: int | None = None
    main_metric: str | None = None
    final: dict[str, float] = dataclasses.field(default_factory=dict)
    best: float | None = None
    best_step: int | None = None
    images_per_second: float | None = None
    wall_seconds: float | None = None
    last_step: int | None = None
    total_steps: int | None = None
    sweep_wall_seconds: float | None = None
    error: str | None = None
    hparams: dict[str, Any] = dataclasses.field(default_factory=dict)
    config: dict[str, Any] | None = None
    records: list[dict[str, Any]] = dataclasses.field(default_factory=list)


# --- finding and reading runs ---------------------------------------------------------------------


def read_sweep(root: Path) -> dict[str, dict[str, Any]]:
    """The points of `root/sweep.json` by name ({} without one or when it cannot be read).

    `python -m mixtok.sweep` writes `{"points": {NAME: {"overrides", "command", "state", "wall_seconds",
    "error", ...}}}`; a list of points that each have a "name" is read too.
    """
    try:
        sweep = json.loads((root / "sweep.json").read_text())
        points = sweep["points"]
        if isinstance(points, dict):
            points = {str(name): dict(point) for name, point in points.items()}
        else:
            points = {str(p["name"]): dict(p) for p in points}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}
    if isinstance(sweep.get("config"), str):
        for point in points.values():
            point.setdefault("config", sweep["config"])  # the sweep's config file, for points without a checkpoint
    return points


def point_config(config_ref: str, overrides: dict[str, Any]) -> dict[str, Any] | None:
    """The config a sweep point runs: `get_config(ARGS)` of its config file with the point's overrides.

    For points that have no checkpoint yet (pending, or failed before their first save); None when the
    file cannot be loaded from here (a relative path is read from the working directory).
    """
    from mixtok.train.config_files import load_module

    path, _, arg = config_ref.partition(":")
    try:
        config = load_module(path).get_config(arg or None).to_dict()
        for dotted, value in overrides.items():
            *parents, last = dotted.split(".")
            target = config
            for part in parents:
                target = target[part]
            target[last] = tuple(value) if isinstance(value, list) else value
    except Exception as error:
        print(f"{PROG}: warning: cannot read the sweep's config {config_ref!r}: {error}", file=sys.stderr)
        return None
    return json.loads(json.dumps(config, default=str))  # as a checkpoint saves it


def find_workdirs(root: Path, sweep: dict[str, dict[str, Any]]) -> list[Path]:
    """The run workdirs under `root` (module docstring), sorted."""
    found = {p.parent for p in root.rglob("metrics.jsonl") if p.is_file()}
    found |= {p.parent for p in root.rglob("checkpoints") if p.is_dir() and not _inside_run(p.parent, found)}
    found |= {root / name for name in sweep}
    for child in [] if root in found else root.iterdir():
        if child.is_dir() and not (child / MARKER).exists() and not any(_is_within(r, child) for r in found):
            found.add(child)  # a folder under DIR with no run in it yet: listed as "no metrics"
    return sorted(found)


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _inside_run(path: Path, runs: set[Path]) -> bool:
    return any(r in path.parents for r in runs)


def read_records(workdir: Path) -> list[dict[str, Any]]:
    """The records of metrics.jsonl; a half-written last line (a run writing right now) is left out."""
    try:
        lines = (workdir / "metrics.jsonl").read_text().splitlines()
    except OSError:
        return []
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records


def latest_checkpoint_item(workdir: Path, item: str) -> dict[str, Any] | None:
    """A JSON item (`config`, `dataset_info`) of the newest checkpoint that has it, read without orbax."""
    directory = workdir / "checkpoints"
    steps = sorted((int(p.name) for p in directory.glob("*") if p.name.isdigit()), reverse=True)
    for step in steps:
        try:
            return json.loads((directory / str(step) / item / "metadata").read_text())
        except (OSError, ValueError):
            continue
    return None


def count_parameters(config: dict[str, Any], info: dict[str, Any] | None) -> int | None:
    """The model's weight count, traced with `jax.eval_shape` from the saved config (None if it cannot be built)."""
    import jax
    from ml_collections import ConfigDict

    from mixtok.data import DatasetInfo, dataset_info
    from mixtok.models import count_params
    from mixtok.train.tasks import DEFAULT_TASK, get_task

    cfg = ConfigDict(config)
    if info is not None:
        info = DatasetInfo(**{k: tuple(v) if isinstance(v, list) else v for k, v in info.items()})
    else:
        info = dataset_info(cfg.data)
    task = get_task(cfg.get("task", DEFAULT_TASK)).from_config(cfg, info)
    variables = dict(jax.eval_shape(lambda rng: task.init(rng, task.dummy_batch(info.image_size)), jax.random.key(0)))
    params = variables.pop("params")
    return count_params(task.model_variables(params, variables))


def _mixers(model: dict[str, Any], overrides: dict[str, Any]) -> str | None:
    mixers = (model.get("kwargs") or {}).get("token_mixers")
    if mixers is None:
        for key, value in overrides.items():
            if "mixer" in key:
                mixers = value
    if mixers is None and model.get("name"):
        try:
            from mixtok.models import model_spec

            mixers = model_spec(model["name"]).kwargs.get("token_mixers")
        except Exception:
            mixers = None
    if mixers is None:
        return None
    return "/".join(str(m) for m in mixers) if isinstance(mixers, (list, tuple)) else str(mixers)


def _main_metric(task_name: str | None, records: list[dict[str, Any]]) -> str | None:
    if task_name is not None:
        try:
            from mixtok.train.tasks import get_task

            return get_task(task_name).PROGRESS_METRICS[0]
        except Exception:
            pass
    keys = [k for r in records for k in r if k.startswith("eval/")]
    for key in ("eval/accuracy", "eval/psnr"):
        if key in keys:
            return key
    return keys[0] if keys else None


# --- TensorBoard event files ----------------------------------------------------------------------


def read_events(path: Path):
    """The `Event` protos of one TFRecord event file (a torn last record is dropped)."""
    from tensorboardX.proto.event_pb2 import Event

    with open(path, "rb") as f:
        while True:
            header = f.read(12)  # uint64 length, uint32 masked CRC of the length
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(f.read(4)) < 4:
                return
            event = Event()
            try:
                event.ParseFromString(data)
            except Exception:  # a damaged record: what follows it cannot be trusted either
                return
            yield event


def timing(workdir: Path, batch_size: int | None, eval_steps: set[int]) -> tuple[float | None, float | None]:
    """(training images/s, wall seconds) from the TensorBoard events' wall-clock stamps (module docstring)."""
    files = sorted((workdir / "tensorboard").glob("events.out.tfevents.*"))
    images = seconds = wall = 0.0
    for path in files:
        stamps, first, last = [], None, None
        for event in read_events(path):
            first = event.wall_time if first is None else first
            last = event.wall_time
            if any(v.tag == "train/loss" for v in event.summary.value):
                stamps.append((event.step, event.wall_time))
        if first is not None:
            wall += last - first
        for (step_a, time_a), (step_b, time_b) in zip(stamps, stamps[1:]):
            if step_b > step_a and step_b not in eval_steps and time_b > time_a and batch_size:
                images += (step_b - step_a) * batch_size
                seconds += time_b - time_a
    return (images / seconds if seconds else None), (wall if files else None)


# --- one run --------------------------------------------------------------------------------------


def _flat(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, (bool, int, float, str)):
        out[prefix] = value
    elif value is not None:
        out[prefix] = json.dumps(value) if not isinstance(value, str) else value


def summarize(root: Path, workdir: Path, point: dict[str, Any] | None) -> RunSummary:
    """The report's row of one workdir; what cannot be read stays empty (and a warning names why)."""
    name = workdir.relative_to(root).as_posix() if workdir != root else root.name
    run = RunSummary(name=name, workdir=workdir, records=read_records(workdir))
    overrides = dict((point or {}).get("overrides") or {})
    config = latest_checkpoint_item(workdir, "config") if workdir.is_dir() else None
    if config is None and (point or {}).get("config"):
        config = point_config(point["config"], overrides)
    run.config = config
    model = dict((config or {}).get("model") or {})
    if not model:
        model = {"name": overrides.get("model.name"), "kwargs": {}}
    run.model = model.get("name")
    run.mixers = _mixers(model, overrides)
    if config is not None:
        run.total_steps = config.get("total_steps")
        try:
            run.params = count_parameters(config, latest_checkpoint_item(workdir, "dataset_info"))
        except Exception as error:  # a model this version cannot build: the row stays, the count is empty
            print(f"{PROG}: warning: {name}: no parameter count ({type(error).__name__}: {error})", file=sys.stderr)
    elif "total_steps" in overrides:
        run.total_steps = overrides["total_steps"]
    hparams: dict[str, Any] = {}
    _flat("", overrides, hparams)
    if not hparams:
        _flat("model", {"name": model.get("name"), "kwargs": model.get("kwargs") or {}}, hparams)
    run.hparams = hparams

    evals = [r for r in run.records if any(k.startswith("eval/") for k in r)]
    run.main_metric = _main_metric((config or {}).get("task"), run.records)
    if evals:
        run.final = {k: v for k, v in evals[-1].items() if k.startswith("eval/")}
    scored = [(r[run.main_metric], r["step"]) for r in evals if run.main_metric in r]
    if scored:
        lower = "loss" in (run.main_metric or "")
        best = min(scored, key=lambda s: (s[0], s[1])) if lower else max(scored, key=lambda s: (s[0], -s[1]))
        run.best, run.best_step = best
    if run.records:
        run.last_step = run.records[-1]["step"]
        batch = (config or {}).get("batch_size") or overrides.get("batch_size")
        run.images_per_second, run.wall_seconds = timing(workdir, batch, {r["step"] for r in evals})
        done = run.total_steps is not None and run.last_step >= run.total_steps
        run.state = "done" if done else "in progress"
    if point is not None:
        run.sweep_wall_seconds = point.get("wall_seconds")
        run.error = point.get("error")
    if point is not None and point.get("state") == "failed":
        run.state = "failed"
    elif point is not None and point.get("state") == "running" and run.state != "done":
        run.state = "in progress"
    return run


# --- outputs --------------------------------------------------------------------------------------

COLUMNS = ("run", "state", "model", "mixers", "params")
TAIL = ("best", "best_step", "images_per_second", "wall_seconds", "last_step", "total_steps")
SWEEP_COLUMNS = ("sweep_wall_seconds", "error")  # from sweep.json, when some point has them


def table(runs: list[RunSummary]) -> tuple[list[str], list[list[Any]]]:
    """The header and rows shared by report.csv and report.md (eval columns: the union of eval/* keys)."""
    eval_keys = sorted({k for run in runs for k in run.final})
    sweep_fields = [f for f in SWEEP_COLUMNS if any(getattr(run, f) is not None for run in runs)]
    header = [*COLUMNS, "main_metric", *eval_keys, *TAIL, *sweep_fields]
    rows = []
    for run in runs:
        row = [run.name, run.state, run.model, run.mixers, run.params, run.main_metric]
        row += [run.final.get(k) for k in eval_keys]
        row += [run.best, run.best_step, run.images_per_second, run.wall_seconds, run.last_step, run.total_steps]
        row += [getattr(run, field) for field in sweep_fields]
        rows.append(row)
    return header, rows


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else repr(v) if isinstance(v, float) else v for v in row] for row in rows])


def _md(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    text = str(value) if len(str(value)) <= 100 else str(value)[:99] + "…"  # an error line: whole in the CSV
    return text.replace("|", "\\|")


def write_markdown(path: Path, root: Path, header: list[str], rows: list[list[Any]], plots: list[str]) -> None:
    lines = [f"# Runs under `{root}`", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    lines += [
        "",
        "Final eval columns are the last eval record of metrics.jsonl; `best` is the best value of `main_metric` "
        "and `best_step` its step. images_per_second and wall_seconds are derived from the TensorBoard events' "
        "wall-clock stamps (the trainer does not record throughput); see `mixtok/report.py`.",
        "",
    ]
    lines += [f"![{Path(p).stem}]({p})" for p in plots]
    path.write_text("\n".join(lines) + "\n")


def _plotted_metric(runs: list[RunSummary]) -> str | None:
    metrics = [r.main_metric for r in runs if r.main_metric and r.main_metric in r.final]
    return max(set(metrics), key=metrics.count) if metrics else None


def write_plots(out: Path, runs: list[RunSummary]) -> list[str]:
    """The PNG plots (module docstring); returns their file names."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, also on a headless cluster node
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    metric = _plotted_metric(runs)
    written = []
    for x_field, label, file in (
        ("params", "parameters", "metric_vs_params.png"),
        ("images_per_second", "training images/s", "metric_vs_throughput.png"),
    ):
        points = [(getattr(r, x_field), r.final[metric], r.name) for r in runs if metric in r.final]
        points = [p for p in points if p[0]]
        if not points:
            continue
        fig, ax = plt.subplots(figsize=(6, 4.5))
        ax.scatter([p[0] for p in points], [p[1] for p in points])
        # Points at one value (accuracies are multiples of 1 / eval size) take labels above and below in turn.
        previous_y, turn = None, 0
        for x, y, name in sorted(points, key=lambda p: (p[1], p[0])):
            turn = turn + 1 if y == previous_y else 0
            previous_y = y
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4 if turn % 2 == 0 else -11), fontsize=8)
        xs = [p[0] for p in points]
        if min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"final {metric}")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / file, dpi=100)
        plt.close(fig)
        written.append(file)
    curved = [r for r in runs if r.records]
    if curved:
        fig, (loss_ax, eval_ax) = plt.subplots(1, 2, figsize=(11, 4.5))
        for run in curved:
            train = [(r["step"], r["train/loss"]) for r in run.records if "train/loss" in r]
            evals = [(r["step"], r[metric]) for r in run.records if metric and metric in r]
            if train:
                loss_ax.plot(*zip(*train), label=run.name)
            if evals:
                eval_ax.plot(*zip(*evals), marker="o", label=run.name)
        for ax in (loss_ax, eval_ax):
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        loss_ax.set(xlabel="step", ylabel="train/loss", title="training loss")
        eval_ax.set(xlabel="step", ylabel=metric or "eval", title=metric or "eval")
        for ax in (loss_ax, eval_ax):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "curves.png", dpi=100)
        plt.close(fig)
        written.append("curves.png")
    return written


def _config_value(config: dict[str, Any] | None, dotted: str) -> Any:
    value: Any = config or {}
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _hparam(value: Any) -> bool | int | float | str:
    return value if isinstance(value, (bool, int, float, str)) else json.dumps(value)


def write_hparams(out: Path, runs: list[RunSummary]) -> None:
    """One HParams session per run under OUT/hparams, replacing an earlier report's.

    What tensorboardX's `SummaryWriter.add_hparams` writes, except that every session declares the
    same hyperparameters and metrics (the union over the runs): TensorBoard's dashboard takes its
    columns from the first session it reads. A hyperparameter a run's sweep point does not override
    is the value of its saved config (left out when it has none).
    """
    from tensorboardX import SummaryWriter
    from tensorboardX.summary import hparams as hparams_summaries

    directory = out / "hparams"
    if (directory / MARKER).exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MARKER).write_text("written by python -m mixtok.report; replaced when it runs again\n")
    metrics = {}
    for run in runs:
        values = {k: v for k, v in run.final.items() if math.isfinite(v)}
        if run.best is not None:
            values[f"best/{run.main_metric}"] = run.best
        for field in ("params", "images_per_second"):
            if getattr(run, field) is not None:
                values[field] = float(getattr(run, field))
        metrics[run.name] = values
    metric_names = dict.fromkeys(k for values in metrics.values() for k in values)
    names = dict.fromkeys(k for run in runs for k in run.hparams)
    sessions = {}
    for run in runs:
        values = {k: run.hparams[k] if k in run.hparams else _config_value(run.config, k) for k in names}
        sessions[run.name] = {**{k: _hparam(v) for k, v in values.items() if v is not None}, "state": run.state}
    declared = {}  # each hyperparameter's type in the experiment: that of the first run that has it
    for hparams in sessions.values():
        declared = {**hparams, **declared}
    experiment, _, _ = hparams_summaries(declared, dict.fromkeys(metric_names, 0.0))
    for run in runs:
        _, start, end = hparams_summaries(sessions[run.name], dict.fromkeys(metric_names, 0.0))
        with SummaryWriter(str(directory / run.name)) as writer:
            for summary in (experiment, start, end):
                writer.file_writer.add_summary(summary)
            for key, value in metrics[run.name].items():
                writer.add_scalar(key, value, run.last_step or 0)


def report(root: Path, out: Path | None = None) -> list[RunSummary]:
    """Writes the report of the runs under `root` into `out` (default `root`); returns the rows."""
    root = Path(root)
    if not root.is_dir():
        what = "is not a directory" if root.exists() else "does not exist"
        raise ReportError(
            f"DIR {str(root)!r} {what}; pass a sweep root or a folder of `python -m mixtok.train` workdirs."
        )
    out = Path(out) if out is not None else root
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {str(out)!r} is a file; give a directory (it is created if missing).")
    sweep = read_sweep(root)
    workdirs = find_workdirs(root, sweep)
    summaries = [summarize(root, w, sweep.get(w.relative_to(root).as_posix())) for w in workdirs]
    if not any(s.records or (s.workdir / "checkpoints").is_dir() or sweep for s in summaries):
        raise ReportError(
            f"DIR {str(root)!r} holds no runs (no metrics.jsonl, checkpoints/ or sweep.json under it); pass a sweep "
            "root or a folder of `python -m mixtok.train` workdirs."
        )
    out.mkdir(parents=True, exist_ok=True)
    header, rows = table(summaries)
    write_csv(out / "report.csv", header, rows)
    plots = write_plots(out, summaries)
    write_markdown(out / "report.md", root, header, rows, plots)
    write_hparams(out, summaries)
    return summaries


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage + message
        print(f"{PROG}: error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def main(argv: list[str] | None = None) -> int:
    """The command line (module docstring); returns the exit code."""
    parser = _Parser(prog=PROG, description="Compare the training runs under DIR: table, plots, HParams.")
    parser.add_argument("dir", metavar="DIR", help="a sweep root or a folder of mixtok.train workdirs")
    parser.add_argument("--out", metavar="OUT", help="where to write the report (default: DIR)")
    args = parser.parse_args(argv)
    try:
        runs = report(Path(args.dir), Path(args.out) if args.out else None)
    except ReportError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    out = args.out or args.dir
    print(f"{PROG}: {len(runs)} runs; wrote {Path(out) / 'report.md'}, report.csv, plots and hparams/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
