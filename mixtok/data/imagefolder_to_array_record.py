"""Converts an ImageNet-style folder tree to ArrayRecord files, one per split.

    python -m mixtok.data.imagefolder_to_array_record SRC_ROOT DST_DIR \
        [--splits train,val]

reads SRC_ROOT/<split>/<class_name>/<image> and writes
DST_DIR/<split>.array_record (records as in `mixtok.data.array_record`) plus
DST_DIR/classes.txt. Images are copied as encoded bytes, not re-encoded. Labels
come from the training split's sorted class folders (the first split listed if
there is no 'train'), so every split shares them. Existing destination files
are never overwritten: the command stops before writing anything. Then point
the config at it with data.name='array_record', data.root=DST_DIR.
"""

from __future__ import annotations

import argparse
import os
import sys

from mixtok.data import array_record, imagefolder


def _read_bytes(source: imagefolder.ImageFolderSource):
    for i in range(len(source)):
        example = source[i]
        yield example["image"], example["label"]


def convert(src_root: str, dst_dir: str, splits: list[str] | None = None) -> dict[str, int]:
    """Converts `splits` (default: every split folder) and returns their sizes."""
    if not os.path.isdir(src_root):
        raise FileNotFoundError(f"Source root {src_root!r} does not exist or is not a directory.")
    if not splits:
        splits = [d for d in sorted(os.listdir(src_root)) if os.path.isdir(os.path.join(src_root, d))]
        if not splits:
            raise FileNotFoundError(f"{src_root!r} holds no split folders.")
    class_split = "train" if "train" in splits else splits[0]
    classes = imagefolder.class_names_if_present(src_root, class_split)
    sources = {split: imagefolder.ImageFolderSource(src_root, split, classes) for split in splits}
    targets = {split: os.path.join(dst_dir, split + array_record.SUFFIX) for split in splits}
    classes_path = os.path.join(dst_dir, array_record.CLASSES_FILE)
    existing = [p for p in [*targets.values(), classes_path] if os.path.exists(p)]
    if existing:
        # Check all before writing any, so a refused run changes nothing.
        raise FileExistsError(
            f"Refusing to overwrite existing {', '.join(existing)}; delete them or choose another DST_DIR."
        )
    os.makedirs(dst_dir, exist_ok=True)
    sizes = {}
    for split, source in sources.items():
        sizes[split] = array_record.write_array_record(targets[split], _read_bytes(source))
    with open(classes_path, "w") as f:
        f.write("".join(name + "\n" for name in sources[class_split].classes))
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mixtok.data.imagefolder_to_array_record", description=__doc__.splitlines()[0]
    )
    parser.add_argument("src_root", help="folder with one folder per split")
    parser.add_argument("dst_dir", help="where <split>.array_record go")
    parser.add_argument("--splits", default="", help="comma-separated splits (default: all folders)")
    args = parser.parse_args(argv)
    splits = [s for s in args.splits.split(",") if s]
    try:
        sizes = convert(args.src_root, args.dst_dir, splits)
    except (FileExistsError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split, size in sizes.items():
        print(f"{split}: {size} images -> {os.path.join(args.dst_dir, split + array_record.SUFFIX)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
