"""SIGTERM to one process of a two-process run (jax.distributed over loopback, 2 hosts x 4 CPU devices):
both processes save the same step, exit with the trainer's preemption status, and a rerun resumes exactly;
a run of two processes that is never stopped gives both the same metrics, written once.

The processes run the trainer's command line (`python -m mixtok.train --distributed ...`, through
tests/train/multihost_worker.py). The test waits for markers the processes write, never for time: after
HOLD steps both processes pause before the next one until JAX's preemption sync protocol has their steps,
and the test sends SIGTERM to process 1 while they are paused.
"""

import json
import re
import signal
import subprocess
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from mixtok.train.checkpointing import ITEMS, verify_manifest
from mixtok.train.metric_writer import read_metrics
from tests.train.test_multihost import start_two_processes

TOTAL_STEPS = 12
HOLD = 3  # SIGTERM is sent once both processes have done this many steps
PREEMPTED = re.compile(r"^mixtok\.train: preempted at step (\d+); rerun the same command to resume$", re.M)
# Generous limits for a shared, slow machine; they only keep a broken run from hanging the suite.
TIMEOUT_S = 600


def _config_file(tmp_path: Path) -> Path:
    """The trainer's config file: the tiny MLP-Mixer's classification run, every step logged, no checkpoint but
    the preemption's before the end (checkpoint_every > total_steps)."""
    path = tmp_path / "tiny_config.py"
    path.write_text(
        "from tests.train.test_trainer import TINY_MIXER, tiny_config\n\n\n"
        "def get_config():\n"
        f"    return tiny_config(total_steps={TOTAL_STEPS}, log_every=1, eval_every={TOTAL_STEPS}, "
        "checkpoint_every=100, tensorboard=False, **TINY_MIXER)\n"
    )
    return path


def _kill(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _finish(procs: list[subprocess.Popen], logs: Path) -> list[tuple[int, str, str]]:
    """(exit status, stdout, stderr) of each process once both have ended."""
    try:
        for proc in procs:
            proc.wait(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill(procs)
        pytest.fail(f"the two processes did not end within {TIMEOUT_S} s: {_read(logs, 'err')}")
    return [
        (proc.returncode, (logs / f"process_{i}.out").read_text(), (logs / f"process_{i}.err").read_text())
        for i, proc in enumerate(procs)
    ]


def _read(logs: Path, kind: str) -> str:
    return "\n".join(f"--- process {i}:\n{(logs / f'process_{i}.{kind}').read_text()[-3000:]}" for i in range(2))


def _wait_until_held(procs: list[subprocess.Popen], markers: Path, logs: Path) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not all((markers / f"held_{i}").exists() for i in range(2)):
        if any(proc.poll() is not None for proc in procs) or time.monotonic() > deadline:
            _kill(procs)
            pytest.fail(f"the processes did not both reach step {HOLD}: {_read(logs, 'err')}")
        time.sleep(0.1)


def _run(workdir: Path, config: Path, logs: Path, *extra: str) -> list[tuple[int, str, str]]:
    logs.mkdir()
    return _finish(start_two_processes(workdir, "--cli", str(config), *extra, logs=logs), logs)


def _final_metrics(stdout: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith("final metrics: ")]
    return line


def _params(workdir: Path, step: int):
    """The params at `step`, read onto this process's first device (the run's 2 x 4 devices are not here)."""
    path = (workdir / "checkpoints" / str(step) / "state").absolute()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as checkpointer:
        target = jax.tree_util.tree_map(
            lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=device),
            checkpointer.metadata(path).item_metadata,
        )
        state = checkpointer.restore(path, target)
    return jax.tree_util.tree_map(np.asarray, state["params"])


def _preempt(run: Path, config: Path, name: str, *, hold: int = HOLD, announce: bool = False) -> int:
    """Runs two processes in `run` (logs and markers in `run.parent / name`), sends SIGTERM to process 1 once
    both have done `hold` steps of this run, checks that both stopped at the same step with the preemption
    status and that the newest checkpoint is that step, complete, and returns the step. `announce`: write
    sigterm_sent after the signal (the worker's hold waits for it when JAX's preemption service is off)."""
    markers, logs = run.parent / name / "markers", run.parent / name / "logs"
    markers.mkdir(parents=True)
    logs.mkdir()
    procs = start_two_processes(run, "--cli", str(config), f"--hold_after={hold}:{markers}", logs=logs)
    _wait_until_held(procs, markers, logs)
    procs[1].send_signal(signal.SIGTERM)  # process 1 only
    if announce:
        (markers / "sigterm_sent").write_text("SIGTERM sent to process 1\n")
    ended = _finish(procs, logs)

    # Both exit with the preemption status (128 + SIGTERM) and say where they stopped: the same step.
    assert [code for code, _, _ in ended] == [143, 143], _read(logs, "err")
    stopped = [PREEMPTED.findall(err) for _, _, err in ended]
    assert all(len(found) == 1 for found in stopped), _read(logs, "err")
    (step_0,), (step_1,) = stopped
    assert step_0 == step_1, stopped
    step = int(step_0)
    assert not any("final metrics" in out for _, out, _ in ended)

    # The newest checkpoint is that step, complete: finalised by orbax (no temporary folder left), every
    # item there, every file as its manifest (written once the save finished) says, and the data item
    # holding both processes' iterator positions.
    checkpoints = run / "checkpoints"
    assert max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()) == step
    assert not [p.name for p in checkpoints.iterdir() if not p.name.isdigit()]
    assert {p.name for p in (checkpoints / str(step)).iterdir()} >= set(ITEMS)
    assert verify_manifest(checkpoints / str(step))
    data = json.loads((checkpoints / str(step) / "data" / "metadata").read_text())  # orbax's JSON item
    assert data["process_count"] == 2 and len(data["processes"]) == 2  # both processes' iterator positions
    assert [r["step"] for r in read_metrics(run)] == list(range(1, step + 1))
    return step


