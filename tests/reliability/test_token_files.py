"""Issue 13 ("Nothing lost, nothing silent"), token files: written files get the umask's permissions."""

import os
import stat

import pytest

from mixtok.files import current_umask, write_atomically


@pytest.fixture
def umask():
    """Sets the umask for one test and restores it."""
    previous = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_follow_the_umask_and_replaced_files_keep_their_mode(umask, tmp_path):
    def write(text):
        def to(path):
            with open(path, "w") as f:
                f.write(text)

        return to

    for mask in (0o022, 0o077, 0o002):
        umask(mask)
        assert current_umask() == mask
        path = tmp_path / f"new_{mask:o}"
        write_atomically(path, write("x"))
        with open(tmp_path / f"plain_{mask:o}", "w"):
            pass
        assert _mode(path) == 0o666 & ~mask == _mode(tmp_path / f"plain_{mask:o}")
    umask(0o022)
    kept = tmp_path / "kept"
    kept.write_text("old")
    os.chmod(kept, 0o640)
    write_atomically(kept, write("new"), overwrite=True)
    assert kept.read_text() == "new" and _mode(kept) == 0o640
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
