"""The run side of "nothing lost, nothing silent": each fault a run can meet gives one clear line on
stderr (no traceback), a documented exit code (2: the command is wrong, 1: the run failed, 143:
preempted) and loses nothing that was saved.

The command-line tests run `python -m mixtok.train` on a tiny config file that builds
`tests.train.test_trainer.tiny_config`; they wait for markers in the run's files, never for time.
"""

import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mixtok.train.config import validate_config
from mixtok.train.metric_writer import MetricsFileError, MetricWriter, read_metrics
from mixtok.train.trainer import train_and_evaluate
from tests.train.test_trainer import tiny_config

REPO = Path(__file__).resolve().parents[2]

# Runs the CLI with os.write failing with ENOSPC for the metrics record of step 3 (no real full disk).
_ENOSPC_AT_STEP_3 = """
import errno, os, runpy, sys
real_write = os.write
def write(fd, data):
    if bytes(data).startswith(b'{"step": 3,'):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_write(fd, data)
os.write = write
sys.argv = ["mixtok.train", *sys.argv[1:]]
runpy.run_module("mixtok.train", run_name="__main__", alter_sys=True)
"""


def _config_file(tmp_path: Path, **overrides) -> Path:
    """A config file for the CLI: tiny_config(**overrides)."""
    path = tmp_path / "tiny_config.py"
    path.write_text(
        "from tests.train.test_trainer import tiny_config\n\n\n"
        f"def get_config():\n    return tiny_config(**{overrides!r})\n"
    )
    return path


def _cli(*args, prefix=("-m", "mixtok.train")) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, *prefix, *args],
        cwd=REPO,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the run did not end within {timeout} s: {err[-3000:]}")


def _one_error_line(stderr: str, code: int, returncode: int) -> str:
    """The run's single "mixtok.train:" line, after checking the exit code and that no traceback was printed."""
    assert returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("mixtok.train:")]
    assert len(lines) == 1, stderr[-3000:]
    return lines[0]


def _logged_steps(workdir: Path) -> list[int]:
    path = workdir / "metrics.jsonl"
    found = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            found.append(json.loads(line)["step"])
        except ValueError:  # a line being written right now
            break
    return found


# --- one trainer per workdir -----------------------------------------------------------------------


# --- the file system ---------------------------------------------------------------------------------


# --- metrics.jsonl on resume -------------------------------------------------------------------------


def test_torn_last_metrics_line_is_dropped_on_resume_with_a_warning(tmp_path, caplog):
    config = tiny_config(total_steps=6, log_every=1, eval_every=6, checkpoint_every=2)
    train_and_evaluate(config, tmp_path, stop_at_step=4)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "train/lo')  # a write cut short by a kill
    with caplog.at_level(logging.WARNING, logger="mixtok.train.metric_writer"):
        train_and_evaluate(config, tmp_path)
    assert "metrics.jsonl: dropped its last line, left half-written" in caplog.text
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 6]


def test_bad_metrics_line_before_the_last_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    before = '{"step": 1, "train/loss": 1.0}\nnot json\n{"step": 2, "train/loss": 0.5}\n'
    path.write_text(before)
    with pytest.raises(MetricsFileError, match=re.escape(f"{path} line 2 is not a metrics record")):
        MetricWriter(tmp_path, resume_step=2, tensorboard=False)
    assert path.read_text() == before


# --- preemption ----------------------------------------------------------------------------------------


# --- non-finite inputs and losses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value",
    [
        ("data.std", 0.0),
        ("data.std", (0.5, 0.0, 0.5)),
        ("data.std", math.nan),
        ("data.std", (0.5, math.inf, 0.5)),
        ("data.mean", (0.5, math.nan, 0.5)),
        ("data.mean", -math.inf),
    ],
)
def test_non_finite_or_zero_normalisation_is_refused(field, value):
    with pytest.raises(ValueError, match=rf"config\.{re.escape(field)} must be finite"):
        validate_config(tiny_config(**{field: value}))


def test_finite_normalisation_and_resume_mismatch_values_are_checked():
    validate_config(tiny_config(**{"data.std": (0.5, 0.25, 0.5), "data.mean": 0.5, "resume_mismatch": "allow"}))
    with pytest.raises(ValueError, match=r"config\.resume_mismatch must be one of \('error', 'allow'\); got 'maybe'"):
        validate_config(tiny_config(resume_mismatch="maybe"))
