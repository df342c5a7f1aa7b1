"""Image transforms for training and evaluation on uint8 [H, W, 3] arrays.

Train: (upsample small images) -> random resized crop -> horizontal flip ->
normalise. Eval: resize the shorter side to int(S / crop_pct) -> centre crop
S -> normalise. Both end in float32 [S, S, 3], NHWC once batched.

Resizing is PIL bilinear (which antialiases when it shrinks). Randomness comes
only from the `np.random.Generator` that grain's `random_map` hands each
example, which grain derives from the pipeline seed and the example's position
in the stream, so a transform is a pure function of (example, rng).

timm's training transform (timm/data/transforms_factory.py
`transforms_imagenet_train`) is switched on piece by piece by the data options
(`mixtok.data.options`), each piece being `mixtok.data.augment`'s function, which
equals timm op by op:

  train_interpolation set  timm's random resized crop (augment.random_resized_crop)
                           replaces mixtok's, with that interpolation
  hflip                    as before (one draw whether or not it flips)
  auto_augment             RandAugment (augment.rand_augment) on the uint8 crop
  (normalise)
  reprob > 0               random erasing (augment.random_erasing) on the float image
  eval_interpolation set   augment.eval_resize_and_center_crop replaces the eval
                           resize and crop

in timm's order and from the one generator of each example, drawn in that order, so
turning RandAugment or erasing on leaves every crop and flip as it was. timm turns
its colour jitter off when RandAugment is on (except with the `t3a` / `t3aw` op
sets, which keep it); mixtok has no colour jitter, so those two differ from timm.

mixtok's own crop and eval resize (the defaults, kept so that existing configs
read exactly what they did) differ from timm's / torchvision's in three ways:
`random_resized_crop` resizes the box with PIL's `box=`, which reads pixels just
outside the crop for its filter support (torchvision crops first, then resizes,
so the border pixels differ); `sample_crop_box` draws its ten attempts in one
vectorised call (another draw order than timm's loop) and small images are
upsampled before cropping (timm does not); `center_crop` rounds the offsets
down, (h - S) // 2, where torchvision rounds (h - S) / 2 half to even (a margin
of 19 gives 9 here, 10 there). The timm options use augment.py's exact versions.
"""

from __future__ import annotations

import math
from typing import Any

import grain
import numpy as np
from PIL import Image

from mixtok.data import augment, decode
from mixtok.data.options import DataOptions

# torchvision's RandomResizedCrop tries this many crops before falling back to
# a centre crop; the same number keeps the distribution of crops comparable.
_CROP_ATTEMPTS = 10


def resize(
    image: np.ndarray, height: int, width: int, box: tuple[float, float, float, float] | None = None
) -> np.ndarray:
    """Bilinear resize of `image` (or of its `box` = (left, top, right, bottom))."""
    resized = Image.fromarray(image).resize((width, height), Image.BILINEAR, box=box)
    return np.asarray(resized)


def upsample_to_min_side(image: np.ndarray, size: int) -> np.ndarray:
    """Upsamples so the shorter side is at least `size`; larger images unchanged.

    Random resized crops pick integer boxes; on an 8x8 digit that leaves a
    handful of coarse crops, so small images are enlarged first.
    """
    height, width = image.shape[:2]
    shorter = min(height, width)
    if shorter >= size:
        return image
    return resize(image, round(height * size / shorter), round(width * size / shorter))


