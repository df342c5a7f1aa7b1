"""Per-image reconstruction metrics, PSNR and SSIM, in jnp (jit-able, one value per image).

    psnr(images, reconstructions, data_range=1.0)   # [B, H, W, C] x 2 -> [B]
    ssim(images, reconstructions, data_range=1.0)   # [B, H, W, C] x 2 -> [B]

Both equal scikit-image's metrics image by image (tests/evaluate/test_image_metrics.py):
`skimage.metrics.peak_signal_noise_ratio(a, b, data_range=...)` and
`skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
channel_axis=-1, data_range=...)`, the settings that match Wang et al. 2004 ("Image quality assessment: from
error visibility to structural similarity", IEEE TIP 13) and that the tokenizer papers report.

`data_range` is the distance between the smallest and largest possible pixel value: 1.0 for images in
[0, 1], 2.0 for the tokenizers' [-1, 1] space, 255 for uint8 pixels.
"""

import jax.numpy as jnp
import numpy as np

# skimage.metrics.structural_similarity fixes the Gaussian filter's truncation at 3.5 standard deviations
# when gaussian_weights=True, so that sigma = 1.5 gives an 11-tap filter (radius int(3.5 * 1.5 + 0.5) = 5).
SSIM_GAUSSIAN_TRUNCATE = 3.5


def _check_images(a, b, name: str):
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: the two image batches differ in shape, {a.shape} vs {b.shape}; both must be [B, H, W, C]."
        )
    if a.ndim != 4:
        raise ValueError(f"{name}: images must be [B, H, W, C], got a {a.ndim}-d array of shape {a.shape}.")


def psnr(a, b, *, data_range: float = 1.0):
    """Peak signal-to-noise ratio per image, 10 * log10(data_range^2 / MSE), MSE over H, W and C.

    a, b: [B, H, W, C]. Returns [B] float32 (inf where an image is reproduced exactly, as skimage).
    """
    _check_images(a, b, "psnr")
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    mse = jnp.mean(jnp.square(a - b), axis=(1, 2, 3))
    return 10.0 * jnp.log10(jnp.float32(data_range) ** 2 / mse)


def gaussian_taps(sigma: float, truncate: float = SSIM_GAUSSIAN_TRUNCATE) -> np.ndarray:
    """The normalised 1-d Gaussian that scipy.ndimage.gaussian_filter1d applies: radius int(truncate * sigma + 0.5),
    weights exp(-x^2 / (2 sigma^2)) for x in [-radius, radius], divided by their sum."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def _gaussian_blur(x, taps: np.ndarray):
    """Separable blur over H and W of [N, H, W, C] with scipy.ndimage's mode='reflect' border.

    scipy's 'reflect' (d c b a | a b c d | d c b a) repeats the edge pixel: numpy's and jnp's mode='symmetric'.
    A sum of shifted slices (11 taps by default) keeps the arithmetic exactly that of the correlation.
    """
    radius = (len(taps) - 1) // 2
    height, width = x.shape[1], x.shape[2]
    x = jnp.pad(x, ((0, 0), (radius, radius), (0, 0), (0, 0)), mode="symmetric")
    x = sum(float(w) * x[:, i : i + height] for i, w in enumerate(taps))
    x = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode="symmetric")
    return sum(float(w) * x[:, :, i : i + width] for i, w in enumerate(taps))


def ssim(
    a, b, *, data_range: float = 1.0, sigma: float = 1.5, k1: float = 0.01, k2: float = 0.03, win_size: int | None = 11
):
    """Structural similarity per image with a Gaussian window (Wang et al. 2004), skimage's computation exactly.

    For each channel: local means, variances and covariance are Gaussian-weighted averages (population
    covariance, no N / (N - 1)), computed with scipy.ndimage's Gaussian filter truncated at 3.5 sigma and its
    'reflect' border; the SSIM map (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2)) with
    C1 = (k1 * data_range)^2, C2 = (k2 * data_range)^2 is averaged after cropping (win_size - 1) // 2 pixels
    from every border; the channels' values are averaged.

    As in skimage, `win_size` only sets the crop (the filter's size comes from sigma); None takes the filter's
    size, 2 * int(3.5 * sigma + 0.5) + 1, which is 11 for sigma = 1.5.
    a, b: [B, H, W, C] with H, W >= win_size. Returns [B] float32. Computed in float32 where skimage uses the
    input's precision (float64 for float64 images): they agree to ~1e-6.
    """
    _check_images(a, b, "ssim")
    if sigma <= 0:
        raise ValueError(f"ssim: sigma must be positive, got {sigma}.")
    if k1 < 0 or k2 < 0:
        raise ValueError(f"ssim: k1 and k2 must be non-negative, got k1={k1}, k2={k2}.")
    taps = gaussian_taps(sigma)
    if win_size is None:
        win_size = len(taps)
    if win_size % 2 != 1 or win_size < 1:
        raise ValueError(f"ssim: win_size must be a positive odd number, got {win_size}.")
    if min(a.shape[1], a.shape[2]) < win_size:
        raise ValueError(
            f"ssim: images of {a.shape[1]}x{a.shape[2]} are smaller than win_size={win_size}; "
            "pass a smaller odd win_size or larger images."
        )
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    # One blur of the five maps stacked along the channel axis.
    stacked = jnp.concatenate([a, b, a * a, b * b, a * b], axis=-1)
    mu_a, mu_b, mu_aa, mu_bb, mu_ab = jnp.split(_gaussian_blur(stacked, taps), 5, axis=-1)
    var_a = mu_aa - mu_a * mu_a
    var_b = mu_bb - mu_b * mu_b
    cov_ab = mu_ab - mu_a * mu_b
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov_ab + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    crop = (win_size - 1) // 2
    height, width = a.shape[1], a.shape[2]
    ssim_map = ssim_map[:, crop : height - crop, crop : width - crop, :]
    # Every channel has as many pixels, so the mean over (H, W, C) is skimage's mean of the channel means.
    return jnp.mean(ssim_map, axis=(1, 2, 3))
