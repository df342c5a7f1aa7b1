"""The train iterator: determinism, resumption, sharding, workers, orbax."""

import numpy as np
import pytest

from mixtok.data import create_train_iterator, dataset_info


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _assert_same_batches(xs, ys):
    assert len(xs) == len(ys)
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


def test_batches_have_the_documented_shapes_and_types(digits_config):
    batch = next(create_train_iterator(digits_config, global_batch_size=8, seed=0, shard_index=0, shard_count=1))
    assert set(batch) == {"image", "label"}
    assert batch["image"].shape == (8, 16, 16, 3)
    assert batch["image"].dtype == np.float32
    assert batch["label"].shape == (8,) and batch["label"].dtype == np.int32


def test_same_seed_same_batches_and_other_seed_other_batches(digits_config):
    make = lambda seed: create_train_iterator(
        digits_config, global_batch_size=16, seed=seed, shard_index=0, shard_count=1
    )
    first, again, other = _take(make(7), 3), _take(make(7), 3), _take(make(8), 3)
    _assert_same_batches(first, again)
    assert not np.array_equal(first[0]["label"], other[0]["label"])


def test_restored_state_yields_exactly_the_next_batches(digits_config):
    iterator = create_train_iterator(digits_config, global_batch_size=16, seed=3, shard_index=0, shard_count=1)
    _take(iterator, 5)
    state = iterator.get_state()
    expected = _take(iterator, 4)
    resumed = create_train_iterator(digits_config, global_batch_size=16, seed=3, shard_index=0, shard_count=1)
    resumed.set_state(state)
    _assert_same_batches(_take(resumed, 4), expected)


def test_each_epoch_visits_the_shard_once_in_a_new_order(indexed_config):
    # Labels equal example indices, so batches show which examples came.
    iterator = create_train_iterator(indexed_config, global_batch_size=8, seed=0, shard_index=0, shard_count=1)
    labels = np.concatenate([b["label"] for b in _take(iterator, 10)])
    first, second = labels[:40], labels[40:]
    assert sorted(first) == list(range(40)) == sorted(second)
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("shard_count", [2, 4])
def test_processes_read_their_rows_of_the_one_process_batches(digits_config, shard_count):
    """Any process count gives the same global batches, crops and flips: process i's batch is rows
    [i * b, (i + 1) * b) of the batch one process reads, for steps across an epoch boundary."""
    steps, batch = 100, 16  # 1,497 digits: an epoch ends inside step 94
    alone = _take(
        create_train_iterator(digits_config, global_batch_size=batch, seed=5, shard_index=0, shard_count=1), steps
    )
    shards = [
        _take(
            create_train_iterator(
                digits_config, global_batch_size=batch, seed=5, shard_index=i, shard_count=shard_count
            ),
            steps,
        )
        for i in range(shard_count)
    ]
    joined = [
        {key: np.concatenate([shard[t][key] for shard in shards]) for key in ("image", "label")} for t in range(steps)
    ]
    _assert_same_batches(joined, alone)


def test_a_state_saved_by_one_process_count_resumes_at_the_same_step_under_another(indexed_config):
    """The state counts this process's examples (next_index = steps * rows): rescaled, it resumes another count."""
    one = create_train_iterator(indexed_config, global_batch_size=8, seed=1, shard_index=0, shard_count=1)
    _take(one, 7)
    state = one.get_state()
    assert state["next_index"] == 7 * 8
    expected = _take(one, 3)
    halves = []
    for index in range(2):
        resumed = create_train_iterator(indexed_config, global_batch_size=8, seed=1, shard_index=index, shard_count=2)
        resumed.set_state({**state, "next_index": 7 * 4})
        halves.append(_take(resumed, 3))
    joined = [{key: np.concatenate([h[t][key] for h in halves]) for key in ("image", "label")} for t in range(3)]
    _assert_same_batches(joined, expected)


def test_shards_default_to_the_jax_process(digits_config):
    batch = next(create_train_iterator(digits_config, global_batch_size=4, seed=0))
    assert batch["image"].shape[0] == 4  # one process: the whole batch


def test_worker_processes_give_resumable_deterministic_batches(digits_config):
    make = lambda: create_train_iterator(
        digits_config, global_batch_size=16, seed=2, shard_index=0, shard_count=1, worker_count=2
    )
    iterator = make()
    try:
        _take(iterator, 3)
        state = iterator.get_state()
        expected = [b["label"].copy() for b in _take(iterator, 3)]
    finally:
        iterator.close()
    resumed = make()
    try:
        resumed.set_state(state)
        got = [b["label"].copy() for b in _take(resumed, 3)]
    finally:
        resumed.close()
    for x, y in zip(got, expected):
        np.testing.assert_array_equal(x, y)


def test_orbax_checkpoint_manager_saves_and_restores_the_iterator(digits_config, tmp_path):
    ocp = pytest.importorskip("orbax.checkpoint")
    import grain

    iterator = create_train_iterator(digits_config, global_batch_size=8, seed=0, shard_index=0, shard_count=1)
    _take(iterator, 2)
    manager = ocp.CheckpointManager(tmp_path / "ckpt")
    manager.save(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointSave(iterator)))
    manager.wait_until_finished()
    expected = _take(iterator, 2)
    resumed = create_train_iterator(digits_config, global_batch_size=8, seed=0, shard_index=0, shard_count=1)
    manager.restore(2, args=ocp.args.Composite(data=grain.checkpoint.CheckpointRestore(resumed)))
    _assert_same_batches(_take(resumed, 2), expected)
    manager.close()


def test_dataset_info_for_digits(digits_config):
    info = dataset_info(digits_config)
    assert (info.num_classes, info.num_train, info.num_eval, info.image_size) == (10, 1497, 300, 16)
