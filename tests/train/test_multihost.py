"""Two processes with jax.distributed over loopback train one model: 2 hosts x 4 CPU devices."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from mixtok.train.metric_writer import read_metrics

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Left out of the processes' environment: the test session's device count, and its persistent compilation
# cache, with some entries of which two processes were seen to wait on each other until a timeout.
MULTIHOST_UNSET = ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR")


def start_two_processes(workdir, *worker_args: str, logs: Path | None = None) -> list[subprocess.Popen]:
    """Starts `multihost_worker` as processes 0 and 1 of one jax.distributed run over loopback, with
    `worker_args` after PROCESS_ID PORT WORKDIR (see multihost_worker's docstring). Their stdout and stderr
    are pipes, or the files `logs/process_<i>.out` and `.err` (nothing blocks on a full pipe while the
    caller waits for something else)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in MULTIHOST_UNSET}
    procs = []
    for i in range(2):
        if logs is None:
            out = err = subprocess.PIPE
        else:
            out, err = open(logs / f"process_{i}.out", "w"), open(logs / f"process_{i}.err", "w")
        command = [sys.executable, "-m", "tests.train.multihost_worker", str(i), str(port), str(workdir)]
        procs.append(subprocess.Popen([*command, *worker_args], cwd=REPO, env=env, stdout=out, stderr=err, text=True))
        if logs is not None:  # the child holds its own copies
            out.close()
            err.close()
    return procs


def run_two_processes(workdir, config_ref: str | None = None) -> list[tuple[dict, str]]:
    """Runs `multihost_worker` as processes 0 and 1 of one jax.distributed run over loopback; returns
    each one's RESULT record and stderr, after asserting that both exited 0."""
    procs = start_two_processes(workdir, *([config_ref] if config_ref else []))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
        results.append((json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:]), err))
    return results


def test_two_processes_train_together_and_only_the_first_writes_metrics(tmp_path):
    results = [result for result, _ in run_two_processes(tmp_path)]
    assert [(r["process"], r["processes"], r["devices"]) for r in results] == [(0, 2, 8), (1, 2, 8)]
    # The processes hold shards of one global batch and one replicated model: same metrics.
    assert results[0]["final"] == results[1]["final"]
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2, 3, 4]  # written once, by process 0
    assert records[-1]["eval/accuracy"] == results[0]["final"]["eval/accuracy"]
    assert (tmp_path / "checkpoints" / "4").is_dir()
