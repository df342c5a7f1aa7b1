"""Clip transforms for training and evaluation: uint8 [T, H, W, 3] -> float32 [T, S, S, 3].

Every frame of a clip gets the same spatial transform, so the motion is kept. The randomness comes from the
`np.random.Generator` grain's `random_map` hands each example (its place in the stream), drawn in this order:
the clip's start (video_folder with `clip_start="random"`), the crop box, the flip.

  sample_videos  train: horizontal flip (p = data.hflip), normalise; eval: normalise. The clips are
                 rendered at S x S by the source; the camera path is their augmentation.
  video_folder   train: one random resized crop box for the whole clip (`transforms.sample_crop_box` with
                 data.crop_scale / crop_ratio, frames smaller than S upsampled first), flip, normalise;
                 eval: the centre clip, each frame resized (shorter side S / crop_pct) and centre-cropped to
                 S as images are (`transforms.eval_image`).

Normalisation is the images': (pixels / 255 - mean) / std per channel.
"""

from __future__ import annotations

from typing import Any

import grain
import numpy as np

from mixtok.data import decode, transforms, videos
from mixtok.data.options import DataOptions


def _clip(element: dict[str, Any], options: DataOptions, rng: np.random.Generator | None) -> dict[str, Any]:
    if "video" not in element:  # sample_videos: already a clip
        return {"image": element["image"], "label": element["label"]}
    start = options.clip_start if rng is not None else "center"
    return videos.read_clip(element, options.num_frames, options.frame_stride, start, rng, options.skip_undecodable)


def train_clip(clip: np.ndarray, options: DataOptions, rng: np.random.Generator, crop: bool) -> np.ndarray:
    """One crop box (if `crop`) and one flip for all frames of `clip` [T, H, W, 3], then normalised."""
    size = options.image_size
    if crop:
        frames = [transforms.upsample_to_min_side(frame, size) for frame in clip]
        top, left, height, width = transforms.sample_crop_box(
            *frames[0].shape[:2], rng, options.crop_scale, options.crop_ratio
        )
        box = (left, top, left + width, top + height)
        clip = np.stack([transforms.resize(frame, size, size, box=box) for frame in frames])
    if rng.random() < options.hflip:
        clip = clip[:, :, ::-1]
    return transforms.normalize(clip, options.mean, options.std)


class VideoTrainTransform(grain.transforms.RandomMap):
    """Reads (video_folder) and augments one clip for training."""

    def __init__(self, options: DataOptions):
        self._options = options

    def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
        example = _clip(element, self._options, rng)
        if decode.is_undecodable(example):
            return example
        crop = "video" in element
        return {"image": train_clip(example["image"], self._options, rng, crop), "label": example["label"]}


class VideoEvalTransform(grain.transforms.Map):
    """Reads (video_folder: the centre clip) and resizes / crops one clip for evaluation."""

    def __init__(self, options: DataOptions):
        self._options = options

    def map(self, element: dict[str, Any]) -> dict[str, Any]:
        example = _clip(element, self._options, None)
        if decode.is_undecodable(example):
            return example
        clip = example["image"]
        if "video" in element:
            clip = np.stack([transforms.eval_image(frame, self._options) for frame in clip])
        else:
            clip = transforms.normalize(clip, self._options.mean, self._options.std)
        return {"image": clip, "label": example["label"]}
