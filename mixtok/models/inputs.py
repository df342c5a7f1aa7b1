"""Input checks shared by the backbones: NHWC images whose size the model's strides divide."""

from typing import Optional

import jax


def check_images(images: jax.Array, stride: int, model: str, why: str, image_size: Optional[int] = None) -> None:
    """Raises a ValueError naming the image size and the valid sizes if `stride` does not divide it, or if
    `image_size` is set and the images are not image_size x image_size."""
    if images.ndim != 4:
        raise ValueError(f"{model} takes NHWC images [B, H, W, C]; got shape {images.shape}.")
    height, width = images.shape[1:3]
    if image_size is not None and (height, width) != (image_size, image_size):
        raise ValueError(f"{model} was built with image_size={image_size}; got {height}x{width} images. Resize "
                         f"them to {image_size}x{image_size} or build the model with the images' size.")
    if height % stride or width % stride:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by the model's total stride {stride} ({why}); "
            f"use a multiple of {stride}, e.g. {max(stride, height // stride * stride)}x"
            f"{max(stride, width // stride * stride)}.")
