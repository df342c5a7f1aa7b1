"""Writing files so that nothing a user saved is lost: atomically, and never over an existing file unless asked."""

import os
import tempfile
from collections.abc import Callable


def write_atomically(path: str | os.PathLike, write: Callable[[str], None], *, overwrite: bool = False) -> None:
    """Calls `write(temporary_path)`, then moves the finished file to `path`: a reader sees all of it or none.

    With `overwrite=False` an existing `path` raises FileExistsError and nothing is written, even when the
    file appears while we write (the final step is a hard link, which never replaces a file).
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} already exists; not overwriting it. Remove it or choose another output.")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise FileExistsError(f"{path} appeared while writing; not overwriting it.") from None
        except OSError:  # a file system without hard links: the check above is the best we can do
            if os.path.lexists(path):
                raise FileExistsError(f"{path} appeared while writing; not overwriting it.") from None
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
