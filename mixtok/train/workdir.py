"""The run's workdir: checked, created and locked before anything is written into it.

    with open_workdir(path) as workdir:
        ...  # train, writing under `workdir.path`; `workdir.started()` once the first step is done

- One trainer per workdir: an advisory lock (`fcntl.flock`) on `workdir/.lock`, which holds the
  holder's host and pid as text (`.lock.<process_index>` per process of a multi-host run). A second
  trainer stops at once with `WorkdirLockedError` naming the holder. The kernel drops the lock when
  its process dies, however it dies, so a lock file left behind by a killed run is not locked and
  is taken over (with a warning naming the run that left it). The lock is released at exit.
- A URL (`gs://bucket/run`, any `scheme://`), an existing file, a path through a file, or a
  directory this user cannot write are `WorkdirError`s (ValueErrors: the command line is wrong,
  not the run) with one clear line.
- A run that fails before its first step does not leave behind the empty workdir it created: the
  lock file and the empty files and folders the run's writers made are removed, then the folders
  it created, each only if it is empty.
- A shared workdir (NFS, several processes of one run): each process creates the folder if it is
  missing and takes its own `.lock.<process_index>`, so every process of a second run stops by
  itself, before any collective. Beyond that only the primary process (0) removes anything: the
  others remove at most their own empty lock file. (If a process other than 0 happened to create
  the folder, a run that fails before its first step leaves that empty folder behind.)
"""

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import socket
from pathlib import Path

__all__ = ["Workdir", "WorkdirError", "WorkdirLockedError", "open_workdir"]

log = logging.getLogger(__name__)
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # gs://, s3://, ...: refused (not written as a local "gs:" folder)


class WorkdirError(ValueError):
    """The workdir cannot be used (a file, not writable): a user error, with one line that says why."""


class WorkdirLockedError(WorkdirError):
    """Another trainer holds the workdir's lock."""


def _holder() -> str:
    return f"host {socket.gethostname()}, pid {os.getpid()}"


class Workdir:
    """A created, writable, locked workdir; `close(failed=...)` releases it (see the module docstring)."""

    def __init__(self, path, process_index: int = 0, process_count: int = 1):
        if URL.match(os.fspath(path)):
            raise WorkdirError(
                f"--workdir {os.fspath(path)!r}: the trainer writes only to filesystem paths today (its lock, "
                "metrics and checkpoint manifests are POSIX files); mount the bucket (e.g. gcsfuse) or use a shared "
                "filesystem, and give its path."
            )
        self.path = Path(path).expanduser()
        self._created: list[Path] = []  # the folders this run created, outermost first
        self._started = False
        self._fd = None
        try:
            self._create()
        except PermissionError:  # e.g. a parent folder this user may not even look into
            raise WorkdirError(
                f"The workdir {str(self.path)!r} cannot be used: permission denied; pass a --workdir you can write."
            ) from None
        self._primary = process_index == 0
        name = ".lock" if process_count <= 1 else f".lock.{process_index}"
        self.lock_path = self.path / name
        try:
            self._lock()
        except BaseException:
            self._remove_created()
            raise

    def _create(self) -> None:
        path = self.path
        if path.exists() and not path.is_dir():
            raise WorkdirError(f"The workdir {str(path)!r} is an existing file, not a directory; pass a directory.")
        missing = []
        for folder in (path, *path.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise WorkdirError(
                        f"The workdir {str(path)!r} cannot be created: {str(folder)!r} is a file, not a directory."
                    )
                break
            missing.append(folder)
        with _unwritable_as_workdir_error(path, "cannot be created"):
            path.mkdir(parents=True, exist_ok=True)
        self._created = [folder for folder in reversed(missing) if folder.is_dir()]
        if not os.access(path, os.W_OK | os.X_OK):
            raise WorkdirError(
                f"The workdir {str(path)!r} is not writable by this user; fix its permissions or pass another "
                "--workdir."
            )

    def _lock(self) -> None:
        with _unwritable_as_workdir_error(
            self.path, f"is not writable by this user (cannot create {self.lock_path.name})"
        ):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "its host and pid not yet written"
            os.close(fd)
            if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WorkdirLockedError(
                    f"The workdir {str(self.path)!r} is in use by another trainer ({holder}); wait for it to "
                    "finish or stop it, or pass another --workdir."
                ) from None
            raise
        previous = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        if previous:
            log.warning(
                "%s was left by a run that is gone (%s); taking it over.", self.lock_path, previous.splitlines()[0]
            )
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{_holder()}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def started(self) -> None:
        """The run has done a step: from now on nothing of the workdir is removed at exit."""
        self._started = True

    def close(self, failed: bool = False) -> None:
        """Releases the lock; after a failure before the first step, removes what this run created and left empty."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)  # an empty lock file: released cleanly, not left by a dead run
            os.close(self._fd)  # closing drops the flock
            self._fd = None
            if failed and not self._started and self._created:
                self._remove_created()

    def _remove_created(self) -> None:
        if not self._created:
            return
        if not self._primary:  # a shared workdir: the others remove only their own (empty) lock file
            with contextlib.suppress(OSError):
                if self.lock_path.stat().st_size == 0:
                    self.lock_path.unlink()
            return
        with contextlib.suppress(OSError):
            _remove_empty_run_files(self.path)
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                break


def _remove_empty_run_files(path: Path) -> None:
    """Removes the lock files and what a run's writers create before its first step, if they hold nothing."""
    for lock in path.glob(".lock*"):
        if lock.is_file() and lock.stat().st_size == 0:
            lock.unlink()
    metrics = path / "metrics.jsonl"
    if metrics.is_file() and metrics.stat().st_size == 0:
        metrics.unlink()
    checkpoints = path / "checkpoints"
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    tensorboard = path / "tensorboard"
    # A TensorBoard writer opened before the first step holds only event files without scalars.
    if tensorboard.is_dir() and all(p.name.startswith("events.out.tfevents.") for p in tensorboard.iterdir()):
        shutil.rmtree(tensorboard)


@contextlib.contextmanager
def open_workdir(path, process_index: int = 0, process_count: int = 1):
    """Checks, creates and locks `path` (see the module docstring); yields the `Workdir`."""
    workdir = Workdir(path, process_index, process_count)
    try:
        yield workdir
    except BaseException:
        workdir.close(failed=True)
        raise
    workdir.close()


@contextlib.contextmanager
def _unwritable_as_workdir_error(path: Path, what: str):
    """Turns a permission-denied or read-only-file-system error into one `WorkdirError` line about `path`."""
    try:
        yield
    except PermissionError:
        raise WorkdirError(
            f"The workdir {str(path)!r} {what}: permission denied; fix its permissions or pass another --workdir."
        ) from None
    except OSError as error:
        if error.errno != errno.EROFS:
            raise
        raise WorkdirError(
            f"The workdir {str(path)!r} {what}: read-only file system; pass another --workdir."
        ) from None
