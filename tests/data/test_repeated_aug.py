"""DeiT's repeated augmentation (`data.repeated_aug`) in the train stream: which image each stream position reads
(against a numpy replay of facebookresearch/deit: samplers.py `RASampler`), consecutive copies with their own
augmentation, process-count independence, exact resumption, the off path pinned, and bad values."""

import math

import grain
import numpy as np
import pytest

from mixtok.data import create_train_iterator, sources, transforms
from mixtok.data.options import data_options
from mixtok.data.pipeline import augment_seed, repeated_aug_epoch_length

from .conftest import batches_digest

# Synthetic data whose label is the example index (num_classes == num_examples), so labels name the images.
# 600 images: RASampler's epoch is 600 // 256 * 256 = 512 positions, 512 % 3 = 2 (the last image gets 2 copies).
INDEXED = dict(name="synthetic", image_size=8, num_examples=600, num_classes=600, num_eval_examples=8)
SMALL = dict(INDEXED, num_examples=40, num_classes=40)  # under 256: the epoch is the whole split


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _train(config, *, batch, seed=0, index=0, count=1):
    return create_train_iterator(config, global_batch_size=batch, seed=seed, shard_index=index, shard_count=count)


def _labels(config, *, positions, seed=0, batch=100):
    batches = _take(_train(config, batch=batch, seed=seed), math.ceil(positions / batch))
    return np.concatenate([b["label"] for b in batches])[:positions]


def _assert_same_batches(xs, ys):
    assert len(xs) == len(ys)
    for t, (x, y) in enumerate(zip(xs, ys)):
        np.testing.assert_array_equal(x["image"], y["image"], err_msg=f"batch {t}")
        np.testing.assert_array_equal(x["label"], y["label"], err_msg=f"batch {t}")


def _plain_permutations(config, seed, epochs):
    """perm_e for e < epochs: the images the plain stream (repeated_aug off) reads in its epoch e."""
    n = config["num_examples"]
    return _labels(config, positions=epochs * n, seed=seed).reshape(epochs, n)


