"""PSNR and SSIM against scikit-image, image by image."""

import jax
import numpy as np
import pytest

from mixtok.evaluate.image_metrics import gaussian_taps, psnr, ssim

metrics = pytest.importorskip("skimage.metrics")
skimage_data = pytest.importorskip("skimage.data")


def skimage_ssim(a, b, data_range, **kwargs):
    return metrics.structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        channel_axis=-1,
        data_range=data_range,
        **kwargs,
    )


def image_pairs():
    """(clean, corrupted) pairs: astronaut crops of odd and even sizes, a greyscale crop, uniform noise."""
    rng = np.random.default_rng(0)
    astronaut = skimage_data.astronaut().astype(np.float64) / 255.0
    pairs = []
    for (top, left, height, width), noise in [
        ((100, 50, 37, 45), 0.1),
        ((200, 180, 32, 32), 0.02),
        ((0, 0, 11, 64), 0.3),
    ]:
        clean = astronaut[top : top + height, left : left + width]
        pairs.append((clean, np.clip(clean + noise * rng.standard_normal(clean.shape), 0.0, 1.0)))
    grey = astronaut[300:340, 300:333, :1]
    pairs.append((grey, np.clip(grey[::-1] * 0.8 + 0.1, 0.0, 1.0)))
    random = rng.random((29, 31, 3))
    pairs.append((random, rng.random((29, 31, 3))))
    return pairs


@pytest.mark.parametrize("index", range(5))
def test_ssim_equals_skimage_gaussian_ssim(index):
    clean, corrupted = image_pairs()[index]
    expected = skimage_ssim(clean, corrupted, data_range=1.0)
    got = jax.jit(ssim)(clean[None], corrupted[None])
    assert got.shape == (1,)
    np.testing.assert_allclose(float(got[0]), expected, atol=1e-5)


def test_ssim_per_image_over_a_batch_with_data_range_two():
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, (3, 16, 20, 3))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), -1, 1)
    expected = [skimage_ssim(a[i], b[i], data_range=2.0) for i in range(3)]
    np.testing.assert_allclose(np.asarray(ssim(a, b, data_range=2.0)), expected, atol=1e-5)


def test_ssim_win_size_sets_only_the_crop_as_in_skimage():
    clean, corrupted = image_pairs()[0]
    expected = skimage_ssim(clean, corrupted, data_range=1.0, win_size=7)
    np.testing.assert_allclose(float(ssim(clean[None], corrupted[None], win_size=7)[0]), expected, atol=1e-5)


def test_gaussian_taps_are_scipy_gaussian_filter_weights():
    ndimage = pytest.importorskip("scipy.ndimage")
    impulse = np.zeros(31)
    impulse[15] = 1.0
    response = ndimage.gaussian_filter1d(impulse, 1.5, truncate=3.5, mode="reflect")
    taps = gaussian_taps(1.5)
    assert len(taps) == 11
    np.testing.assert_allclose(response[10:21], taps[::-1], atol=1e-12)


def test_ssim_of_identical_images_is_one():
    clean, _ = image_pairs()[1]
    np.testing.assert_allclose(np.asarray(ssim(clean[None], clean[None])), [1.0], atol=1e-6)


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="win_size"):
        ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)))


def test_psnr_equals_skimage_per_image():
    rng = np.random.default_rng(2)
    a = rng.random((4, 9, 13, 3))
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    for data_range in (1.0, 2.0):
        expected = [metrics.peak_signal_noise_ratio(a[i], b[i], data_range=data_range) for i in range(4)]
        np.testing.assert_allclose(
            np.asarray(jax.jit(psnr, static_argnames="data_range")(a, b, data_range=data_range)), expected, rtol=1e-5
        )


def test_psnr_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(np.zeros((1, 4, 4, 3)), np.zeros((1, 4, 5, 3)))
