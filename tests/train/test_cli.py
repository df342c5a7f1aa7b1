"""`python -m mixtok.train`: preemption (SIGTERM) saves and the same command resumes; bad input
gets one line, not a traceback."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixtok.train.metric_writer import read_metrics

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = "experiments/configs/quickstart.py"


def _cli(*args, **popen):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "mixtok.train", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes(tmp_path):
    args = [
        "--config",
        QUICKSTART,
        "--workdir",
        str(tmp_path),
        "--config.total_steps=100000",
        "--config.log_every=2",
        "--config.eval_every=0",
        "--config.checkpoint_every=100000",
        "--config.data.name=synthetic",
        "--config.optimizer.warmup_steps=0",
    ]
    proc = _cli(*args)
    deadline = time.time() + 120
    while not ((tmp_path / "metrics.jsonl").exists() and read_metrics(tmp_path)):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, "no metrics within 120 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]  # preempted, not finished
    entries = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    saved = sorted(int(name) for name in entries if name.isdigit())
    assert len(saved) == 1 and 2 <= saved[0] < 100000, (entries, stderr[-3000:])
    assert f"preempted at step {saved[0]}; rerun the same command to resume" in stderr

    resumed = _cli(
        *args[:4],
        f"--config.total_steps={saved[0] + 2}",
        "--config.log_every=1",
        "--config.eval_every=0",
        "--config.data.name=synthetic",
        "--config.checkpoint_every=100000",
        "--config.optimizer.warmup_steps=0",
    )
    _, stderr = resumed.communicate(timeout=180)
    # A different total_steps is allowed on resume (it only changes the schedule's horizon).
    assert resumed.returncode == 0, stderr[-2000:]
    steps = [r["step"] for r in read_metrics(tmp_path)]
    assert steps[-2:] == [saved[0] + 1, saved[0] + 2]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--config.total_stepz=5"], 'Did you mean "total_steps"'),
        (["--config.data.image_size=36"], "Image size 36x36 is not divisible by the model's total stride 32"),
        (["--config.data.name=digitz"], "Did you mean 'digits'"),
        (["--config.progress_barr=False"], "the config has no field 'progress_barr'"),
        (["--config.mesh.pipeline=2"], "'pipeline' is not a mesh axis; the axes are data, fsdp, tensor"),
        (["--config.mesh.tensor=0"], "a mesh axis size is a positive integer or -1"),
        (["--config.mesh.tensor=3"], "8 is not divisible by 3"),
        (["--config.sharding_tolerance=lots"], "--config.sharding_tolerance=lots: expected a float"),
        (["--config.sharding_tolerance=2"], "config.sharding_tolerance must be a number in [0, 1]; got 2.0"),
    ],
)
def test_bad_input_gets_one_clear_line(tmp_path, args, message):
    proc = _cli("--config", QUICKSTART, "--workdir", str(tmp_path), *args)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert message in stderr and "Traceback" not in stderr, stderr[-2000:]


def test_missing_config_file_is_named(tmp_path):
    proc = _cli("--config", "experiments/configs/nope.py", "--workdir", str(tmp_path))
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "config file 'experiments/configs/nope.py' does not exist" in stderr
