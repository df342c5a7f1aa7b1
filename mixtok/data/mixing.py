"""Joint image-video training batches: each step all video or all images (as T = 1 clips), by `data.image_ratio`.

    config.data = dict(name="sample_videos", num_frames=17, image_size=32,
                       image_ratio=0.5, image_source=dict(name="sample_photos"))

OmniTokenizer (FoundationVision/OmniTokenizer: OmniTokenizer/omnitokenizer.py `training_step`, data.py
`_dataloader`) trains one tokenizer on images and videos: one DataLoader per dataset, each with its own batch
size (`--batch_size 4 8`: 4 videos and 8 images per GPU in scripts/recons/train.sh), and each step takes the
batch of one of them, chosen by `random.choices` with `--sample_ratio` or, with `--force_alternation` (the
released scripts), `batch_idx % num_datasets`.

Here, the simplest design that keeps every batch's shape static: step t is an image step iff
floor((t + 1) r) > floor(t r), r = `data.image_ratio` (as an exact decimal fraction), so the first N steps hold
exactly floor(N r) image steps spread evenly, and r = 1/2 alternates video, image, video, ... as the official
scripts do. A video step is the next batch of the video stream, [b, T, S, S, 3]; an image step the next batch of
the image stream (`data.image_source`, `data.image_batch_size` rows in all), reshaped to [b_img, 1, S, S, 3]. So
a jitted step sees two shapes, each traced once. Each stream is the single-source train iterator (`pipeline`),
sharded per process in the same way, advancing only on its own steps. The choice depends on t alone, so it is
the same on every process, and the state is {"step", "video", "image"} (the two streams' states): a restored
iterator gives exactly the next batches.
"""

from __future__ import annotations

import fractions
from typing import Any

import grain
import numpy as np

from mixtok.data import batching


def image_step(step: int, image_ratio: float) -> bool:
    """Whether training step `step` reads images: floor((step + 1) r) > floor(step r), r an exact decimal."""
    ratio = fractions.Fraction(repr(float(image_ratio)))
    return (step + 1) * ratio.numerator // ratio.denominator > step * ratio.numerator // ratio.denominator


class ImageVideoSteps(grain.DatasetIterator):
    """The joint train iterator: the video and image streams' batches in the order `image_step` sets."""

    def __init__(self, videos: batching.ReportSkippedIterator, images: batching.ReportSkippedIterator, ratio: float):
        super().__init__([videos, images])
        self._videos, self._images, self._ratio = videos, images, ratio
        self._step = 0

    @property
    def num_skipped_undecodable(self) -> int:
        return self._videos.num_skipped_undecodable + self._images.num_skipped_undecodable

    def __next__(self) -> dict[str, np.ndarray]:
        if image_step(self._step, self._ratio):
            batch = dict(next(self._images))
            batch["image"] = batch["image"][:, None]
        else:
            batch = next(self._videos)
        self._step += 1
        return batch

    def get_state(self) -> dict[str, Any]:
        return {"step": self._step, "video": self._videos.get_state(), "image": self._images.get_state()}

    def set_state(self, state: dict[str, Any]) -> None:
        self._videos.set_state(state["video"])
        self._images.set_state(state["image"])
        self._step = int(state["step"])

    def __str__(self) -> str:
        return f"ImageVideoSteps(image_ratio={self._ratio})"
