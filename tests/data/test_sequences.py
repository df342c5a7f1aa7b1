"""The marked_majority sequence source: labels recomputed by reading the tokens, determinism, padding, splits, and the
train / eval iterators and the sequence task's batch layout."""

import numpy as np
import pytest

from mixtok.data import create_eval_iterator, create_train_iterator, data_options, dataset_info
from mixtok.data.sequences import DIGIT0, MARKER, MarkedMajoritySource

CONFIG = dict(name="marked_majority", sequence_length=24, num_examples=40, num_eval_examples=7)


def _label_by_reading(tokens: np.ndarray) -> int:
    """The most common digit among those that follow a marker (ties: the smallest), read pair by pair."""
    counts = [0] * 10
    for i in range(0, len(tokens) - 1, 2):
        if tokens[i] == MARKER:
            counts[int(tokens[i + 1]) - DIGIT0] += 1
    assert sum(counts) >= 1
    return counts.index(max(counts))


def test_every_label_is_the_majority_of_the_marked_digits():
    source = MarkedMajoritySource("train", 200, 24)
    labels = []
    for i in range(len(source)):
        example = source[i]
        tokens = example["image"]
        assert tokens.dtype == np.int32 and tokens.shape == (24,)
        used = int(np.count_nonzero(tokens))
        assert 12 <= used <= 24 and used % 2 == 0 and not tokens[used:].any()  # (tag, digit) pairs, then padding
        assert set(tokens[1:used:2].tolist()) <= set(range(DIGIT0, DIGIT0 + 10))
        assert example["label"] == _label_by_reading(tokens)
        labels.append(example["label"])
    assert set(labels) == set(range(10))  # every class occurs


def test_counting_digits_alone_cannot_find_the_label_beyond_about_half():
    # The decoy is planted as often among the unmarked digits as the label among the marked ones.
    source = MarkedMajoritySource("test", 400, 256)
    right = 0
    for i in range(len(source)):
        tokens = source[i]["image"]
        digits = tokens[1::2][tokens[1::2] > 0] - DIGIT0
        right += int(np.argmax(np.bincount(digits, minlength=10)) == source[i]["label"])
    assert 0.35 < right / len(source) < 0.65


def test_examples_are_pure_functions_of_split_and_index():
    a, b = MarkedMajoritySource("train", 5, 64), MarkedMajoritySource("train", 5, 64)
    test = MarkedMajoritySource("test", 5, 64)
    for i in range(5):
        np.testing.assert_array_equal(a[i]["image"], b[i]["image"])
        assert not np.array_equal(a[i]["image"], test[i]["image"])


def test_options_tie_image_size_to_the_sequence_length_and_refuse_another():
    options = data_options(CONFIG)
    assert (options.sequence_length, options.image_size) == (24, 24)
    assert dataset_info(CONFIG).num_classes == 10
    with pytest.raises(ValueError, match="data.image_size=32 but data.name='marked_majority' is a sequence source"):
        data_options({**CONFIG, "image_size": 32})


def test_iterators_give_token_batches_and_pad_eval_with_masked_zero_sequences():
    train = next(create_train_iterator(CONFIG, global_batch_size=8, seed=0, shard_index=0, shard_count=1))
    assert train["image"].dtype == np.int32 and train["image"].shape == (8, 24)
    source = MarkedMajoritySource("train", 40, 24)
    assert any(np.array_equal(train["image"][0], source[i]["image"]) for i in range(40))  # untouched by transforms
    batches = list(create_eval_iterator(CONFIG, global_batch_size=4, shard_index=0, shard_count=1))
    mask = np.concatenate([b["mask"] for b in batches])
    np.testing.assert_array_equal(mask, [1.0] * 7 + [0.0])
    assert batches[-1]["image"].dtype == np.int32 and not batches[-1]["image"][3].any()
    np.testing.assert_array_equal(batches[0]["image"][0], MarkedMajoritySource("test", 7, 24)[0]["image"])


def test_sequence_task_traces_token_ids_and_owns_no_mixup():
    from mixtok.train.tasks import SequenceClassificationTask, get_task  # pylint: disable=g-import-not-at-top

    task = get_task("sequence_classification")
    assert task is SequenceClassificationTask and "mixup" not in task.CONFIG_FIELDS  # config.mixup is refused
    batch = task.dummy_batch(None, 24, batch_size=2)  # what the trainer's init traces: zero ids [B, L]
    assert batch["image"].shape == (2, 24) and str(batch["image"].dtype) == "int32"
