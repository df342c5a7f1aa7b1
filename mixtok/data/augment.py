"""timm's training augmentations on uint8 / float32 [H, W, C] numpy images, one image at a time.

Each piece follows a file of timm (huggingface/pytorch-image-models) so that the same image with the same
random choices gives timm's result, and is split into a draw (every random choice, from an explicit
`numpy.random.Generator`) and an apply (a pure function of the image and the drawn parameters):

- RandAugment (timm/data/auto_augment.py: `rand_augment_transform`, `RandAugment`, `AugmentOp`, the
  `*_level_to_arg` functions and the `_RAND_TRANSFORMS` / `_RAND_INCREASING_TRANSFORMS` / weighted op lists):
  `rand_augment_config` parses timm's config strings (`rand-m9-mstd0.5-inc1`), `draw_rand_augment` picks the
  ops and their arguments, `apply_rand_augment` / `apply_op` run them with PIL as timm does;
- random erasing (timm/data/random_erasing.py `RandomErasing`), on the normalised float image as timm applies
  it after `Normalize`: `draw_random_erasing`, `apply_random_erasing`;
- random resized crop with random interpolation (timm/data/transforms.py `RandomResizedCropAndInterpolation`,
  torchvision's `resized_crop`): `draw_resized_crop`, `apply_resized_crop`;
- the evaluation resize and centre crop (timm/data/transforms_factory.py `transforms_imagenet_eval`, with
  torchvision's `Resize(int)` and `CenterCrop`): `eval_resize_and_center_crop`.

tests/data/test_augment_timm.py compares every apply with timm's own functions on fixed parameters
(tests/fixtures/timm_augment, written by tools/make_timm_augment_fixtures.py) and every draw with timm's
formulas and sampled statistics. timm draws from Python's `random` and `np.random` globals; here every
choice comes from the generator passed in (grain hands one to each example), so a transform is a pure
function of (image, rng), but the same seed does not reproduce timm's stream.

Where timm accepts a malformed config string silently (a section without a number, an unknown `t` set), this
parser raises a one-line ValueError naming it instead.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

_Resampling = Image.Resampling
INTERPOLATIONS = {
    "nearest": _Resampling.NEAREST,
    "bilinear": _Resampling.BILINEAR,
    "bicubic": _Resampling.BICUBIC,
    "box": _Resampling.BOX,
    "hamming": _Resampling.HAMMING,
    "lanczos": _Resampling.LANCZOS,
}
# timm's 'random' interpolation (auto_augment.py `_RANDOM_INTERPOLATION`): one of these per op / crop.
RANDOM_INTERPOLATIONS = (_Resampling.BILINEAR, _Resampling.BICUBIC)

# Magnitudes M are on a 0..10 scale: an op's argument is its range times M / 10 (auto_augment.py _LEVEL_DENOM).
_LEVEL_DENOM = 10.0
_DEFAULT_FILL = (128, 128, 128)
_DEFAULT_TRANSLATE_CONST = 250
_DEFAULT_TRANSLATE_PCT = 0.45

RAND_TRANSFORMS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "Posterize",
    "Solarize",
    "SolarizeAdd",
    "Color",
    "Contrast",
    "Brightness",
    "Sharpness",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
# `inc1`: the ops whose severity grows with the magnitude (Posterize keeps fewer bits, Solarize a lower
# threshold, the enhancements move further from 1 in a random direction).
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast",
    "Equalize",
    "Invert",
    "Rotate",
    "PosterizeIncreasing",
    "SolarizeIncreasing",
    "SolarizeAdd",
    "ColorIncreasing",
    "ContrastIncreasing",
    "BrightnessIncreasing",
    "SharpnessIncreasing",
    "ShearX",
    "ShearY",
    "TranslateXRel",
    "TranslateYRel",
)
# The `t<name>` op sets of rand_augment_choices: weighted sets are drawn without replacement.
RAND_WEIGHTED_0 = {
    "Rotate": 3,
    "ShearX": 2,
    "ShearY": 2,
    "TranslateXRel": 1,
    "TranslateYRel": 1,
    "ColorIncreasing": 0.25,
    "SharpnessIncreasing": 0.25,
    "AutoContrast": 0.25,
    "SolarizeIncreasing": 0.05,
    "SolarizeAdd": 0.05,
    "ContrastIncreasing": 0.05,
    "BrightnessIncreasing": 0.05,
    "Equalize": 0.05,
    "PosterizeIncreasing": 0.05,
    "Invert": 0.05,
}
RAND_3A = ("SolarizeIncreasing", "Desaturate", "GaussianBlur")
RAND_WEIGHTED_3A = {
    "SolarizeIncreasing": 6,
    "Desaturate": 6,
    "GaussianBlur": 6,
    "Rotate": 3,
    "ShearX": 2,
    "ShearY": 2,
    "PosterizeIncreasing": 1,
    "AutoContrast": 1,
    "ColorIncreasing": 1,
    "SharpnessIncreasing": 1,
    "ContrastIncreasing": 1,
    "BrightnessIncreasing": 1,
    "Equalize": 1,
    "Invert": 1,
}
_OP_SETS: dict[str, Sequence[str] | Mapping[str, float]] = {
    "weights": RAND_WEIGHTED_0,
    "3a": RAND_3A,
    "3aw": RAND_WEIGHTED_3A,
}


# ---------------------------------------------------------------------------------------------- level -> args
def _fraction(magnitude: float) -> float:
    return magnitude / _LEVEL_DENOM


def _sign(value: float, negate: bool) -> float:
    return -value if negate else value


def _enhance(magnitude: float, negate: bool, config: RandAugmentConfig) -> tuple:
    return (_fraction(magnitude) * 1.8 + 0.1,)  # 0.1 .. 1.9


def _enhance_increasing(magnitude: float, negate: bool, config: RandAugmentConfig) -> tuple:
    # 1.0 is 'no change'; the factor moves towards 0.1 or 1.9 as M grows, never below 0.1.
    return (max(0.1, 1.0 + _sign(_fraction(magnitude) * 0.9, negate)),)


def _posterize(magnitude: float, negate: bool, config: RandAugmentConfig) -> tuple:
    return (int(_fraction(magnitude) * 4),)  # bits kept 0 .. 4


def _solarize(magnitude: float, negate: bool, config: RandAugmentConfig) -> tuple:
    return (min(256, int(_fraction(magnitude) * 256)),)  # threshold 0 .. 256


def _minmax(low: float, high: float) -> Callable:
    def level(magnitude: float, negate: bool, config: RandAugmentConfig) -> tuple:
        return (max(low, min(high, low + (high - low) * _fraction(magnitude))),)

    return level


# name -> (level-to-args function or None, randomly negated, geometric (takes resample and fill)).
_LEVELS: dict[str, tuple[Callable | None, bool, bool]] = {
    "AutoContrast": (None, False, False),
    "Equalize": (None, False, False),
    "Invert": (None, False, False),
    "Rotate": (lambda m, neg, c: (_sign(_fraction(m) * 30.0, neg),), True, True),
    "Posterize": (_posterize, False, False),
    "PosterizeIncreasing": (lambda m, neg, c: (4 - _posterize(m, neg, c)[0],), False, False),
    "Solarize": (_solarize, False, False),
    "SolarizeIncreasing": (lambda m, neg, c: (256 - _solarize(m, neg, c)[0],), False, False),
    "SolarizeAdd": (lambda m, neg, c: (min(128, int(_fraction(m) * 110)),), False, False),
    "Color": (_enhance, False, False),
    "ColorIncreasing": (_enhance_increasing, True, False),
    "Contrast": (_enhance, False, False),
    "ContrastIncreasing": (_enhance_increasing, True, False),
    "Brightness": (_enhance, False, False),
    "BrightnessIncreasing": (_enhance_increasing, True, False),
    "Sharpness": (_enhance, False, False),
    "SharpnessIncreasing": (_enhance_increasing, True, False),
    "ShearX": (lambda m, neg, c: (_sign(_fraction(m) * 0.3, neg),), True, True),
    "ShearY": (lambda m, neg, c: (_sign(_fraction(m) * 0.3, neg),), True, True),
    "TranslateX": (lambda m, neg, c: (_sign(_fraction(m) * float(c.translate_const), neg),), True, True),
    "TranslateY": (lambda m, neg, c: (_sign(_fraction(m) * float(c.translate_const), neg),), True, True),
    "TranslateXRel": (lambda m, neg, c: (_sign(_fraction(m) * c.translate_pct, neg),), True, True),
    "TranslateYRel": (lambda m, neg, c: (_sign(_fraction(m) * c.translate_pct, neg),), True, True),
    "Desaturate": (_minmax(0.5, 1.0), False, False),
    "GaussianBlur": (_minmax(0.1, 2.0), False, False),
}
OP_NAMES = tuple(_LEVELS)


def op_is_signed(name: str) -> bool:
    """Whether timm negates the op's argument with probability 1/2 (`_randomly_negate`)."""
    return _LEVELS[_check_op_name(name)][1]


