"""timm's training transform in the pipeline: each batch row equals augment.py's functions replayed by hand with
the generator grain hands that row; determinism, resumption, and the options-off pipeline unchanged."""

import io
import pickle

import grain
import numpy as np
import pytest
from PIL import Image

from mixtok.data import augment, create_eval_iterator, create_train_iterator, decode, sources, transforms
from mixtok.data.options import data_options
from mixtok.data.pipeline import augment_seed

from .conftest import batches_digest

# 14 sample photos and 14 examples: example i has label i, so a batch row's label names its source example.
PHOTOS = dict(name="sample_photos", image_size=24, num_examples=14, num_eval_examples=6, crop_scale=(0.3, 1.0))
TIMM = dict(
    PHOTOS,
    train_interpolation="random",
    auto_augment="rand-m9-mstd0.5-inc1",
    reprob=1.0,  # every image erased, so the test sees erasing on every row
    remode="pixel",
    recount=2,
    eval_interpolation="bicubic",
)


class _RecordState(grain.transforms.RandomMap):
    """Returns the state of the generator grain hands each index (grain reuses the generator objects)."""

    def random_map(self, element, rng):
        return rng.bit_generator.state


def _grain_generators(seed: int, count: int) -> list[np.random.Generator]:
    """Fresh generators in the states grain's random_map gives stream positions 0..count-1 of the train stream."""
    states = grain.MapDataset.range(count).random_map(_RecordState(), seed=augment_seed(seed))
    generators = []
    for state in states:
        generator = np.random.Generator(np.random.Philox())
        generator.bit_generator.state = state
        generators.append(generator)
    return generators


def _by_hand(image, options, rng):
    """timm's transforms_imagenet_train order, each step augment.py's function (transforms.normalize is the
    ToTensor + Normalize that the old path also uses). Without train_interpolation, mixtok's own crop."""
    size = options.image_size
    if options.train_interpolation is None:
        image = transforms.upsample_to_min_side(image, size)
        image = transforms.random_resized_crop(image, size, rng, options.crop_scale, options.crop_ratio)
    else:
        image = augment.random_resized_crop(image, size, rng, options.crop_scale, options.crop_ratio, "random")
    if rng.random() < options.hflip:
        image = image[:, ::-1]
    ra = augment.rand_augment_config("rand-m9-mstd0.5-inc1", augment.rand_augment_hparams(size, options.mean))
    image = augment.rand_augment(np.ascontiguousarray(image), ra, rng)
    image = transforms.normalize(image, options.mean, options.std)
    erasing = augment.RandomErasingConfig(probability=1.0, mode="pixel", max_count=2)
    return augment.random_erasing(image, erasing, rng)


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _train(config, seed=0, batch=7):
    return create_train_iterator(config, global_batch_size=batch, seed=seed, shard_index=0, shard_count=1)


@pytest.mark.parametrize("crop", ["random", None], ids=["timm crop", "mixtok crop"])
def test_each_row_equals_augment_functions_replayed_with_grain_generator(crop):
    config = dict(TIMM, train_interpolation=crop)
    options = data_options(config)
    source = sources.create_source(options, "train")
    batch = next(_train(config, seed=3, batch=14))
    generators = _grain_generators(3, 14)
    assert sorted(batch["label"]) == list(range(14))  # one epoch: every photo once
    for row, (label, generator) in enumerate(zip(batch["label"], generators)):
        want = _by_hand(source[int(label)]["image"], options, generator)
        np.testing.assert_array_equal(batch["image"][row], want, err_msg=f"row {row}")


def test_replay_is_not_vacuous_randaugment_and_erasing_change_the_rows():
    # The same crops and flips without RandAugment and erasing (they draw last, so crops are unchanged)
    # differ on every row: the options reached the transform.
    on = next(_train(TIMM, seed=3, batch=14))["image"]
    off = next(_train(dict(TIMM, auto_augment=None, reprob=0.0), seed=3, batch=14))["image"]
    assert all(not np.array_equal(a, b) for a, b in zip(on, off))


def test_eval_uses_timm_bicubic_resize_and_center_crop():
    options = data_options(TIMM)
    source = sources.create_source(options, "test")
    (batch,) = list(create_eval_iterator(TIMM, global_batch_size=6, shard_index=0, shard_count=1))
    for row in range(6):
        crop = augment.eval_resize_and_center_crop(source[row]["image"], 24, 0.875, "bicubic")
        np.testing.assert_array_equal(batch["image"][row], transforms.normalize(crop, options.mean, options.std))


