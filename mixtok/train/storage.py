"""Where a run's files live: a local (or NFS) path, or a Google Cloud Storage bucket (`gs://bucket/run`).

Everything the trainer writes beside orbax's checkpoints (the workdir lock, metrics.jsonl, TensorBoard
events, checkpoint manifests, moved-aside checkpoints, eval images) goes through the few functions here,
so a `gs://` workdir behaves like a local one. Local paths stay `pathlib.Path`s and keep their POSIX
guarantees (flock, O_APPEND, fsync, atomic rename). A `gs://` URL becomes an `etils.epath.Path`, the
path type orbax itself uses, backed by gcsfs (fsspec); what differs on an object store:

- An object is written whole by one upload and is never seen half-written, so "write atomically" is
  one upload (no temporary file and rename; GCS has no rename).
- An object cannot be appended to: metrics.jsonl is rewritten whole when it is uploaded
  (`mixtok.train.metric_writer`), TensorBoard's event file likewise (`register_tensorboard_writer`).
- Renaming a folder is a copy of every object, then a delete: moving a bad checkpoint aside is not
  atomic there. Interrupted, it leaves both copies (the step folder still complete); nothing is lost.
- There is no free-space check: a bucket has no size limit the trainer could read.
- There is no flock: the workdir lock is a lease object (`mixtok.train.workdir`).

Orbax writes checkpoints to `gs://` itself (through TensorStore's GCS driver). gcsfs is an optional
extra: `pip install "mixtok[gcs]"`; a `gs://` workdir without it is a one-line error. Other URL schemes
(s3://, ...) are refused: nothing here has been tested on them.

Facts relied on: etils.epath.Path uses fsspec's `gcs` filesystem for gs:// when TensorFlow is not
installed (google/etils: etils/epath/gpath.py, `_PREFIX_TO_BACKEND`); gcsfs's `open(path, "xb")` is an
upload with `ifGenerationMatch=0`, which GCS refuses when the object exists (fsspec/gcsfs: gcsfs/core.py,
"exclusive mode"); orbax builds a TensorStore `gcs` kvstore for gs:// directories (google/orbax:
checkpoint/orbax/checkpoint/_src/serialization/tensorstore_utils.py, `_use_gcs_driver`). Point gcsfs at
a GCS emulator with STORAGE_EMULATOR_HOST and TensorStore with TENSORSTORE_GCS_HTTP_URL (how the tests
run a whole training against `gcp-storage-emulator`).
"""

import os
import re
from pathlib import Path
from typing import Any

from mixtok.files import write_atomically

__all__ = [
    "SUPPORTED_URLS",
    "UnsupportedLocationError",
    "as_path",
    "check_url",
    "create_exclusively",
    "file_sizes",
    "is_url",
    "move",
    "register_tensorboard_writer",
    "remove_tree",
    "size",
    "write_bytes_atomically",
]

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # RFC 3986 scheme: gs://, s3://, file://, ...
SUPPORTED_URLS = ("gs://",)


class UnsupportedLocationError(ValueError):
    """A URL this project cannot write to (another scheme, or gs:// without gcsfs): one line says why."""


def is_url(path: Any) -> bool:
    return bool(URL.match(os.fspath(path)))


def check_url(url: str, what: str = "--workdir") -> None:
    """Raises `UnsupportedLocationError` unless `url` is a gs:// URL that gcsfs can open."""
    if not url.startswith(SUPPORTED_URLS):
        raise UnsupportedLocationError(
            f"{what} {url!r}: of URLs only gs:// (Google Cloud Storage) is supported; give a gs://bucket/path or a "
            "filesystem path (a mounted bucket or NFS)."
        )
    bucket = url[len("gs://") :].split("/", 1)[0]
    if not bucket:
        raise UnsupportedLocationError(f"{what} {url!r} names no bucket; give gs://BUCKET/path.")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        raise UnsupportedLocationError(
            f"{what} {url!r} needs gcsfs to write to Google Cloud Storage: pip install 'mixtok[gcs]' (or mount the "
            "bucket with gcsfuse and give its path)."
        ) from None


