"""One process decides, every process gets the answer: the few collectives a shared workdir needs.

In a multi-host run every process sees the same workdir (NFS or another shared file system), but
not necessarily at the same moment, and N processes reading the same checkpoint read it N times.
So one process (the primary, 0) reads and decides, and the answer travels to the others as JSON
bytes through `jax.experimental.multihost_utils` (jax-ml/jax: jax/experimental/multihost_utils.py):
`broadcast_one_to_all` from process 0, `process_allgather` from all. Each function is a collective:
every process calls it at the same point of the program. With one process they cost nothing.
"""

import json
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

__all__ = ["PrimaryProcessError", "failed_processes", "from_primary", "gather_json"]


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0][:300] if lines else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _bucket(size: int) -> int:
    """Buffer sizes are powers of two (at least 256): a few sizes, so a few compilations."""
    return max(256, 1 << (max(size, 1) - 1).bit_length())


class PrimaryProcessError(OSError):
    """What the other processes raise when the primary failed while deciding for all of them (reading or
    moving checkpoints in the shared workdir: an OSError, so the command line reports it in one line, exit 1)."""


def from_primary(decide: Callable[[], Any]) -> Any:
    """`decide()` run by the primary process only; every process returns its (JSON-able) result.

    One process reads the shared workdir and decides, so that all of them act on the same answer
    (a shared file system may show processes different things for a moment, and N processes
    hashing the same checkpoint would read it N times). The answer travels as JSON bytes with
    `jax.experimental.multihost_utils.broadcast_one_to_all` (a collective: every process calls
    this at the same point). An error of `decide` is raised again on the primary and as a
    `PrimaryProcessError` naming it on the others.
    """
    if jax.process_count() == 1:
        return decide()
    from jax.experimental import multihost_utils

    error = None
    payload = b""
    if jax.process_index() == 0:
        try:
            payload = json.dumps({"value": decide()}).encode()
        except Exception as raised:
            error = raised
            payload = json.dumps({"error": _first_line(raised)}).encode()
    size = int(multihost_utils.broadcast_one_to_all(np.int32(len(payload))))
    buffer = np.zeros(_bucket(size), np.uint8)
    buffer[: len(payload)] = np.frombuffer(payload, np.uint8)
    answer = json.loads(bytes(multihost_utils.broadcast_one_to_all(buffer)[:size]))
    if error is not None:
        raise error
    if "error" in answer:
        raise PrimaryProcessError(f"The primary process (0) failed while deciding for every process: {answer['error']}")
    return answer["value"]


def gather_json(value: Any) -> list[Any]:
    """Every process's JSON-able `value`, in process order (a collective: all processes call it together)."""
    from jax.experimental import multihost_utils

    payload = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int32(payload.size))).reshape(-1)
    buffer = np.zeros(_bucket(int(sizes.max())), np.uint8)
    buffer[: payload.size] = payload
    rows = np.asarray(multihost_utils.process_allgather(buffer)).reshape(len(sizes), -1)
    return [json.loads(bytes(row[:size])) for row, size in zip(rows, sizes)]


def failed_processes(failed: bool) -> list[int]:
    """The indices of the processes that pass failed=True (a collective in a multi-host run)."""
    if jax.process_count() == 1:
        return [0] if failed else []
    from jax.experimental import multihost_utils

    flags = np.asarray(multihost_utils.process_allgather(np.int32(failed))).reshape(-1)
    return [int(i) for i in np.flatnonzero(flags)]
