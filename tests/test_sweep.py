"""python -m mixtok.sweep: get_sweep expansion, real point runs, sweep.json, resuming, bad input, --dry-run."""

import json
import os
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from absl import flags
from ml_collections import ConfigDict, config_flags

from mixtok.sweep import Point, SweepError, expand_sweep, format_value, main, trainer_args, write_state

PYTHON = shlex.quote(sys.executable)

TINY_CONFIG = """
from ml_collections import ConfigDict


def get_config(arg=None):
    return ConfigDict(
        dict(
            seed=0,
            task="classification",
            total_steps={total_steps},
            batch_size=8,
            log_every=1,
            eval_every=2,
            checkpoint_every=2,
            keep_checkpoints=5,
            progress_bar=False,
            tensorboard=False,
            data=dict(name="synthetic", image_size=32, num_classes=4, num_examples=32, num_eval_examples=8),
            model=dict(
                name="poolformerv2_s12",
                dtype="float32",
                kwargs=dict(
                    depths=(1, 1, 1, 1),
                    dims=(8, 8, 16, 16),
                    drop_path_rate=0.0,
                    token_mixers=("pooling", "pooling", "pooling", "pooling"),
                ),
            ),
            optimizer=dict(name="adamw", lr=1e-3, warmup_steps=1, weight_decay=0.05, grad_clip=1.0),
        )
    )
"""


