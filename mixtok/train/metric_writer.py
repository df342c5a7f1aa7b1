"""Writes metrics to `workdir/metrics.jsonl` (one JSON object per logged step) and TensorBoard.

On resume the trainer restarts from its last checkpoint, so lines logged after that checkpoint
are removed (the resumed run writes them again, identically) and TensorBoard purges the same
steps; the file is rewritten atomically so an interruption never leaves it half-written. A fresh
run (no checkpoint) that finds a metrics.jsonl, left by a run that stopped before its first
checkpoint, moves it aside to metrics.jsonl.orphaned-<time> rather than appending to or deleting it.

Faults: a last line left half-written by a run that was killed mid-write is dropped on resume with a
warning; an invalid line anywhere else is a `MetricsFileError` naming the file and the line. A write
that fails (a full disk) truncates the file back to its last whole line and raises
`MetricsWriteError` naming the file, so what was logged before is kept, and the next run resumes it.
"""

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from tensorboardX import SummaryWriter

log = logging.getLogger(__name__)


class MetricsFileError(ValueError):
    """metrics.jsonl holds an invalid line that is not a torn last line: the file and line are named."""


class MetricsWriteError(OSError):
    """Writing metrics.jsonl failed (e.g. the disk is full); the file keeps its previous content."""

    @classmethod
    def of(cls, error: OSError, message: str) -> "MetricsWriteError":
        new = cls(message)  # one argument and no strerror: str() is the message alone, no "[Errno N]"
        new.errno = error.errno
        return new


def _kept_lines(path: Path, resume_step: int) -> list[str]:
    """The lines of `path` up to `resume_step`; a torn last line is dropped, another bad line is an error."""
    lines = path.read_bytes().decode("utf-8", "replace").splitlines()
    last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
    kept = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            step = json.loads(line)["step"]
            if isinstance(step, bool) or not isinstance(step, int):
                raise TypeError(f"its step is {step!r}")
        except (ValueError, KeyError, TypeError) as error:
            if i == last:
                log.warning(
                    "%s: dropped its last line, left half-written by an interrupted run (%d characters).",
                    path,
                    len(line),
                )
                continue
            reason = "has no step" if isinstance(error, KeyError) else f"is not a metrics record ({error})"
            raise MetricsFileError(
                f"{path} line {i + 1} {reason}; only a torn last line is repaired on resume. Fix or remove "
                "that line (or move the file aside) and rerun."
            ) from None
        if step <= resume_step:
            kept.append(line)
    return kept


class MetricWriter:
    """Appends metrics to metrics.jsonl and TensorBoard; a writer with `enabled=False` (every
    process but the first of a multi-host run) writes nothing."""

    def __init__(self, workdir: Path, resume_step: int | None = None, tensorboard: bool = True, enabled: bool = True):
        self.enabled = enabled
        self.path = Path(workdir) / "metrics.jsonl"
        self._fd = None
        self._tb = None
        if not enabled:
            return
        if resume_step is None and self.path.exists() and self.path.stat().st_size:
            orphan = self.path.with_name(f"metrics.jsonl.orphaned-{int(time.time())}")
            os.replace(self.path, orphan)
            log.warning("%s came from a run that left no checkpoint; moved it to %s.", self.path, orphan.name)
        if resume_step is not None and self.path.exists():
            kept = _kept_lines(self.path, resume_step)
            tmp = self.path.with_suffix(".jsonl.tmp")
            try:
                tmp.write_text("".join(line + "\n" for line in kept))
                os.replace(tmp, self.path)
            except OSError as error:
                tmp.unlink(missing_ok=True)
                raise MetricsWriteError.of(
                    error,
                    f"Could not rewrite {self.path} on resume: {error.strerror or error}; it is unchanged. "
                    "Free space (or fix the file system) and rerun the same command.",
                ) from None
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        purge = None if resume_step is None else resume_step + 1
        self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"), purge_step=purge) if tensorboard else None

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        data = (json.dumps(record) + "\n").encode()
        size = os.fstat(self._fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as error:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)  # no torn line: the file ends at its last whole record
            raise MetricsWriteError.of(
                error,
                f"Could not write step {int(step)} to {self.path}: {error.strerror or error}; the metrics logged "
                "before it are kept. Free space and rerun the same command to resume from the last checkpoint.",
            ) from None
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, float(value), int(step))

    def close(self) -> None:
        if not self.enabled:
            return
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(workdir) -> list:
    """The records of `workdir/metrics.jsonl`, in order."""
    path = Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