def op_is_geometric(name: str) -> bool:
    """Whether the op resamples the image (and so takes an interpolation and a fill colour)."""
    return _LEVELS[_check_op_name(name)][2]


def level_to_args(name: str, magnitude: float, negate: bool = False, config: RandAugmentConfig | None = None) -> tuple:
    """The op's arguments at `magnitude` (already noised and clipped), as timm's LEVEL_TO_ARG[name] gives them.

    `negate` stands for timm's coin flip in `_randomly_negate` (used by signed ops only); `config` supplies
    translate_const / translate_pct.
    """
    level, _, _ = _LEVELS[_check_op_name(name)]
    if level is None:
        return ()
    return tuple(level(magnitude, negate, config or RandAugmentConfig()))


def _check_op_name(name: str) -> str:
    if name not in _LEVELS:
        raise ValueError(f"Unknown RandAugment op {name!r}; valid ops: {', '.join(_LEVELS)}.")
    return name


# ------------------------------------------------------------------------------------------------------ ops
def _affine(image: Image.Image, coefficients: tuple, resample: int, fill: tuple) -> Image.Image:
    return image.transform(image.size, Image.AFFINE, coefficients, resample=resample, fillcolor=fill)


def _point(image: Image.Image, values: np.ndarray) -> Image.Image:
    """Maps every value v of every band to values[v] (`Image.point` with the table repeated per band)."""
    return image.point(values.astype(np.uint8).tolist() * len(image.getbands()))


