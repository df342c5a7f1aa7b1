"""Frechet distance between Gaussian fits of two feature sets: the formula behind FID, rFID and FVD.

    mu, sigma = feature_statistics(features)                 # one shot, [N, D] -> [D], [D, D]
    stats = FeatureStatistics(); stats.update(batch) ...     # streaming, float64, any number of batches
    fd = frechet_distance(mu1, sigma1, mu2, sigma2)
    rfid = compute_rfid(extract_features, real_batches, fake_batches)

FD = ||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2))   (Dowson & Landau 1982; Heusel et al. 2017, "GANs
Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium").

Tr((S1 S2)^(1/2)) is computed without scipy.linalg.sqrtm: S1 S2 is similar to the symmetric positive semi-definite
M = S1^(1/2) S2 S1^(1/2), so the eigenvalues of (S1 S2)^(1/2) are the square roots of M's, and
Tr = sum_i sqrt(lambda_i(M)). Two symmetric eigendecompositions (numpy.linalg.eigh, float64) give it exactly, with
no imaginary parts to discard and no eps offset (pytorch-fid adds eps * I when sqrtm fails; here eigenvalues that
round below zero are clipped to zero instead).

Comparability of rFID: torch-fidelity, pytorch-fid and TiTok's evaluator (bytedance/1d-tokenizer @ 942a96f:
evaluator/evaluator.py, which converts images with `(x * 255).to(torch.uint8)`, a truncation) use the 2048-d pool3
features of the FID InceptionV3 (the TF-ported `pt_inception-2015-12-05` weights) on uint8 images, and estimate the
covariance with N - 1 in the denominator, as here. The numbers in the papers are comparable with yours only when
`extract_features` is that network with those weights on uint8 pixels, over the same images (ImageNet-1k val,
50,000 centre crops at 256^2); mixtok downloads no weights, so the extractor is yours to supply.
"""

from collections.abc import Callable, Iterable

import numpy as np


def _as_features(features, name: str) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2:
        raise ValueError(f"{name}: features must be [N, D], got shape {features.shape}.")
    return features


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean [D], covariance [D, D]) in float64 of features [N, D]; covariance with N - 1, as numpy.cov."""
    features = _as_features(features, "feature_statistics")
    if features.shape[0] < 2:
        raise ValueError(
            f"feature_statistics: need at least 2 feature vectors for a covariance, got {features.shape[0]}."
        )
    return features.mean(axis=0), np.cov(features, rowvar=False)


class FeatureStatistics:
    """Streaming mean and covariance of feature batches in float64, for evaluation sets too large to hold.

    Batches are merged with Chan et al.'s pairwise update (mean and centred scatter matrix per batch, then
    combined), which avoids the cancellation of the sum-of-outer-products form in float64 for features far
    from zero. `mean`, `covariance` (N - 1) and `statistics()` equal feature_statistics of all rows at once.
    """

    def __init__(self, dim: int | None = None):
        self.dim = dim
        self.count = 0
        self._mean: np.ndarray | None = None
        self._scatter: np.ndarray | None = None  # sum over rows of (x - mean)(x - mean)^T

    def update(self, features) -> None:
        """Adds a batch of features [n, D]."""
        features = _as_features(features, "FeatureStatistics.update")
        if self.dim is None:
            self.dim = features.shape[1]
        if features.shape[1] != self.dim:
            raise ValueError(
                f"FeatureStatistics.update: features have dimension {features.shape[1]}, the "
                f"accumulator holds dimension {self.dim}."
            )
        n = features.shape[0]
        if n == 0:
            return
        batch_mean = features.mean(axis=0)
        centred = features - batch_mean
        batch_scatter = centred.T @ centred
        if self.count == 0:
            self._mean, self._scatter, self.count = batch_mean, batch_scatter, n
            return
        total = self.count + n
        delta = batch_mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._scatter = self._scatter + batch_scatter + np.outer(delta, delta) * (self.count * n / total)
        self.count = total

    @property
    def mean(self) -> np.ndarray:
        if self.count == 0:
            raise ValueError("FeatureStatistics.mean: no features were added.")
        return self._mean

    @property
    def covariance(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError(f"FeatureStatistics.covariance: need at least 2 feature vectors, have {self.count}.")
        return self._scatter / (self.count - 1)

    def statistics(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.covariance


def _symmetric_sqrt(matrix: np.ndarray) -> np.ndarray:
    """The PSD square root of a symmetric matrix; eigenvalues that round below zero count as zero."""
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(sigma1, sigma2) -> float:
    """Tr((S1 S2)^(1/2)) for symmetric PSD S1, S2, as sum sqrt(eig(S1^(1/2) S2 S1^(1/2)))."""
    root1 = _symmetric_sqrt(np.asarray(sigma1, np.float64))
    middle = root1 @ np.asarray(sigma2, np.float64) @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^(1/2)), in float64 (see the module docstring)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    dim = mu1.shape[0]
    if mu1.shape != (dim,) or mu2.shape != (dim,) or sigma1.shape != (dim, dim) or sigma2.shape != (dim, dim):
        raise ValueError(
            f"frechet_distance: expected means [D] and covariances [D, D] with one D, got mu1 "
            f"{mu1.shape}, sigma1 {sigma1.shape}, mu2 {mu2.shape}, sigma2 {sigma2.shape}."
        )
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2))


def frechet_distance_from_features(features1, features2) -> float:
    """Frechet distance between the Gaussian fits of two feature sets [N1, D] and [N2, D]."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def compute_rfid(
    extract_features: Callable[[np.ndarray], np.ndarray], real_batches: Iterable, fake_batches: Iterable
) -> float:
    """Reconstruction FID: the Frechet distance between features of real images and of their reconstructions.

    extract_features: images [n, H, W, C] -> features [n, D]; for numbers comparable with the papers, the FID
      InceptionV3 pool3 (D = 2048) on uint8 pixels, see the module docstring.
    real_batches, fake_batches: iterables of image batches (any number, any batch sizes); statistics are
      accumulated in float64 with FeatureStatistics, so the whole set is never held in memory.
    """
    return streamed_frechet_distance(extract_features, real_batches, fake_batches, "compute_rfid")


def streamed_frechet_distance(extract_features, real_batches: Iterable, fake_batches: Iterable, name: str) -> float:
    """The Frechet distance between the features of two streams of batches (statistics accumulated in float64);
    what rFID and FVD compute, each with its own feature network. `name` is the caller's, for its error."""
    real, fake = FeatureStatistics(), FeatureStatistics()
    for batch in real_batches:
        real.update(extract_features(batch))
    for batch in fake_batches:
        fake.update(extract_features(batch))
    if real.dim != fake.dim:
        raise ValueError(f"{name}: real features have dimension {real.dim}, fake ones {fake.dim}.")
    return frechet_distance(*real.statistics(), *fake.statistics())
