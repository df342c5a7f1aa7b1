"""`python -m mixtok.train`: bad input gets one line, not a traceback. (Preemption through the command line, SIGTERM
saving and the same command resuming: tests/reliability/test_run_faults.py.)"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