_VALUES = np.arange(256)


def _posterize_op(image: Image.Image, bits: int) -> Image.Image:
    # Keeping b bits masks the low 8 - b bits; b >= 8 leaves the image alone (timm's `posterize`). b = 0 (timm's
    # Posterize below M 2.5, PosterizeIncreasing at M 10) gives black, as Pillow's ImageOps.posterize did before
    # it began to refuse bits outside 1..8 (Pillow 13 raises ValueError there, so timm fails on such a draw).
    if bits >= 8:
        return image
    return _point(image, _VALUES & ((0xFF << (8 - int(bits))) & 0xFF))


def _solarize_op(image: Image.Image, threshold: float) -> Image.Image:
    # PIL's ImageOps.solarize: values at or above the threshold are inverted.
    return _point(image, np.where(_VALUES >= threshold, 255 - _VALUES, _VALUES))


def _solarize_add(image: Image.Image, add: int, threshold: int = 128) -> Image.Image:
    return _point(image, np.where(_VALUES < threshold, np.minimum(255, _VALUES + add), _VALUES))


# Each op takes and returns a PIL image, so that a chain of ops (RandAugment, and the crop and flip before it)
# converts between numpy and PIL once at each end (`apply_rand_augment_pil`). Colour ops: (image, *args).
# Geometric ops: (image, *args, resample=, fill=). PIL where timm uses PIL (the enhancements, autocontrast,
# equalize and the resampling ops); a lookup table (`Image.point`) where the op is a per-value map.
_OPS: dict[str, Callable[..., Image.Image]] = {
    "AutoContrast": ImageOps.autocontrast,
    "Equalize": ImageOps.equalize,
    "Invert": lambda image: _point(image, 255 - _VALUES),
    "Rotate": lambda im, degrees, resample, fill: im.rotate(degrees, resample=resample, fillcolor=fill),
    "Posterize": _posterize_op,
    "Solarize": _solarize_op,
    "SolarizeAdd": _solarize_add,
    "Color": lambda im, factor: ImageEnhance.Color(im).enhance(factor),
    "Contrast": lambda im, factor: ImageEnhance.Contrast(im).enhance(factor),
    "Brightness": lambda im, factor: ImageEnhance.Brightness(im).enhance(factor),
    "Sharpness": lambda im, factor: ImageEnhance.Sharpness(im).enhance(factor),
    "ShearX": lambda im, s, resample, fill: _affine(im, (1, s, 0, 0, 1, 0), resample, fill),
    "ShearY": lambda im, s, resample, fill: _affine(im, (1, 0, 0, s, 1, 0), resample, fill),
    "TranslateX": lambda im, px, resample, fill: _affine(im, (1, 0, px, 0, 1, 0), resample, fill),
    "TranslateY": lambda im, px, resample, fill: _affine(im, (1, 0, 0, 0, 1, px), resample, fill),
    "TranslateXRel": lambda im, pct, resample, fill: _affine(im, (1, 0, pct * im.size[0], 0, 1, 0), resample, fill),
    "TranslateYRel": lambda im, pct, resample, fill: _affine(im, (1, 0, 0, 0, 1, pct * im.size[1]), resample, fill),
    # Desaturate's argument is the amount of grey: Color enhance factor 1 - amount, clipped to [0, 1].
    "Desaturate": lambda im, amount: ImageEnhance.Color(im).enhance(min(1.0, max(0.0, 1.0 - amount))),
    "GaussianBlur": lambda im, radius: im.filter(ImageFilter.GaussianBlur(radius=radius)),
}
for _increasing, _base in (
    ("PosterizeIncreasing", "Posterize"),
    ("SolarizeIncreasing", "Solarize"),
    ("ColorIncreasing", "Color"),
    ("ContrastIncreasing", "Contrast"),
    ("BrightnessIncreasing", "Brightness"),
    ("SharpnessIncreasing", "Sharpness"),
):
    _OPS[_increasing] = _OPS[_base]


