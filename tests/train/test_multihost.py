"""Two processes with jax.distributed over loopback train one model: 2 hosts x 4 CPU devices.

The helpers that start them; the tests that use them are test_multihost_preemption.py (which also checks a
two-process run that is never stopped: both processes' metrics, written once), tests/reliability/
test_shared_workdir.py and test_gcs_workdir.py.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

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