def _ra_sampler_epoch(permutation, copies, replicas, rank):
    """RASampler.__iter__ of one epoch replayed in numpy, with `permutation` in place of torch.randperm."""
    n = len(permutation)
    num_samples = math.ceil(n * copies / replicas)
    total = num_samples * replicas
    indices = np.repeat(permutation, copies)
    indices = np.concatenate([indices, indices[: total - len(indices)]])
    kept = math.floor(n // 256 * 256 / replicas)
    return indices[rank:total:replicas][:kept]


def test_epoch_length_is_ra_samplers_sample_count():
    # RASampler keeps floor(N // 256 * 256 / R) per rank: for R dividing 256, N // 256 * 256 in all.
    for n in (256, 600, 1497, 1281167):
        for replicas in (1, 2, 8, 64):
            assert repeated_aug_epoch_length(n) == math.floor(n // 256 * 256 / replicas) * replicas
    assert repeated_aug_epoch_length(1281167) == 1281024  # ImageNet-1k: 427,008 images x 3 copies
    assert [repeated_aug_epoch_length(n) for n in (1, 40, 255)] == [1, 40, 255]  # RASampler: 0, an empty epoch


def test_each_position_reads_perm_e_of_k_over_copies_over_two_epochs():
    seed, copies = 4, 3
    perms = _plain_permutations(INDEXED, seed, epochs=3)
    got = _labels(dict(INDEXED, repeated_aug=copies), positions=2 * 512 + 100, seed=seed)
    k = np.arange(len(got))
    want = perms[k // 512, (k % 512) // copies]
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(perms[0], perms[1])  # the epochs really differ


@pytest.mark.parametrize("replicas", [1, 2, 4, 8])
def test_each_global_batch_holds_the_images_ra_sampler_gives_all_ranks_at_that_step(replicas):
    """DeiT's step t reads every rank's t-th batch of b = B / R; with the same permutation, its images (as a
    multiset) are mixtok's global batch t, for every full step of the epoch."""
    seed, batch = 1, 32
    perm = _plain_permutations(INDEXED, seed, epochs=1)[0]
    got = _labels(dict(INDEXED, repeated_aug=3), positions=512, seed=seed, batch=batch).reshape(-1, batch)
    ranks = [_ra_sampler_epoch(perm, 3, replicas, r) for r in range(replicas)]
    local = batch // replicas
    for t in range(len(ranks[0]) // local):
        deit = np.concatenate([rank[t * local : (t + 1) * local] for rank in ranks])
        np.testing.assert_array_equal(np.sort(got[t]), np.sort(deit), err_msg=f"step {t}")


@pytest.mark.parametrize("config, copies", [(INDEXED, 3), (SMALL, 4), (SMALL, 3)], ids=["600x3", "40x4", "40x3"])
def test_an_epoch_holds_each_of_its_images_copies_times_in_a_row(config, copies):
    n = config["num_examples"]
    length = repeated_aug_epoch_length(n)
    labels = _labels(dict(config, repeated_aug=copies), positions=2 * length, seed=2)
    for epoch in labels.reshape(2, length):
        starts = np.flatnonzero(np.r_[True, epoch[1:] != epoch[:-1]])
        runs = np.diff(np.r_[starts, length])
        images = epoch[starts]
        assert len(set(images.tolist())) == len(images) == math.ceil(length / copies)  # no image in two runs
        assert set(runs[:-1].tolist()) == {copies}
        assert runs[-1] == (length % copies or copies)


def _grain_generators(seed, count):
    """Generators in the states grain's random_map hands stream positions 0..count-1 of the train stream."""

    class RecordState(grain.transforms.RandomMap):
        def random_map(self, element, rng):
            return rng.bit_generator.state

    generators = []
    for state in grain.MapDataset.range(count).random_map(RecordState(), seed=augment_seed(seed)):
        generator = np.random.Generator(np.random.Philox())
        generator.bit_generator.state = state
        generators.append(generator)
    return generators


def test_each_copy_is_augmented_with_the_key_of_its_own_stream_position():
    config = dict(SMALL, image_size=16, crop_scale=(0.08, 1.0), repeated_aug=3)
    options = data_options(config)
    source = sources.create_source(options, "train")
    batch = next(_train(config, batch=24, seed=6))
    for row, (label, generator) in enumerate(zip(batch["label"], _grain_generators(6, 24))):
        want = transforms.train_image(source[int(label)]["image"], options, generator)
        np.testing.assert_array_equal(batch["image"][row], want, err_msg=f"row {row}")
    for first in range(0, 24, 3):  # 8 images x 3 copies: the copies differ pairwise
        assert len(set(batch["label"][first : first + 3].tolist())) == 1
        copies = batch["image"][first : first + 3]
        assert not any(np.array_equal(copies[i], copies[j]) for i, j in ((0, 1), (0, 2), (1, 2)))


# Pinned from main at 1a7a980, before repeated_aug existed: digits, batches of 16, seed 5; batches 0-2 and 92-94
# (the first epoch of 1,497 ends inside batch 93).
PINNED = dict(name="digits", image_size=16, crop_scale=(0.6, 1.0))
PINNED_FIRST = "9ecc29214f5e6cf486946d81884115a64b4ec0c497d3dc0113c9187feb3f9d2e"
PINNED_EPOCH_END = "c26f126b3cb5191e2564afd07e11cab88f564def715e316a64c772d3be3473a7"


@pytest.mark.parametrize("extra", [{}, dict(repeated_aug=0), dict(repeated_aug=1)], ids=["absent", "0", "1"])
def test_off_gives_the_batches_pinned_before_the_option_existed(extra):
    batches = _take(_train(dict(PINNED, **extra), batch=16, seed=5), 95)
    assert batches_digest(batches[:3]) == PINNED_FIRST
    assert batches_digest(batches[92:]) == PINNED_EPOCH_END


@pytest.mark.parametrize("count", [2, 3])
def test_processes_read_their_rows_of_the_one_process_batches(count):
    """300 images: the epoch of 256 positions ends inside step 21 (batches of 12); its last image has 1 copy."""
    config, steps, batch = dict(INDEXED, num_examples=300, num_classes=300, repeated_aug=3), 24, 12
    alone = _take(_train(config, batch=batch, seed=3), steps)
    shards = [_take(_train(config, batch=batch, seed=3, index=i, count=count), steps) for i in range(count)]
    joined = [{key: np.concatenate([s[t][key] for s in shards]) for key in ("image", "label")} for t in range(steps)]
    _assert_same_batches(joined, alone)


@pytest.mark.parametrize("count", [1, 2])
def test_a_state_saved_mid_epoch_resumes_at_exactly_the_next_batches(count):
    """Saved after 20 positions (between the 2nd and 3rd copies of the epoch's 7th image); the next 4 batches
    cross the end of the epoch of 40."""
    config = dict(SMALL, repeated_aug=3)
    expected, resumed = [], []
    for index in range(count):
        iterator = _train(config, batch=10, seed=8, index=index, count=count)
        _take(iterator, 2)
        state = iterator.get_state()
        assert state["next_index"] == 20 // count
        expected.append(_take(iterator, 4))
        fresh = _train(config, batch=10, seed=8, index=index, count=count)
        fresh.set_state(state)
        resumed.append(_take(fresh, 4))
    for want, got in zip(expected, resumed):
        _assert_same_batches(got, want)


def test_worker_processes_read_every_nth_position_of_the_same_stream():
    """With n grain workers, worker w batches positions w, w + n, ... of the process's stream (so an image's
    copies spread over n consecutive batches); batch t comes from worker t % n. Each row is still the image and
    augmentation of its stream position."""
    config, workers, batch = dict(SMALL, repeated_aug=3), 2, 10
    stream = _take(_train(config, batch=batch, seed=2), 4)
    images = np.concatenate([b["image"] for b in stream])
    labels = np.concatenate([b["label"] for b in stream])
    iterator = create_train_iterator(
        config, global_batch_size=batch, seed=2, shard_index=0, shard_count=1, worker_count=workers
    )
    try:
        got = _take(iterator, 4)
    finally:
        iterator.close()
    for t, b in enumerate(got):
        worker, j = t % workers, t // workers
        positions = worker + workers * (j * batch + np.arange(batch))
        np.testing.assert_array_equal(b["label"], labels[positions], err_msg=f"batch {t}")
        np.testing.assert_array_equal(b["image"], images[positions], err_msg=f"batch {t}")


@pytest.mark.parametrize("value", [-1, 3.0, "3", True, None])
def test_bad_values_are_one_line_naming_the_value_and_the_valid_ones(value):
    with pytest.raises(ValueError) as error:
        data_options(dict(SMALL, repeated_aug=value))
    message = str(error.value)
    assert "\n" not in message
    assert "data.repeated_aug" in message and repr(value) in message and "0 or 1 for off" in message
