"""ArrayRecord files of encoded images: the reader source and the writer.

Each record is a msgpack map `{"image": <JPEG/PNG/... bytes>, "label": int}`.
Files are written with `group_size:1` so that grain can read any record
without decompressing its neighbours.

`data.root` may be:

* a directory holding `{split}*.array_record` (e.g. train.array_record or
  train-00000-of-00008.array_record);
* one `.array_record` file, or a glob; either may contain `{split}`, which is
  replaced by the split name (`/data/in1k/{split}-*.array_record`). Without
  `{split}` every split reads the same files.

A directory may hold `classes.txt` (one class name per line, label order, as
written by `python -m mixtok.data.imagefolder_to_array_record`); the number
of classes is read from it instead of from every record's label.
"""

from __future__ import annotations

import bisect
import glob
import logging
import os
from collections.abc import Iterable

import grain
import msgpack
from array_record.python import array_record_module

_log = logging.getLogger(__name__)

SUFFIX = ".array_record"
CLASSES_FILE = "classes.txt"
_GLOB_CHARS = frozenset("*?[")


def encode_record(image: bytes, label: int) -> bytes:
    """Packs one example as the msgpack map that `ArrayRecordSource` reads."""
    return msgpack.packb({"image": bytes(image), "label": int(label)}, use_bin_type=True)


def write_array_record(path: str, examples: Iterable[tuple[bytes, int]], *, overwrite: bool = False) -> int:
    """Writes (encoded image bytes, label) pairs to one ArrayRecord file.

    The file appears only when complete (written beside it, then renamed), so an
    interrupted conversion leaves no half file that looks finished.

    Returns:
      the number of records written.
    Raises:
      FileExistsError: if `path` exists and `overwrite` is False.
    """
    path = os.fspath(path)
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(
            f"{path} already exists; refusing to overwrite it. Delete it or choose another destination."
        )
    partial = path + ".partial"
    writer = array_record_module.ArrayRecordWriter(partial, "group_size:1")
    count = 0
    try:
        for image, label in examples:
            if not isinstance(image, (bytes, bytearray, memoryview)):
                raise TypeError(f"example {count}: image must be encoded bytes (JPEG/PNG), got {type(image).__name__}.")
            if isinstance(label, bool) or int(label) != label or label < 0:
                raise ValueError(f"example {count}: label must be a non-negative int, got {label!r}.")
            writer.write(encode_record(image, label))
            count += 1
    except BaseException:
        writer.close()
        os.remove(partial)
        raise
    writer.close()
    os.replace(partial, path)
    return count


def _splits_in(directory: str) -> list[str]:
    names = sorted(n for n in os.listdir(directory) if n.endswith(SUFFIX))
    splits = {n[: -len(SUFFIX)].split("-")[0].split("_")[0] for n in names}
    return sorted(splits)


def resolve_paths(root: str, split: str) -> list[str]:
    """The files that hold `split` under `root` (see the module docstring)."""
    pattern = root.replace("{split}", split)
    if os.path.isdir(pattern):
        paths = sorted(glob.glob(os.path.join(glob.escape(pattern), f"{glob.escape(split)}*{SUFFIX}")))
        if not paths:
            splits = _splits_in(pattern)
            raise FileNotFoundError(
                f"No {split}*{SUFFIX} files in {pattern!r} for split {split!r}; "
                f"splits present: {', '.join(splits) if splits else 'none'}."
            )
        return paths
    if _GLOB_CHARS & set(pattern):
        paths = sorted(glob.glob(pattern))
        if not paths:
            raise FileNotFoundError(f"No files match data.root pattern {pattern!r}.")
        return paths
    if os.path.isfile(pattern):
        return [pattern]
    raise FileNotFoundError(
        f"ArrayRecord root {pattern!r} does not exist; data.root should be a "
        f"directory of {{split}}*{SUFFIX} files, a {SUFFIX} file or a glob."
    )


class ArrayRecordSource:
    """Encoded images and labels from ArrayRecord files.

    Examples are `{"image": bytes, "label": int, "path": "<file> record <k>"}`.
    A record that is not a msgpack map with `image` and `label` comes back with
    empty image bytes, so it fails (or is skipped) like an undecodable image.
    """

    def __init__(self, root: str, split: str):
        self.paths = resolve_paths(root, split)
        counts = []
        for path in self.paths:
            reader = array_record_module.ArrayRecordReader(path)
            counts.append(reader.num_records())
            reader.close()
        if sum(counts) == 0:
            raise ValueError(f"ArrayRecord files {self.paths} hold no records.")
        self._ends = []
        total = 0
        for count in counts:
            total += count
            self._ends.append(total)
        # The "[start:end]" form tells grain the counts we already know, so it does
        # not open every file a second time.
        self._source = grain.sources.ArrayRecordDataSource([f"{p}[0:{n}]" for p, n in zip(self.paths, counts) if n])

    def __len__(self) -> int:
        return self._ends[-1]

    def where(self, index: int) -> str:
        """Names record `index` by its file and position in that file."""
        file_index = bisect.bisect_right(self._ends, index)
        start = self._ends[file_index - 1] if file_index else 0
        return f"{self.paths[file_index]} record {index - start}"

    def __getitem__(self, index: int) -> dict[str, object]:
        index = int(index)
        raw = self._source[index]
        try:
            record = msgpack.unpackb(raw, raw=False)
            return {"image": record["image"], "label": int(record["label"]), "path": self.where(index)}
        except (ValueError, TypeError, KeyError, msgpack.UnpackException) as e:
            return {"image": b"", "label": -1, "path": f"{self.where(index)} (malformed record: {e!r})"}

    def num_classes(self) -> int:
        """Classes from classes.txt beside the files, else 1 + the largest label."""
        classes_file = os.path.join(os.path.dirname(self.paths[0]), CLASSES_FILE)
        if os.path.isfile(classes_file):
            with open(classes_file) as f:
                return sum(1 for line in f if line.strip())
        _log.info(
            "No %s beside %s: reading all %d labels to count classes (set data.num_classes to skip this).",
            CLASSES_FILE,
            self.paths[0],
            len(self),
        )
        return 1 + max(self[i]["label"] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"ArrayRecordSource({len(self.paths)} files, {len(self)} records)"
