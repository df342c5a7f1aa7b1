"""Shared fixtures for the data tests: small configs and image trees on disk."""

import hashlib
import io
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image


def encode_png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def batches_digest(batches) -> str:
    """SHA-256 of the batches' images and labels, in order: pins a stream bit for bit."""
    digest = hashlib.sha256()
    for batch in batches:
        digest.update(np.ascontiguousarray(batch["image"]).tobytes())
        digest.update(batch["label"].tobytes())
    return digest.hexdigest()


def solid_image(value: int, height: int = 20, width: int = 28) -> np.ndarray:
    """An image whose every pixel is `value`: its label survives any transform."""
    return np.full((height, width, 3), value, np.uint8)


def write_tree(root, splits: dict[str, dict[str, int]], corrupt: tuple[str, ...] = ()) -> list[str]:
    """Writes root/split/class/img_k.png; `corrupt` lists 'split/class/name'.

    Returns the corrupt files' paths. Class i's pixels are all 10 * i, and mixed
    extensions and letter cases check the extension matching.
    """
    extensions = (".png", ".PNG", ".jpg", ".JPEG", ".bmp", ".webp")
    for split, classes in splits.items():
        for i, (name, count) in enumerate(sorted(classes.items())):
            folder = os.path.join(root, split, name)
            os.makedirs(folder, exist_ok=True)
            for k in range(count):
                ext = extensions[k % len(extensions)]
                fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".webp": "WEBP"}[ext.lower()]
                options = {"quality": 100} if fmt == "JPEG" else {}
                if fmt == "WEBP":
                    options = {"lossless": True}
                Image.fromarray(solid_image(10 * i)).save(os.path.join(folder, f"img_{k}{ext}"), format=fmt, **options)
            # Not an image: must be ignored.
            with open(os.path.join(folder, "notes.txt"), "w") as f:
                f.write("not an image")
    paths = []
    for entry in corrupt:
        path = os.path.join(root, entry)
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n this is not really a png")
        paths.append(path)
    return paths


@pytest.fixture
def digits_config():
    return ml_collections.ConfigDict(dict(name="digits", image_size=16, crop_scale=(0.6, 1.0), hflip=False))


@pytest.fixture
def indexed_config():
    """Synthetic data whose label is the example index (one class each)."""
    return ml_collections.ConfigDict(
        dict(
            name="synthetic",
            image_size=8,
            num_examples=40,
            num_classes=40,
            num_eval_examples=23,
            crop_scale=(0.5, 1.0),
        )
    )
