"""ArrayRecord files: the writer, the source, the conversion command."""

import os
import subprocess
import sys

import ml_collections
import numpy as np
import pytest

from mixtok.data import (
    UndecodableImageError,
    create_eval_iterator,
    create_train_iterator,
    dataset_info,
    write_array_record,
)
from mixtok.data.array_record import ArrayRecordSource, encode_record
from mixtok.data.imagefolder import ImageFolderSource

from .conftest import encode_png, solid_image, write_tree

REPO = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def _config(root, **fields):
    return ml_collections.ConfigDict(dict(name="array_record", root=str(root), image_size=8, **fields))


def _examples(count, offset=0):
    return [(encode_png(solid_image(10 * ((k + offset) % 3))), (k + offset) % 3) for k in range(count)]


def test_writer_and_source_round_trip(tmp_path):
    path = tmp_path / "train.array_record"
    examples = _examples(7)
    assert write_array_record(str(path), examples) == 7
    source = ArrayRecordSource(str(path), "train")
    assert len(source) == 7
    for k, (image, label) in enumerate(examples):
        assert source[k]["image"] == image and source[k]["label"] == label
    assert source.num_classes() == 3  # from the labels: no classes.txt here


def test_writer_refuses_to_overwrite(tmp_path):
    path = tmp_path / "train.array_record"
    write_array_record(str(path), _examples(2))
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_array_record(str(path), _examples(2))


def test_root_may_be_a_directory_a_glob_or_a_split_pattern(tmp_path):
    write_array_record(str(tmp_path / "train-0.array_record"), _examples(4))
    write_array_record(str(tmp_path / "train-1.array_record"), _examples(3, 4))
    write_array_record(str(tmp_path / "val.array_record"), _examples(5))
    assert len(ArrayRecordSource(str(tmp_path), "train")) == 7
    assert len(ArrayRecordSource(str(tmp_path / "*.array_record"), "x")) == 12
    assert len(ArrayRecordSource(str(tmp_path / "{split}*.array_record"), "val")) == 5
    # Record 1 of the second file is record 5 overall.
    source = ArrayRecordSource(str(tmp_path), "train")
    assert source.where(5).endswith("train-1.array_record record 1")
    with pytest.raises(FileNotFoundError, match="splits present: train, val"):
        ArrayRecordSource(str(tmp_path), "test")


def test_undecodable_record_names_the_file_and_record(tmp_path):
    examples = _examples(5)
    examples[3] = (b"definitely not a png", 0)
    path = str(tmp_path / "val.array_record")
    write_array_record(path, examples)
    with pytest.raises(UndecodableImageError, match=r"val.array_record record 3.*skip_undecodable"):
        list(create_eval_iterator(_config(tmp_path), global_batch_size=5, shard_index=0, shard_count=1))
    evaluation = create_eval_iterator(
        _config(tmp_path, skip_undecodable=True), global_batch_size=5, shard_index=0, shard_count=1
    )
    [batch] = list(evaluation)
    np.testing.assert_array_equal(batch["mask"], [1, 1, 1, 0, 1])


def test_conversion_command_round_trips_and_refuses_to_overwrite(tmp_path):
    src, dst = tmp_path / "folders", tmp_path / "records"
    write_tree(src, {"train": {"a": 3, "b": 2}, "val": {"a": 1, "b": 2}})
    command = [
        sys.executable,
        "-m",
        "mixtok.data.imagefolder_to_array_record",
        str(src),
        str(dst),
        "--splits",
        "train,val",
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (dst / "classes.txt").read_text() == "a\nb\n"
    folder = ImageFolderSource(str(src), "val")
    records = ArrayRecordSource(str(dst), "val")
    assert len(records) == len(folder) == 3
    for k in range(3):
        assert records[k]["image"] == folder[k]["image"]
        assert records[k]["label"] == folder[k]["label"]
    info = dataset_info(_config(dst))
    assert (info.num_classes, info.num_train, info.num_eval) == (2, 5, 3)
    batch = next(create_train_iterator(_config(dst), global_batch_size=4, seed=0, shard_index=0, shard_count=1))
    assert batch["image"].shape == (4, 8, 8, 3)

    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert again.returncode != 0
    assert "Refusing to overwrite" in again.stderr
    assert "train.array_record" in again.stderr


def test_malformed_record_fails_like_an_undecodable_image(tmp_path):
    from array_record.python import array_record_module

    path = str(tmp_path / "val.array_record")
    writer = array_record_module.ArrayRecordWriter(path, "group_size:1")
    writer.write(encode_record(encode_png(solid_image(0)), 0))
    writer.write(b"\xc1 not msgpack")
    writer.close()
    with pytest.raises(UndecodableImageError, match="record 1.*malformed"):
        list(create_eval_iterator(_config(tmp_path, num_classes=1), global_batch_size=2, shard_index=0, shard_count=1))