def test_augmented_pipeline_same_seed_same_batches_other_seed_other_batches():
    first, again, other = _take(_train(TIMM, seed=7), 3), _take(_train(TIMM, seed=7), 3), _take(_train(TIMM, seed=8), 3)
    for x, y in zip(first, again):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(first[0]["image"], other[0]["image"])


def test_augmented_pipeline_resumes_at_exactly_the_next_batches():
    iterator = _train(TIMM, seed=2)
    _take(iterator, 3)  # 21 examples: past the first epoch of 14
    state = iterator.get_state()
    expected = _take(iterator, 3)
    resumed = _train(TIMM, seed=2)
    resumed.set_state(state)
    for x, y in zip(_take(resumed, 3), expected):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])


def test_transform_pickles_for_worker_processes_and_gives_the_same_image():
    options = data_options(TIMM)
    transform = transforms.TrainTransform(options)
    copy = pickle.loads(pickle.dumps(transform))
    example = sources.create_source(options, "train")[0]
    a = transform.random_map(example, np.random.default_rng(1))
    b = copy.random_map(example, np.random.default_rng(1))
    np.testing.assert_array_equal(a["image"], b["image"])


# Pinned from the pipeline before the timm options existed (main at 53617c9, 3 train batches of 8 with seed 5,
# and the whole eval pass): the defaults must keep every existing config's images bit for bit.
PINNED_TRAIN = "49a94d62cfa84e14e50eba953df48a347df6db574aa93db2fc53fb0d8cea1dc7"
PINNED_EVAL = "f0d6d08f3031b5f57b41ce8b0644fd9067ec4ac42670ba912546c48e7d64ff35"
PINNED = dict(PHOTOS, num_examples=28)


@pytest.mark.parametrize(
    "extra",
    [{}, dict(train_interpolation=None, auto_augment="", reprob=0, remode="const", recount=3, eval_interpolation=None)],
    ids=["fields absent", "fields off"],
)
def test_options_off_give_the_pipeline_pinned_before_they_existed(extra):
    config = dict(PINNED, **extra)
    assert batches_digest(_take(_train(config, seed=5, batch=8), 3)) == PINNED_TRAIN
    eval_batches = create_eval_iterator(config, global_batch_size=8, shard_index=0, shard_count=1)
    assert batches_digest(eval_batches) == PINNED_EVAL


@pytest.mark.parametrize(
    "field, value, named",
    [
        ("auto_augment", "rand-m9-mstdx", "'mstdx'"),
        ("auto_augment", "augmix-m5", "'augmix-m5'"),
        ("reprob", 1.5, "1.5"),
        ("reprob", True, "True"),
        ("remode", "noise", "'noise'"),
        ("recount", 0, "0"),
        ("train_interpolation", "bicubc", "'bicubc'"),
        ("eval_interpolation", "random", "'random'"),
    ],
)
def test_bad_augmentation_options_are_one_line_naming_field_and_value(field, value, named):
    with pytest.raises(ValueError) as error:
        data_options(dict(PHOTOS, **{field: value}))
    message = str(error.value)
    assert "\n" not in message and f"data.{field}" in message and named in message


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "RGBA"])
def test_encoded_images_take_the_pil_path_to_the_same_rows_as_decoded_arrays(mode):
    # TrainTransform decodes files straight to PIL for timm's crop and stays in PIL through RandAugment; the
    # rows equal augment.py's numpy functions replayed on the array decode_image gives (the old path).
    photos = sources.create_source(data_options(PHOTOS), "train")
    transform = transforms.TrainTransform(data_options(TIMM))
    for index in range(4):
        buffer = io.BytesIO()
        Image.fromarray(photos[index]["image"]).convert(mode).save(buffer, format="JPEG" if mode == "RGB" else "PNG")
        element = {"image": buffer.getvalue(), "label": index, "path": f"photo_{index}"}
        got = transform.random_map(element, np.random.default_rng(index))
        array = decode.decode_image(element["image"], element["path"])
        want = _by_hand(array, data_options(TIMM), np.random.default_rng(index))
        np.testing.assert_array_equal(got["image"], want, err_msg=f"{mode} image {index}")
