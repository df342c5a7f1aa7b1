"""N trainer processes on this machine, joined by jax.distributed over loopback: multi-host code, tested on a laptop.

    python -m mixtok.launch local --processes 2 --devices-per-process 4 -- \
        --config experiments/configs/quickstart.py --workdir /tmp/run

Process i runs `python -m mixtok.train ... --distributed --coordinator_address 127.0.0.1:PORT
--num_processes N --process_id i` on the CPU (JAX_PLATFORMS=cpu) with K simulated devices
(JAX_NUM_CPU_DEVICES, and XLA's --xla_force_host_platform_device_count for older JAX), the pattern of
the JAX docs' multi-process toy example (jax-ml/jax docs, multi_process.md, "Toy example"); CPU
processes exchange collectives over gloo, JAX's default since 0.5.1 (jax-ml/jax: CHANGELOG.md).

The launcher waits for every process, prefixes each one's output lines with `[i] `, forwards SIGTERM and
SIGINT to all of them (so Ctrl-C or a scheduler's SIGTERM reaches every trainer, which checkpoints and
exits 143), and exits with the first non-zero status a process reported (a process killed by signal S
counts as 128 + S), or 0. When a process fails on its own, the others would wait for it in their next
collective until JAX's heartbeat timeout; the launcher gives them --grace-seconds to stop by themselves,
then sends SIGTERM, and after another --grace-seconds SIGKILL.
"""

import argparse
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence

from mixtok.launch.common import (
    LaunchError,
    TrainerArgs,
    add_common_options,
    at_least_one,
    print_commands,
    trainer_command,
)

HELP = "N processes on this machine over loopback (CPU devices), for testing multi-host code."
_DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
_LINE_END = re.compile(rb"\r\n|\r|\n")


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds >= 0")
    return value


def add_arguments(parser) -> None:
    parser.add_argument("--processes", type=at_least_one, default=2, help="Number of processes N (default 2).")
    parser.add_argument(
        "--devices-per-process", type=at_least_one, default=1, help="Simulated CPU devices per process (default 1)."
    )
    parser.add_argument("--port", type=_port, default=None, help="Coordinator port on 127.0.0.1 (default: a free one).")
    parser.add_argument(
        "--grace-seconds",
        type=_seconds,
        default=10.0,
        help="After one process fails, how long the others get to stop before SIGTERM, then SIGKILL (default 10).",
    )
    parser.add_argument("--python", default=sys.executable, help="Python interpreter (default: this one).")
    add_common_options(parser)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_environment(devices: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables the launcher sets for each process: CPU only, `devices` devices."""
    flags = [f for f in environ.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_COUNT_FLAG)]
    flags.append(f"{_DEVICE_COUNT_FLAG}={devices}")
    return {"JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices), "XLA_FLAGS": " ".join(flags)}


def commands(options, trainer: TrainerArgs, port: int) -> list[list[str]]:
    return [
        trainer_command(
            options.python,
            trainer,
            "--coordinator_address",
            f"127.0.0.1:{port}",
            "--num_processes",
            str(options.processes),
            "--process_id",
            str(i),
        )
        for i in range(options.processes)
    ]


def run(options, trainer: TrainerArgs) -> int:
    port = options.port or free_port()
    variables = child_environment(options.devices_per_process, os.environ)
    argvs = commands(options, trainer, port)
    if options.dry_run:
        assignments = " ".join(f"{k}={shlex.quote(v)}" for k, v in variables.items())
        print_commands([f"{assignments} {shlex.join(argv)}" for argv in argvs])
        return 0
    if shutil.which(options.python) is None:
        raise LaunchError(f"--python {options.python!r} is not an interpreter on PATH; give a path or a command name.")
    return supervise(argvs, env={**os.environ, **variables}, grace_seconds=options.grace_seconds)


def exit_status(returncode: int) -> int:
    """A shell's view of a child's end: its exit code, or 128 + S when signal S killed it."""
    return 128 - returncode if returncode < 0 else returncode


def _pump(pipe, sink, prefix: bytes, lock: threading.Lock) -> None:
    """Copies a child's output to `sink`, each line (ended by \\n, or \\r as progress bars do) after `prefix`.

    A line is written whole under `lock`, so the processes' lines never interleave mid-line.
    """
    pending = b""
    for chunk in iter(lambda: os.read(pipe.fileno(), 65536), b""):
        pending += chunk
        start, lines = 0, []
        for end in _LINE_END.finditer(pending):
            lines.append(prefix + pending[start : end.end()])
            start = end.end()
        pending = pending[start:]
        if lines:
            with lock:
                sink.write(b"".join(lines))
                sink.flush()
    if pending:
        with lock:
            sink.write(prefix + pending + b"\n")
            sink.flush()
    pipe.close()


def _wait(index: int, process: subprocess.Popen, pumps, finished: queue.Queue) -> None:
    returncode = process.wait()
    for pump in pumps:  # the rest of its output; a grandchild holding the pipe must not block us
        pump.join(timeout=5)
    finished.put((index, returncode))


def supervise(argvs: Sequence[Sequence[str]], *, env=None, grace_seconds=10.0, stdout=None, stderr=None) -> int:
    """Runs the commands at once and waits for all; returns the first non-zero exit status (or 0).

    SIGTERM and SIGINT sent to this process are forwarded to every child. Each child gets its own
    session, so a terminal's Ctrl-C reaches it once, through us. When a child fails on its own, the
    others get `grace_seconds`, then SIGTERM, then after `grace_seconds` more SIGKILL.
    """
    stdout = stdout or sys.stdout.buffer
    stderr = stderr or sys.stderr.buffer
    processes: list[subprocess.Popen] = []
    forwarded: list[int] = []
    finished: queue.Queue = queue.Queue()
    lock = threading.Lock()

    def send(signum: int) -> None:
        for process in processes:
            if process.poll() is None:
                try:
                    process.send_signal(signum)
                except ProcessLookupError:
                    pass

    def forward(signum, frame):
        forwarded.append(signum)
        send(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index, argv in enumerate(argvs):
            process = subprocess.Popen(
                list(argv), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
            )
            processes.append(process)
            prefix = f"[{index}] ".encode()
            pumps = [
                threading.Thread(target=_pump, args=(process.stdout, stdout, prefix, lock), daemon=True),
                threading.Thread(target=_pump, args=(process.stderr, stderr, prefix, lock), daemon=True),
            ]
            for pump in pumps:
                pump.start()
            threading.Thread(target=_wait, args=(index, process, pumps, finished), daemon=True).start()

        status, running = 0, len(processes)
        deadline, escalation = None, [signal.SIGTERM, signal.SIGKILL]
        while running:
            try:
                index, returncode = finished.get(timeout=0.5)
            except queue.Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    signum = escalation.pop(0) if escalation else signal.SIGKILL
                    _note(stderr, lock, f"sending {signal.Signals(signum).name} to the {running} still running")
                    send(signum)
                    deadline = time.monotonic() + grace_seconds
                continue
            running -= 1
            code = exit_status(returncode)
            if code != 0 and status == 0:
                status = code
                if running and not forwarded:
                    _note(
                        stderr,
                        lock,
                        f"process {index} exited with status {code}; the other {running} get {grace_seconds:g} s "
                        f"to stop, then SIGTERM, then SIGKILL",
                    )
                    deadline = time.monotonic() + grace_seconds
        return status
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for process in processes:  # only after an exception in this function: never leave children behind
            if process.poll() is None:
                process.kill()


def _note(sink, lock: threading.Lock, message: str) -> None:
    with lock:
        sink.write(f"mixtok.launch: {message}\n".encode())
        sink.flush()
