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

A gs:// workdir (`mixtok.train.storage`): an object cannot be appended to, so the writer keeps the
file's lines and uploads it whole (one upload: never seen half-written), at most every
`UPLOAD_SECONDS`, at `flush()` (the trainer calls it before every checkpoint save, so a resumed run
finds every line up to its checkpoint) and at `close()`. A failed upload raises `MetricsWriteError`;
the object keeps its previous content. TensorBoard's event file is likewise uploaded whole at each of
tensorboardX's flushes.
"""

import contextlib
import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path

from tensorboardX import SummaryWriter

from mixtok.train import storage

log = logging.getLogger(__name__)
UPLOAD_SECONDS = 30.0  # gs:// only: the longest metrics.jsonl goes without an upload while the run logs


class MetricsFileError(ValueError):
    """metrics.jsonl holds an invalid line that is not a torn last line: the file and line are named."""


class MetricsWriteError(OSError):
    """Writing metrics.jsonl failed (e.g. the disk is full); the file keeps its previous content."""

    @classmethod
    def of(cls, error: OSError, message: str) -> "MetricsWriteError":
        new = cls(message)  # one argument and no strerror: str() is the message alone, no "[Errno N]"
        new.errno = error.errno
        return new


def _kept_lines(path, resume_step: int) -> list[str]:
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
        workdir = storage.as_path(workdir)
        self.path = workdir / "metrics.jsonl"
        self._fd = None
        self._tb = None
        self._lines = None  # gs://: the file's lines, uploaded whole
        if not enabled:
            return
        if resume_step is None and self.path.exists() and storage.size(self.path):
            orphan = self.path.with_name(f"metrics.jsonl.orphaned-{int(time.time())}")
            storage.move(self.path, orphan)
            log.warning("%s came from a run that left no checkpoint; moved it to %s.", self.path, orphan.name)
        if not isinstance(workdir, Path):
            self._open_object(resume_step)
            if tensorboard:
                storage.register_tensorboard_writer()
                purge = None if resume_step is None else resume_step + 1
                self._tb = SummaryWriter(os.fspath(workdir / "tensorboard"), purge_step=purge)
            return
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

    def _open_object(self, resume_step: int | None) -> None:
        self._lines = _kept_lines(self.path, resume_step) if resume_step is not None and self.path.exists() else []
        self._uploaded = None  # how many lines the object holds; None: not uploaded by this writer yet
        self._upload_time = time.monotonic()
        if resume_step is not None and self.path.exists():
            self._upload()  # drop the lines after the checkpoint now, as the local file is rewritten

    def _upload(self) -> None:
        try:
            storage.write_bytes_atomically(self.path, "".join(line + "\n" for line in self._lines).encode())
        except OSError as error:
            raise MetricsWriteError.of(
                error,
                f"Could not upload {self.path}: {error.strerror or error}; the object keeps its previous content. "
                "Rerun the same command to resume from the last checkpoint.",
            ) from None
        self._uploaded = len(self._lines)
        self._upload_time = time.monotonic()

    def flush(self) -> None:
        """gs://: uploads the lines written since the last upload (a local file is written at once)."""
        if self._lines is not None and (self._uploaded or 0) != len(self._lines):
            self._upload()

    def write(self, step: int, metrics: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
        if self._lines is not None:
            self._lines.append(json.dumps(record))
            if time.monotonic() - self._upload_time >= UPLOAD_SECONDS:
                self._upload()
        else:
            self._append(record, step)
        if self._tb is not None:
            for key, value in metrics.items():
                self._tb.add_scalar(key, float(value), int(step))

    def _append(self, record, step: int) -> None:
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

    def close(self) -> None:
        if not self.enabled:
            return
        try:
            self.flush()
        finally:
            self._close_files()

    def _close_files(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def read_metrics(workdir) -> list:
    """The records of `workdir/metrics.jsonl`, in order."""
    path = storage.as_path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
