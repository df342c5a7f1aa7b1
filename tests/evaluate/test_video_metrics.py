"""Video metrics against direct numpy computations: per-frame PSNR / SSIM, the temporal PSNR, FVD's statistics."""

import numpy as np
import pytest

from mixtok.evaluate import (
    compute_fvd,
    frame_psnr,
    frame_ssim,
    frechet_distance_from_features,
    psnr,
    ssim,
    temporal_psnr,
)


def _clips(seed=0, shape=(2, 3, 16, 16, 3)):
    rng = np.random.default_rng(seed)
    a = rng.uniform(size=shape).astype(np.float32)
    return a, np.clip(a + 0.05 * rng.normal(size=shape), 0, 1).astype(np.float32)


def test_per_frame_metrics_are_the_image_metrics_of_every_frame():
    a, b = _clips()
    p, s = np.asarray(frame_psnr(a, b)), np.asarray(frame_ssim(a, b, win_size=7))
    assert p.shape == s.shape == (2, 3)
    for i in range(2):
        np.testing.assert_allclose(p[i], psnr(a[i], b[i]), rtol=1e-6)
        np.testing.assert_allclose(s[i], ssim(a[i], b[i], win_size=7), rtol=1e-5)


def test_temporal_psnr_is_the_psnr_of_frame_differences():
    a, b = _clips(1)
    da, db = np.diff(a.astype(np.float64), axis=1), np.diff(b.astype(np.float64), axis=1)
    expected = 10 * np.log10(2.0**2 / np.mean((da - db) ** 2, axis=(1, 2, 3, 4)))
    np.testing.assert_allclose(temporal_psnr(a, b), expected, rtol=1e-5)
    # A constant offset in every frame changes the per-frame PSNR, not the temporal one.
    assert (np.asarray(temporal_psnr(a, a + 0.125)) > 120).all()  # float32 rounding only
    assert (np.asarray(frame_psnr(a, a + 0.125)) < 20).all()


@pytest.mark.parametrize(
    "fn, args, message",
    [
        (frame_psnr, (np.zeros((2, 3, 8, 8, 3)), np.zeros((2, 4, 8, 8, 3))), "differ in shape"),
        (frame_psnr, (np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 3))), r"must be \[B, T, H, W, C\]"),
        (temporal_psnr, (np.zeros((2, 1, 8, 8, 3)), np.zeros((2, 1, 8, 8, 3))), "at least 2 frames"),
    ],
)
def test_bad_shapes_are_one_clear_error(fn, args, message):
    with pytest.raises(ValueError, match=message):
        fn(*args)


def test_fvd_streams_the_same_statistics_as_all_features_at_once():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(40, 2, 4, 4, 1)), rng.normal(0.3, 1.2, size=(40, 2, 4, 4, 1))
    extract = lambda clips: np.asarray(clips).reshape(len(clips), -1)  # noqa: E731
    streamed = compute_fvd(extract, [real[:15], real[15:]], [fake[:7], fake[7:30], fake[30:]])
    np.testing.assert_allclose(streamed, frechet_distance_from_features(extract(real), extract(fake)), rtol=1e-9)
