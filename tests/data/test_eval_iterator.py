"""The eval iterator: ordered, padded, masked, each example once over shards."""

import numpy as np
import pytest

from mixtok.data import create_eval_iterator


@pytest.mark.parametrize("shard_count", [1, 2, 3, 4])
def test_shards_cover_the_eval_split_exactly_once(indexed_config, shard_count):
    # 23 eval examples whose labels are their indices.
    real_labels, batch_counts = [], set()
    for index in range(shard_count):
        batches = list(
            create_eval_iterator(
                indexed_config, global_batch_size=4 * shard_count, shard_index=index, shard_count=shard_count
            )
        )
        batch_counts.add(len(batches))
        for batch in batches:
            assert batch["image"].shape == (4, 8, 8, 3)
            real_labels.extend(batch["label"][batch["mask"] == 1].tolist())
    assert sorted(real_labels) == list(range(23))
    assert len(batch_counts) == 1  # every process runs the same number of steps


def test_eval_is_in_order_and_padded_with_masked_zeros(indexed_config):
    batches = list(create_eval_iterator(indexed_config, global_batch_size=10, shard_index=0, shard_count=1))
    assert len(batches) == 3
    labels = np.concatenate([b["label"] for b in batches])
    mask = np.concatenate([b["mask"] for b in batches])
    assert mask.dtype == np.float32
    np.testing.assert_array_equal(labels[:23], np.arange(23))
    np.testing.assert_array_equal(mask, [1.0] * 23 + [0.0] * 7)
    assert not batches[-1]["image"][3:].any()
    assert set(batches[0]) == {"image", "label", "mask"}
    assert batches[0]["label"].dtype == np.int32


def test_iterating_twice_gives_the_same_batches(digits_config):
    evaluation = create_eval_iterator(digits_config, global_batch_size=128, shard_index=0, shard_count=1)
    first, second = list(evaluation), list(evaluation)
    assert len(first) == len(evaluation) == 3  # 300 digits
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    assert sum(b["mask"].sum() for b in first) == 300
