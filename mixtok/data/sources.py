"""Random-access data sources: digits, synthetic, sample_photos, marked_majority, imagefolder, array_record.

(The video sources, sample_videos and video_folder, are in `mixtok.data.videos`; `create_source` makes them too.)

A source has `__len__` and `__getitem__(i) -> {"image": ..., "label": int}`,
which is what grain's `MapDataset.source` needs. The in-memory sources
(digits, synthetic, sample_photos) return uint8 [H, W, 3] arrays; the file sources return
encoded bytes plus a `path`, decoded later by the transforms (see `decode`). The sequence source
marked_majority (`mixtok.data.sequences`) returns int32 token ids [L] under the same "image" key.

`create_source(options, split)` picks the source from `data.name`;
`num_classes(options)` says how many labels it has.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from mixtok.data import array_record, imagefolder, sequences
from mixtok.data.options import DataOptions, check_source_name

DIGITS_SPLITS = ("train", "test")
DIGITS_NUM_TRAIN = 1497  # of 1797; the other 300 are the test split
SYNTHETIC_SPLITS = ("train", "test")
SAMPLE_PHOTOS_SPLITS = ("train", "test")
# The photographs that ship inside scikit-image's wheel (skimage/data/*.png|jpg) and scikit-learn's
# (sklearn/datasets/images: china, flower); nothing is downloaded. Eval photos are held out: no crop
# of them is ever a training example.
SAMPLE_PHOTOS = {
    "train": (
        "astronaut",
        "coffee",
        "rocket",
        "hubble_deep_field",
        "immunohistochemistry",
        "retina",
        "china",
        "flower",
        "camera",
        "moon",
        "brick",
        "grass",
        "gravel",
        "page",
    ),
    "test": ("chelsea", "motorcycle_left", "coins"),
}


def _check_split(source: str, split: str, valid: tuple[str, ...]) -> None:
    if split not in valid:
        raise ValueError(
            f"Unknown split {split!r} for data source {source!r}; valid splits: {', '.join(repr(s) for s in valid)}."
        )


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    # Imported here: scikit-learn takes seconds to import and only digits needs
    # it. Cached: every split and every iterator shares one copy.
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top

    digits = load_digits()
    # 0..16 intensities -> 0..255, then grey -> RGB so digits look like photos.
    grey = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    images.setflags(write=False)
    labels = digits.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


class DigitsSource:
    """scikit-learn's bundled 8x8 digits as uint8 [8, 8, 3] images, labels 0..9.

    The split is fixed: `np.random.default_rng(0).permutation(1797)`; its first
    1497 indices are `train` and its last 300 are `test` (not stratified). The
    transforms upsample the images to `data.image_size`.
    """

    def __init__(self, split: str):
        _check_split("digits", split, DIGITS_SPLITS)
        images, labels = _digits_arrays()
        order = np.random.default_rng(0).permutation(len(images))
        chosen = order[:DIGITS_NUM_TRAIN] if split == "train" else order[DIGITS_NUM_TRAIN:]
        self._images = images[chosen]
        self._labels = labels[chosen]

    def __len__(self) -> int:
        return len(self._labels)

    def __getitem__(self, index: int) -> dict[str, object]:
        return {"image": self._images[index], "label": int(self._labels[index])}

    def __repr__(self) -> str:
        return f"DigitsSource(num_examples={len(self)})"


class _IndexedSource:
    """A source whose example i is a pure function of i: its length, and the index check every read makes."""

    _num_examples: int

    def __len__(self) -> int:
        return self._num_examples

    def _checked_index(self, index: int) -> int:
        index = int(index)
        if not 0 <= index < self._num_examples:
            raise IndexError(f"index {index} out of range [0, {self._num_examples}).")
        return index


class SyntheticSource(_IndexedSource):
    """Procedural images for tests: each example a pure function of its index.

    Example i of a split has label `i % num_classes`. Its image is the class's
    colour plus a sinusoidal grating at the class's orientation (random phase),
    plus Gaussian noise, all drawn from `default_rng([split_id, i])`: colour and
    orientation make the classes learnable by a tiny model in a few steps, the
    noise and phase keep it from being trivial. `train` and `test` draw from
    different streams, so they are different images of the same classes.
    """

    def __init__(self, split: str, num_examples: int, num_classes: int, image_size: int):
        _check_split("synthetic", split, SYNTHETIC_SPLITS)
        self._split_id = SYNTHETIC_SPLITS.index(split)
        self._num_examples = num_examples
        self._num_classes = num_classes
        self._size = image_size
        coords = np.arange(image_size, dtype=np.float32) / image_size
        self._ys, self._xs = np.meshgrid(coords, coords, indexing="ij")
        # Class constants come from a stream shared by both splits.
        class_rng = np.random.default_rng([2, num_classes])
        self._colours = class_rng.uniform(0.2, 0.8, size=(num_classes, 3)).astype(np.float32)
        self._angles = np.pi * np.arange(num_classes) / num_classes
        self._frequencies = 2.0 + class_rng.integers(0, 3, size=num_classes)

    def __getitem__(self, index: int) -> dict[str, object]:
        index = self._checked_index(index)
        label = index % self._num_classes
        rng = np.random.default_rng([self._split_id, index])
        angle = self._angles[label]
        phase = rng.uniform(0.0, 2 * np.pi)
        along = self._xs * np.cos(angle) + self._ys * np.sin(angle)
        grating = np.sin(2 * np.pi * self._frequencies[label] * along + phase)
        noise = rng.normal(0.0, 0.08, size=(self._size, self._size, 3))
        image = self._colours[label] + 0.2 * grating[..., None] + noise
        image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        return {"image": image, "label": label}

    def __repr__(self) -> str:
        return (
            f"SyntheticSource(num_examples={self._num_examples}, "
            f"num_classes={self._num_classes}, image_size={self._size})"
        )


@functools.cache
def _sample_photo(name: str) -> np.ndarray:
    """One of scikit-image's bundled photographs as uint8 [H, W, 3] (grey ones repeated to RGB)."""
    from skimage import data  # pylint: disable=g-import-not-at-top

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image  # pylint: disable=g-import-not-at-top

        image = load_sample_image(f"{name}.jpg")
    elif name == "motorcycle_left":
        image = data.stereo_motorcycle()[0]
    else:
        image = getattr(data, name)()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    image.setflags(write=False)
    return image


