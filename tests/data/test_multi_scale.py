"""ml-cvnets' multi-scale variable-batch sampler as a train stream (mixtok.data.multi_scale)."""

import collections
import hashlib

import ml_collections
import numpy as np
import pytest

from mixtok.data import create_train_iterator, multi_scale_batches
from mixtok.data.multi_scale import (
    DRAW_CHUNK,
    MultiScaleOptions,
    ScaleSchedule,
    cas_vit_image_batch_pairs,
    image_batch_pairs,
    make_divisible,
    scale_batches,
)

# apple/ml-cvnets config/classification/imagenet/mobilevit.yaml: sampler.vbs crop 256, min / max 160 / 320,
# max_n_scales 5, check_scale 32; 128 images per GPU on 8 GPUs.
MOBILEVIT = dict(min_size=160, max_size=320, num_scales=5, check_scale=32)


def cvnets_image_batch_pairs(crop, batch_gpu0, min_size, max_size, num_scales, check_scale):
    """ml-cvnets' data/sampler/utils.py image_batch_pairs, create_intervallic_integer_list and
    utils/math_utils.py make_divisible, written out again for square crops (independent of mixtok's)."""

    def divisible(v, divisor):
        new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
        return new_v + divisor if new_v < 0.9 * v else new_v

    def dims():
        values = set(np.linspace(min_size, max_size, num_scales))
        values.add(crop)
        return sorted(divisible(v, check_scale) for v in values)

    n_elements = crop * crop * batch_gpu0
    pairs = set()
    for h, w in zip(dims(), dims()):
        pairs.add((h, w, max(1, int(round(n_elements / (h * w), 2)))))
    return sorted(pairs)


def test_mobilevit_yaml_sizes_and_per_gpu_batches_are_cvnets():
    expected = [(160, 160, 327), (192, 192, 227), (256, 256, 128), (288, 288, 101), (320, 320, 81)]
    assert cvnets_image_batch_pairs(256, 128, **MOBILEVIT) == expected
    assert image_batch_pairs(256, 128, **MOBILEVIT) == expected
    # Global batches: 8 x the per-GPU ones, at the config's global batch 1024.
    assert scale_batches(MultiScaleOptions(**MOBILEVIT, batch_multiple=8), 256, 1024) == (
        (160, 2616),
        (192, 1816),
        (256, 1024),
        (288, 808),
        (320, 648),
    )


@pytest.mark.parametrize(
    "crop,batch,fields",
    [
        (224, 64, dict(min_size=128, max_size=320, num_scales=7, check_scale=32)),
        (256, 32, dict(min_size=160, max_size=320, num_scales=3, check_scale=8)),
        (64, 2, dict(min_size=32, max_size=96, num_scales=5, check_scale=32)),
        (100, 5, dict(min_size=10, max_size=300, num_scales=9, check_scale=16)),
    ],
)
def test_other_parameters_match_cvnets_too(crop, batch, fields):
    assert image_batch_pairs(crop, batch, **fields) == cvnets_image_batch_pairs(crop, batch, **fields)


def official_cas_vit_pairs(crop, batch_gpu0, n_gpus, min_size, max_size, num_scales, check_scale):
    """Tianfang-Zhang/CAS-ViT classification/data/samplers.py `_image_batch_pairs` for square crops, written
    out again step by step (independent of mixtok's)."""

    def divisible(v, divisor):
        new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
        return new_v + divisor if new_v < 0.9 * v else new_v

    dims = list(np.linspace(min_size, max_size, num_scales))
    if crop not in dims:
        dims.append(crop)
    scales = {(divisible(h, check_scale), divisible(w, check_scale)) for h, w in zip(dims, dims)}
    n_elements = crop * crop * batch_gpu0
    pairs = set()
    for h, w in scales:
        bsz = divisible(max(batch_gpu0, int(round(n_elements / (h * w), 2))), n_gpus)
        pairs.add((h, w, bsz if bsz % 2 == 0 else bsz - 1))
    return sorted(pairs)


