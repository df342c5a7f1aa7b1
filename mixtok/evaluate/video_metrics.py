"""Video reconstruction metrics on clips [B, T, H, W, C]: per-frame PSNR and SSIM, temporal consistency, FVD.

    frame_psnr(videos, reconstructions, data_range=2.0)        # [B, T]: PSNR of every frame
    frame_ssim(videos, reconstructions, data_range=2.0)        # [B, T]
    temporal_psnr(videos, reconstructions, data_range=2.0)     # [B]: PSNR of the frame-to-frame differences
    compute_fvd(extract_features, real_batches, fake_batches)  # Frechet video distance, any feature network

Per-frame PSNR and SSIM are `mixtok.evaluate.psnr` / `ssim` (scikit-image's metrics, image by image) applied to
every frame; a clip's value is usually reported as their mean over frames (`.mean(axis=1)`), as OmniTokenizer
and LARP report per-frame averages.

Temporal consistency is the PSNR of the frame differences: MSE between x[t + 1] - x[t] and y[t + 1] - y[t] over
every t, H, W and C, against the differences' range (twice the pixels' range). A reconstruction that is right
frame by frame but flickers has a low temporal PSNR; a static clip reconstructed as a static clip has an
infinite one. It needs T >= 2.

FVD is the Frechet distance between the feature statistics of real and reconstructed clips, computed with the
streaming statistics of `mixtok.evaluate.frechet` (float64, never holding the whole set). The papers use I3D
(Kinetics-400) features of 16-frame clips (UCF-101 at 128 px for LARP and ViTok, 17 frames at 256 px for
OmniTokenizer); the I3D weights cannot be downloaded here, so `extract_features` is whatever network the caller
passes (clips [n, T, H, W, C] -> features [n, D]); figures are comparable with the papers only with their I3D.
"""

from collections.abc import Callable, Iterable

import jax.numpy as jnp
import numpy as np

from mixtok.evaluate.frechet import streamed_frechet_distance
from mixtok.evaluate.image_metrics import psnr, ssim


def _check_videos(a, b, name: str, min_frames: int = 1):
    if a.shape != b.shape:
        raise ValueError(
            f"{name}: the two clip batches differ in shape, {a.shape} vs {b.shape}; both must be [B, T, H, W, C]."
        )
    if a.ndim != 5:
        raise ValueError(f"{name}: clips must be [B, T, H, W, C], got a {a.ndim}-d array of shape {a.shape}.")
    if a.shape[1] < min_frames:
        raise ValueError(f"{name}: needs clips of at least {min_frames} frames, got T = {a.shape[1]}.")


def _per_frame(metric, a, b, **kwargs):
    batch, frames = a.shape[:2]
    flat = lambda x: jnp.reshape(jnp.asarray(x), (batch * frames,) + tuple(x.shape[2:]))  # noqa: E731
    return metric(flat(a), flat(b), **kwargs).reshape(batch, frames)


def frame_psnr(a, b, *, data_range: float = 1.0):
    """PSNR of every frame: [B, T, H, W, C] x 2 -> [B, T] float32 (inf where a frame is reproduced exactly)."""
    _check_videos(a, b, "frame_psnr")
    return _per_frame(psnr, a, b, data_range=data_range)


def frame_ssim(a, b, *, data_range: float = 1.0, **kwargs):
    """SSIM of every frame (`mixtok.evaluate.ssim`'s settings and options): [B, T, H, W, C] x 2 -> [B, T]."""
    _check_videos(a, b, "frame_ssim")
    return _per_frame(ssim, a, b, data_range=data_range, **kwargs)


def temporal_psnr(a, b, *, data_range: float = 1.0):
    """PSNR of the frame differences x[t + 1] - x[t] against y[t + 1] - y[t], range 2 * data_range: [B]."""
    _check_videos(a, b, "temporal_psnr", min_frames=2)
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    da, db = a[:, 1:] - a[:, :-1], b[:, 1:] - b[:, :-1]
    mse = jnp.mean(jnp.square(da - db), axis=(1, 2, 3, 4))
    return 10.0 * jnp.log10(jnp.float32(2.0 * data_range) ** 2 / mse)


def compute_fvd(
    extract_features: Callable[[np.ndarray], np.ndarray], real_batches: Iterable, fake_batches: Iterable
) -> float:
    """Frechet video distance between the features of real clips and of their reconstructions.

    extract_features: clips [n, T, H, W, C] -> features [n, D] (I3D's for numbers comparable with the papers);
    real_batches, fake_batches: iterables of clip batches of any sizes, statistics accumulated in float64.
    """
    return streamed_frechet_distance(extract_features, real_batches, fake_batches, "compute_fvd")