def apply_op_pil(
    image: Image.Image,
    name: str,
    args: Sequence[float],
    *,
    resample: int = _Resampling.BICUBIC,
    fill: Sequence[int] = _DEFAULT_FILL,
) -> Image.Image:
    """`apply_op` on a PIL image, returning one."""
    op = _OPS[_check_op_name(name)]
    if op_is_geometric(name):
        return op(image, *args, resample=int(resample), fill=tuple(int(v) for v in fill))
    return op(image, *args)


def apply_op(
    image: np.ndarray,
    name: str,
    args: Sequence[float],
    *,
    resample: int = _Resampling.BICUBIC,
    fill: Sequence[int] = _DEFAULT_FILL,
) -> np.ndarray:
    """Applies RandAugment op `name` with its drawn `args` to a uint8 [H, W, 3] image (timm's NAME_TO_OP).

    `resample` (a PIL filter) and `fill` (the colour of uncovered pixels) matter for geometric ops only.
    """
    return np.asarray(apply_op_pil(Image.fromarray(image), name, args, resample=resample, fill=fill))


# ---------------------------------------------------------------------------------------------- RandAugment
@dataclasses.dataclass(frozen=True)
class RandAugmentConfig:
    """A parsed RandAugment configuration (timm's `rand_augment_transform` arguments and hparams).

    ops / weights      the op names to choose from; with weights, `num_layers` distinct ops are drawn with
                       those probabilities, without weights `num_layers` ops with replacement
    magnitude          M on the 0..10 scale; magnitude_std > 0 adds Gaussian noise to it per op (inf: uniform
                       in [0, M]), and it is clipped to [0, magnitude_max or 10]
    prob               each chosen op runs with this probability
    translate_const    TranslateX/Y range in pixels; translate_pct: TranslateXRel/YRel range as a fraction
    fill               colour of the pixels a geometric op uncovers (timm: the mean colour, hparams img_mean)
    interpolation      a PIL filter for geometric ops, or None for timm's random bilinear / bicubic per op
    """

    ops: tuple[str, ...] = RAND_TRANSFORMS
    weights: tuple[float, ...] | None = None
    num_layers: int = 2
    magnitude: float = 10.0
    prob: float = 0.5
    magnitude_std: float = 0.0
    magnitude_max: float | None = None
    translate_const: float = _DEFAULT_TRANSLATE_CONST
    translate_pct: float = _DEFAULT_TRANSLATE_PCT
    fill: tuple[int, ...] = _DEFAULT_FILL
    interpolation: int | None = None


