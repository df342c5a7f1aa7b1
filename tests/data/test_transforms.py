"""The transforms, each checked against a computation done another way."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from mixtok.data import transforms
from mixtok.data.options import data_options

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def _ramp(height, width):
    """A uint8 image whose every pixel is different, so crops are identifiable."""
    values = np.arange(height * width * 3) % 251
    return values.reshape(height, width, 3).astype(np.uint8)


def _options(**fields):
    return data_options(dict(name="synthetic", **fields))


def test_normalize_matches_the_formula_per_channel():
    image = np.array([[[0, 128, 255]]], np.uint8)
    got = transforms.normalize(image, MEAN, STD)
    want = [(0 / 255 - MEAN[0]) / STD[0], (128 / 255 - MEAN[1]) / STD[1], (255 / 255 - MEAN[2]) / STD[2]]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0, 0], want, rtol=1e-6, atol=1e-6)


def test_horizontal_flip_mirrors_the_width_axis():
    image = _ramp(3, 5)
    flipped = transforms.horizontal_flip(image)
    for column in range(5):
        np.testing.assert_array_equal(flipped[:, column], image[:, 4 - column])


def test_eval_center_crop_of_an_image_already_at_resize_size_is_a_slice():
    # image_size 28, crop_pct 0.875 -> resize shorter side to int(28/0.875) = 32;
    # a 32x40 image is already there, so eval is the centre 28x28 slice.
    image = _ramp(32, 40)
    options = _options(image_size=28, crop_pct=0.875)
    got = transforms.eval_image(image, options)
    top, left = (32 - 28) // 2, (40 - 28) // 2
    want = transforms.normalize(image[top : top + 28, left : left + 28], MEAN, STD)
    np.testing.assert_array_equal(got, want)


def test_eval_resizes_the_shorter_side_then_crops_the_centre():
    image = _ramp(48, 60)
    options = _options(image_size=28, crop_pct=0.875)
    got = transforms.eval_image(image, options)
    # Independent: PIL resize to 32 x int(32*60/48)=40, then hand slice.
    resized = np.asarray(Image.fromarray(image).resize((40, 32), Image.BILINEAR))
    want = transforms.normalize(resized[2:30, 6:34], MEAN, STD)
    np.testing.assert_array_equal(got, want)
    assert got.shape == (28, 28, 3)


def test_eval_upsamples_an_8x8_digit_to_the_image_size():
    image = _ramp(8, 8)
    got = transforms.eval_image(image, _options(image_size=32, crop_pct=0.875))
    assert got.shape == (32, 32, 3)


def test_crop_box_stays_inside_and_respects_scale_and_ratio():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, h, w = transforms.sample_crop_box(60, 80, rng, (0.3, 0.6), (0.75, 4 / 3))
        assert 0 <= top and top + h <= 60 and 0 <= left and left + w <= 80
        # Rounding to whole pixels moves area and ratio a little.
        assert 0.3 * 0.9 <= h * w / (60 * 80) <= 0.6 * 1.1
        assert 0.75 * 0.9 <= w / h <= 4 / 3 * 1.1


def test_crop_box_falls_back_to_a_centred_crop_when_nothing_fits():
    # A 1:10 strip cannot hold a crop of ratio 1 and scale 1.
    rng = np.random.default_rng(0)
    assert transforms.sample_crop_box(10, 100, rng, (1.0, 1.0), (1.0, 1.0)) == (0, 45, 10, 10)


def test_random_resized_crop_at_full_scale_is_a_plain_resize():
    image = _ramp(24, 24)
    got = transforms.random_resized_crop(image, 12, np.random.default_rng(0), (1.0, 1.0), (1.0, 1.0))
    want = np.asarray(Image.fromarray(image).resize((12, 12), Image.BILINEAR))
    np.testing.assert_array_equal(got, want)


def test_train_flip_probability_one_mirrors_the_probability_zero_output():
    image = _ramp(32, 32)
    base = _options(image_size=16, crop_scale=(0.5, 1.0))
    never = dataclasses.replace(base, hflip=0.0)
    always = dataclasses.replace(base, hflip=1.0)
    # Same rng stream: same crop; the flip draw happens either way.
    a = transforms.train_image(image, never, np.random.default_rng(3))
    b = transforms.train_image(image, always, np.random.default_rng(3))
    np.testing.assert_array_equal(b, a[:, ::-1])


def test_train_transform_is_a_function_of_the_rng():
    image = _ramp(32, 32)
    options = _options(image_size=16)
    a = transforms.train_image(image, options, np.random.default_rng(5))
    b = transforms.train_image(image, options, np.random.default_rng(5))
    c = transforms.train_image(image, options, np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (16, 16, 3) and a.dtype == np.float32


def test_small_images_are_upsampled_before_cropping():
    up = transforms.upsample_to_min_side(_ramp(8, 12), 32)
    assert up.shape == (32, 48, 3)
    big = _ramp(40, 40)
    assert transforms.upsample_to_min_side(big, 32) is big


@pytest.mark.parametrize(
    "field,value",
    [
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.9, 0.5)),
        ("crop_pct", 1.5),
        ("hflip", 2),
        ("std", (0.2, 0.0, 0.2)),
        ("mean", (0.5, 0.5)),
        ("image_size", 0),
    ],
)
def test_bad_transform_options_name_the_field_and_value(field, value):
    with pytest.raises(ValueError, match=f"data.{field}") as error:
        _options(**{field: value})
    assert repr(value) in str(error.value)
