"""The run's workdir: checked, created and locked before anything is written into it.

    with open_workdir(path) as workdir:
        ...  # train, writing under `workdir.path`; `workdir.started()` once the first step is done

- One trainer per workdir: an advisory lock (`fcntl.flock`) on `workdir/.lock`, which holds the
  holder's host and pid as text (`.lock.<process_index>` per process of a multi-host run). A second
  trainer stops at once with `WorkdirLockedError` naming the holder. The kernel drops the lock when
  its process dies, however it dies, so a lock file left behind by a killed run is not locked and
  is taken over (with a warning naming the run that left it). The lock is released at exit.
- A `gs://bucket/run` workdir (Google Cloud Storage, `mixtok.train.storage`) has no flock; its lock is a
  lease: the `.lock` object holds the holder's host and pid and a heartbeat count, rewritten every
  quarter lease (60 s; `MIXTOK_WORKDIR_LEASE_SECONDS`) by a background thread, and deleted at exit.
  A new trainer that finds the object watches it for one lease: if the heartbeat moves, the holder is
  alive and the trainer stops with `WorkdirLockedError`; if it does not, the holder is gone (killed,
  preempted) and the lock is taken over with a warning. So a run restarted after a crash waits up to
  one lease before it starts, and no clocks of different hosts are compared. The object is created
  with `ifGenerationMatch=0`, so of two trainers starting at once on a free workdir one wins; two
  trainers taking over the same dead run's lock within one lease of each other may both start
  (start one).
- Another URL scheme (`s3://`, any `scheme://`), gs:// without gcsfs installed, an existing file, a
  path through a file, or a directory this user cannot write are `WorkdirError`s (ValueErrors: the
  command line is wrong, not the run) with one clear line.
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
import shutil
import socket
import threading
import time
from pathlib import Path

from mixtok.train import storage

__all__ = ["Workdir", "WorkdirError", "WorkdirLockedError", "open_workdir"]

log = logging.getLogger(__name__)
LEASE_ENV = "MIXTOK_WORKDIR_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 60.0


class WorkdirError(ValueError):
    """The workdir cannot be used (a file, not writable): a user error, with one line that says why."""


class WorkdirLockedError(WorkdirError):
    """Another trainer holds the workdir's lock."""


def _holder() -> str:
    return f"host {socket.gethostname()}, pid {os.getpid()}"


class Workdir:
    """A created, writable, locked workdir; `close(failed=...)` releases it (see the module docstring)."""

    def __init__(self, path, process_index: int = 0, process_count: int = 1):
        try:
            self.path = storage.as_path(path)  # pathlib.Path, or an etils.epath.Path for gs://
        except storage.UnsupportedLocationError as error:
            raise WorkdirError(str(error)) from None
        self._created: list[Path] = []  # the folders this run created, outermost first
        self._started = False
        self._fd = None
        self._lease = None
        self._primary = process_index == 0
        name = ".lock" if process_count <= 1 else f".lock.{process_index}"
        self.lock_path = self.path / name
        if not isinstance(self.path, Path):
            self._open_url()
            return
        try:
            self._create()
        except PermissionError:  # e.g. a parent folder this user may not even look into
            raise WorkdirError(
                f"The workdir {str(self.path)!r} cannot be used: permission denied; pass a --workdir you can write."
            ) from None
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

    def _open_url(self) -> None:
        """A gs:// workdir: nothing to create (an object store has no folders); the lock is a lease."""
        lease = _lease_seconds()
        try:
            empty = not any(True for _ in self.path.iterdir()) if self.path.exists() else True
            self._lease = _LeaseLock(self.lock_path, lease)
            self._lease.acquire()
        except WorkdirError:
            raise
        except OSError as error:  # no such bucket, no permission, no network
            raise WorkdirError(
                f"The workdir {os.fspath(self.path)!r} cannot be used: {_one_line(error)}; check the bucket and its "
                "permissions, or pass another --workdir."
            ) from None
        self._created = [self.path] if empty else []

    def started(self) -> None:
        """The run has done a step: from now on nothing of the workdir is removed at exit."""
        self._started = True

    def close(self, failed: bool = False) -> None:
        """Releases the lock; after a failure before the first step, removes what this run created and left empty."""
        if self._lease is not None:
            if failed and not self._started and self._created and self._primary:
                with contextlib.suppress(OSError):
                    _remove_empty_run_files(self.path)
            self._lease.release()
            self._lease = None
            return
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