def rand_augment_hparams(
    image_size: int | Sequence[int], mean: Sequence[float], interpolation: str = "random"
) -> dict[str, Any]:
    """The hparams timm's transforms_imagenet_train passes to RandAugment (transforms_factory.py aa_params).

    translate_const is 0.45 of the smaller image side, the fill colour the mean in 0..255, and a fixed
    interpolation (anything but 'random') replaces the random bilinear / bicubic choice.
    """
    smaller = min(image_size) if isinstance(image_size, Sequence) else image_size
    hparams: dict[str, Any] = {
        "translate_const": int(smaller * 0.45),
        "img_mean": tuple(min(255, round(255 * x)) for x in mean),
    }
    if interpolation and interpolation != "random":
        hparams["interpolation"] = _interpolation(interpolation)
    return hparams


_SECTION = re.compile(r"([a-z]+)(\d.*)")
_SECTION_HELP = "m<int>, n<int>, p<float>, mstd<float>, mmax<int>, inc<0|1>, t<weights|3a|3aw>"


def rand_augment_config(config_str: str, hparams: Mapping[str, Any] | None = None) -> RandAugmentConfig:
    """Parses timm's RandAugment string (`rand-m9-mstd0.5-inc1`) as timm's rand_augment_transform does.

    Sections after 'rand', any order: m magnitude (default 10), n ops per image (2), p probability of each op
    (0.5), mstd magnitude noise std (0; above 100 means uniform in [0, m]), mmax magnitude clip (10), inc
    increasing-severity ops (0), t an op set (weights, 3a, 3aw). hparams as timm's: translate_const,
    translate_pct, img_mean, interpolation (a PIL filter or its name), and magnitude_std / magnitude_max,
    which, as in timm (`setdefault`), win over the string's mstd / mmax. A bad string raises a one-line
    ValueError naming it.
    """
    if not isinstance(config_str, str) or not config_str:
        raise ValueError(f"RandAugment config {config_str!r} is not a string like 'rand-m9-mstd0.5-inc1'.")
    sections = config_str.split("-")
    if sections[0] != "rand":
        raise ValueError(f"RandAugment config {config_str!r} must start with 'rand-' (e.g. 'rand-m9-mstd0.5-inc1').")
    hparams = dict(hparams or {})
    values: dict[str, Any] = {"magnitude": _LEVEL_DENOM, "num_layers": 2, "prob": 0.5}
    increasing = False
    op_set = None
    for section in sections[1:]:
        if section.startswith("t"):
            op_set = section[1:]
            if op_set not in _OP_SETS:
                raise ValueError(
                    f"RandAugment config {config_str!r}: unknown op set {section!r}; valid: "
                    + ", ".join(f"t{name}" for name in _OP_SETS)
                    + "."
                )
            continue
        match = _SECTION.fullmatch(section)
        key = match.group(1) if match else None
        parsers = {"m": int, "n": int, "p": float, "mstd": float, "mmax": int, "inc": int}
        if key not in parsers:
            raise ValueError(f"RandAugment config {config_str!r}: bad section {section!r}; valid: {_SECTION_HELP}.")
        try:
            value = parsers[key](match.group(2))
        except ValueError:
            raise ValueError(
                f"RandAugment config {config_str!r}: section {section!r} needs {parsers[key].__name__} "
                f"after {key!r}; valid: {_SECTION_HELP}."
            ) from None
        if key == "mstd":
            hparams.setdefault("magnitude_std", float("inf") if value > 100 else value)
        elif key == "mmax":
            hparams.setdefault("magnitude_max", value)
        elif key == "inc":
            increasing = bool(value)
        else:
            values[{"m": "magnitude", "n": "num_layers", "p": "prob"}[key]] = value
    if not 0 <= values["prob"] <= 1 or values["num_layers"] < 0 or hparams.get("magnitude_std", 0) < 0:
        raise ValueError(
            f"RandAugment config {config_str!r}: needs 0 <= p <= 1, n >= 0 and mstd >= 0, got p={values['prob']}, "
            f"n={values['num_layers']}, mstd={hparams.get('magnitude_std', 0)}."
        )
    if op_set is None:
        ops: Sequence[str] | Mapping[str, float] = RAND_INCREASING_TRANSFORMS if increasing else RAND_TRANSFORMS
    else:
        ops = _OP_SETS[op_set]
    weights = None
    if isinstance(ops, Mapping):
        total = float(sum(ops.values()))
        weights = tuple(float(w) / total for w in ops.values())
        if values["num_layers"] > len(ops):
            raise ValueError(
                f"RandAugment config {config_str!r}: weighted op set t{op_set} draws distinct ops, so n must be "
                f"at most {len(ops)}, got {values['num_layers']}."
            )
    interpolation = hparams.get("interpolation")
    return RandAugmentConfig(
        ops=tuple(ops),
        weights=weights,
        num_layers=values["num_layers"],
        magnitude=float(values["magnitude"]),
        prob=float(values["prob"]),
        magnitude_std=float(hparams.get("magnitude_std", 0.0)),
        magnitude_max=hparams.get("magnitude_max"),
        translate_const=hparams.get("translate_const", _DEFAULT_TRANSLATE_CONST),
        translate_pct=hparams.get("translate_pct", _DEFAULT_TRANSLATE_PCT),
        fill=tuple(hparams.get("img_mean", _DEFAULT_FILL)),
        interpolation=None if interpolation is None else _interpolation(interpolation),
    )


