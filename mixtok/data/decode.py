"""Decodes encoded images (JPEG, PNG, ...) and applies the undecodable policy.

The file-backed sources (imagefolder, array_record) return encoded bytes plus a
`path` naming where they came from; decoding happens here, inside the
transforms, so that it runs in grain's reader threads or worker processes.

Policy for an image PIL cannot decode (corrupt, truncated, not an image):

* default, `data.skip_undecodable=False`: fatal. `UndecodableImageError` names
  the file (or the array_record file and record index) and says how to skip.
  A silent skip would change what a run trains on without anyone noticing.
* `data.skip_undecodable=True`: the example is replaced by a marker
  `{UNDECODABLE_KEY: path}`. The training batcher drops markers (so batches
  stay full) and evaluation masks them out; both hand the paths to
  `report_skipped` in the main process, which logs a warning per file with a
  running count and keeps the count (`num_skipped_undecodable()`), including
  the images skipped inside worker processes.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

UNDECODABLE_KEY = "undecodable"

_log = logging.getLogger(__name__)
_lock = threading.Lock()
_num_skipped = 0


class UndecodableImageError(ValueError):
    """An image that PIL cannot decode, with skipping turned off."""


def decode_image(data: bytes, path: str, as_pil: bool = False) -> np.ndarray | Image.Image:
    """Decodes encoded image bytes to a uint8 RGB array [H, W, 3] (with `as_pil`, an RGB PIL image).

    Raises:
      UndecodableImageError: naming `path` when the bytes are not an image PIL
        can read in full.
    """
    try:
        with warnings.catch_warnings():
            # Large scans are legitimate training images, not decompression bombs.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                # load() forces the full decode, so truncated files fail here and
                # not later in the middle of a resize. An RGB image is kept as decoded
                # (convert would copy it).
                image.load()
                rgb = image if image.mode == "RGB" else image.convert("RGB")
                return rgb if as_pil else np.asarray(rgb)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # PIL's own message for an unknown format names a BytesIO object, not
        # the file, so it is replaced.
        reason = (
            "not a recognised image format" if isinstance(e, UnidentifiedImageError) else f"{type(e).__name__}: {e}"
        )
        raise UndecodableImageError(
            f"Cannot decode image {path}: {reason}. Remove or "
            "replace the file, or set data.skip_undecodable=True in the config to "
            "skip undecodable images (each one is then logged and counted)."
        ) from e


def decode_example(example: dict[str, Any], skip_undecodable: bool, as_pil: bool = False) -> dict[str, Any]:
    """Returns {'image': uint8 [H, W, 3], 'label'} or an undecodable marker.

    Examples whose image is already an array (digits, synthetic) pass through; with `as_pil`, encoded
    images are decoded to RGB PIL images instead of arrays (the timm transform works in PIL).
    """
    image = example["image"]
    if isinstance(image, np.ndarray):
        return {"image": image, "label": example["label"]}
    path = example.get("path", "<unnamed image>")
    try:
        array = decode_image(image, path, as_pil)
    except UndecodableImageError:
        if not skip_undecodable:
            raise
        return {UNDECODABLE_KEY: path}
    return {"image": array, "label": example["label"]}


def is_undecodable(example: dict[str, Any]) -> bool:
    """Whether `example` is the marker left by a skipped undecodable image."""
    return UNDECODABLE_KEY in example


def report_skipped(paths: Iterable[str]) -> int:
    """Logs and counts skipped images; returns how many `paths` held.

    Called in the main process (after any worker processes), so the count is
    the true total for this process's iterators.
    """
    global _num_skipped
    count = 0
    for path in paths:
        with _lock:
            _num_skipped += 1
            total = _num_skipped
        count += 1
        _log.warning(
            "Skipped undecodable image or video %s (%d skipped so far in this process; data.skip_undecodable=True).",
            path,
            total,
        )
    return count


def num_skipped_undecodable() -> int:
    """How many undecodable images this process has skipped, all iterators."""
    return _num_skipped
