"""The imagefolder source and the undecodable-image policy, on temp trees."""

import logging

import ml_collections
import numpy as np
import pytest

from mixtok.data import (
    UndecodableImageError,
    create_eval_iterator,
    create_train_iterator,
    dataset_info,
    num_skipped_undecodable,
)
from mixtok.data.imagefolder import ImageFolderSource

from .conftest import write_tree

SPLITS = {"train": {"cat": 6, "dog": 6, "emu": 6}, "val": {"cat": 2, "dog": 2, "emu": 1}}


def _config(root, **fields):
    return ml_collections.ConfigDict(dict(name="imagefolder", root=str(root), image_size=8, **fields))


def test_labels_are_sorted_class_folders_and_pixels_survive(tmp_path):
    write_tree(tmp_path, SPLITS)
    source = ImageFolderSource(str(tmp_path), "train")
    assert source.classes == ["cat", "dog", "emu"]
    assert len(source) == 18  # notes.txt is not an image
    info = dataset_info(_config(tmp_path))
    assert (info.num_classes, info.num_train, info.num_eval) == (3, 18, 5)
    # Class i is a solid image of value 10 i; undo the normalisation.
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for batch in create_eval_iterator(_config(tmp_path), global_batch_size=5, shard_index=0, shard_count=1):
        pixels = (batch["image"] * std + mean) * 255
        for image, label in zip(pixels, batch["label"]):
            np.testing.assert_allclose(image, 10 * label, atol=1.5)
        np.testing.assert_array_equal(batch["label"], [0, 0, 1, 1, 2])


def test_eval_split_with_fewer_classes_keeps_the_training_labels(tmp_path):
    write_tree(tmp_path, {"train": {"a": 2, "b": 2, "c": 2}, "val": {"c": 2}})
    batch = next(iter(create_eval_iterator(_config(tmp_path), global_batch_size=2, shard_index=0, shard_count=1)))
    np.testing.assert_array_equal(batch["label"], [2, 2])


def test_undecodable_image_is_fatal_by_default_and_names_the_file(tmp_path):
    [bad] = write_tree(tmp_path, SPLITS, corrupt=("train/dog/broken.png",))
    iterator = create_train_iterator(_config(tmp_path), global_batch_size=4, seed=0, shard_index=0, shard_count=1)
    with pytest.raises(UndecodableImageError) as error:
        for _ in range(6):  # 19 files: one epoch is under 5 batches
            next(iterator)
    assert bad in str(error.value)
    assert "skip_undecodable=True" in str(error.value)


def test_skip_undecodable_drops_logs_and_counts(tmp_path, caplog):
    [bad] = write_tree(tmp_path, SPLITS, corrupt=("train/dog/broken.png",))
    before = num_skipped_undecodable()
    iterator = create_train_iterator(
        _config(tmp_path, skip_undecodable=True), global_batch_size=4, seed=0, shard_index=0, shard_count=1
    )
    with caplog.at_level(logging.WARNING):
        batches = [next(iterator) for _ in range(19)]  # 76 = 4 epochs of 19
    assert all(b["image"].shape == (4, 8, 8, 3) for b in batches)
    assert iterator.num_skipped_undecodable == 4  # once per epoch
    assert num_skipped_undecodable() - before == 4
    messages = [r.getMessage() for r in caplog.records if bad in r.getMessage()]
    assert len(messages) == 4
    assert f"{before + 4} skipped so far" in messages[-1]


def test_skip_undecodable_masks_the_image_out_of_evaluation(tmp_path):
    write_tree(tmp_path, SPLITS, corrupt=("val/cat/broken.jpg",))
    evaluation = create_eval_iterator(
        _config(tmp_path, skip_undecodable=True), global_batch_size=8, shard_index=0, shard_count=1
    )
    [batch] = list(evaluation)
    # Files sort as broken.jpg, img_0.png, img_1.PNG in cat/; 6 files, 2 pads.
    np.testing.assert_array_equal(batch["mask"], [0, 1, 1, 1, 1, 1, 0, 0])
    assert evaluation.num_skipped_undecodable == 1


def test_missing_root_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*does not exist"):
        dataset_info(_config(missing))


def test_missing_split_lists_the_splits_present(tmp_path):
    write_tree(tmp_path, {"train": {"a": 1}, "validation": {"a": 1}})
    with pytest.raises(FileNotFoundError, match="splits present.*train, validation"):
        create_eval_iterator(_config(tmp_path), global_batch_size=2)


def test_split_without_class_folders_says_so(tmp_path):
    write_tree(tmp_path, {"train": {"a": 1}})
    (tmp_path / "val").mkdir()
    with pytest.raises(ValueError, match="val.*has no class folders"):
        create_eval_iterator(_config(tmp_path), global_batch_size=2)


def test_class_folders_without_images_say_so(tmp_path):
    write_tree(tmp_path, {"train": {"a": 1}})
    (tmp_path / "val" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="val.*no image files"):
        create_eval_iterator(_config(tmp_path), global_batch_size=2)