@dataclasses.dataclass(frozen=True)
class DrawnOp:
    """One op as drawn for one image: its name, its arguments and (geometric ops) its PIL filter."""

    name: str
    args: tuple
    resample: int = _Resampling.BICUBIC


def draw_magnitude(config: RandAugmentConfig, rng: np.random.Generator) -> float:
    """The op's magnitude: M plus N(0, mstd) noise (uniform in [0, M] for mstd inf), clipped to [0, mmax or 10].

    timm's AugmentOp.__call__; an mmax of 0 means the default 10 there too.
    """
    magnitude = config.magnitude
    if config.magnitude_std == float("inf"):
        magnitude = rng.uniform(0.0, magnitude)
    elif config.magnitude_std > 0:
        magnitude = rng.normal(magnitude, config.magnitude_std)
    upper = config.magnitude_max or _LEVEL_DENOM
    return float(max(0.0, min(magnitude, upper)))


def draw_rand_augment(config: RandAugmentConfig, rng: np.random.Generator) -> list[DrawnOp]:
    """Every random choice RandAugment makes for one image, in the order the ops will run.

    timm's RandAugment.__call__ and AugmentOp.__call__: pick num_layers ops (weighted: distinct); each runs
    with probability `prob` (skipped ops are left out of the list); draw its magnitude, the sign of signed
    ops, and the interpolation of geometric ops.
    """
    chosen = rng.choice(len(config.ops), size=config.num_layers, replace=config.weights is None, p=config.weights)
    drawn = []
    for index in chosen:
        name = config.ops[int(index)]
        if config.prob < 1.0 and rng.random() > config.prob:
            continue
        magnitude = draw_magnitude(config, rng)
        negate = bool(rng.random() > 0.5) if op_is_signed(name) else False
        resample = _Resampling.BICUBIC
        if op_is_geometric(name):
            resample = config.interpolation
            if resample is None:
                resample = RANDOM_INTERPOLATIONS[int(rng.integers(len(RANDOM_INTERPOLATIONS)))]
        drawn.append(DrawnOp(name, level_to_args(name, magnitude, negate, config), int(resample)))
    return drawn


def apply_rand_augment_pil(image: Image.Image, drawn: Sequence[DrawnOp], config: RandAugmentConfig) -> Image.Image:
    """Runs the drawn ops in order on an RGB PIL image (no conversion between ops)."""
    for op in drawn:
        image = apply_op_pil(image, op.name, op.args, resample=op.resample, fill=config.fill)
    return image


def apply_rand_augment(image: np.ndarray, drawn: Sequence[DrawnOp], config: RandAugmentConfig) -> np.ndarray:
    """Runs the drawn ops in order on a uint8 [H, W, 3] image."""
    return np.asarray(apply_rand_augment_pil(Image.fromarray(np.ascontiguousarray(image)), drawn, config))