def test_cas_vit_readme_sampler_sizes_and_per_gpu_batches():
    # --multi_scale_sampler at --input_size 224, --batch_size 128, 8 GPUs (README): the batch never drops below
    # 128, 250.88 -> 251 -> 248 (a multiple of 8) at 160 px, 174.2 -> 174 -> 176 at 192 px.
    expected = [(160, 160, 248), (192, 192, 176), (224, 224, 128), (256, 256, 128), (288, 288, 128), (320, 320, 128)]
    fields = dict(min_size=160, max_size=320, num_scales=5, check_scale=32)
    assert official_cas_vit_pairs(224, 128, 8, **fields) == expected
    assert cas_vit_image_batch_pairs(224, 128, 8, **fields) == expected
    options = MultiScaleOptions(**fields, batch_multiple=8, rule="cas_vit")
    assert scale_batches(options, 224, 1024) == tuple((h, 8 * b) for h, _, b in expected)


@pytest.mark.parametrize(
    "crop,batch,gpus,fields",
    [
        (224, 64, 4, dict(min_size=128, max_size=320, num_scales=7, check_scale=32)),
        (256, 30, 3, dict(min_size=160, max_size=320, num_scales=3, check_scale=8)),
        (64, 3, 1, dict(min_size=32, max_size=96, num_scales=5, check_scale=32)),
        (100, 5, 5, dict(min_size=10, max_size=300, num_scales=9, check_scale=16)),
    ],
)
def test_other_parameters_match_cas_vit_too(crop, batch, gpus, fields):
    assert cas_vit_image_batch_pairs(crop, batch, gpus, **fields) == official_cas_vit_pairs(crop, batch, gpus, **fields)


def test_make_divisible_keeps_cvnets_rule_of_not_below_ninety_percent():
    assert [make_divisible(v, 32) for v in (160.0, 200.0, 240.0, 280.0, 320.0)] == [160, 192, 256, 288, 320]
    assert make_divisible(10, 8) == 16  # 8 would be below 0.9 * 10
    assert make_divisible(3, 8) == 8  # never below the divisor


def _config(source="synthetic", **multi):
    """synthetic: 40 examples whose label is their index, at base size 8 (the source draws its images at 8).
    digits: fixed 8 x 8 images, at base size 16 (the same images whatever the size: pixels compare)."""
    if source == "digits":
        fields = dict(min_size=8, max_size=32, num_scales=3, check_scale=8, batch_multiple=2)
        data = dict(name="digits", image_size=16, crop_scale=(0.6, 1.0))
    else:
        fields = dict(min_size=4, max_size=16, num_scales=3, check_scale=4, batch_multiple=2)
        data = dict(name="synthetic", image_size=8, num_examples=40, num_classes=40, crop_scale=(0.5, 1.0))
    return ml_collections.ConfigDict(dict(data, multi_scale={**fields, **multi}))


BATCH = 16  # 8 per "GPU" at the base size; global batches 64, 16, 6, 4 at (1/2, 1, 3/2, 2) x the base size


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _plain(config, image_size, positions, seed):
    """Stream positions [0, positions) of the single-size stream at `image_size`, one example per step."""
    fields = {**config.to_dict(), "image_size": image_size}
    del fields["multi_scale"]
    plain = ml_collections.ConfigDict(fields)
    iterator = create_train_iterator(plain, global_batch_size=1, seed=seed, shard_index=0, shard_count=1)
    return _take(iterator, positions)