def test_sigterm_to_one_process_stops_both_at_one_step_and_the_rerun_resumes_exactly(tmp_path):
    config, run, straight = _config_file(tmp_path), tmp_path / "run", tmp_path / "straight"
    step = _preempt(run, config, "first")
    # JAX's sync point is the largest step any process had reached (both: HOLD) plus one.
    assert step == HOLD + 1
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [str(step)]  # checkpoint_every > total

    # SIGTERM again, before the first step of the resumed run: JAX's sync point is then already past (no
    # process had reported a step of this run), and the gathered notice stops both after one step.
    assert _preempt(run, config, "again", hold=0) == step + 1

    # Rerunning both resumes and finishes; the result equals a two-process run that was never stopped.
    resumed = _run(run, config, tmp_path / "logs_resumed")
    never_stopped = _run(straight, config, tmp_path / "logs_straight")
    assert [code for code, _, _ in resumed + never_stopped] == [0, 0, 0, 0], [err[-3000:] for _, _, err in resumed]
    assert _final_metrics(resumed[0][1]) == _final_metrics(never_stopped[0][1])
    # The never-stopped processes hold shards of one global batch and one replicated model: the same final
    # metrics on both, and metrics.jsonl written once, by process 0.
    assert _final_metrics(never_stopped[1][1]) == _final_metrics(never_stopped[0][1])
    assert [r["step"] for r in read_metrics(straight)] == list(range(1, TOTAL_STEPS + 1))
    assert (straight / "checkpoints" / str(TOTAL_STEPS)).is_dir()
    assert read_metrics(run) == read_metrics(straight)
    params, expected = _params(run, TOTAL_STEPS), _params(straight, TOTAL_STEPS)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


def test_without_jax_preemption_service_the_processes_agree_at_the_next_logged_step(tmp_path, monkeypatch):
    # JAX reads its config from the environment; the workers inherit it.
    monkeypatch.setenv("JAX_ENABLE_PREEMPTION_SERVICE", "false")
    # Every step is logged (log_every=1): the all-gathered flag stops both at the first step after the signal.
    assert _preempt(tmp_path / "run", _config_file(tmp_path), "first", announce=True) == HOLD + 1
