"""`python -m mixtok.report`: the table, plots and HParams of real tiny runs, checked against their files."""

import csv
import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from PIL import Image
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

from mixtok.models import create_model
from mixtok.report import read_sweep
from mixtok.train import train_and_evaluate
from mixtok.train.metric_writer import read_metrics
from tests.train.test_trainer import tiny_config

REPO = Path(__file__).resolve().parents[1]
ALL_POOLING = ("pooling", "pooling", "pooling", "pooling")
# A few steps, an eval every 2 and at the end, one checkpoint at the end.
SHORT = {"total_steps": 4, "log_every": 1, "eval_every": 2, "checkpoint_every": 4}


def run_report(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "mixtok.report", *map(str, args)], capture_output=True, text=True, env=env, cwd=REPO
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three real runs (one with other mixers, one stopped half-way, one level deeper) and an empty workdir."""
    root = tmp_path_factory.mktemp("runs")
    train_and_evaluate(tiny_config(**SHORT), root / "attention")
    train_and_evaluate(tiny_config(**SHORT, **{"model.kwargs.token_mixers": ALL_POOLING}), root / "pooling")
    train_and_evaluate(tiny_config(**{**SHORT, "total_steps": 8}), root / "group" / "stopped", stop_at_step=4)
    (root / "empty").mkdir()
    return root


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = run_report(runs, "--out", out)
    assert result.returncode == 0, result.stderr
    with open(out / "report.csv", newline="") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    return out, rows


def independent_param_count(token_mixers) -> int:
    kwargs = dict(tiny_config().model.kwargs.to_dict(), token_mixers=token_mixers)
    model = create_model("poolformerv2_s12", num_classes=4, **kwargs)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes["params"]))


def test_csv_has_one_row_per_workdir_with_its_state(report):
    _, rows = report
    assert sorted(rows) == ["attention", "empty", "group/stopped", "pooling"]
    assert {name: row["state"] for name, row in rows.items()} == {
        "attention": "done",
        "pooling": "done",
        "group/stopped": "in progress",
        "empty": "no metrics",
    }
    assert rows["empty"]["params"] == rows["empty"]["eval/accuracy"] == rows["empty"]["last_step"] == ""


def test_csv_numbers_equal_the_runs_metrics_files(runs, report):
    _, rows = report
    for name in ("attention", "pooling", "group/stopped"):
        records = read_metrics(runs / name)
        evals = [r for r in records if "eval/accuracy" in r]
        best = max(evals, key=lambda r: r["eval/accuracy"])
        row = rows[name]
        assert float(row["eval/accuracy"]) == evals[-1]["eval/accuracy"]
        assert float(row["eval/loss"]) == evals[-1]["eval/loss"]
        assert (float(row["best"]), int(row["best_step"])) == (best["eval/accuracy"], best["step"])
        assert int(row["last_step"]) == records[-1]["step"]
        assert row["main_metric"] == "eval/accuracy"
    assert [int(rows[n]["total_steps"]) for n in ("attention", "pooling", "group/stopped")] == [4, 4, 8]
    assert int(rows["group/stopped"]["last_step"]) == 4


def test_model_mixers_and_parameter_counts_come_from_the_saved_config(report):
    _, rows = report
    attention = tiny_config().model.kwargs.token_mixers
    assert rows["attention"]["model"] == rows["pooling"]["model"] == "poolformerv2_s12"
    assert rows["attention"]["mixers"] == "/".join(attention)
    assert rows["pooling"]["mixers"] == "/".join(ALL_POOLING)
    assert int(rows["attention"]["params"]) == independent_param_count(attention)
    assert int(rows["pooling"]["params"]) == independent_param_count(ALL_POOLING)
    assert rows["attention"]["params"] != rows["pooling"]["params"]


def test_markdown_plots_and_hparams_are_written(report):
    out, rows = report
    markdown = (out / "report.md").read_text()
    for name in rows:
        assert f"| {name} |" in markdown
    for plot in ("metric_vs_params.png", "metric_vs_throughput.png", "curves.png"):
        with Image.open(out / plot) as image:
            assert image.format == "PNG" and image.width > 100 and image.height > 100
        assert f"({plot})" in markdown


def tfrecord_events(path: Path) -> list[Event]:
    """The events of a TensorBoard file: TFRecords of (uint64 length, uint32 crc, data, uint32 crc)."""
    data, events, at = path.read_bytes(), [], 0
    while at < len(data):
        (length,) = struct.unpack("<Q", data[at : at + 8])
        event = Event()
        event.ParseFromString(data[at + 12 : at + 12 + length])
        events.append(event)
        at += 16 + length
    return events


def hparams_session(out: Path, name: str) -> tuple[list[str], dict, dict]:
    """(declared hyperparameter names, the session's hyperparameters, its scalars) of OUT/hparams/NAME."""
    (path,) = (out / "hparams" / name).glob("events.out.tfevents.*")
    declared, hparams, scalars = [], {}, {}
    for event in tfrecord_events(path):
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                declared += [info.name for info in data.experiment.hparam_infos]
                for key, v in data.session_start_info.hparams.items():
                    hparams[key] = v.string_value if v.HasField("string_value") else v.number_value
            else:
                scalars[value.tag] = value.simple_value
    return declared, hparams, scalars


def test_hparams_sessions_hold_each_runs_config_and_final_metrics(runs, report):
    out, rows = report
    sessions = {name: hparams_session(out, name) for name in rows}
    assert len({tuple(sorted(declared)) for declared, _, _ in sessions.values()}) == 1  # the same columns
    _, pooling, scalars = sessions["pooling"]
    assert pooling["model.name"] == "poolformerv2_s12" and pooling["state"] == "done"
    assert json.loads(pooling["model.kwargs.token_mixers"]) == list(ALL_POOLING)
    final = [r for r in read_metrics(runs / "pooling") if "eval/accuracy" in r][-1]
    assert scalars["eval/accuracy"] == pytest.approx(final["eval/accuracy"], rel=1e-6)  # stored as float32
    assert scalars["params"] == int(rows["pooling"]["params"])
    assert sessions["empty"][1] == {"state": "no metrics"} and sessions["empty"][2] == {}


def test_sweep_json_gives_overrides_and_failed_or_pending_points(runs, tmp_path):
    root = tmp_path / "sweep"
    shutil.copytree(runs / "pooling", root / "pool")
    shutil.copytree(runs / "group" / "stopped", root / "broken")
    # As `python -m mixtok.sweep` writes it: points by name.
    points = {
        "pool": {"overrides": {"model.kwargs.token_mixers": list(ALL_POOLING)}, "state": "done", "wall_seconds": 12.5},
        "broken": {"overrides": {"optimizer.lr": 0.5}, "state": "failed", "error": "NonFiniteLossError: loss is nan"},
        "later": {"overrides": {"model.kwargs.token_mixers": list(ALL_POOLING)}, "state": "pending"},
    }
    config_file = tmp_path / "config.py"
    config_file.write_text(
        "from tests.train.test_trainer import tiny_config\n\n\n"
        f"def get_config(arg=None):\n    return tiny_config(**{SHORT!r})\n"
    )
    (root / "sweep.json").write_text(json.dumps({"config": str(config_file), "points": points}))
    result = run_report(root)
    assert result.returncode == 0, result.stderr
    with open(root / "report.csv", newline="") as f:
        rows = {row["run"]: row for row in csv.DictReader(f)}
    assert {name: row["state"] for name, row in rows.items()} == {
        "pool": "done",
        "broken": "failed",
        "later": "no metrics",
    }
    assert rows["pool"]["sweep_wall_seconds"] == "12.5" and rows["later"]["sweep_wall_seconds"] == ""
    assert rows["broken"]["error"] == "NonFiniteLossError: loss is nan"
    # A point without a checkpoint is described by the sweep's config file and its overrides.
    later = rows["later"]
    assert (later["model"], later["mixers"], later["total_steps"]) == ("poolformerv2_s12", "/".join(ALL_POOLING), "4")
    assert int(later["params"]) == independent_param_count(ALL_POOLING)
    _, broken, _ = hparams_session(root, "broken")
    _, pool, _ = hparams_session(root, "pool")
    assert broken["optimizer.lr"] == 0.5 and broken["state"] == "failed"
    assert pool["optimizer.lr"] == tiny_config().optimizer.lr  # not overridden: the saved config's value
    # A rerun replaces its own hparams sessions instead of adding a second one per run.
    assert run_report(root).returncode == 0
    assert len(list((root / "hparams" / "broken").glob("events.*"))) == 1


@pytest.mark.parametrize("setup", ["missing", "no_runs", "out_is_a_file"])
def test_bad_dir_is_one_line_and_exit_2(runs, tmp_path, setup):
    target, args, message = tmp_path / "nowhere", (), {"missing": "does not exist", "no_runs": "holds no runs"}
    if setup == "no_runs":
        (target / "just_a_folder").mkdir(parents=True)
    if setup == "out_is_a_file":
        target, args, message["out_is_a_file"] = tmp_path / "file", (runs, "--out"), "is a file"
        target.write_text("")
    result = run_report(*args, target)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mixtok.report: error: ")
    assert str(target) in lines[0] and message[setup] in lines[0]


def test_sweep_json_points_may_also_be_a_list(tmp_path):
    points = [{"name": "a", "overrides": {"seed": 1}, "state": "done"}]
    (tmp_path / "sweep.json").write_text(json.dumps({"points": points}))
    assert read_sweep(tmp_path) == {"a": points[0]}
    assert read_sweep(tmp_path / "nowhere") == {}


def test_throughput_and_wall_time_are_those_of_the_tensorboard_stamps(runs, report):
    _, rows = report
    batch_size = tiny_config().batch_size
    for name in ("attention", "pooling"):
        (path,) = (runs / name / "tensorboard").glob("events.out.tfevents.*")
        events = tfrecord_events(path)
        loss = [(e.step, e.wall_time) for e in events if any(v.tag == "train/loss" for v in e.summary.value)]
        evals = {r["step"] for r in read_metrics(runs / name) if "eval/accuracy" in r}
        # Between consecutive logged steps, leaving out the intervals that end in an eval.
        spans = [(b - a, tb - ta) for (a, ta), (b, tb) in zip(loss, loss[1:]) if b not in evals]
        assert spans  # steps 1 -> 2 (eval), 2 -> 3, 3 -> 4 (eval)
        expected = sum(steps for steps, _ in spans) * batch_size / sum(seconds for _, seconds in spans)
        assert float(rows[name]["images_per_second"]) == pytest.approx(expected, rel=1e-9)
        assert float(rows[name]["wall_seconds"]) == pytest.approx(events[-1].wall_time - events[0].wall_time)
    assert rows["empty"]["images_per_second"] == rows["empty"]["wall_seconds"] == ""