class SamplePhotosSource(_IndexedSource):
    """Square crops cut from the photographs bundled with scikit-image and scikit-learn, for tokenizers.

    The `train` split cuts from 14 photographs (`SAMPLE_PHOTOS["train"]`: astronaut, coffee,
    rocket, Hubble deep field, immunohistochemistry, retina, scikit-learn's china and flower, and
    six grey ones as RGB); `test`
    from three others that are never trained on (chelsea the cat, the left motorcycle of the
    stereo pair, coins). Example i is photo `i % n` cut at a side and position drawn from
    `default_rng([split_id, i])`: the side is uniform in [image_size, min(3 * image_size, photo
    side)], so crops range from full detail to 3x zoomed out, and the transforms resize them to
    `data.image_size`. Labels are the photo's index (they mean nothing to a tokenizer).
    """

    def __init__(self, split: str, num_examples: int, image_size: int):
        _check_split("sample_photos", split, SAMPLE_PHOTOS_SPLITS)
        self._split_id = SAMPLE_PHOTOS_SPLITS.index(split)
        self._photos = [_sample_photo(name) for name in SAMPLE_PHOTOS[split]]
        self._num_examples = num_examples
        self._size = image_size
        smallest = min(min(p.shape[:2]) for p in self._photos)
        if image_size > smallest:
            raise ValueError(
                f"data.image_size={image_size} is larger than the smallest sample photo "
                f"({smallest} px); use image_size <= {smallest}."
            )

    def __getitem__(self, index: int) -> dict[str, object]:
        index = self._checked_index(index)
        label = index % len(self._photos)
        photo = self._photos[label]
        rng = np.random.default_rng([3, self._split_id, index])
        height, width = photo.shape[:2]
        side = int(rng.integers(self._size, min(3 * self._size, height, width) + 1))
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        return {"image": photo[top : top + side, left : left + side], "label": label}

    def __repr__(self) -> str:
        return f"SamplePhotosSource(num_examples={self._num_examples}, photos={len(self._photos)})"


def _imagefolder_classes(options: DataOptions) -> list[str] | None:
    # Labels must mean the same in every split, so all splits use the class list
    # of the training split when it exists.
    return imagefolder.class_names_if_present(options.root, options.train_split)


def create_source(options: DataOptions, split: str):
    """Creates the source `options.name` for `split`."""
    name = check_source_name(options.name)
    if name == "digits":
        return DigitsSource(split)
    if name == "synthetic":
        num_examples = options.num_examples if split == "train" else options.num_eval_examples
        return SyntheticSource(split, num_examples, options.num_classes, options.image_size)
    if name == "sample_photos":
        num_examples = options.num_examples if split == "train" else options.num_eval_examples
        return SamplePhotosSource(split, num_examples, options.image_size)
    if name == "marked_majority":
        num_examples = options.num_examples if split == "train" else options.num_eval_examples
        return sequences.MarkedMajoritySource(split, num_examples, options.sequence_length)
    if name == "imagefolder":
        return imagefolder.ImageFolderSource(options.root, split, classes=_imagefolder_classes(options))
    if name in ("sample_videos", "video_folder"):
        from mixtok.data import videos  # pylint: disable=g-import-not-at-top  (videos imports this module)

        if name == "video_folder":
            classes = None  # labels mean the same in every split: those of the train split's class folders
            if split != options.train_split and os.path.isdir(os.path.join(options.root, options.train_split)):
                classes = videos.VideoFolderSource(options.root, options.train_split).classes or None
            return videos.VideoFolderSource(options.root, split, classes=classes)
        num_examples = options.num_examples if split == "train" else options.num_eval_examples
        return videos.SampleVideosSource(
            split, num_examples, options.image_size, options.num_frames, options.frame_stride
        )
    return array_record.ArrayRecordSource(options.root, split)


def num_classes(options: DataOptions, train_source=None) -> int:
    """How many classes `options` describes (derived for all but synthetic).

    `train_source`, the training split's source if the caller has it, saves
    scanning the training data a second time.
    """
    name = check_source_name(options.name)
    if name == "synthetic":
        return options.num_classes
    if name == "digits":
        derived = 10
    elif name == "sample_photos":
        derived = len(SAMPLE_PHOTOS["train"])
    elif name == "marked_majority":
        derived = sequences.MARKED_MAJORITY_CLASSES
    elif name == "sample_videos":
        derived = len(SAMPLE_PHOTOS["train"])
    elif name == "video_folder":
        if train_source is None:
            train_source = create_source(options, options.train_split)
        derived = max(len(train_source.classes), 1)
    elif name == "imagefolder":
        if train_source is None:
            train_source = create_source(options, options.train_split)
        derived = len(train_source.classes)
    else:
        if options.num_classes is not None:
            # Counting labels means reading every record; the config may spare it.
            return options.num_classes
        if train_source is None:
            train_source = create_source(options, options.train_split)
        derived = train_source.num_classes()
    if options.num_classes is not None and options.num_classes != derived:
        raise ValueError(
            f"data.num_classes={options.num_classes} but the {name} data has "
            f"{derived} classes; remove data.num_classes or set it to {derived}."
        )
    return derived
