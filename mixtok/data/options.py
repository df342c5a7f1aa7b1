"""Reads the `config.data` block into validated, fully defaulted options.

Every field is optional except `name`; the defaults depend on the source (a
digits run wants 32-pixel images and a `test` split, an ImageNet folder wants
224 pixels and `val`). Validation happens here, once, so that the sources,
transforms and pipeline can trust what they are given and a typo in a config
fails before any data is read.

Fields of `config.data` (all but `name` optional):

  name               digits | synthetic | sample_photos | imagefolder | array_record | marked_majority
                     | sample_videos | video_folder (the video sources, below)
  root               folder / file / glob of the data (imagefolder, array_record, video_folder)
  train_split        default 'train'
  eval_split         default 'test' (in-memory sources) or 'val' (folders, records)
  image_size         output side S; default 32 (in-memory sources) or 224; for a sequence
                     source (marked_majority) it is the sequence length, `sequence_length`
  sequence_length    sequence sources (marked_majority): tokens per example, default 256
  num_classes        synthetic: how many classes to draw (default 10); other
                     sources derive it (array_record may set it to avoid a scan)
  num_examples       synthetic, sample_photos, sample_videos, marked_majority: training examples (default 512)
  num_eval_examples  synthetic, sample_photos, sample_videos, marked_majority: evaluation examples (default 128)
  crop_scale         random-resized-crop area range, default (0.08, 1.0)
  crop_ratio         random-resized-crop aspect range, default (3/4, 4/3)
  hflip              True / False or a probability; default True (p = 0.5)
  crop_pct           eval centre-crop fraction, default 0.875
  mean, std          per-channel normalisation in 0..1 units (ImageNet defaults)
  skip_undecodable   default False: an undecodable image (or video, or frame of a frame folder) stops
                     the run naming the file; True: it is skipped, logged and counted
  read_threads       threads that read and transform examples in each process
                     (0 = in the calling thread); default 0 for the in-memory
                     sources (digits, synthetic, sample_photos, sample_videos), 16 for files

Video sources (`mixtok.data.videos`): examples are clips uint8 [T, H, W, 3], batches float32
[B, T, S, S, 3] under the batch key "image", normalised per channel like images:

  num_frames         T, frames per clip; default 17 (OmniTokenizer's 1 + 4k clips); video sources only
  frame_stride       source frames between consecutive clip frames; default 1. sample_videos: the
                     camera moves stride times as far between frames
  clip_start         video_folder training clips: 'random' (default; uniform over the starts whose
                     clip fits) or 'center'; evaluation always takes the centre clip
  image_ratio        joint image-video training (OmniTokenizer's): the fraction of training steps whose
                     batch is all images, as T = 1 clips [B_img, 1, S, S, 3]; the others are all video.
                     Step t is an image step iff floor((t + 1) r) > floor(t r): an even, deterministic
                     spread, the same on every process (r = 0.5 alternates video, image, as the official
                     --force_alternation); default 0 (no image steps)
  image_source       the image data of those steps: a data block of its own, e.g.
                     dict(name='imagefolder', root=...) or dict(name='sample_photos'); image_size, mean
                     and std are the video's (unset there, or equal); its train / eval options are its own
  image_batch_size   global batch of the image steps; default the global batch (the official joint
                     recipe uses 4 videos and 8 images per GPU)

timm's training augmentations (names as timm's train.py flags; all off by default, so a config
without them reads exactly what it did before they existed; see `mixtok.data.transforms`):

  train_interpolation  None (default): mixtok's own random resized crop (bilinear, small
                     images upsampled first); 'random', 'bilinear', 'bicubic' (or another
                     PIL filter name): timm's RandomResizedCropAndInterpolation with that
                     interpolation ('random': bilinear or bicubic per image)
  auto_augment       a timm RandAugment string such as 'rand-m9-mstd0.5-inc1' (after the
                     flip); None or '' (default): off. Its rotations, shears and translations
                     use train_interpolation when that names one filter, else a random one
  reprob             random erasing probability, after normalisation; default 0 (off)
  remode             erasing fill: 'pixel' (default, as timm's train.py), 'rand' or 'const'
  recount            at most this many erased boxes per image (uniform in 1..recount); default 1
  eval_interpolation None (default): mixtok's eval resize (bilinear, centre offsets rounded
                     down); 'bicubic' (timm's) or another filter: timm's eval resize and
                     centre crop (torchvision's rounding of the offsets)

DeiT's repeated augmentation (facebookresearch/deit: samplers.py `RASampler`, main.py `--repeated-aug`;
on by default there and in the ImageNet scripts of jameslahm/lsnet: main.py and DaiShiResearch/TransNeXt:
classification/main.py, all with 3 copies: DeiT's num_repeats=3, the other two's samplers.py fix it at 3):

  repeated_aug       copies of each image per epoch, consecutive in the train stream, each
                     augmented with its own key; 0 (default) or 1: off; 3: DeiT's. An epoch is
                     then the train split rounded down to a multiple of 256 examples (as
                     RASampler's; the whole split below 256) but reads only about
                     1 / repeated_aug of the images (`mixtok.data.pipeline`)

ml-cvnets' multi-scale variable-batch sampler (apple/ml-cvnets: data/sampler/variable_batch_sampler.py; MobileViT's
recipe, config/classification/imagenet/mobilevit.yaml `sampler.vbs`):

  multi_scale        None (default): every step at image_size. A block
                     dict(min_size=160, max_size=320, num_scales=5, check_scale=32, batch_multiple=8)
                     (those are the defaults of each field): each step draws one of cvnets' sizes around
                     image_size and a global batch scaled to keep the pixels per step
                     (`mixtok.data.multi_scale`); evaluation stays at image_size.
                     rule="cas_vit" (default "cvnets"): CAS-ViT's sampler, whose batches
                     never drop below the base one
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any

from mixtok.data import augment
from mixtok.data.multi_scale import MultiScaleOptions, multi_scale_options
from mixtok.registry import close_matches_hint

_log = logging.getLogger(__name__)

SOURCE_NAMES = (
    "digits",
    "synthetic",
    "sample_photos",
    "imagefolder",
    "array_record",
    "marked_majority",
    "sample_videos",
    "video_folder",
)
IN_MEMORY_SOURCES = ("digits", "synthetic", "sample_photos", "marked_majority", "sample_videos")
# Sources of clips uint8 [T, H, W, 3] (`mixtok.data.videos`); batches are [B, T, S, S, 3].
VIDEO_SOURCES = ("sample_videos", "video_folder")
CLIP_STARTS = ("random", "center")
_VIDEO_FIELDS = ("num_frames", "frame_stride", "clip_start", "image_ratio", "image_source", "image_batch_size")
# Sources of int32 token-id sequences [L] (`mixtok.data.sequences`), passed through the image transforms untouched.
SEQUENCE_SOURCES = ("marked_majority",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_FIELDS = (
    "name",
    "root",
    "train_split",
    "eval_split",
    "image_size",
    "num_classes",
    "num_examples",
    "num_eval_examples",
    "crop_scale",
    "crop_ratio",
    "hflip",
    "crop_pct",
    "mean",
    "std",
    "skip_undecodable",
    "read_threads",
    "train_interpolation",
    "auto_augment",
    "reprob",
    "remode",
    "recount",
    "eval_interpolation",
    "repeated_aug",
    "multi_scale",
    "sequence_length",
    *_VIDEO_FIELDS,
)


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """The `config.data` block with every default filled in and checked."""

    name: str
    root: str | None
    train_split: str
    eval_split: str
    image_size: int
    num_classes: int | None
    num_examples: int
    num_eval_examples: int
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float]
    hflip: float
    crop_pct: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    skip_undecodable: bool
    read_threads: int
    train_interpolation: str | None = None
    auto_augment: str | None = None
    reprob: float = 0.0
    remode: str = "pixel"
    recount: int = 1
    eval_interpolation: str | None = None
    repeated_aug: int = 0
    multi_scale: MultiScaleOptions | None = None
    sequence_length: int | None = None  # sequence sources only; image_size then equals it
    num_frames: int | None = None  # video sources only: frames per clip (T)
    frame_stride: int = 1
    clip_start: str = "random"
    image_ratio: float = 0.0  # joint image-video training: the fraction of image steps
    image_source: DataOptions | None = None
    image_batch_size: int | None = None


def check_source_name(name: Any) -> str:
    """Returns `name` if it names a source, else raises listing the valid ones."""
    if name not in SOURCE_NAMES:
        raise ValueError(
            f"Unknown data source name {name!r}; valid names are "
            f"{', '.join(SOURCE_NAMES)}.{close_matches_hint(name, SOURCE_NAMES)}"
        )
    return name


def _as_dict(data_config: Any) -> dict[str, Any]:
    if hasattr(data_config, "to_dict"):  # ml_collections.ConfigDict
        return data_config.to_dict()
    if isinstance(data_config, Mapping):
        return dict(data_config)
    raise TypeError(f"data_config must be an ml_collections.ConfigDict or a mapping, got {type(data_config).__name__}.")


def _pair(field: str, value: Any, low: float, high: float) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"data.{field} must be a pair of numbers (min, max), got {value!r}.") from None
    if not low < a <= b <= high:
        raise ValueError(f"data.{field} must satisfy {low} < min <= max <= {high}, got {value!r}.")
    return a, b


def _triple(field: str, value: Any, positive: bool) -> tuple[float, ...]:
    try:
        triple = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3 or (positive and min(triple) <= 0):
        what = "three positive numbers" if positive else "three numbers"
        raise ValueError(f"data.{field} must be {what} (one per RGB channel, in 0..1 units), got {value!r}.")
    return triple


def _positive_int(field: str, value: Any, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or (value < 0 or (value == 0 and not allow_zero)):
        bound = "a non-negative" if allow_zero else "a positive"
        raise ValueError(f"data.{field} must be {bound} integer, got {value!r}.")
    return value


def _flip_probability(value: Any) -> float:
    if isinstance(value, bool):
        return 0.5 if value else 0.0
    if isinstance(value, (int, float)) and 0.0 <= value <= 1.0:
        return float(value)
    raise ValueError(f"data.hflip must be True, False or a probability in [0, 1], got {value!r}.")


def _interpolation(field: str, value: Any, allow_random: bool) -> str | None:
    if value is None:
        return None
    valid = (("random",) if allow_random else ()) + tuple(augment.INTERPOLATIONS)
    if value not in valid:
        raise ValueError(
            f"data.{field} must be None (mixtok's own resize) or one of {', '.join(valid)}, got {value!r}."
            f"{close_matches_hint(value, valid)}"
        )
    return value


def _repeated_aug(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            "data.repeated_aug (copies of each image per epoch, DeiT's repeated augmentation) must be an integer "
            f">= 0: 0 or 1 for off, 3 for DeiT's --repeated-aug; got {value!r}."
        )
    return value


def _augmentations(fields: Mapping[str, Any], image_size: int, mean: tuple[float, ...]) -> dict[str, Any]:
    """The timm augmentation fields, checked with augment.py's own parsers (one-line errors naming the value)."""
    train_interpolation = _interpolation("train_interpolation", fields.get("train_interpolation"), allow_random=True)
    auto_augment = fields.get("auto_augment") or None
    if auto_augment is not None:
        try:
            augment.rand_augment_config(
                auto_augment, augment.rand_augment_hparams(image_size, mean, train_interpolation or "random")
            )
        except ValueError as error:
            raise ValueError(f"data.auto_augment: {error}") from None
    reprob = fields.get("reprob", 0.0)
    if isinstance(reprob, bool) or not isinstance(reprob, (int, float)) or not 0.0 <= reprob <= 1.0:
        raise ValueError(f"data.reprob (random erasing probability) must be a number in [0, 1], got {reprob!r}.")
    remode = fields.get("remode", "pixel")
    if remode not in augment.ERASING_MODES:
        raise ValueError(
            f"data.remode (random erasing fill) must be one of {', '.join(augment.ERASING_MODES)}, got {remode!r}."
        )
    recount = _positive_int("recount", fields.get("recount", 1))
    return dict(
        train_interpolation=train_interpolation,
        auto_augment=auto_augment,
        reprob=float(reprob),
        remode=remode,
        recount=recount,
        eval_interpolation=_interpolation("eval_interpolation", fields.get("eval_interpolation"), allow_random=False),
    )