def write_config(tmp_path: Path, sweep_body: str, total_steps: int = 2, name: str = "tiny.py") -> str:
    """A tiny trainer config (2 steps on synthetic data) with `def get_sweep(arg=None): <sweep_body>`."""
    path = tmp_path / name
    get_sweep = "\n\ndef get_sweep(arg=None):\n" + textwrap.indent(textwrap.dedent(sweep_body).strip(), "    ")
    path.write_text(TINY_CONFIG.format(total_steps=total_steps) + (get_sweep if sweep_body else "") + "\n")
    return str(path)


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def steps_logged(workdir: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_expand_sweep_gives_named_points_and_trainer_args_give_root_slash_name():
    config = ConfigDict(dict(model=dict(kwargs=dict(token_mixers=("pooling",) * 2)), optimizer=dict(lr=1e-3)))
    points = expand_sweep(
        [
            {"name": "pooling"},
            {"name": "attn-2e-3", "model.kwargs.token_mixers": ("attention",) * 2, "optimizer.lr": 2e-3},
        ],
        config,
    )
    assert points == [
        Point("pooling", {}),
        Point("attn-2e-3", {"model.kwargs.token_mixers": ("attention", "attention"), "optimizer.lr": 2e-3}),
    ]
    assert trainer_args("c.py:steps=3", os.path.join("runs", "abl", points[1].name), points[1]) == [
        "--config",
        "c.py:steps=3",
        "--workdir",
        "runs/abl/attn-2e-3",
        '--config.model.kwargs.token_mixers=("attention", "attention")',
        "--config.optimizer.lr=0.002",
    ]
    # The trainer's optional fields and mesh axes may be overridden though a config file lacks them.
    assert expand_sweep([{"name": "a", "resume_mismatch": "allow", "mesh.fsdp": 2}], config)[0].name == "a"


def test_formatted_values_read_back_through_ml_collections_flag_parser(tmp_path, monkeypatch):
    stages = ({"sr_ratio": 8, "pretrain_size": (8, 8)}, {}, {"name": "it's"})  # per-stage mixer options
    values = dict(s="hello world", b=True, f=1e-05, i=7, t=("pooling", "attention"), one=("x",), ti=(3, 4), d=stages)
    defaults = dict(s="a", b=False, f=1.0, i=3, t=("a", "b"), one=("a", "b"), ti=(1, 2), d=({}, {}, {}))
    path = tmp_path / "values.py"
    path.write_text(f"import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict({defaults!r})\n")
    argv = ["prog", "--config", str(path), *[f"--config.{k}={format_value(v)}" for k, v in values.items()]]
    flag_values = flags.FlagValues()
    config = config_flags.DEFINE_config_file("config", None, "", flag_values=flag_values)
    monkeypatch.setattr(sys, "argv", argv)  # ml_collections reads the overrides from sys.argv
    flag_values(argv)
    assert config.value.to_dict() == values


def test_sweep_runs_every_point_records_a_failure_goes_on_and_skips_finished_points_on_rerun(tmp_path, capfd):
    config = write_config(
        tmp_path,
        """
        return [
            {"name": "bad_lr", "optimizer.lr": "fast"},
            {"name": "attention", "model.kwargs.token_mixers": ("pooling", "pooling", "attention", "attention")},
        ]
        """,
    )
    root = tmp_path / "root"
    assert main(["--config", config, "--root", str(root)]) == 1
    state = read_json(root / "sweep.json")
    assert state["config"] == config and list(state["points"]) == ["bad_lr", "attention"]
    bad, good = state["points"]["bad_lr"], state["points"]["attention"]
    assert bad["state"] == "failed" and bad["exit_status"] == 2
    assert bad["error"].startswith("mixtok.train: error:") and "optimizer.lr=fast" in bad["error"]
    bad_command = f"{PYTHON} -m mixtok.train --config {config} --workdir {root}/bad_lr --config.optimizer.lr=fast"
    assert bad["command"] == bad_command
    assert good["state"] == "done" and good["overrides"] == {
        "model.kwargs.token_mixers": ["pooling", "pooling", "attention", "attention"]
    }
    assert good["start_time"] <= good["end_time"] and good["wall_seconds"] > 0
    assert steps_logged(root / "attention") == [1, 2]  # the point's own run, in ROOT/NAME
    assert sorted(os.listdir(root)) == ["attention", "sweep.json"]  # no temporary file left
    out = capfd.readouterr().out
    assert f"mixtok.sweep: point attention (2/2): {good['command']}" in out

    metrics = (root / "attention" / "metrics.jsonl").read_bytes()
    assert main(["--config", config, "--root", str(root), "--only", "attention"]) == 0
    assert read_json(root / "sweep.json")["points"] == state["points"]  # timings untouched: not run again
    assert (root / "attention" / "metrics.jsonl").read_bytes() == metrics
    assert "point attention (1/1): done, skipped" in capfd.readouterr().out


def test_a_point_left_running_resumes_from_its_checkpoint(tmp_path, capsys):
    config = write_config(tmp_path, 'return [{"name": "a", "optimizer.lr": 2e-3}]', total_steps=4)
    root = tmp_path / "root"
    assert main(["--config", config, "--root", str(root), "--dry-run"]) == 0
    command = capsys.readouterr().out.strip()
    assert not root.exists()  # --dry-run writes nothing
    # An interrupted point: its run stopped after the checkpoint at step 2, and sweep.json still says running.
    subprocess.run([*shlex.split(command), "--config.total_steps=2"], check=True, capture_output=True)
    lines = (root / "a" / "metrics.jsonl").read_text().splitlines()
    marked = json.dumps({**json.loads(lines[0]), "marker": "kept only if the run resumes"})
    (root / "a" / "metrics.jsonl").write_text("\n".join([marked, *lines[1:]]) + "\n")
    entry = {"overrides": {"optimizer.lr": 2e-3}, "command": command, "state": "running", "start_time": "x"}
    write_state(str(root), {"config": config, "points": {"a": entry}})

    assert main(["--config", config, "--root", str(root)]) == 0
    assert read_json(root / "sweep.json")["points"]["a"]["state"] == "done"
    assert steps_logged(root / "a") == [1, 2, 3, 4]
    assert (root / "a" / "metrics.jsonl").read_text().splitlines()[0] == marked
    assert sorted(os.listdir(root / "a" / "checkpoints"))[-1] == "4"


def test_sweep_json_is_replaced_atomically_and_a_failed_write_leaves_the_old_file(tmp_path):
    write_state(str(tmp_path), {"config": "c.py", "points": {}})
    assert read_json(tmp_path / "sweep.json") == {"config": "c.py", "points": {}}
    with pytest.raises(TypeError):
        write_state(str(tmp_path), {"config": "c.py", "points": {"a": object()}})  # fails mid-write
    assert read_json(tmp_path / "sweep.json") == {"config": "c.py", "points": {}}
    assert os.listdir(tmp_path) == ["sweep.json"]


@pytest.mark.parametrize(
    "sweep_body, message",
    [
        ('return [{"model.kwargs.drop_path_rate": 0.1}]', "sweep point 0 has no 'name'"),
        ('return [{"name": "a"}, {"name": "a"}]', "sweep point name 'a' repeats"),
        ('return [{"name": "../escape"}]', "name '../escape', which is not a safe directory name"),
        ('return [{"name": "a b"}]', "name 'a b', which is not a safe directory name"),
        (
            'return [{"name": "a", "optimizer.learning_rate": 0.1}]',
            "sweep point 'a' overrides 'optimizer.learning_rate', a field the config does not have",
        ),
        ('return [{"name": "a", "optimizer": 0.1}]', "sweep point 'a' overrides 'optimizer', a field the config"),
        ('return [{"name": "a", "optimizer.lr": {"x": 1}}]', "sweep point 'a', field 'optimizer.lr': {'x': 1} is"),
        ("return []", "get_sweep() must return a non-empty list"),
    ],
)
def test_bad_points_are_refused_before_anything_runs(tmp_path, sweep_body, message):
    config = write_config(tmp_path, sweep_body)
    with pytest.raises(SweepError) as error:
        main(["--config", config, "--root", str(tmp_path / "root")])
    assert message in str(error.value)
    assert not (tmp_path / "root").exists()


def test_bad_command_lines_are_refused_before_anything_runs(tmp_path):
    config = write_config(tmp_path, 'return [{"name": "a"}, {"name": "b"}]')
    root = tmp_path / "root"
    no_sweep = write_config(tmp_path, "", name="plain.py")
    cases = [
        (["--config", no_sweep, "--root", str(root)], f"{no_sweep!r} defines no get_sweep(arg=None)"),
        (["--config", str(tmp_path / "missing.py"), "--root", str(root)], "missing.py' does not exist"),
        (["--config", config, "--root", str(root), "--only", "a,c"], "--only 'a,c': unknown point(s) ['c']"),
        (["--config", config, "--root", str(root), "--", "--partition", "gpu"], "--launcher local takes none"),
        (["--config", config, "--root", str(root), "--launcher", "tpu"], "launcher tpu:"),
    ]
    for argv, message in cases:
        with pytest.raises(SweepError) as error:
            main(argv)
        assert message in str(error.value), argv
    assert not root.exists()

    root.mkdir()
    other = {"config": str(tmp_path / "other.py"), "points": {}}
    (root / "sweep.json").write_text(json.dumps(other))
    with pytest.raises(SweepError, match="holds the sweep.json of another sweep"):
        main(["--config", config, "--root", str(root)])
    assert read_json(root / "sweep.json") == other


def test_command_line_error_is_one_line_with_exit_status_2(tmp_path):
    config = write_config(tmp_path, 'return [{"name": "a", "optimizer.beta": 0.9}]')
    result = subprocess.run(
        [sys.executable, "-m", "mixtok.sweep", "--config", config, "--root", str(tmp_path / "root")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "mixtok.sweep: error: sweep point 'a' overrides 'optimizer.beta', a field the config does not have "
        "(fields can only be overridden, not added; use dotted names such as 'optimizer.lr')."
    ]
    assert not (tmp_path / "root").exists()


def dry_run(capsys, config, root, *extra) -> list[str]:
    assert main(["--config", config, "--root", str(root), "--only", "mixer_attn", "--dry-run", *extra]) == 0
    return capsys.readouterr().out.splitlines()


def test_dry_run_prints_one_command_per_point_for_each_launcher(tmp_path, capsys):
    config = write_config(
        tmp_path,
        """
        return [
            {"name": "pool"},
            {"name": "mixer_attn", "model.kwargs.token_mixers": ("attention",) * 4, "optimizer.lr": 2e-3},
        ]
        """,
    )
    root = tmp_path / "abl"
    trainer = (
        f"--config {config} --workdir {root}/mixer_attn "
        '\'--config.model.kwargs.token_mixers=("attention", "attention", "attention", "attention")\' '
        "--config.optimizer.lr=0.002"
    )
    assert main(["--config", config, "--root", str(root), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"{PYTHON} -m mixtok.train --config {config} --workdir {root}/pool",
        f"{PYTHON} -m mixtok.train {trainer}",
    ]
    assert dry_run(capsys, config, root, "--launcher", "slurm", "--", "--partition", "gpu", "--job-name", "abl") == [
        f"{PYTHON} -m mixtok.launch slurm --partition gpu --job-name abl-mixer_attn "
        f"--script {root}/mixer_attn.sbatch --force -- {trainer}"
    ]
    assert dry_run(capsys, config, root, "--launcher", "tpu", "--", "--name", "v4", "--zone", "us-central2-b") == [
        f"{PYTHON} -m mixtok.launch tpu --name v4 --zone us-central2-b -- {trainer}"
    ]
    gke = ["--launcher", "gke", "--", "--cluster", "c1", "--tpu-type", "v5litepod-16", "--workload", "Abl"]
    assert dry_run(capsys, config, root, *gke) == [
        f"{PYTHON} -m mixtok.launch gke --cluster c1 --tpu-type v5litepod-16 --workload abl-mixer-attn -- {trainer}"
    ]
    assert not root.exists()


def test_slurm_submits_one_job_per_point_and_a_rerun_does_not_resubmit(tmp_path, monkeypatch):
    config = write_config(tmp_path, 'return [{"name": "a"}, {"name": "b", "optimizer.lr": 2e-3}]')
    root = tmp_path / "root"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f'#!/bin/sh\necho "$1" >> {tmp_path}/submitted\necho "Submitted batch job 7"\n')
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    argv = ["--config", config, "--root", str(root), "--launcher", "slurm", "--", "--job-name", "abl"]
    assert main(argv) == 0
    assert (tmp_path / "submitted").read_text().splitlines() == [f"{root}/a.sbatch", f"{root}/b.sbatch"]
    assert [p["state"] for p in read_json(root / "sweep.json")["points"].values()] == ["submitted", "submitted"]
    script = (root / "b.sbatch").read_text()
    assert "#SBATCH --job-name=abl-b" in script
    assert f"--workdir {root}/b --config.optimizer.lr=0.002 --distributed" in script
    assert main(argv) == 0
    assert len((tmp_path / "submitted").read_text().splitlines()) == 2  # not submitted again


def test_a_cluster_submission_that_fails_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    config = write_config(tmp_path, 'return [{"name": "a"}, {"name": "b"}]')
    root = tmp_path / "root"
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch; the launcher itself runs as sys.executable
    assert main(["--config", config, "--root", str(root), "--launcher", "slurm"]) == 1
    points = read_json(root / "sweep.json")["points"]
    assert [p["state"] for p in points.values()] == ["failed", "failed"]
    assert points["b"]["error"].startswith("mixtok.launch: error: sbatch is not on PATH")
