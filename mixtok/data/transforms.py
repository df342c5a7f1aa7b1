"""Image transforms for training and evaluation on uint8 [H, W, 3] arrays.

Train: (upsample small images) -> random resized crop -> horizontal flip ->
normalise. Eval: resize the shorter side to int(S / crop_pct) -> centre crop
S -> normalise. Both end in float32 [S, S, 3], NHWC once batched.

Resizing is PIL bilinear (which antialiases when it shrinks). Randomness comes
only from the `np.random.Generator` that grain's `random_map` hands each
example, which grain derives from the pipeline seed and the example's position
in the stream, so a transform is a pure function of (example, rng).
"""

from __future__ import annotations

import math
from typing import Any

import grain
import numpy as np
from PIL import Image

from mixtok.data import decode
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
    """The eval transform: resize shorter side, centre crop, normalise."""
    size = options.image_size
    image = resize_shorter_side(image, int(size / options.crop_pct))
    return normalize(center_crop(image, size), options.mean, options.std)


def train_image(image: np.ndarray, options: DataOptions, rng: np.random.Generator) -> np.ndarray:
    """The train transform: random resized crop, random flip, normalise."""
    size = options.image_size
    image = upsample_to_min_side(image, size)
    image = random_resized_crop(image, size, rng, options.crop_scale, options.crop_ratio)
    # Draw even when hflip is 0 so turning flips on or off leaves the crops of
    # every other example unchanged.
    if rng.random() < options.hflip:
        image = horizontal_flip(image)
    return normalize(image, options.mean, options.std)


class TrainTransform(grain.transforms.RandomMap):
    """Decodes (if needed) and augments one example for training."""

    def __init__(self, options: DataOptions):
        self._options = options

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        example = decode.decode_example(element, self._options.skip_undecodable)
        if decode.is_undecodable(example):
            return example
        return {"image": train_image(example["image"], self._options, rng), "label": example["label"]}


class EvalTransform(grain.transforms.Map):
    """Decodes (if needed) and resizes / crops one example for evaluation."""

    def __init__(self, options: DataOptions):
        self._options = options

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        example = decode.decode_example(element, self._options.skip_undecodable)
        if decode.is_undecodable(example):
            return example
        return {"image": eval_image(example["image"], self._options), "label": example["label"]}