def _remove_empty_run_files(path) -> None:
    """Removes the lock files and what a run's writers create before its first step, if they hold nothing."""
    local = isinstance(path, Path)
    if local:  # on gs:// the lease objects are removed by their own holders
        for lock in path.glob(".lock*"):
            if lock.is_file() and lock.stat().st_size == 0:
                lock.unlink()
    metrics = path / "metrics.jsonl"
    if metrics.is_file() and storage.size(metrics) == 0:
        metrics.unlink()
    checkpoints = path / "checkpoints"
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        checkpoints.rmdir()
    tensorboard = path / "tensorboard"
    # A TensorBoard writer opened before the first step holds only event files without scalars.
    if tensorboard.is_dir() and all(p.name.startswith("events.out.tfevents.") for p in tensorboard.iterdir()):
        if local:
            shutil.rmtree(tensorboard)
        else:
            storage.remove_tree(tensorboard)


def _one_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _lease_seconds() -> float:
    text = os.environ.get(LEASE_ENV, "")
    if not text:
        return DEFAULT_LEASE_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise WorkdirError(
            f"{LEASE_ENV}={text!r} is not a number of seconds > 0; unset it for the default {DEFAULT_LEASE_SECONDS:g}."
        )
    return value


class _LeaseLock:
    """The lock of a gs:// workdir (see the module docstring): an object holding the holder and a heartbeat
    count, rewritten every quarter lease by a daemon thread while held, and deleted at release."""

    def __init__(self, path, lease: float):
        self.path = path
        self.lease = lease
        self._beats = 0
        self._stop = threading.Event()
        self._thread = None

    def _read(self) -> str | None:
        try:
            return self.path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return None

    def _content(self) -> bytes:
        return f"{_holder()}\nheartbeat {self._beats}\n".encode()

    def _locked_error(self, holder: str) -> WorkdirLockedError:
        first = holder.strip().splitlines()[0] if holder.strip() else "its host and pid not yet written"
        return WorkdirLockedError(
            f"The workdir {os.fspath(self.path.parent)!r} is in use by another trainer ({first}); wait for it to "
            "finish or stop it, or pass another --workdir."
        )

    def acquire(self) -> None:
        seen = self._read()
        if seen is None:
            if not storage.create_exclusively(self.path, self._content()):
                raise self._locked_error(self._read() or "")
        else:
            if seen.strip():
                self._wait_for_holder(seen)
            storage.write_bytes_atomically(self.path, self._content())
        self._thread = threading.Thread(target=self._heartbeat, name=f"mixtok lease {self.path.name}", daemon=True)
        self._thread.start()

    def _wait_for_holder(self, seen: str) -> None:
        """Watches the lock for one lease: a moving heartbeat is a live holder (refused), a still one a dead run."""
        log.warning(
            "%s is held (%s); watching it for up to %g s: a live trainer's heartbeat moves, a dead run's does not.",
            self.path,
            seen.strip().splitlines()[0],
            self.lease,
        )
        deadline = time.monotonic() + self.lease
        while True:
            time.sleep(max(0.0, min(self.lease / 8, deadline - time.monotonic())))
            now = self._read()
            if not (now or "").strip():
                return  # released meanwhile
            if now != seen:
                raise self._locked_error(now)
            if time.monotonic() >= deadline:
                log.warning("%s was left by a run that is gone (%s); taking it over.", self.path, seen.splitlines()[0])
                return

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 4):
            self._beats += 1
            try:
                storage.write_bytes_atomically(self.path, self._content())
            except Exception as error:  # a transient network error: try again at the next beat
                log.warning("Could not renew the workdir lock %s: %s", self.path, _one_line(error))

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with contextlib.suppress(OSError):
            self.path.unlink()


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
