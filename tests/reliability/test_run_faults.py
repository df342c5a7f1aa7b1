"""The run side of "nothing lost, nothing silent": each fault a run can meet gives one clear line on
stderr (no traceback), a documented exit code (2: the command is wrong, 1: the run failed, 143:
preempted) and loses nothing that was saved.

The command-line tests run `python -m mixtok.train` on a tiny config file that builds
`tests.train.test_trainer.tiny_config`; they wait for markers in the run's files, never for time.
"""

import errno
import fcntl
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mixtok.train import steps
from mixtok.train.config import validate_config
from mixtok.train.metric_writer import MetricsFileError, MetricWriter, read_metrics
from mixtok.train.trainer import NonFiniteLossError, Preempted, train_and_evaluate
from mixtok.train.workdir import WorkdirError, WorkdirLockedError
from tests.train.test_trainer import tiny_mixer_config as tiny_config

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
    """A config file for the CLI: tiny_mixer_config(**overrides)."""
    path = tmp_path / "tiny_config.py"
    path.write_text(
        "from tests.train.test_trainer import tiny_mixer_config\n\n\n"
        f"def get_config():\n    return tiny_mixer_config(**{overrides!r})\n"
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


def test_second_trainer_on_a_locked_workdir_stops_before_writing_anything(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    with open(workdir / ".lock", "w+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running trainer holds it
        held.write("host otherhost, pid 4242\n")
        held.flush()
        with pytest.raises(WorkdirLockedError, match=r"in use by another trainer \(host otherhost, pid 4242\)"):
            train_and_evaluate(tiny_config(), workdir)  # in-process too: flock is per open file
    assert sorted(p.name for p in workdir.iterdir()) == [".lock"]  # nothing written


def test_second_trainer_from_the_command_line_exits_2(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    with open(workdir / ".lock", "w+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("host otherhost, pid 4242\n")
        held.flush()
        proc = _cli("--config", str(_config_file(tmp_path)), "--workdir", str(workdir))
        _, stderr = _finish(proc)
    line = _one_error_line(stderr, 2, proc.returncode)
    assert "in use by another trainer (host otherhost, pid 4242)" in line
    assert sorted(p.name for p in workdir.iterdir()) == [".lock"]


def test_lock_left_by_a_dead_run_is_taken_over_and_released_at_exit(tmp_path, caplog):
    (tmp_path / ".lock").write_text("host somewhere, pid 999999\n")  # its process is gone: not locked
    with caplog.at_level(logging.WARNING, logger="mixtok.train.workdir"):
        train_and_evaluate(tiny_config(total_steps=3, log_every=3, eval_every=3, checkpoint_every=3), tmp_path)
    assert "was left by a run that is gone (host somewhere, pid 999999)" in caplog.text
    assert [r["step"] for r in read_metrics(tmp_path)] == [3]
    with open(tmp_path / ".lock", "r+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: the test can take it
        assert lock.read() == ""  # released cleanly, not left behind


# --- the file system ---------------------------------------------------------------------------------


def test_workdir_that_is_a_file_is_one_line_and_exit_2(tmp_path):
    workdir = tmp_path / "notes.txt"
    workdir.write_text("not a run\n")
    proc = _cli("--config", str(_config_file(tmp_path)), "--workdir", str(workdir))
    _, stderr = _finish(proc)
    line = _one_error_line(stderr, 2, proc.returncode)
    assert "is an existing file, not a directory" in line and str(workdir) in line
    assert workdir.read_text() == "not a run\n"


def test_an_unsupported_url_workdir_is_one_line_and_exit_2_not_a_local_folder_named_like_it(tmp_path):
    proc = _cli("--config", str(_config_file(tmp_path)), "--workdir", "s3://my-bucket/run")
    _, stderr = _finish(proc)
    line = _one_error_line(stderr, 2, proc.returncode)
    assert "--workdir 's3://my-bucket/run': of URLs only gs:// (Google Cloud Storage) is supported" in line
    assert not (REPO / "s3:").exists()


def test_read_only_workdir_is_one_line_and_exit_2(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    workdir = tmp_path / "run"
    workdir.mkdir()
    workdir.chmod(0o500)
    try:
        proc = _cli("--config", str(_config_file(tmp_path)), "--workdir", str(workdir))
        _, stderr = _finish(proc)
        line = _one_error_line(stderr, 2, proc.returncode)
        assert "is not writable by this user" in line and str(workdir) in line
        with pytest.raises(WorkdirError, match="cannot be created: permission denied"):
            train_and_evaluate(tiny_config(), workdir / "sub")  # nor can one be created inside it
    finally:
        workdir.chmod(0o700)


def test_unwritable_workdir_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    # The permission check itself, where the real one cannot run (root may write anywhere).
    import mixtok.train.workdir as workdir_module

    monkeypatch.setattr(workdir_module.os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(WorkdirError, match=f"The workdir '{tmp_path}' is not writable by this user"):
        train_and_evaluate(tiny_config(), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_run_that_fails_before_its_first_step_leaves_no_workdir_it_created(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("the first batch could not be placed")

    monkeypatch.setattr(steps, "put_batch", fail)
    with pytest.raises(RuntimeError, match="first batch"):
        train_and_evaluate(tiny_config(), tmp_path / "new" / "run")
    assert not (tmp_path / "new").exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(RuntimeError, match="first batch"):
        train_and_evaluate(tiny_config(), existing)
    assert existing.is_dir()  # not created by the run: kept


def test_full_disk_on_a_metrics_write_keeps_the_file_and_exits_1(tmp_path):
    workdir = tmp_path / "run"
    config = _config_file(tmp_path, total_steps=6, log_every=1, eval_every=0, checkpoint_every=2)
    proc = _cli("--config", str(config), "--workdir", str(workdir), prefix=("-c", _ENOSPC_AT_STEP_3))
    _, stderr = _finish(proc)
    line = _one_error_line(stderr, 1, proc.returncode)
    assert str(workdir / "metrics.jsonl") in line and os.strerror(errno.ENOSPC) in line, line
    assert read_metrics(workdir) == [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in read_metrics(workdir)] == [1, 2]  # written before the failure, whole


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


@pytest.mark.parametrize("exit_zero", [False, True], ids=["exit_143", "exit_zero_on_preemption"])
def test_sigterm_saves_reports_the_step_and_exits_143(tmp_path, exit_zero):
    workdir = tmp_path / "run"
    config = _config_file(tmp_path, total_steps=100000, log_every=1, eval_every=0, checkpoint_every=100000)
    args = ["--config", str(config), "--workdir", str(workdir)]
    proc = _cli(*args, *(["--exit_zero_on_preemption"] if exit_zero else []))
    deadline = time.monotonic() + 300
    while not _logged_steps(workdir):  # the marker: a step was logged, so the loop is running
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no step logged within 300 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = _finish(proc)
    line = _one_error_line(stderr, 0 if exit_zero else 128 + signal.SIGTERM, proc.returncode)
    match = re.fullmatch(r"mixtok\.train: preempted at step (\d+); rerun the same command to resume", line)
    assert match, line
    step = int(match.group(1))
    assert (workdir / "checkpoints" / str(step)).is_dir()
    assert "final metrics" not in stdout  # not reported as if finished
    assert _logged_steps(workdir)[-1] == step
    if exit_zero:
        return
    # The same command resumes from that checkpoint; another total_steps is allowed on resume (it only changes
    # the schedule's horizon).
    resumed = _cli(*args, f"--config.total_steps={step + 2}")
    _, stderr = _finish(resumed)
    assert resumed.returncode == 0, stderr[-3000:]
    assert _logged_steps(workdir)[-3:] == [step, step + 1, step + 2]


def test_preempted_is_raised_not_returned(tmp_path, monkeypatch):
    def put_and_signal(batch, sharding, _put=steps.put_batch):
        os.kill(os.getpid(), signal.SIGTERM)  # preemption arrives during step 1
        return _put(batch, sharding)

    monkeypatch.setattr(steps, "put_batch", put_and_signal)
    with pytest.raises(Preempted, match="preempted at step 1; rerun the same command to resume") as stopped:
        train_and_evaluate(tiny_config(), tmp_path)
    assert stopped.value.step == 1 and stopped.value.signum == signal.SIGTERM
    assert (tmp_path / "checkpoints" / "1").is_dir()


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


def test_resume_mismatch_can_be_set_from_the_command_line_on_a_config_without_it(tmp_path):
    from absl import flags

    from mixtok.train.__main__ import parse_flags

    config = _config_file(tmp_path)
    try:
        parse_flags(["mixtok.train", f"--config={config}", f"--workdir={tmp_path}", "--config.resume_mismatch=allow"])
        assert flags.FLAGS.config.resume_mismatch == "allow"
    finally:
        flags.FLAGS.unparse_flags()


def test_nonfinite_loss_without_clipping_or_checkpoint_says_so(tmp_path):
    config = tiny_config(**{"optimizer.lr": 1e30, "optimizer.grad_clip": None, "optimizer.warmup_steps": 0})
    with pytest.raises(NonFiniteLossError) as error:
        train_and_evaluate(config, tmp_path)
    message = str(error.value)
    assert re.search(r"is (nan|inf|-inf) at step \d+", message)
    assert "clipping is off: enable optimizer.grad_clip" in message and "optimizer.lr=1e+30" in message
    assert "No checkpoint was saved before it" in message and "step None" not in message


def test_nonfinite_loss_with_clipping_names_the_clip_and_the_last_checkpoint(tmp_path):
    config = tiny_config(checkpoint_every=1, **{"optimizer.lr": 1e30, "optimizer.warmup_steps": 0})
    with pytest.raises(NonFiniteLossError) as error:
        train_and_evaluate(config, tmp_path)
    message = str(error.value)
    assert "clipped to global norm 1.0" in message and "clipping is off" not in message
    saved = re.search(r"The last checkpoint \(step (\d+)\) is untouched", message)
    assert saved and (tmp_path / "checkpoints" / saved.group(1)).is_dir(), message


def test_nonfinite_loss_from_the_command_line_is_one_line_and_exit_1(tmp_path):
    overrides = {"optimizer.lr": 1e30, "optimizer.grad_clip": None, "optimizer.warmup_steps": 0}
    proc = _cli("--config", str(_config_file(tmp_path, **overrides)), "--workdir", str(tmp_path / "run"))
    _, stderr = _finish(proc)
    line = _one_error_line(stderr, 1, proc.returncode)
    assert "Training stopped: " in line and "clipping is off: enable optimizer.grad_clip" in line, line


def test_help_documents_the_exit_codes():
    proc = _cli("--help")
    stdout, _ = _finish(proc, timeout=120)
    assert "143" in stdout and "preempted" in stdout and "--exit_zero_on_preemption" in stdout