def rand_augment(image: np.ndarray, config: RandAugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """RandAugment of one uint8 [H, W, 3] image: draw, then apply."""
    return apply_rand_augment(image, draw_rand_augment(config, rng), config)


# ------------------------------------------------------------------------------------------- random erasing
ERASING_MODES = ("const", "rand", "pixel")


@dataclasses.dataclass(frozen=True)
class RandomErasingConfig:
    """timm's RandomErasing options (random_erasing.py; its defaults).

    probability        chance that an image is erased at all
    min_area/max_area  each box covers this fraction of the image, divided by the image's box count
    min_aspect         box height / width is log-uniform in [min_aspect, max_aspect or 1 / min_aspect]
    mode               'const' zeros, 'rand' one N(0, 1) colour per box, 'pixel' N(0, 1) per pixel and channel
    min/max_count      boxes per image, uniform in [min_count, max_count or min_count]
    """

    probability: float = 0.5
    min_area: float = 0.02
    max_area: float = 1 / 3
    min_aspect: float = 0.3
    max_aspect: float | None = None
    mode: str = "const"
    min_count: int = 1
    max_count: int | None = None

    def __post_init__(self):
        if self.mode not in ERASING_MODES:
            raise ValueError(f"Random erasing mode {self.mode!r} is not one of {', '.join(ERASING_MODES)}.")
        if not 0 <= self.probability <= 1 or not 0 < self.min_area <= self.max_area or self.min_aspect <= 0:
            raise ValueError(
                f"Random erasing needs 0 <= probability <= 1, 0 < min_area <= max_area and min_aspect > 0, got "
                f"probability={self.probability}, min_area={self.min_area}, max_area={self.max_area}, "
                f"min_aspect={self.min_aspect}."
            )
        if self.min_count < 1 or (self.max_count is not None and self.max_count < self.min_count):
            raise ValueError(
                f"Random erasing needs 1 <= min_count <= max_count, got {self.min_count}, {self.max_count}."
            )


@dataclasses.dataclass(frozen=True)
class ErasedBox:
    """One erased rectangle: rows top..top+height, columns left..left+width, set to `values`.

    values is [height, width, C] ('pixel') or [1, 1, C] ('const', 'rand'), broadcast over the box.
    """

    top: int
    left: int
    height: int
    width: int
    values: np.ndarray


def draw_random_erasing(
    height: int, width: int, channels: int, config: RandomErasingConfig, rng: np.random.Generator
) -> list[ErasedBox]:
    """The boxes (and their fill values) timm's RandomErasing._erase would erase in one [H, W, C] image.

    Erase with `probability`; draw the box count; per box up to 10 tries of area (uniform, divided by the
    count) and aspect (log-uniform), rounded to integer sides, kept if both sides are smaller than the image;
    then a uniform position. A box whose 10 tries all fail is skipped, as in timm.
    """
    if rng.random() > config.probability:
        return []
    max_count = config.max_count or config.min_count
    count = config.min_count if config.min_count == max_count else int(rng.integers(config.min_count, max_count + 1))
    log_aspect = (math.log(config.min_aspect), math.log(config.max_aspect or 1 / config.min_aspect))
    area = height * width
    boxes = []
    for _ in range(count):
        for _attempt in range(10):
            target_area = rng.uniform(config.min_area, config.max_area) * area / count
            aspect = math.exp(rng.uniform(*log_aspect))
            box_h = int(round(math.sqrt(target_area * aspect)))
            box_w = int(round(math.sqrt(target_area / aspect)))
            if box_w < width and box_h < height:
                top = int(rng.integers(0, height - box_h + 1))
                left = int(rng.integers(0, width - box_w + 1))
                if config.mode == "pixel":
                    values = rng.standard_normal((box_h, box_w, channels), dtype=np.float32)
                elif config.mode == "rand":
                    values = rng.standard_normal((1, 1, channels), dtype=np.float32)
                else:
                    values = np.zeros((1, 1, channels), np.float32)
                boxes.append(ErasedBox(top, left, box_h, box_w, values))
                break
    return boxes


def apply_random_erasing(image: np.ndarray, boxes: Sequence[ErasedBox]) -> np.ndarray:
    """A copy of the normalised float [H, W, C] image with each box (in order) set to its values."""
    image = np.array(image, copy=True)
    for box in boxes:
        image[box.top : box.top + box.height, box.left : box.left + box.width] = box.values
    return image


def random_erasing(image: np.ndarray, config: RandomErasingConfig, rng: np.random.Generator) -> np.ndarray:
    """Random erasing of one normalised float [H, W, C] image: draw, then apply."""
    height, width, channels = image.shape
    return apply_random_erasing(image, draw_random_erasing(height, width, channels, config, rng))


# --------------------------------------------------------------------------------------- crops and resizing
def _interpolation(interpolation: str | int) -> int:
    if isinstance(interpolation, str):
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"Unknown interpolation {interpolation!r}; valid: {', '.join(INTERPOLATIONS)}.")
        return int(INTERPOLATIONS[interpolation])
    return int(interpolation)


