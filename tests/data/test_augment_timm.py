"""mixtok.data.augment against timm: every op on timm's own outputs, every draw against timm's formulas.

tests/fixtures/timm_augment (written by tools/make_timm_augment_fixtures.py with timm 1.0.31, torch and
Pillow; versions in its manifest.json) holds timm's outputs for small scikit-image photos with fixed
parameters. The applies are compared exactly: mixtok makes the same PIL calls timm makes (the enhancements,
autocontrast, equalize, the affine resampling, resize) and reproduces the per-value maps (posterize,
solarize, solarize-add, invert) as lookup tables, so there is no rounding difference to allow for. The draws
use numpy generators, not timm's Python `random` stream, so they are checked against timm's formulas and
against the statistics of many draws timm made.
"""

import hashlib
import json
import math
import os

import numpy as np
import pytest

from mixtok.data import augment

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "timm_augment")


@pytest.fixture(scope="module")
def manifest():
    with open(os.path.join(FIXTURES, "manifest.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def arrays():
    with np.load(os.path.join(FIXTURES, "timm_augment.npz")) as data:
        return {key: data[key] for key in data.files}


def test_the_fixture_file_is_the_one_the_manifest_describes(manifest):
    with open(os.path.join(FIXTURES, "timm_augment.npz"), "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == manifest["sha256"]


def _level_config(manifest) -> augment.RandAugmentConfig:
    hparams = manifest["level_hparams"]
    return augment.RandAugmentConfig(
        translate_const=hparams["translate_const"], translate_pct=hparams["translate_pct"], fill=hparams["img_mean"]
    )


# --- RandAugment ops -------------------------------------------------------------------------------------
def test_level_to_args_equals_timms_table_for_every_op_magnitude_and_sign(manifest):
    config = _level_config(manifest)
    checked = set()
    for row in manifest["level_table"]:
        if row["op"] in ("PosterizeOriginal", "GaussianBlurRand"):  # AutoAugment / 3-Augment only
            continue
        ours = augment.level_to_args(row["op"], row["magnitude"], row["negate"], config)
        assert list(ours) == pytest.approx(row["args"], abs=1e-12), row
        checked.add(row["op"])
    assert checked == set(augment.OP_NAMES)


def test_every_op_equals_timm_on_the_photos(manifest, arrays):
    seen = set()
    for k, case in enumerate(manifest["op_cases"]):
        for photo in ("astronaut", "chelsea"):
            key = f"op/{photo}/{k}"
            ours = augment.apply_op(
                arrays[f"input/{photo}"], case["op"], case["args"], resample=case["resample"], fill=case["fill"]
            )
            if "pil_error" in case:
                # Pillow 13 refuses posterize to 0 bits, which timm's Posterize asks for at M < 2.5; older
                # Pillow (and the TF reference) give a black image, which mixtok keeps.
                assert case["op"] == "Posterize" and case["args"] == [0]
                np.testing.assert_array_equal(ours, 0)
                continue
            assert ours.dtype == np.uint8
            np.testing.assert_array_equal(ours, arrays[key], err_msg=f"{key}: {case}")
        seen.add(case["op"])
    assert seen == set(augment.OP_NAMES)


def test_geometric_ops_fill_uncovered_pixels_with_the_fill_colour(arrays):
    image = arrays["input/astronaut"]
    out = augment.apply_op(image, "TranslateXRel", (0.5,), resample=2, fill=(1, 2, 3))
    # A shift by half the width uncovers the right half.
    np.testing.assert_array_equal(out[:, -10:], np.broadcast_to(np.uint8([1, 2, 3]), out[:, -10:].shape))


def test_whole_rand_augment_runs_equal_timms_recorded_runs(manifest, arrays):
    config = augment.rand_augment_config(manifest["chain_config"], augment.rand_augment_hparams(48, manifest["mean"]))
    applied = 0
    for k, chain in enumerate(manifest["chains"]):
        drawn = [augment.DrawnOp(op["op"], tuple(op["args"]), op["resample"]) for op in chain]
        for op in chain:
            assert tuple(op["fill"]) == config.fill
            assert op["op"] in config.ops
        ours = augment.apply_rand_augment(arrays["input/astronaut"], drawn, config)
        np.testing.assert_array_equal(ours, arrays[f"chain/{k}"], err_msg=f"chain {k}: {chain}")
        applied += len(chain)
    assert applied >= 10


# --- config strings ---------------------------------------------------------------------------------------
def test_config_strings_parse_as_timms_rand_augment_transform(manifest):
    hparams = manifest["config_hparams"]
    for config_str, timm in manifest["configs"].items():
        config = augment.rand_augment_config(config_str, hparams)
        assert list(config.ops) == timm["ops"], config_str
        if timm["weights"] is None:
            assert config.weights is None, config_str
        else:
            assert list(config.weights) == pytest.approx(timm["weights"]), config_str
        assert config.num_layers == timm["num_layers"], config_str
        assert config.prob == timm["prob"], config_str
        assert config.magnitude == timm["magnitude"], config_str
        assert config.magnitude_std == timm["magnitude_std"], config_str
        assert config.magnitude_max == timm["magnitude_max"], config_str
        assert list(config.fill) == timm["fill"], config_str
        assert config.translate_const == timm["translate_const"], config_str


def test_the_imagenet_configs_rand_augment_string_parses():
    # experiments/configs/imagenet/common.py names timm's rand-m9-mstd0.5-inc1 for every recipe.
    hparams = augment.rand_augment_hparams(224, (0.485, 0.456, 0.406))
    config = augment.rand_augment_config("rand-m9-mstd0.5-inc1", hparams)
    assert config.ops == augment.RAND_INCREASING_TRANSFORMS
    assert (config.magnitude, config.magnitude_std, config.num_layers, config.prob) == (9, 0.5, 2, 0.5)
    assert config.translate_const == 100 and config.fill == (124, 116, 104) and config.interpolation is None


def test_hparams_magnitude_std_and_a_fixed_interpolation_override_the_string():
    config = augment.rand_augment_config("rand-m9-mstd0.5", {"magnitude_std": 1.5, "interpolation": "bilinear"})
    assert config.magnitude_std == 1.5 and config.interpolation == 2
    assert augment.rand_augment_hparams(224, (0.5, 0.5, 0.5), "bicubic")["interpolation"] == 3


@pytest.mark.parametrize(
    "config_str, named",
    [
        ("rand-m9-foo1", "'foo1'"),
        ("rand-m9-mstd", "'mstd'"),
        ("rand-mx", "'mx'"),
        ("rand-m9.5", "'m9.5'"),
        ("rand-m9-tbogus", "'tbogus'"),
        ("augmix-m9", "'augmix-m9'"),
        ("rand-p1.5", "p=1.5"),
        ("rand-n20-tweights", "n must be at most 15"),
        ("", "''"),
    ],
)
def test_a_bad_config_string_gives_one_line_naming_it(config_str, named):
    with pytest.raises(ValueError) as error:
        augment.rand_augment_config(config_str)
    message = str(error.value)
    assert "\n" not in message and named in message and repr(config_str) in message


def test_unknown_op_and_interpolation_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="'Cutout'.*AutoContrast"):
        augment.apply_op(np.zeros((4, 4, 3), np.uint8), "Cutout", ())
    with pytest.raises(ValueError, match="'cubic'.*bicubic"):
        augment.rand_augment_config("rand-m9", {"interpolation": "cubic"})


# --- RandAugment draws ------------------------------------------------------------------------------------
def test_magnitude_noise_is_gaussian_clipped_to_zero_and_ten():
    config = augment.rand_augment_config("rand-m9-mstd0.5-inc1")
    rng = np.random.default_rng(0)
    draws = np.array([augment.draw_magnitude(config, rng) for _ in range(20000)])
    assert draws.min() >= 0 and draws.max() == 10.0
    # P(N(9, 0.5) >= 10) = P(Z >= 2) = 0.02275: the clipped mass sits exactly at 10.
    assert np.mean(draws == 10.0) == pytest.approx(0.02275, abs=0.004)
    inside = draws[draws < 10]
    assert inside.mean() == pytest.approx(9 - 0.5 * 0.05399 / (1 - 0.02275), abs=0.01)  # truncated normal mean


def test_mmax_raises_the_clip_and_mstd_above_100_is_uniform():
    rng = np.random.default_rng(1)
    config = augment.rand_augment_config("rand-m10-mmax15-mstd2")
    draws = np.array([augment.draw_magnitude(config, rng) for _ in range(5000)])
    assert draws.max() > 12 and draws.max() <= 15
    uniform = augment.rand_augment_config("rand-m8-mstd101")
    assert uniform.magnitude_std == float("inf")
    draws = np.array([augment.draw_magnitude(uniform, rng) for _ in range(20000)])
    assert draws.min() >= 0 and draws.max() <= 8
    assert draws.mean() == pytest.approx(4.0, abs=0.1) and draws.std() == pytest.approx(8 / math.sqrt(12), abs=0.1)


def test_rand_augment_draws_follow_timms_choices():
    config = augment.rand_augment_config("rand-m9-mstd0.5-inc1")
    rng = np.random.default_rng(2)
    names, lengths, signs, resamples = [], [], [], []
    for _ in range(4000):
        drawn = augment.draw_rand_augment(config, rng)
        lengths.append(len(drawn))
        for op in drawn:
            names.append(op.name)
            if op.name == "Rotate":
                signs.append(op.args[0] > 0)
                assert abs(op.args[0]) <= 30
            if augment.op_is_geometric(op.name):
                resamples.append(op.resample)
    # Two ops, each kept with p 0.5: 0, 1, 2 ops with chances 1/4, 1/2, 1/4.
    assert np.bincount(lengths, minlength=3) / len(lengths) == pytest.approx([0.25, 0.5, 0.25], abs=0.03)
    counts = np.array([names.count(name) for name in config.ops]) / len(names)
    assert counts == pytest.approx(np.full(15, 1 / 15), abs=0.015)
    assert np.mean(signs) == pytest.approx(0.5, abs=0.08)
    assert set(resamples) == {2, 3} and np.mean(np.array(resamples) == 3) == pytest.approx(0.5, abs=0.05)


def test_weighted_op_sets_draw_distinct_ops_by_weight():
    config = augment.rand_augment_config("rand-m9-n3-p1.0-tweights")
    rng = np.random.default_rng(3)
    counts = dict.fromkeys(config.ops, 0)
    for _ in range(3000):
        drawn = augment.draw_rand_augment(config, rng)
        assert len({op.name for op in drawn}) == 3
        for op in drawn:
            counts[op.name] += 1
    assert counts["Rotate"] > counts["ShearX"] > counts["TranslateXRel"] > counts["Invert"]


def test_rand_augment_is_a_function_of_the_generator_seed(arrays):
    config = augment.rand_augment_config("rand-m9-mstd0.5-inc1", augment.rand_augment_hparams(48, (0.5, 0.5, 0.5)))
    image = arrays["input/chelsea"]
    first = [augment.rand_augment(image, config, np.random.default_rng(seed)) for seed in range(6)]
    again = [augment.rand_augment(image, config, np.random.default_rng(seed)) for seed in range(6)]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(first[0], other) for other in first[1:])


# --- random erasing ---------------------------------------------------------------------------------------
def test_erasing_with_timms_boxes_and_values_equals_timm(manifest, arrays):
    image = arrays["erase/input"]
    # The fixture's normalisation is torch's (x / 255 - mean) / std on the astronaut photo.
    mean, std = np.float32(manifest["mean"]), np.float32(manifest["std"])
    np.testing.assert_allclose(image, (arrays["input/astronaut"] / np.float32(255) - mean) / std, atol=1e-6)
    for k, case in enumerate(manifest["erasing"]):
        boxes = [
            augment.ErasedBox(b["top"], b["left"], b["height"], b["width"], arrays[f"erase/{k}/values/{i}"])
            for i, b in enumerate(case["boxes"])
        ]
        assert boxes, case
        ours = augment.apply_random_erasing(image, boxes)
        np.testing.assert_array_equal(ours, arrays[f"erase/{k}/output"], err_msg=str(case))
        value_shape = (1, 1, 3) if case["mode"] != "pixel" else None
        for box in boxes:
            assert box.values.shape == (value_shape or (box.height, box.width, 3))
    np.testing.assert_array_equal(image, arrays["erase/input"])  # the input is not written to


def _box_statistics(heights, widths):
    heights, widths = np.asarray(heights, float), np.asarray(widths, float)
    return np.array([heights.mean(), widths.mean(), (heights * widths).mean(), np.log(heights / widths).std()])


@pytest.mark.parametrize("max_count", [1, 3])
def test_erasing_boxes_match_timms_sampled_boxes(manifest, arrays, max_count):
    stats = manifest["erase_stats"][str(max_count)]
    timm_rows = arrays[f"erase_stats/{max_count}"]
    height, width = stats["height"], stats["width"]
    config = augment.RandomErasingConfig(probability=1.0, mode="const", max_count=max_count)
    rng = np.random.default_rng(4)
    ours, counts = [], []
    for _ in range(stats["images"]):
        boxes = augment.draw_random_erasing(height, width, 3, config, rng)
        counts.append(len(boxes))
        for box in boxes:
            assert 0 <= box.top and box.top + box.height <= height and box.height < height
            assert 0 <= box.left and box.left + box.width <= width and box.width < width
            ours.append((box.height, box.width))
    ours = np.array(ours)
    timm_counts = np.bincount(timm_rows[:, 0], minlength=stats["images"])
    assert np.mean(counts) == pytest.approx(timm_counts.mean(), rel=0.05)
    np.testing.assert_allclose(
        _box_statistics(ours[:, 0], ours[:, 1]), _box_statistics(timm_rows[:, 3], timm_rows[:, 4]), rtol=0.06
    )
    # Before rounding a box's area is within [0.02, 1/3] of the image over the count, its height / width in
    # [0.3, 1 / 0.3]; rounding each side moves these by at most half a pixel.
    area = ours[:, 0] * ours[:, 1]
    count = max(counts) if max_count > 1 else 1
    assert area.max() <= (math.sqrt(height * width / 3) + 1) ** 2
    assert area.min() >= (math.sqrt(0.02 * height * width / count) - 1) ** 2
    aspect = ours[:, 0] / np.maximum(ours[:, 1], 1)
    assert aspect.min() >= 0.3 * 0.8 and aspect.max() <= (1 / 0.3) * 1.25


def test_erasing_probability_modes_and_seeds():
    rng = np.random.default_rng(5)
    config = augment.RandomErasingConfig(probability=0.25, mode="pixel")
    erased = [bool(augment.draw_random_erasing(32, 32, 3, config, rng)) for _ in range(8000)]
    assert np.mean(erased) == pytest.approx(0.25, abs=0.02)
    image = np.full((32, 40, 3), 7.0, np.float32)
    for mode in augment.ERASING_MODES:
        config = augment.RandomErasingConfig(probability=1.0, mode=mode)
        out = augment.random_erasing(image, config, np.random.default_rng(6))
        np.testing.assert_array_equal(out, augment.random_erasing(image, config, np.random.default_rng(6)))
        box = out != 7.0
        assert box.any()
        patch = out[box.any(axis=2)]
        if mode == "const":
            np.testing.assert_array_equal(patch, 0)
        elif mode == "rand":
            np.testing.assert_array_equal(patch, np.broadcast_to(patch[0], patch.shape))
        else:
            assert len(np.unique(patch)) > patch.size // 2
    with pytest.raises(ValueError, match="'noise'.*const, rand, pixel"):
        augment.RandomErasingConfig(mode="noise")


# --- random resized crop and the eval transform --------------------------------------------------------------
def test_resized_crop_with_timms_boxes_equals_timm(manifest, arrays):
    for k, case in enumerate(manifest["rrc_cases"]):
        for photo, box in case["boxes"].items():
            crop = augment.ResizedCrop(*box, augment.INTERPOLATIONS[case["interpolation"]])
            ours = augment.apply_resized_crop(arrays[f"input/{photo}"], crop, manifest["rrc_size"])
            np.testing.assert_array_equal(ours, arrays[f"rrc/{photo}/{k}"], err_msg=f"{photo} {case}")


@pytest.mark.parametrize("index", [0, 1])
def test_resized_crop_boxes_match_timms_sampled_boxes(manifest, arrays, index):
    stats = manifest["rrc_stats"][index]
    timm_rows = arrays[f"rrc_stats/{index}"]
    height, width = stats["height"], stats["width"]
    rng = np.random.default_rng(7)
    crops = [
        augment.draw_resized_crop(height, width, rng, tuple(stats["scale"]), tuple(stats["ratio"]))
        for _ in range(stats["draws"])
    ]
    ours = np.array([(c.top, c.left, c.height, c.width) for c in crops])
    assert (ours[:, 0] >= 0).all() and (ours[:, 0] + ours[:, 2] <= height).all()
    assert (ours[:, 1] >= 0).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    for column in range(4):
        assert ours[:, column].mean() == pytest.approx(timm_rows[:, column].mean(), rel=0.06, abs=0.3), column
    # The fallback (every try failed): timm's largest centred crop within the aspect range.
    fallback = lambda rows: np.mean((rows[:, 2] == height) & (rows[:, 3] == round(height * 4 / 3)))  # noqa: E731
    assert fallback(ours) == pytest.approx(fallback(timm_rows), abs=0.035)
    resamples = np.array([c.resample for c in crops])
    assert set(resamples) == {2, 3} and np.mean(resamples == 3) == pytest.approx(0.5, abs=0.05)


def test_random_resized_crop_is_a_function_of_the_seed(arrays):
    image = arrays["input/coffee"]
    a = augment.random_resized_crop(image, 24, np.random.default_rng(8))
    b = augment.random_resized_crop(image, 24, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (24, 24, 3)
    assert augment.draw_resized_crop(56, 56, np.random.default_rng(0), interpolation="bicubic").resample == 3


def test_eval_resize_and_center_crop_equals_timm(manifest, arrays):
    for photo in ("astronaut", "chelsea", "coffee"):
        for k, case in enumerate(manifest["eval_cases"]):
            ours = augment.eval_resize_and_center_crop(
                arrays[f"input/{photo}"], case["size"], case["crop_pct"], case["interpolation"]
            )
            np.testing.assert_array_equal(ours, arrays[f"eval/{photo}/{k}"], err_msg=f"{photo} {case}")