@pytest.mark.parametrize("source", ["synthetic", "digits"])
def test_step_t_holds_stream_positions_start_to_start_plus_batch_at_its_size(source):
    config, seed, steps = _config(source), 4, 12
    pairs = dict(multi_scale_batches(config, BATCH))
    base = config.image_size
    assert pairs == {base // 2: 64, base: 16, base * 3 // 2: 6, base * 2: 4}
    size_of = {batch: size for size, batch in pairs.items()}
    iterator = create_train_iterator(config, global_batch_size=BATCH, seed=seed, shard_index=0, shard_count=1)
    batches = _take(iterator, steps)
    counts = [len(b["label"]) for b in batches]
    assert len(set(counts)) >= 3, counts  # the draw reached several sizes
    total = sum(counts)
    plain = {size: _plain(config, size, total, seed) for size in set(size_of[c] for c in counts)}
    start = 0
    for batch, count in zip(batches, counts):
        size = size_of[count]
        assert batch["image"].shape == (count, size, size, 3)
        # The positions [start, start + count) of the one stream (synthetic: the label is the example index) ...
        expected = plain[size][start : start + count]
        np.testing.assert_array_equal(batch["label"], [e["label"][0] for e in expected])
        if source == "digits":  # ... each cropped with its position's key, as the single-size stream at that size
            np.testing.assert_array_equal(batch["image"], np.concatenate([e["image"] for e in expected]))
        start += count


def test_two_processes_read_their_rows_of_the_one_process_batches():
    config = _config()
    alone = _take(create_train_iterator(config, global_batch_size=BATCH, seed=2, shard_index=0, shard_count=1), 10)
    halves = [
        _take(create_train_iterator(config, global_batch_size=BATCH, seed=2, shard_index=i, shard_count=2), 10)
        for i in range(2)
    ]
    for t, whole in enumerate(alone):
        for key in ("image", "label"):
            np.testing.assert_array_equal(np.concatenate([h[t][key] for h in halves]), whole[key])


def test_reading_threads_give_the_same_batches():
    config = _config()
    threaded = ml_collections.ConfigDict({**config.to_dict(), "read_threads": 3})
    make = lambda c: create_train_iterator(c, global_batch_size=BATCH, seed=6, shard_index=0, shard_count=1)
    for x, y in zip(_take(make(config), 8), _take(make(threaded), 8)):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


def test_restored_state_resumes_at_exactly_the_next_step():
    config = _config()
    make = lambda: create_train_iterator(config, global_batch_size=BATCH, seed=3, shard_index=0, shard_count=1)
    iterator = make()
    _take(iterator, 7)
    state = iterator.get_state()
    assert state == {"next_index": 7}  # the step count
    expected = _take(iterator, 5)
    resumed = make()
    resumed.set_state(state)
    for x, y in zip(_take(resumed, 5), expected):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


def test_sizes_are_drawn_uniformly_and_deterministically_per_seed_and_starts_add_up():
    pairs = ((4, 64), (8, 16), (12, 6), (16, 4))
    steps = 3 * DRAW_CHUNK + 17  # across draw chunks
    drawn = [ScaleSchedule(pairs, seed=9).step(t) for t in range(steps)]
    assert drawn == [ScaleSchedule(pairs, seed=9).step(t) for t in range(steps)]
    assert [s for s, _, _ in drawn] != [ScaleSchedule(pairs, seed=10).step(t)[0] for t in range(steps)]
    counts = collections.Counter(s for s, _, _ in drawn)
    sigma = np.sqrt(steps * 0.25 * 0.75)
    assert all(abs(counts[s] - steps / 4) < 5 * sigma for s, _ in pairs), counts
    assert all(dict(pairs)[s] == b for s, b, _ in drawn)
    starts = np.concatenate([[0], np.cumsum([b for _, b, _ in drawn])[:-1]])
    np.testing.assert_array_equal([p for _, _, p in drawn], starts)
    # A late step alone (as a resumed run asks first) gives the same answer.
    assert ScaleSchedule(pairs, seed=9).step(steps - 1) == drawn[-1]


# Hashes of the first 3 batches of today's stream, computed on main before multi_scale existed.
OFF_HASHES = [
    (
        dict(name="digits", image_size=16, crop_scale=(0.6, 1.0), hflip=False),
        dict(global_batch_size=16, seed=5, shard_index=0, shard_count=1),
        "2b586f7f880adc9266d3f6f4f8a0474646dc0606866981272dcf11593f4fc995",
    ),
    (
        dict(
            name="synthetic", image_size=8, num_examples=40, num_classes=40, num_eval_examples=23, crop_scale=(0.5, 1.0)
        ),
        dict(global_batch_size=8, seed=1, shard_index=1, shard_count=2),
        "c914fe6b4c492ad71ea815b2f0c2a65830b9e0d0a3a1bd4afe5ec469b4e0d512",
    ),
]


@pytest.mark.parametrize("multi_scale", ["absent", None, {}])
@pytest.mark.parametrize("fields,kwargs,expected", OFF_HASHES)
def test_off_gives_todays_batches(fields, kwargs, expected, multi_scale):
    config = dict(fields) if multi_scale == "absent" else dict(fields, multi_scale=multi_scale)
    iterator = create_train_iterator(ml_collections.ConfigDict(config), **kwargs)
    digest = hashlib.sha256()
    for batch in _take(iterator, 3):
        for key in ("image", "label"):
            digest.update(np.ascontiguousarray(batch[key]).tobytes())
    assert digest.hexdigest() == expected
    assert multi_scale_batches(ml_collections.ConfigDict(config), kwargs["global_batch_size"]) is None


@pytest.mark.parametrize(
    "multi,kwargs,message",
    [
        (dict(min_sise=4), {}, r"data.multi_scale has no field 'min_sise'; valid fields are min_size, max_size"),
        (dict(num_scales=0), {}, r"data.multi_scale.num_scales must be a positive integer, got 0\."),
        (dict(check_scale=2.5), {}, r"data.multi_scale.check_scale must be a positive integer, got 2.5\."),
        (dict(min_size=20), {}, r"data.multi_scale.min_size=20 must be <= max_size=16\."),
        (dict(rule="edge"), {}, r"data.multi_scale.rule must be one of cvnets, cas_vit; got 'edge'\."),
        (dict(batch_multiple=3), {}, r"batch_multiple=3 must divide the global batch 16 \(it plays cvnets' GPU count"),
        (dict(batch_multiple=2), dict(shard_count=4, shard_index=0), r"batch_multiple=2 must be a multiple of the "),
        ({}, dict(worker_count=2), r"worker_count=2 worker processes are not supported with it: use worker_count=0"),
    ],
)
def test_bad_values_are_refused_in_one_line(multi, kwargs, message):
    kwargs = {"shard_index": 0, "shard_count": 1, **kwargs}
    with pytest.raises(ValueError, match=message) as error:
        create_train_iterator(_config(**multi), global_batch_size=BATCH, seed=0, **kwargs)
    assert "\n" not in str(error.value)


def test_a_block_that_is_not_a_mapping_is_refused():
    config = ml_collections.ConfigDict({**_config().to_dict(), "multi_scale": 5})
    with pytest.raises(ValueError, match=r"data.multi_scale must be None or a block with fields min_size"):
        create_train_iterator(config, global_batch_size=BATCH, seed=0, shard_index=0, shard_count=1)


def test_skipped_undecodable_images_are_replaced_by_the_next_positions_and_counted(tmp_path):
    import grain

    from mixtok.data.imagefolder import ImageFolderSource

    from .conftest import write_tree

    write_tree(tmp_path, {"train": {"cat": 6, "dog": 6, "emu": 6}}, corrupt=("train/dog/broken.png",))
    fields = dict(name="imagefolder", root=str(tmp_path), image_size=8, read_threads=2, skip_undecodable=True)
    config = ml_collections.ConfigDict(dict(fields, multi_scale=_config().multi_scale.to_dict()))
    pairs = dict(multi_scale_batches(config, BATCH))
    iterator = create_train_iterator(config, global_batch_size=BATCH, seed=1, shard_index=0, shard_count=1)
    batches = _take(iterator, 8)
    # The stream written out: grain's shuffle of the 19 files with the seed, repeated; which file is broken.
    source = ImageFolderSource(str(tmp_path), "train")
    order = grain.MapDataset.source(list(range(len(source)))).shuffle(seed=1).repeat()
    labels = [source[i]["label"] for i in range(len(source))]
    broken = {i for i in range(len(source)) if source[i]["path"].endswith("broken.png")}
    start, skipped = 0, 0
    for batch in batches:
        count, size = batch["image"].shape[:2]
        assert pairs[size] == count  # full at its size
        # Step positions [start, start + count), each broken one replaced by the next position after them.
        kept = [p for p in range(start, start + count) if order[p] not in broken]
        position = start + count
        while len(kept) < count:
            if order[position] not in broken:
                kept.append(position)
            position += 1
        skipped += sum(order[p] in broken for p in range(start, position))
        np.testing.assert_array_equal(batch["label"], [labels[order[p]] for p in kept])
        start += count
    assert iterator.num_skipped_undecodable == skipped > 0
