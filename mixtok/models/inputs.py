"""Input checks shared by the backbones: NHWC images whose size the model's strides divide."""

import jax


def check_images(images: jax.Array, stride: int, model: str, why: str) -> None:
    """Raises a ValueError naming the image size and the valid sizes if `stride` does not divide it."""
    if images.ndim != 4:
        raise ValueError(f"{model} takes NHWC images [B, H, W, C]; got shape {images.shape}.")
    height, width = images.shape[1:3]
    if height % stride or width % stride:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by the model's total stride {stride} ({why}); "
            f"use a multiple of {stride}, e.g. {max(stride, height // stride * stride)}x"
            f"{max(stride, width // stride * stride)}.")
