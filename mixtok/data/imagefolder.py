"""An ImageNet-style folder tree as a random-access source of encoded images.

Layout: `root/<split>/<class_name>/<image>` with image files ending in .jpg,
.jpeg, .png, .bmp or .webp (any letter case). Labels are the indices of the
sorted class folder names. Examples are `{"image": bytes, "label": int,
"path": str}`; the transforms decode them (see `mixtok.data.decode` for what
happens to files that do not decode).
"""

from __future__ import annotations

import os

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _subdirectories(path: str) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _image_files(path: str) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS))


def check_split_dir(root: str, split: str) -> str:
    """Returns root/split, or raises naming what is missing and what exists."""
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"Image folder root {root!r} does not exist or is not a directory "
            "(data.root should hold one folder per split, e.g. train/ and val/)."
        )
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        existing = _subdirectories(root)
        raise FileNotFoundError(
            f"Split folder {split_dir!r} does not exist; splits present in "
            f"{root!r}: {', '.join(existing) if existing else 'none'}."
        )
    return split_dir


def class_names_if_present(root: str, split: str) -> list[str] | None:
    """The sorted class folders of root/split, or None if that folder is absent."""
    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        return None
    return _subdirectories(split_dir) or None


class ImageFolderSource:
    """Encoded images and labels from `root/split/class_name/*.jpg|png|...`.

    Args:
      root: the folder holding one folder per split.
      split: which split folder to read, e.g. 'train' or 'val'.
      classes: the class names that define the labels, in label order. Default:
        the sorted class folders of this split. Pass the training split's list
        so an evaluation split with missing classes keeps the same labels.
    """

    def __init__(self, root: str, split: str, classes: list[str] | None = None):
        split_dir = check_split_dir(root, split)
        present = _subdirectories(split_dir)
        if not present:
            raise ValueError(
                f"Split folder {split_dir!r} has no class folders; expected {split_dir}/<class_name>/<image files>."
            )
        if classes is None:
            classes = present
        unknown = sorted(set(present) - set(classes))
        if unknown:
            raise ValueError(
                f"Split folder {split_dir!r} has class folders that the class list "
                f"lacks: {', '.join(unknown[:10])}; labels would be ambiguous."
            )
        self.classes = list(classes)
        self.split_dir = split_dir
        paths, labels = [], []
        for label, name in enumerate(self.classes):
            class_dir = os.path.join(split_dir, name)
            if not os.path.isdir(class_dir):
                continue  # A class the evaluation split happens not to have.
            files = _image_files(class_dir)
            paths.extend(os.path.join(class_dir, f) for f in files)
            labels.extend([label] * len(files))
        if not paths:
            raise ValueError(
                f"Split folder {split_dir!r} has {len(present)} class folders but "
                "no image files in them (looked for "
                f"{', '.join(IMAGE_EXTENSIONS)}, any letter case)."
            )
        self._paths = paths
        self._labels = labels

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> dict[str, object]:
        path = self._paths[index]
        with open(path, "rb") as f:
            data = f.read()
        return {"image": data, "label": self._labels[index], "path": path}

    def __repr__(self) -> str:
        return f"ImageFolderSource({self.split_dir!r}, num_examples={len(self)}, num_classes={len(self.classes)})"
