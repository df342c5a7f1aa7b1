"""The in-memory sources: digits' fixed split and synthetic determinism."""

import numpy as np
import pytest

from mixtok.data import sources
from mixtok.data.options import data_options


def test_digits_split_is_1497_train_and_300_test_disjoint_and_complete():
    train = sources.DigitsSource("train")
    test = sources.DigitsSource("test")
    assert (len(train), len(test)) == (1497, 300)
    from sklearn.datasets import load_digits

    raw = load_digits()
    order = np.random.default_rng(0).permutation(1797)
    # The documented split: permutation with seed 0, first 1497 for training.
    for split, indices in ((train, order[:1497]), (test, order[1497:])):
        for k in (0, 7, len(split) - 1):
            example = split[k]
            want = np.rint(raw.images[indices[k]] * 255 / 16).astype(np.uint8)
            assert example["image"].shape == (8, 8, 3)
            assert example["image"].dtype == np.uint8
            for channel in range(3):
                np.testing.assert_array_equal(example["image"][..., channel], want)
            assert example["label"] == raw.target[indices[k]]
            assert isinstance(example["label"], int)


def test_digits_unknown_split_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'val'.*'train', 'test'"):
        sources.DigitsSource("val")


def test_synthetic_examples_are_a_function_of_their_index():
    a = sources.SyntheticSource("train", 20, 4, 12)
    b = sources.SyntheticSource("train", 20, 4, 12)
    test = sources.SyntheticSource("test", 20, 4, 12)
    for i in (0, 5, 19):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
        assert a[i]["label"] == i % 4
        assert not np.array_equal(a[i]["image"], test[i]["image"])
    assert a[0]["image"].shape == (12, 12, 3) and a[0]["image"].dtype == np.uint8
    with pytest.raises(IndexError, match="20"):
        a[20]


def test_synthetic_classes_are_learnable_by_nearest_class_mean():
    train = sources.SyntheticSource("train", 200, 5, 16)
    test = sources.SyntheticSource("test", 100, 5, 16)
    features = lambda s: np.stack([s[i]["image"].astype(np.float32).ravel() for i in range(len(s))])
    labels = lambda s: np.array([s[i]["label"] for i in range(len(s))])
    x, y = features(train), labels(train)
    means = np.stack([x[y == c].mean(0) for c in range(5)])
    guesses = np.argmin(((features(test)[:, None] - means) ** 2).sum(-1), 1)
    assert (guesses == labels(test)).mean() > 0.9


def test_synthetic_sizes_come_from_the_config():
    options = data_options(dict(name="synthetic", num_examples=30, num_eval_examples=7, num_classes=3))
    assert len(sources.create_source(options, "train")) == 30
    assert len(sources.create_source(options, "test")) == 7
    assert sources.num_classes(options) == 3


def test_sample_photos_are_deterministic_held_out_crops_of_the_bundled_photos():
    from mixtok.data.sources import SAMPLE_PHOTOS, SamplePhotosSource, _sample_photo

    assert not set(SAMPLE_PHOTOS["train"]) & set(SAMPLE_PHOTOS["test"])
    train = SamplePhotosSource("train", 40, 32)
    again = SamplePhotosSource("train", 40, 32)
    for i in (0, 7, 39):
        example = train[i]
        np.testing.assert_array_equal(example["image"], again[i]["image"])
        image = example["image"]
        assert image.dtype == np.uint8 and image.shape[2] == 3 and image.shape[0] == image.shape[1]
        assert 32 <= image.shape[0] <= 96
        # The crop is a window of its photo: find it by its top-left pixel row.
        photo = _sample_photo(SAMPLE_PHOTOS["train"][example["label"]])
        side = image.shape[0]
        windows = np.lib.stride_tricks.sliding_window_view(photo, (side, side, 3))[..., 0, :, :, :]
        assert np.any(np.all(windows == image, axis=(-3, -2, -1)))
    test = SamplePhotosSource("test", 6, 32)
    assert {test[i]["label"] for i in range(6)} == {0, 1, 2}


def test_sample_photos_reject_an_image_size_larger_than_the_photos():
    from mixtok.data.sources import SamplePhotosSource

    with pytest.raises(ValueError, match="image_size=400 is larger than the smallest sample photo"):
        SamplePhotosSource("test", 4, 400)