def sample_crop_box(
    height: int, width: int, rng: np.random.Generator, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """Samples (top, left, crop_height, crop_width) as RandomResizedCrop does.

    The crop covers a fraction in `scale` of the image area with aspect ratio
    (width / height) log-uniform in `ratio`. If no sampled crop fits after a few
    attempts, it falls back to the largest centred crop with a ratio in range.
    """
    area = height * width
    # One vectorised draw for all attempts: fewer Generator calls per image.
    areas = area * rng.uniform(scale[0], scale[1], size=_CROP_ATTEMPTS)
    aspects = np.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1]), size=_CROP_ATTEMPTS))
    widths = np.rint(np.sqrt(areas * aspects)).astype(np.int64)
    heights = np.rint(np.sqrt(areas / aspects)).astype(np.int64)
    fits = (widths > 0) & (widths <= width) & (heights > 0) & (heights <= height)
    if fits.any():
        k = int(np.argmax(fits))
        crop_h, crop_w = int(heights[k]), int(widths[k])
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        return top, left, crop_h, crop_w
    aspect = width / height
    if aspect < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        crop_h, crop_w = height, int(round(height * ratio[1]))
    else:
        crop_h, crop_w = height, width
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def random_resized_crop(
    image: np.ndarray,
    size: int,
    rng: np.random.Generator,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> np.ndarray:
    """Crops a random box (see `sample_crop_box`) and resizes it to size x size."""
    top, left, crop_h, crop_w = sample_crop_box(*image.shape[:2], rng, scale, ratio)
    return resize(image, size, size, box=(left, top, left + crop_w, top + crop_h))


def horizontal_flip(image: np.ndarray) -> np.ndarray:
    """Mirrors the image left-right (the W axis of HWC)."""
    return image[:, ::-1]


def resize_shorter_side(image: np.ndarray, shorter: int) -> np.ndarray:
    """Resizes so the shorter side equals `shorter`, keeping the aspect ratio.

    The longer side is truncated, as torchvision's Resize(int) does.
    """
    height, width = image.shape[:2]
    if height <= width:
        new_h, new_w = shorter, int(shorter * width / height)
    else:
        new_h, new_w = int(shorter * height / width), shorter
    if (new_h, new_w) == (height, width):
        return image
    return resize(image, new_h, new_w)


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Takes the central size x size window; odd margins put the extra pixel
    at the bottom / right."""
    height, width = image.shape[:2]
    if height < size or width < size:
        raise ValueError(f"center_crop of {size}x{size} needs an image at least that large, got {height}x{width}.")
    top, left = (height - size) // 2, (width - size) // 2
    return image[top : top + size, left : left + size]


def normalize(image: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """Maps uint8 0..255 to float32 (x / 255 - mean) / std per channel."""
    mean = np.asarray(mean, np.float32)
    std = np.asarray(std, np.float32)
    # One multiply-add per pixel: x * (1 / (255 std)) + (-mean / std).
    scale = 1.0 / (255.0 * std)
    return image.astype(np.float32) * scale - mean / std


def eval_image(image: np.ndarray, options: DataOptions) -> np.ndarray:
    """The eval transform: resize shorter side, centre crop, normalise.

    With `eval_interpolation` set, the resize and crop are timm's (`augment.eval_resize_and_center_crop`).
    """
    size = options.image_size
    if options.eval_interpolation is not None:
        image = augment.eval_resize_and_center_crop(image, size, options.crop_pct, options.eval_interpolation)
        return normalize(image, options.mean, options.std)
    image = resize_shorter_side(image, int(size / options.crop_pct))
    return normalize(center_crop(image, size), options.mean, options.std)


def rand_augment_config(options: DataOptions) -> augment.RandAugmentConfig | None:
    """The parsed `auto_augment` string with timm's hparams for this image size and mean, or None when off.

    As timm's transforms_imagenet_train: translate_const 0.45 of the image size, fill the mean colour, and a
    train_interpolation naming one filter fixes the geometric ops' interpolation (else random per op).
    """
    if options.auto_augment is None:
        return None
    hparams = augment.rand_augment_hparams(options.image_size, options.mean, options.train_interpolation or "random")
    return augment.rand_augment_config(options.auto_augment, hparams)


def random_erasing_config(options: DataOptions) -> augment.RandomErasingConfig | None:
    """timm's RandomErasing(reprob, mode=remode, max_count=recount), or None when reprob is 0."""
    if options.reprob <= 0:
        return None
    return augment.RandomErasingConfig(probability=options.reprob, mode=options.remode, max_count=options.recount)


def train_image(
    image: np.ndarray | Image.Image,
    options: DataOptions,
    rng: np.random.Generator,
    ra_config: augment.RandAugmentConfig | None = None,
    erasing_config: augment.RandomErasingConfig | None = None,
) -> np.ndarray:
    """The train transform: random resized crop, random flip, [RandAugment], normalise, [random erasing].

    `ra_config` / `erasing_config` (from `rand_augment_config` / `random_erasing_config`) switch those on.
    `image` is a uint8 [H, W, 3] array or (timm's crop only) an RGB PIL image. With timm's crop
    (`train_interpolation` set) the image stays a PIL image from the crop to the end of RandAugment, as
    in timm's transform, and becomes an array once, before normalising.
    """
    size = options.image_size
    if options.train_interpolation is not None:
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.ascontiguousarray(image))
        crop = augment.draw_resized_crop(
            pil.height, pil.width, rng, options.crop_scale, options.crop_ratio, options.train_interpolation
        )
        pil = augment.apply_resized_crop_pil(pil, crop, size)
        # Draw even when hflip is 0 so turning flips on or off leaves the crops of
        # every other example unchanged.
        if rng.random() < options.hflip:
            pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if ra_config is not None:
            pil = augment.apply_rand_augment_pil(pil, augment.draw_rand_augment(ra_config, rng), ra_config)
        image = np.asarray(pil)
    else:
        if isinstance(image, Image.Image):
            raise TypeError("train_image takes a PIL image only with timm's crop (data.train_interpolation set).")
        image = upsample_to_min_side(image, size)
        image = random_resized_crop(image, size, rng, options.crop_scale, options.crop_ratio)
        if rng.random() < options.hflip:
            image = horizontal_flip(image)
        if ra_config is not None:
            image = augment.rand_augment(np.ascontiguousarray(image), ra_config, rng)
    image = normalize(image, options.mean, options.std)
    if erasing_config is not None:
        image = augment.random_erasing(image, erasing_config, rng)
    return image


class TrainTransform(grain.transforms.RandomMap):
    """Decodes (if needed) and augments one example for training."""

    def __init__(self, options: DataOptions):
        self._options = options
        # Parsed once here rather than per example; both are small frozen dataclasses, so the
        # transform still pickles into grain's worker processes.
        self._ra_config = rand_augment_config(options)
        self._erasing_config = random_erasing_config(options)

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        if self._options.sequence_length is not None:  # token ids: nothing to decode or augment
            return {"image": np.asarray(element["image"], np.int32), "label": element["label"]}
        # timm's crop works in PIL: decode straight to a PIL image for it.
        as_pil = self._options.train_interpolation is not None
        example = decode.decode_example(element, self._options.skip_undecodable, as_pil)
        if decode.is_undecodable(example):
            return example
        # Popped, not read: train_image then holds the only reference to the decoded image and drops it after
        # the crop, so that the decoded image's memory is free again for the rest of the transform.
        image = train_image(example.pop("image"), self._options, rng, self._ra_config, self._erasing_config)
        return {"image": image, "label": example["label"]}


class EvalTransform(grain.transforms.Map):
    """Decodes (if needed) and resizes / crops one example for evaluation."""

    def __init__(self, options: DataOptions):
        self._options = options

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        if self._options.sequence_length is not None:  # token ids: nothing to decode or resize
            return {"image": np.asarray(element["image"], np.int32), "label": element["label"]}
        example = decode.decode_example(element, self._options.skip_undecodable)
        if decode.is_undecodable(example):
            return example
        return {"image": eval_image(example["image"], self._options), "label": example["label"]}
