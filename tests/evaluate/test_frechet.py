"""Frechet distance against pytorch-fid's scipy.linalg.sqrtm formula and the closed form for diagonal Gaussians."""

import numpy as np
import pytest

from mixtok.evaluate.frechet import (
    FeatureStatistics,
    compute_rfid,
    feature_statistics,
    frechet_distance,
    frechet_distance_from_features,
)

linalg = pytest.importorskip("scipy.linalg")


def pytorch_fid_formula(mu1, sigma1, mu2, sigma2, eps=1e-6):
    """pytorch-fid's calculate_frechet_distance (mseitzer/pytorch-fid: src/pytorch_fid/fid_score.py), restated."""
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1.dot(sigma2))
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset).dot(sigma2 + offset))
    covmean = np.real(covmean)
    return diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)


def random_features(seed, n=400, dim=16):
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((dim, dim))
    return rng.standard_normal((n, dim)) @ mixing + rng.standard_normal(dim)


def test_frechet_distance_equals_the_sqrtm_formula():
    f1, f2 = random_features(0), random_features(1)
    mu1, sigma1 = np.mean(f1, 0), np.cov(f1, rowvar=False)
    mu2, sigma2 = np.mean(f2, 0), np.cov(f2, rowvar=False)
    np.testing.assert_allclose(
        frechet_distance(mu1, sigma1, mu2, sigma2), pytorch_fid_formula(mu1, sigma1, mu2, sigma2), rtol=1e-9, atol=1e-6
    )
    np.testing.assert_allclose(
        frechet_distance_from_features(f1, f2), pytorch_fid_formula(mu1, sigma1, mu2, sigma2), rtol=1e-9, atol=1e-6
    )


def test_frechet_distance_with_rank_deficient_covariances():
    # 10 samples in 16 dimensions: singular covariances, where sqrtm needs care.
    f1, f2 = random_features(2, n=10), random_features(3, n=10)
    mu1, sigma1 = feature_statistics(f1)
    mu2, sigma2 = feature_statistics(f2)
    np.testing.assert_allclose(
        frechet_distance(mu1, sigma1, mu2, sigma2), pytorch_fid_formula(mu1, sigma1, mu2, sigma2), rtol=1e-6, atol=1e-6
    )


def test_frechet_distance_of_diagonal_gaussians_is_closed_form():
    rng = np.random.default_rng(4)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    s1, s2 = rng.uniform(0.1, 3.0, 8), rng.uniform(0.1, 3.0, 8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    np.testing.assert_allclose(frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)), expected, rtol=1e-12)


def test_frechet_distance_of_a_distribution_to_itself_is_zero():
    mu, sigma = feature_statistics(random_features(5))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_streaming_statistics_equal_one_shot():
    features = random_features(6, n=257) + 1e3  # far from zero, where naive sums lose digits
    stats = FeatureStatistics()
    for start, stop in [(0, 1), (1, 64), (64, 64), (64, 200), (200, 257)]:
        stats.update(features[start:stop])
    assert stats.count == 257
    np.testing.assert_allclose(stats.mean, features.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(features, rowvar=False), rtol=1e-9, atol=1e-9)


def test_compute_rfid_streams_batches_through_the_extractor():
    rng = np.random.default_rng(7)
    real = rng.random((90, 4, 4, 3))
    fake = np.clip(real + 0.1 * rng.standard_normal(real.shape), 0, 1)
    projection = rng.standard_normal((48, 6))

    def extract_features(images):
        return np.tanh(images.reshape(len(images), -1) @ projection)

    rfid = compute_rfid(extract_features, [real[:32], real[32:]], (fake[i : i + 20] for i in range(0, 90, 20)))
    expected = pytorch_fid_formula(
        *feature_statistics(extract_features(real)), *feature_statistics(extract_features(fake))
    )
    np.testing.assert_allclose(rfid, expected, rtol=1e-8, atol=1e-8)


def test_shape_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        frechet_distance(np.zeros(2), np.eye(3), np.zeros(2), np.eye(2))
    stats = FeatureStatistics()
    stats.update(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dimension 4"):
        stats.update(np.zeros((2, 4)))