def _video_fields(name: str, fields: Mapping[str, Any], image_size: int, mean, std) -> dict[str, Any]:
    """The video options (`_VIDEO_FIELDS`), checked: only video sources take them."""
    if name not in VIDEO_SOURCES:
        present = [key for key in _VIDEO_FIELDS if fields.get(key) is not None]
        if present:
            raise ValueError(
                f"data.{present[0]} applies to the video sources ({', '.join(VIDEO_SOURCES)}), not to "
                f"data.name={name!r}; remove it or use a video source."
            )
        return {}
    for key in ("train_interpolation", "auto_augment", "multi_scale"):
        if fields.get(key):
            raise ValueError(f"data.{key} is an image augmentation; the video source {name!r} does not support it.")
    if fields.get("reprob", 0):
        raise ValueError(f"data.reprob is an image augmentation; the video source {name!r} does not support it.")
    clip_start = fields.get("clip_start", "random")
    if clip_start not in CLIP_STARTS:
        raise ValueError(
            f"data.clip_start must be one of {', '.join(CLIP_STARTS)}, got {clip_start!r}."
            f"{close_matches_hint(clip_start, CLIP_STARTS)}"
        )
    ratio = fields.get("image_ratio", 0.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise ValueError(f"data.image_ratio (the fraction of image steps) must be a number in [0, 1], got {ratio!r}.")
    image_source = fields.get("image_source")
    if image_source is not None:
        image_source = _image_source(image_source, image_size, mean, std)
    elif ratio > 0:
        raise ValueError(
            f"data.image_ratio={ratio} needs data.image_source, the image data of those steps, "
            "e.g. dict(name='sample_photos') or dict(name='imagefolder', root=...)."
        )
    image_batch_size = fields.get("image_batch_size")
    if image_batch_size is not None:
        image_batch_size = _positive_int("image_batch_size", image_batch_size)
    return dict(
        num_frames=_positive_int("num_frames", fields.get("num_frames", 17)),
        frame_stride=_positive_int("frame_stride", fields.get("frame_stride", 1)),
        clip_start=clip_start,
        image_ratio=float(ratio),
        image_source=image_source,
        image_batch_size=image_batch_size,
    )


def _image_source(value: Any, image_size: int, mean, std) -> DataOptions:
    """data.image_source: an image data block whose size and normalisation are the video's."""
    fields = _as_dict(value)
    name = fields.get("name")
    if name in VIDEO_SOURCES or name in SEQUENCE_SOURCES:
        raise ValueError(f"data.image_source.name must name an image source, got {name!r}.")
    shared = {"image_size": image_size, "mean": mean, "std": std}
    for key, video_value in shared.items():
        if key in fields and fields[key] is not None:
            given = tuple(fields[key]) if key != "image_size" else fields[key]
            if given != video_value:
                raise ValueError(
                    f"data.image_source.{key}={fields[key]!r} differs from the video's data.{key}={video_value!r}; "
                    "images and clips of one tokenizer share it: remove it from image_source."
                )
    try:
        return data_options({**fields, **shared})
    except ValueError as error:
        raise ValueError(f"data.image_source: {error}") from None


def data_options(data_config: Any) -> DataOptions:
    """Validates `config.data` and fills in the defaults for its source."""
    fields = _as_dict(data_config)
    if "name" not in fields:
        raise ValueError("data.name is required; valid names are " + ", ".join(SOURCE_NAMES))
    name = check_source_name(fields["name"])
    for key in fields:
        if key not in _FIELDS:
            # Warn rather than fail: other parts of the project may keep their own
            # fields under config.data.
            _log.warning("data.%s is not a field the data pipeline reads.%s", key, close_matches_hint(key, _FIELDS))
    in_memory = name in IN_MEMORY_SOURCES
    root = fields.get("root")
    if not in_memory and not root:
        raise ValueError(f"data.root is required for data.name={name!r}.")
    num_classes = fields.get("num_classes")
    if num_classes is None and name == "synthetic":
        num_classes = 10
    if num_classes is not None:
        num_classes = _positive_int("num_classes", num_classes)
    crop_pct = fields.get("crop_pct", 0.875)
    if not isinstance(crop_pct, (int, float)) or not 0 < crop_pct <= 1:
        raise ValueError(f"data.crop_pct must be in (0, 1], got {crop_pct!r}.")
    sequence_length = None
    if name in SEQUENCE_SOURCES:
        sequence_length = _positive_int("sequence_length", fields.get("sequence_length", 256))
        if fields.get("image_size", sequence_length) != sequence_length:
            raise ValueError(
                f"data.image_size={fields['image_size']!r} but data.name={name!r} is a sequence source, whose "
                f"image_size is its sequence_length={sequence_length}; remove data.image_size."
            )
    image_size = _positive_int("image_size", sequence_length or fields.get("image_size", 32 if in_memory else 224))
    mean = _triple("mean", fields.get("mean", IMAGENET_MEAN), positive=False)
    std = _triple("std", fields.get("std", IMAGENET_STD), positive=True)
    video = _video_fields(name, fields, image_size, mean, std)
    return DataOptions(
        name=name,
        root=None if root is None else os.path.expanduser(str(root)),
        train_split=str(fields.get("train_split", "train")),
        eval_split=str(fields.get("eval_split", "test" if in_memory else "val")),
        image_size=image_size,
        num_classes=num_classes,
        num_examples=_positive_int("num_examples", fields.get("num_examples", 512)),
        num_eval_examples=_positive_int("num_eval_examples", fields.get("num_eval_examples", 128)),
        crop_scale=_pair("crop_scale", fields.get("crop_scale", (0.08, 1.0)), 0.0, 1.0),
        crop_ratio=_pair("crop_ratio", fields.get("crop_ratio", (3 / 4, 4 / 3)), 0.0, float("inf")),
        hflip=_flip_probability(fields.get("hflip", True)),
        crop_pct=float(crop_pct),
        mean=mean,
        std=std,
        skip_undecodable=bool(fields.get("skip_undecodable", False)),
        read_threads=_positive_int("read_threads", fields.get("read_threads", 0 if in_memory else 16), allow_zero=True),
        repeated_aug=_repeated_aug(fields.get("repeated_aug", 0)),
        multi_scale=multi_scale_options(fields.get("multi_scale")),
        sequence_length=sequence_length,
        **_augmentations(fields, image_size, mean),
        **video,
    )
