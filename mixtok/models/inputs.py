"""Input checks shared by the backbones: NHWC images whose size the model's strides divide."""

import jax


def check_images(images: jax.Array, stride: int, model: str, why: str, image_size: int | None = None) -> None:
    """Raises a ValueError naming the image size and the valid sizes if `stride` does not divide it, or if
    `image_size` is set and the images are not image_size x image_size."""
    if images.ndim != 4:
        raise ValueError(f"{model} takes NHWC images [B, H, W, C]; got shape {images.shape}.")
    check_image_size(images, image_size, model)
    height, width = images.shape[1:3]
    if height % stride or width % stride:
        raise ValueError(
            f"Image size {height}x{width} is not divisible by the model's total stride {stride} ({why}); "
            f"use a multiple of {stride}, e.g. {max(stride, height // stride * stride)}x"
            f"{max(stride, width // stride * stride)}."
        )


def check_image_size(images: jax.Array, image_size: int | None, model: str) -> None:
    """Raises a ValueError when `image_size` is set and the images' sides are not that size.

    For models whose parameters do not depend on the resolution: `image_size` states the size the
    model is meant for (a config's contract), so a mismatched input fails instead of running silently.
    """
    if image_size is None:
        return
    height, width = images.shape[1:3]
    if (height, width) != (image_size, image_size):
        raise ValueError(
            f"{model} was built with image_size={image_size} but got {height}x{width} images; feed "
            f"{image_size}x{image_size} images or build it with image_size=None (any size)."
        )