def as_path(path: Any):
    """A local path as `pathlib.Path` (user home expanded); a gs:// URL as `etils.epath.Path` (checked)."""
    text = os.fspath(path)
    if not is_url(text):
        return Path(text).expanduser()
    check_url(text)
    from etils import epath

    return epath.Path(text)


def _fs(path):
    """The fsspec filesystem behind an epath gs:// path (the one epath itself uses)."""
    from etils.epath import backend

    return backend.fsspec_backend.fs(os.fspath(path))


def file_sizes(directory) -> dict[str, int]:
    """{path relative to `directory` (posix): size in bytes} of every file under it, sorted by name.

    On GCS this is one listing (`find`), not a request per file.
    """
    if isinstance(directory, Path):
        files = sorted(p for p in directory.rglob("*") if p.is_file())
        return {p.relative_to(directory).as_posix(): p.stat().st_size for p in files}
    fs, root = _fs(directory), os.fspath(directory).rstrip("/")
    found = fs.find(root, detail=True)
    prefix = fs._strip_protocol(root).rstrip("/") + "/"
    sizes = {}
    for name, info in found.items():
        name = fs._strip_protocol(name)
        if info.get("type") == "file" and name.startswith(prefix):
            sizes[name[len(prefix) :]] = int(info["size"])
    return dict(sorted(sizes.items()))


def size(path) -> int:
    """The size of a file in bytes (pathlib's `st_size`; epath's `stat()` calls it `length`)."""
    return path.stat().st_size if isinstance(path, Path) else path.stat().length


def write_bytes_atomically(path, data: bytes) -> None:
    """Replaces `path` with `data` so that a reader sees the old or the new content, never a part."""
    if isinstance(path, Path):

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                f.write(data)

        write_atomically(path, write, overwrite=True)
    else:
        path.write_bytes(data)  # one upload: an object is visible whole or not at all


def create_exclusively(path, data: bytes) -> bool:
    """Writes `data` to `path` only if no such file exists; False if one does (on GCS: ifGenerationMatch=0)."""
    if isinstance(path, Path):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    try:
        with _fs(path).open(os.fspath(path), "xb") as f:
            f.write(data)
    except FileExistsError:
        return False
    return True


def move(source, target) -> None:
    """Renames a file or folder (atomic on a local file system; on GCS a copy of every object, then a delete)."""
    if isinstance(source, Path):
        os.rename(source, target)
        return
    # Copy everything, then delete: an interruption leaves the source whole (and perhaps a partial copy).
    fs = _fs(source)
    fs.copy(os.fspath(source), os.fspath(target), recursive=True)
    fs.rm(os.fspath(source), recursive=True)


def remove_tree(path) -> None:
    if isinstance(path, Path):
        import shutil

        shutil.rmtree(path)
    else:
        _fs(path).rm(os.fspath(path), recursive=True)


# --- TensorBoard ----------------------------------------------------------------------------------


class _ObjectRecordWriter:
    """tensorboardX's record-writer interface for one gs:// event file: buffers the records and uploads the
    whole file at each flush (an object cannot be appended to). tensorboardX's own gs:// writer needs
    google-cloud-storage's client; this one goes through gcsfs like the rest of the run's files."""

    def __init__(self, path: str):
        from etils import epath

        self.path = epath.Path(path)
        self.buffer = bytearray()
        self._uploaded = 0

    def write(self, data: bytes) -> None:
        self.buffer += data

    def flush(self) -> None:
        if len(self.buffer) != self._uploaded:
            self.path.write_bytes(bytes(self.buffer))
            self._uploaded = len(self.buffer)

    def close(self) -> None:
        self.flush()


class _ObjectRecordWriterFactory:
    def open(self, path: str) -> _ObjectRecordWriter:
        return _ObjectRecordWriter(path)

    def directory_check(self, path: str) -> None:
        pass  # an object store has no folders to create


def register_tensorboard_writer() -> None:
    """Makes tensorboardX write gs:// event files through gcsfs (`_ObjectRecordWriter`)."""
    from tensorboardX import record_writer

    record_writer.register_writer_factory("gs", _ObjectRecordWriterFactory())
