"""Writing files so that nothing a user saved is lost: atomically, and never over an existing file unless asked."""

import os
import stat
import tempfile
from collections.abc import Callable


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc/self/status, kernel >= 4.7);
    elsewhere set and restored at once (os.umask has no read-only form)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """The permission bits a plain open(path, "w") gives a new file: 0o666 less the umask."""
    return 0o666 & ~current_umask()


def write_atomically(path: str | os.PathLike, write: Callable[[str], None], *, overwrite: bool = False) -> None:
    """Calls `write(temporary_path)`, then moves the finished file to `path`: a reader sees all of it or none.

    With `overwrite=False` an existing `path` raises FileExistsError and nothing is written, even when the
    file appears while we write (the final step is a hard link, which never replaces a file).

    The file gets the permissions a plain open() would give it (0o666 less the umask; the temporary file
    mkstemp makes is 0o600), and a replaced file (`overwrite=True`) keeps its own permission bits.
    """
    path = os.fspath(path)
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} already exists; not overwriting it. Remove it or choose another output.")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode) if overwrite else None
        except FileNotFoundError:
            mode = None
        os.chmod(tmp, new_file_mode() if mode is None else mode)
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