@dataclasses.dataclass(frozen=True)
class ResizedCrop:
    """A crop box (rows top..top+height, columns left..left+width) and the PIL filter that resizes it."""

    top: int
    left: int
    height: int
    width: int
    resample: int


def draw_resized_crop(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "random",
) -> ResizedCrop:
    """timm's RandomResizedCropAndInterpolation.get_params plus its interpolation choice.

    Up to 10 tries of area (uniform fraction in `scale`) and aspect width / height (log-uniform in `ratio`),
    rounded to integer sides, kept if the crop fits; then a uniform position. Otherwise the largest centred
    crop whose aspect is within `ratio`. 'random' interpolation is bilinear or bicubic with equal chance.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    box = None
    for _ in range(10):
        target_area = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_w = int(round(math.sqrt(target_area * aspect)))
        crop_h = int(round(math.sqrt(target_area / aspect)))
        if crop_w <= width and crop_h <= height:
            box = (int(rng.integers(0, height - crop_h + 1)), int(rng.integers(0, width - crop_w + 1)), crop_h, crop_w)
            break
    if box is None:
        in_ratio = width / height
        if in_ratio < min(ratio):
            crop_w, crop_h = width, int(round(width / min(ratio)))
        elif in_ratio > max(ratio):
            crop_h, crop_w = height, int(round(height * max(ratio)))
        else:
            crop_h, crop_w = height, width
        box = ((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w)
    if interpolation == "random":
        resample = RANDOM_INTERPOLATIONS[int(rng.integers(len(RANDOM_INTERPOLATIONS)))]
    else:
        resample = _interpolation(interpolation)
    return ResizedCrop(*box, int(resample))


def _resize(image: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    if image.shape[:2] == (height, width):  # torchvision's resize returns such an image untouched
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), resample))


def apply_resized_crop_pil(image: Image.Image, crop: ResizedCrop, size: int | tuple[int, int]) -> Image.Image:
    """`apply_resized_crop` on a PIL image, returning one (torchvision's resized_crop: crop, then resize)."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    patch = image.crop((crop.left, crop.top, crop.left + crop.width, crop.top + crop.height))
    if (crop.height, crop.width) == (out_h, out_w):  # torchvision's resize returns such an image untouched
        return patch
    return patch.resize((out_w, out_h), crop.resample)


def apply_resized_crop(image: np.ndarray, crop: ResizedCrop, size: int | tuple[int, int]) -> np.ndarray:
    """Crops a uint8 [H, W, C] image to `crop` and resizes it to `size` (torchvision's resized_crop on PIL)."""
    out_h, out_w = (size, size) if isinstance(size, int) else size
    patch = image[crop.top : crop.top + crop.height, crop.left : crop.left + crop.width]
    return _resize(np.ascontiguousarray(patch), out_h, out_w, crop.resample)


def random_resized_crop(
    image: np.ndarray,
    size: int | tuple[int, int],
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "random",
) -> np.ndarray:
    """timm's RandomResizedCropAndInterpolation of one uint8 [H, W, C] image: draw, then apply."""
    crop = draw_resized_crop(*image.shape[:2], rng, scale, ratio, interpolation)
    return apply_resized_crop(image, crop, size)


def eval_resize_and_center_crop(
    image: np.ndarray, size: int, crop_pct: float = 0.875, interpolation: str = "bicubic"
) -> np.ndarray:
    """timm's evaluation transform before ToTensor (transforms_imagenet_eval, crop_mode 'center').

    Resizes the shorter side to floor(size / crop_pct), the longer side truncated to keep the aspect
    (torchvision Resize(int)), then takes the centre size x size window, the offsets rounded half to even
    as torchvision's CenterCrop does (an odd margin of 2k + 1 puts the extra pixel at the top / left when k
    is odd).
    """
    scale_size = math.floor(size / crop_pct)
    height, width = image.shape[:2]
    if width <= height:
        new_w, new_h = scale_size, int(scale_size * height / width)
    else:
        new_h, new_w = scale_size, int(scale_size * width / height)
    image = _resize(image, new_h, new_w, _interpolation(interpolation))
    if new_h < size or new_w < size:
        raise ValueError(f"crop_pct {crop_pct} resizes to {new_h}x{new_w}, smaller than the {size}x{size} crop.")
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return image[top : top + size, left : left + size]
